//! Per-thread context-switch records from the kernel's perf ring buffer.
//!
//! A worker thread opens a software perf event on itself with
//! `context_switch` set. From then on the kernel appends a
//! `PERF_RECORD_SWITCH` record to a shared ring every time the thread leaves
//! or regains a CPU, and a monitor thread reads the ring (and `poll`s the
//! event fd to be woken on each record). A switch-out record whose
//! "preempted" flag is clear means the thread blocked.
//!
//! The event is opened with:
//!
//! * `type = PERF_TYPE_SOFTWARE`, `config = PERF_COUNT_SW_DUMMY`: no counting,
//!   only side-band records;
//! * `context_switch`: the `PERF_RECORD_SWITCH` records;
//! * `sample_id_all` with `sample_type = PERF_SAMPLE_TIME`: every record ends
//!   in a `struct sample_id` trailer that holds just the `u64` time, so a
//!   switch record is exactly 16 bytes (8 header + 8 time);
//! * `use_clockid` with `CLOCK_MONOTONIC`: record times are comparable with
//!   CLOCK_MONOTONIC;
//! * `watermark` with `wakeup_watermark = 1`: the fd is signalled on every
//!   record;
//! * `disabled` where asked: the monitor switches recording on and off
//!   (`PERF_EVENT_IOC_ENABLE`/`_DISABLE`) as it starts and stops watching
//!   the worker's pool;
//! * `exclude_kernel`, `exclude_hv`: needed by unprivileged processes under
//!   `perf_event_paranoid = 2`.
//!
//! The ring is read as documented in `linux/perf_event.h`: `data_head` is
//! loaded with acquire ordering, the records between our tail and the head
//! are read, then `data_tail` is stored with release ordering so the kernel
//! may reuse the space. The mapping is writable, so the kernel never
//! overwrites unread records: when the ring is full it drops new ones and
//! later writes a `PERF_RECORD_LOST` record, reported as
//! [`SwitchRecord::Lost`].

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use rustix::mm::{MapFlags, ProtFlags};

/// The number of data pages [`SwitchRing::open_current_thread`] is normally
/// given: 8 KiB with 4 KiB pages, room for 512 switch records.
pub(crate) const DEFAULT_DATA_PAGES: usize = 2;

/// `PERF_TYPE_SOFTWARE`.
const PERF_TYPE_SOFTWARE: u32 = 1;
/// `PERF_COUNT_SW_DUMMY`.
const PERF_COUNT_SW_DUMMY: u64 = 9;
/// `PERF_SAMPLE_TID`: `u32 pid, u32 tid` in the `sample_id` trailer.
#[cfg(test)]
const PERF_SAMPLE_TID: u64 = 1 << 1;
/// `PERF_SAMPLE_TIME`: `u64 time` in the `sample_id` trailer.
const PERF_SAMPLE_TIME: u64 = 1 << 2;
/// `PERF_FLAG_FD_CLOEXEC`.
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// `perf_event_attr.disabled`: opened off, until `PERF_EVENT_IOC_ENABLE`.
const ATTR_DISABLED: u64 = 1 << 0;
/// `PERF_EVENT_IOC_ENABLE`: `_IO('$', 0)`.
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
/// `PERF_EVENT_IOC_DISABLE`: `_IO('$', 1)`.
const PERF_EVENT_IOC_DISABLE: libc::c_ulong = 0x2401;
/// `perf_event_attr.exclude_kernel`.
const ATTR_EXCLUDE_KERNEL: u64 = 1 << 5;
/// `perf_event_attr.exclude_hv`.
const ATTR_EXCLUDE_HV: u64 = 1 << 6;
/// `perf_event_attr.watermark`: `wakeup_watermark` (bytes) rather than
/// `wakeup_events`.
const ATTR_WATERMARK: u64 = 1 << 14;
/// `perf_event_attr.sample_id_all`: a `sample_id` trailer on every record.
const ATTR_SAMPLE_ID_ALL: u64 = 1 << 18;
/// `perf_event_attr.use_clockid`: record times from `clockid`.
const ATTR_USE_CLOCKID: u64 = 1 << 25;
/// `perf_event_attr.context_switch`: `PERF_RECORD_SWITCH` records.
const ATTR_CONTEXT_SWITCH: u64 = 1 << 26;

/// `PERF_RECORD_LOST`: `{ header, u64 id, u64 lost, sample_id }`.
const PERF_RECORD_LOST: u32 = 2;
/// `PERF_RECORD_SWITCH`: `{ header, sample_id }`.
const PERF_RECORD_SWITCH: u32 = 14;
/// `PERF_RECORD_MISC_SWITCH_OUT`: the switch record is a switch-out.
const PERF_RECORD_MISC_SWITCH_OUT: u16 = 1 << 13;
/// `PERF_RECORD_MISC_SWITCH_OUT_PREEMPT`: the task was still runnable.
const PERF_RECORD_MISC_SWITCH_OUT_PREEMPT: u16 = 1 << 14;

/// Size of `struct perf_event_header`: `u32 type, u16 misc, u16 size`.
const HEADER_LEN: usize = 8;

/// Offset of `data_head` in `struct perf_event_mmap_page`.
const DATA_HEAD_OFFSET: usize = 1024;
/// Offset of `data_tail` in `struct perf_event_mmap_page`.
const DATA_TAIL_OFFSET: usize = 1032;
/// Offset of `data_offset` in `struct perf_event_mmap_page` (Linux 4.1+).
const DATA_OFFSET_OFFSET: usize = 1040;
/// Offset of `data_size` in `struct perf_event_mmap_page` (Linux 4.1+).
const DATA_SIZE_OFFSET: usize = 1048;

/// `struct perf_event_attr` as of `PERF_ATTR_SIZE_VER8` (136 bytes, Linux
/// 6.3+). Older kernels accept it as long as the fields they do not know are
/// zero, which they are here; newer ones accept a smaller struct.
///
/// The bitfield word is `flags`; the unions are represented by the member
/// used here (`sample_period`, `wakeup_watermark`, `config1`, `config2`).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    /// `type`: the event's PMU type.
    kind: u32,
    /// `size`: `size_of::<PerfEventAttr>()`.
    size: u32,
    /// `config`: the event within the type.
    config: u64,
    /// `sample_period` / `sample_freq`.
    sample_period: u64,
    /// `sample_type`: `PERF_SAMPLE_*` bits.
    sample_type: u64,
    /// `read_format`.
    read_format: u64,
    /// The bitfield word (`disabled`, `inherit`, ...).
    flags: u64,
    /// `wakeup_events` / `wakeup_watermark`.
    wakeup_watermark: u32,
    /// `bp_type`.
    bp_type: u32,
    /// `bp_addr` / `config1`.
    config1: u64,
    /// `bp_len` / `config2`.
    config2: u64,
    /// `branch_sample_type`.
    branch_sample_type: u64,
    /// `sample_regs_user`.
    sample_regs_user: u64,
    /// `sample_stack_user`.
    sample_stack_user: u32,
    /// `clockid`, used with `use_clockid`.
    clockid: i32,
    /// `sample_regs_intr`.
    sample_regs_intr: u64,
    /// `aux_watermark`.
    aux_watermark: u32,
    /// `sample_max_stack`.
    sample_max_stack: u16,
    /// `__reserved_2`.
    reserved_2: u16,
    /// `aux_sample_size`.
    aux_sample_size: u32,
    /// `__reserved_3`.
    reserved_3: u32,
    /// `sig_data`.
    sig_data: u64,
    /// `config3`.
    config3: u64,
}

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<PerfEventAttr>() == 136);
    assert!(offset_of!(PerfEventAttr, sample_type) == 24);
    assert!(offset_of!(PerfEventAttr, flags) == 40);
    assert!(offset_of!(PerfEventAttr, wakeup_watermark) == 48);
    assert!(offset_of!(PerfEventAttr, branch_sample_type) == 72);
    assert!(offset_of!(PerfEventAttr, clockid) == 92);
    assert!(offset_of!(PerfEventAttr, aux_watermark) == 104);
    assert!(offset_of!(PerfEventAttr, sig_data) == 120);
    assert!(offset_of!(PerfEventAttr, config3) == 128);
};

/// One record read from a switch ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SwitchRecord {
    /// The thread left the CPU. `preempt`: it was still runnable (preempted),
    /// i.e. NOT blocked.
    Out {
        /// When, in CLOCK_MONOTONIC time.
        time_ns: u64,
        /// The thread was still runnable: preempted or yielding, not blocked.
        preempt: bool,
    },
    /// The thread got the CPU back.
    In {
        /// When, in CLOCK_MONOTONIC time.
        time_ns: u64,
    },
    /// The kernel dropped records because the ring was full: the thread's
    /// current state is unknown.
    Lost,
}

/// The context-switch record ring of one thread (owned fd + mapping;
/// unmapped on drop).
///
/// The kernel writes the ring on behalf of the thread that opened it; any one
/// thread at a time may read it (`drain` takes `&mut self`).
pub(crate) struct SwitchRing {
    /// The perf event (or, in tests, a stand-in fd).
    fd: OwnedFd,
    /// Start of the mapping: the `perf_event_mmap_page`, then the data area.
    base: NonNull<u8>,
    /// Length of the mapping in bytes.
    map_len: usize,
    /// Offset of the data area from `base`.
    data_offset: usize,
    /// Size of the data area in bytes, a power of two.
    data_size: usize,
    /// Size of the `sample_id` trailer on every record; its last 8 bytes are
    /// the time.
    id_len: usize,
    /// Our copy of `data_tail` (we are its only writer).
    tail: u64,
}

// SAFETY: the mapping is owned by the `SwitchRing` alone (it is unmapped on
// drop, never shared with another Rust value) and is valid from any thread of
// the process; the kernel's concurrent writes are synchronised through the
// `data_head`/`data_tail` protocol, not through thread identity.
unsafe impl Send for SwitchRing {}
// SAFETY: every method that touches the mapping takes `&mut self`; through a
// shared reference only the fd and plain fields can be reached.
unsafe impl Sync for SwitchRing {}

impl fmt::Debug for SwitchRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SwitchRing")
            .field("fd", &self.fd)
            .field("data_size", &self.data_size)
            .field("tail", &self.tail)
            .finish_non_exhaustive()
    }
}

impl SwitchRing {
    /// Open on the calling thread. Err if perf_event_open or mmap is refused
    /// (EACCES, EPERM, ENOSYS, ENOMEM, ...).
    ///
    /// `data_pages` is the size of the data area in pages and must be a power
    /// of two ([`DEFAULT_DATA_PAGES`] is a good choice); otherwise the error
    /// is `InvalidInput`.
    ///
    /// `enabled: false` opens the event switched off: the kernel writes no
    /// record (and a switch of the thread costs next to nothing) until
    /// [`set_enabled`](Self::set_enabled) turns it on.
    pub(crate) fn open_current_thread(data_pages: usize, enabled: bool) -> io::Result<SwitchRing> {
        open_ring(data_pages, PERF_SAMPLE_TIME, !enabled).map_err(|(_, e)| e)
    }

    /// Switch the recording on or off (`PERF_EVENT_IOC_ENABLE` /
    /// `_DISABLE`), from any thread. While it is off, switches of the thread
    /// write nothing, so on return to on the ring says nothing of what the
    /// thread did meanwhile: the caller learns its current state otherwise.
    pub(crate) fn set_enabled(&self, on: bool) -> io::Result<()> {
        let req = if on {
            PERF_EVENT_IOC_ENABLE
        } else {
            PERF_EVENT_IOC_DISABLE
        };
        // SAFETY: an argument-less ioctl on the perf event fd we own.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), req as _, 0) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// The event fd, to poll() for readability (one or more unread records).
    ///
    /// The kernel's readiness is edge-like: it is raised when a record is
    /// written and cleared by the `poll` that reports it, not by reading the
    /// ring. So drain the ring after every wake-up: records left unread do
    /// not make the next `poll` return at once. Once the thread has exited
    /// the fd reports `POLLHUP` (which the tests' `poll_readable` counts as
    /// readable).
    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Consume every record written since the last call, oldest first.
    /// Single consumer.
    ///
    /// Besides the kernel's `PERF_RECORD_LOST` records, [`SwitchRecord::Lost`]
    /// is also reported last when the ring was found too full to take
    /// another switch record: the kernel may have dropped records that it
    /// will only account for (with a `PERF_RECORD_LOST`) once there is room
    /// again, so the last record read may not be the thread's current state.
    /// Lost is also reported, and the unread data skipped, if the ring's
    /// contents are ever inconsistent. Other record types are skipped.
    pub(crate) fn drain(&mut self, mut f: impl FnMut(SwitchRecord)) {
        let head = self.data_head().load(Ordering::Acquire);
        let mut tail = self.tail;
        let used = head.wrapping_sub(tail);
        let switch_len = (HEADER_LEN + self.id_len) as u64;
        // The kernel keeps one byte free (CIRC_SPACE), so it can add a
        // switch record only while `used + switch_len < data_size`.
        let maybe_full = used + switch_len >= self.data_size as u64;
        if used > self.data_size as u64 {
            // Cannot happen with a writable mapping; do not trust the data.
            f(SwitchRecord::Lost);
            self.consume_to(head);
            return;
        }
        while tail != head {
            let left = head.wrapping_sub(tail);
            let mut hdr = [0u8; HEADER_LEN];
            // `left >= 1` here and records are 8-byte aligned, so a header
            // that is not whole means the ring is corrupt (checked below).
            if left < HEADER_LEN as u64 {
                f(SwitchRecord::Lost);
                break;
            }
            self.copy_out(tail, &mut hdr);
            let kind = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
            let misc = u16::from_ne_bytes([hdr[4], hdr[5]]);
            let size = u64::from(u16::from_ne_bytes([hdr[6], hdr[7]]));
            if size < HEADER_LEN as u64 || size % 8 != 0 || size > left {
                f(SwitchRecord::Lost);
                break;
            }
            match kind {
                PERF_RECORD_SWITCH if size == switch_len => {
                    let mut t = [0u8; 8];
                    self.copy_out(tail + size - 8, &mut t);
                    let time_ns = u64::from_ne_bytes(t);
                    f(if misc & PERF_RECORD_MISC_SWITCH_OUT != 0 {
                        SwitchRecord::Out {
                            time_ns,
                            preempt: misc & PERF_RECORD_MISC_SWITCH_OUT_PREEMPT != 0,
                        }
                    } else {
                        SwitchRecord::In { time_ns }
                    });
                }
                // Lost records, and switch records of an unexpected layout
                // (we cannot tell what they say): the state is unknown.
                PERF_RECORD_LOST | PERF_RECORD_SWITCH => f(SwitchRecord::Lost),
                _ => {}
            }
            tail += size;
        }
        self.consume_to(head);
        if maybe_full {
            f(SwitchRecord::Lost);
        }
    }

    /// The latest record only (consumes everything), None if none was
    /// written since the last read.
    ///
    /// The flag is true when a [`SwitchRecord::Lost`] was among the records
    /// consumed. If Lost is the newest record, it is what is returned: the
    /// thread's state is then unknown until its next switch.
    pub(crate) fn drain_last(&mut self) -> (Option<SwitchRecord>, bool /* lost seen */) {
        let mut last = None;
        let mut lost = false;
        self.drain(|r| {
            lost |= r == SwitchRecord::Lost;
            last = Some(r);
        });
        (last, lost)
    }

    /// Wraps a mapping whose first page is a `perf_event_mmap_page` and
    /// whose data area follows it; takes ownership of both `fd` and the
    /// mapping.
    ///
    /// # Safety
    ///
    /// `base` must be the start of a readable and writable mapping of
    /// `map_len` bytes, page aligned, that nothing else will unmap, of at
    /// least one page plus a power-of-two number of pages.
    unsafe fn from_mapping(
        fd: OwnedFd,
        base: NonNull<u8>,
        map_len: usize,
        page: usize,
        id_len: usize,
    ) -> SwitchRing {
        let p = base.as_ptr();
        // SAFETY: the caller guarantees at least one mapped page; the fields
        // read are 8-byte aligned (page-aligned base plus a multiple of 8)
        // and lie within it. The kernel sets them before mmap returns and
        // never changes them afterwards.
        let (data_offset, data_size, tail) = unsafe {
            (
                p.add(DATA_OFFSET_OFFSET).cast::<u64>().read_volatile(),
                p.add(DATA_SIZE_OFFSET).cast::<u64>().read_volatile(),
                p.add(DATA_TAIL_OFFSET).cast::<u64>().read_volatile(),
            )
        };
        let fallback = (page, map_len - page);
        // Kernels before 4.1 leave data_offset/data_size zero; ignore
        // anything that does not describe a power-of-two area in the mapping.
        let (data_offset, data_size) =
            match (usize::try_from(data_offset), usize::try_from(data_size)) {
                (Ok(off), Ok(size))
                    if size.is_power_of_two()
                        && off >= page
                        && off.checked_add(size).is_some_and(|end| end <= map_len) =>
                {
                    (off, size)
                }
                _ => fallback,
            };
        SwitchRing {
            fd,
            base,
            map_len,
            data_offset,
            data_size,
            id_len,
            tail,
        }
    }

    /// The `data_head` field: where the kernel will write the next record.
    fn data_head(&self) -> &AtomicU64 {
        // SAFETY: `base` points to at least one mapped page (the
        // perf_event_mmap_page) for as long as `self` lives; offset 1024 is
        // 8-byte aligned inside it. The kernel updates the field concurrently,
        // which is why it is accessed only as an atomic.
        unsafe { &*self.base.as_ptr().add(DATA_HEAD_OFFSET).cast::<AtomicU64>() }
    }

    /// The `data_tail` field: up to where we have consumed.
    fn data_tail(&self) -> &AtomicU64 {
        // SAFETY: as for `data_head`; offset 1032 is 8-byte aligned and
        // inside the first page. The kernel only reads this field.
        unsafe { &*self.base.as_ptr().add(DATA_TAIL_OFFSET).cast::<AtomicU64>() }
    }

    /// Hands everything before `head` back to the kernel.
    fn consume_to(&mut self, head: u64) {
        self.tail = head;
        self.data_tail().store(head, Ordering::Release);
    }

    /// Copies `dst.len()` bytes starting at ring position `pos` (a byte count
    /// that wraps modulo the data size), taking the wrap-around at the end of
    /// the data area into account.
    ///
    /// The caller must only ask for bytes between the tail and a `data_head`
    /// loaded with acquire ordering, so the kernel has finished writing them
    /// and will not touch them until the tail moves past them.
    fn copy_out(&self, pos: u64, dst: &mut [u8]) {
        assert!(dst.len() <= self.data_size);
        let off = (pos as usize) & (self.data_size - 1);
        let first = dst.len().min(self.data_size - off);
        let (a, b) = dst.split_at_mut(first);
        // SAFETY: `data_offset + data_size <= map_len`, so `data` plus any
        // offset below `data_size` is inside the mapping; `a` ends at most at
        // the end of the data area and `b` (the wrapped part) starts at its
        // beginning and is shorter than it. The source bytes are not being
        // written by the kernel (see above) and cannot overlap `dst`, a Rust
        // buffer outside the mapping.
        unsafe {
            let data = self.base.as_ptr().add(self.data_offset);
            std::ptr::copy_nonoverlapping(data.add(off), a.as_mut_ptr(), a.len());
            std::ptr::copy_nonoverlapping(data, b.as_mut_ptr(), b.len());
        }
    }
}

impl Drop for SwitchRing {
    fn drop(&mut self) {
        // SAFETY: `base`/`map_len` describe the mapping this value owns; no
        // reference into it outlives `&mut self`, and it is never used again.
        // Failure (which cannot happen for a valid mapping) would only leak.
        let _ = unsafe { rustix::mm::munmap(self.base.as_ptr().cast(), self.map_len) };
    }
}

/// Opens the event on the calling thread with the given `sample_type`
/// (`PERF_SAMPLE_TIME`, optionally preceded by fields that come before it in
/// `struct sample_id`) and maps its ring. The error names the step that
/// failed.
fn open_ring(
    data_pages: usize,
    sample_type: u64,
    disabled: bool,
) -> Result<SwitchRing, (&'static str, io::Error)> {
    if !data_pages.is_power_of_two() {
        return Err((
            "perf ring",
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the number of data pages must be a power of two",
            ),
        ));
    }
    let page = rustix::param::page_size();
    let map_len = data_pages
        .checked_add(1)
        .and_then(|n| n.checked_mul(page))
        .ok_or_else(|| ("mmap", io::Error::from(io::ErrorKind::InvalidInput)))?;
    let id_len = 8 * (sample_type.count_ones() as usize);

    let attr = PerfEventAttr {
        kind: PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: PERF_COUNT_SW_DUMMY,
        sample_type,
        flags: ATTR_EXCLUDE_KERNEL
            | ATTR_EXCLUDE_HV
            | ATTR_WATERMARK
            | ATTR_SAMPLE_ID_ALL
            | ATTR_USE_CLOCKID
            | ATTR_CONTEXT_SWITCH
            | if disabled { ATTR_DISABLED } else { 0 },
        wakeup_watermark: 1,
        clockid: libc::CLOCK_MONOTONIC,
        ..PerfEventAttr::default()
    };
    // SAFETY: perf_event_open only reads `attr.size` bytes from the pointer,
    // which is exactly our fully initialised struct; the remaining arguments
    // are integers (pid 0 = this thread, cpu -1 = any, no group).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            0 as libc::pid_t,
            -1 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if ret < 0 {
        return Err(("perf_event_open", io::Error::last_os_error()));
    }
    let raw = libc::c_int::try_from(ret).map_err(|_| {
        (
            "perf_event_open",
            io::Error::from(io::ErrorKind::InvalidData),
        )
    })?;
    // SAFETY: on success perf_event_open returns a new fd that nothing else
    // owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    // SAFETY: a fresh shared mapping chosen by the kernel (null hint), so it
    // cannot alias any existing Rust memory.
    let ptr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            map_len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            &fd,
            0,
        )
    }
    .map_err(|e| ("mmap", io::Error::from(e)))?;
    let base = NonNull::new(ptr.cast::<u8>())
        .ok_or_else(|| ("mmap", io::Error::from(io::ErrorKind::InvalidData)))?;
    // SAFETY: `base` is the start of the page-aligned read/write mapping of
    // `map_len` = (1 + power of two) pages just created, owned by no one else.
    Ok(unsafe { SwitchRing::from_mapping(fd, base, map_len, page, id_len) })
}

/// Whether this process may use switch rings: tries once (open on the
/// calling thread, then drop), caches the answer in a OnceLock. Err carries
/// the reason for display ("perf_event_open: Permission denied (os error
/// 13)").
///
/// The first call also checks that the ring really receives switch records
/// (it sleeps for a fraction of a millisecond at most three times to cause
/// one).
pub(crate) fn probe() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let mut ring = open_ring(1, PERF_SAMPLE_TIME, false)
                .map_err(|(what, e)| format!("{what}: {e}"))?;
            for _ in 0..3 {
                std::thread::sleep(Duration::from_micros(200));
                let (last, _) = ring.drain_last();
                if last.is_some() {
                    return Ok(());
                }
            }
            Err("perf_event_open: the event produced no context-switch records".to_owned())
        })
        .clone()
}

// The time base of the records is CLOCK_MONOTONIC, `crate::util::mono_ns`.
// The kernel stamps records with `ktime_get_mono_fast_ns()`, the same clock
// read without the sequence lock, so a record's time may differ from it by a
// few microseconds around timekeeping updates: compare with a tolerance.

#[cfg(test)]
mod tests;
