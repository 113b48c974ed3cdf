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
#[cfg(test)]
use std::time::Instant;

#[cfg(test)]
use rustix::event::{PollFd, PollFlags};
use rustix::mm::{MapFlags, ProtFlags};
#[cfg(test)]
use rustix::time::Timespec;

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
    /// the fd reports `POLLHUP` (see `poll_readable`).
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

/// Wait until any of `fds` is readable or `timeout` passes (poll(2) with
/// POLLIN; EINTR retried). Returns the indices that are readable.
///
/// An fd that reports `POLLHUP` or `POLLERR` counts as readable too (a
/// switch ring's fd hangs up once its thread has exited): reading it is how
/// the caller finds out, and leaving it out would make the next call return
/// at once without reporting anything. With `timeout` None and no fds this
/// waits forever. Any other poll error returns an empty list.
#[cfg(test)]
pub(crate) fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> Vec<usize> {
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN))
        .collect();
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let ts = match (timeout, deadline) {
            (None, _) => None,
            (Some(t), None) => Some(duration_to_timespec(t)),
            (Some(_), Some(d)) => Some(duration_to_timespec(
                d.saturating_duration_since(Instant::now()),
            )),
        };
        match rustix::event::poll(&mut pfds, ts.as_ref()) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => {
                for p in &mut pfds {
                    p.clear_revents();
                }
            }
            Err(_) => return Vec::new(),
        }
    }
    pfds.iter()
        .enumerate()
        .filter(|(_, p)| !p.revents().is_empty())
        .map(|(i, _)| i)
        .collect()
}

/// `d` as a poll timeout, saturating at a very long wait.
#[cfg(test)]
fn duration_to_timespec(d: Duration) -> Timespec {
    Timespec::try_from(d).unwrap_or(Timespec {
        tv_sec: i64::MAX / 2,
        tv_nsec: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{mpsc, Arc, Barrier};
    use std::thread;

    const MS: u64 = 1_000_000;

    /// Whether the tests can run here; prints why not.
    fn available() -> bool {
        match probe() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("skipping: switch rings unavailable: {e}");
                false
            }
        }
    }

    fn collect(ring: &mut SwitchRing) -> Vec<SwitchRecord> {
        let mut v = Vec::new();
        ring.drain(|r| v.push(r));
        v
    }

    fn time_of(r: &SwitchRecord) -> Option<u64> {
        match *r {
            SwitchRecord::Out { time_ns, .. } | SwitchRecord::In { time_ns } => Some(time_ns),
            SwitchRecord::Lost => None,
        }
    }

    /// Times are nondecreasing and Out and In strictly alternate except
    /// across a Lost (the thread is either on a CPU or not). `out` is the
    /// state carried over from the previous batch: Some(true) after an Out,
    /// Some(false) after an In, None when unknown. Returns the number of
    /// non-preempt (blocking) Outs.
    fn check_sequence(recs: &[SwitchRecord], last_time: &mut u64, out: &mut Option<bool>) -> usize {
        let mut blocks = 0;
        for r in recs {
            if let Some(t) = time_of(r) {
                assert!(
                    t >= *last_time,
                    "time went back: {t} < {last_time} in {recs:?}"
                );
                *last_time = t;
            }
            match *r {
                SwitchRecord::Out { preempt, .. } => {
                    assert_ne!(*out, Some(true), "two Outs without an In: {recs:?}");
                    *out = Some(true);
                    blocks += usize::from(!preempt);
                }
                SwitchRecord::In { .. } => {
                    assert_ne!(*out, Some(false), "two Ins without an Out: {recs:?}");
                    *out = Some(false);
                }
                SwitchRecord::Lost => *out = None,
            }
        }
        blocks
    }

    #[test]
    fn open_geometry_and_bad_page_counts() {
        // A switch record is the header plus the sample_id trailer, which
        // with PERF_SAMPLE_TIME alone is one u64.
        let r = SwitchRing::open_current_thread(DEFAULT_DATA_PAGES, true);
        let Ok(ring) = r else {
            eprintln!("skipping: {r:?}");
            return;
        };
        assert_eq!(ring.id_len, 8);
        assert_eq!(
            ring.data_size,
            DEFAULT_DATA_PAGES * rustix::param::page_size()
        );
        assert_eq!(ring.data_offset, rustix::param::page_size());
        assert!(SwitchRing::open_current_thread(3, true).is_err());
        assert!(SwitchRing::open_current_thread(0, true).is_err());
    }

    #[test]
    fn raw_record_layout() {
        if !available() {
            return;
        }
        // Checks the bytes themselves: a PERF_RECORD_SWITCH is the header and
        // the sample_id trailer, whose fields come in the documented order
        // (pid and tid before the time) and whose last 8 bytes are the time.
        for (sample_type, len) in [
            (PERF_SAMPLE_TIME, 16),
            (PERF_SAMPLE_TID | PERF_SAMPLE_TIME, 24),
        ] {
            let t0 = crate::util::mono_ns();
            let (mut ring, tid) = thread::spawn(move || {
                let mut ring = open_ring(DEFAULT_DATA_PAGES, sample_type, false).unwrap();
                let _ = collect(&mut ring);
                thread::sleep(Duration::from_millis(1));
                (ring, rustix::thread::gettid().as_raw_nonzero().get() as u32)
            })
            .join()
            .unwrap();
            let t1 = crate::util::mono_ns();
            let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
            let head = ring.data_head().load(Ordering::Acquire);
            let (mut pos, mut n) = (ring.tail, 0);
            while pos < head {
                let mut rec = [0u8; 24];
                ring.copy_out(pos, &mut rec[..len]);
                let u32_at = |i: usize| u32::from_ne_bytes(rec[i..i + 4].try_into().unwrap());
                assert_eq!(u32_at(0), PERF_RECORD_SWITCH);
                assert_eq!(u16::from_ne_bytes([rec[6], rec[7]]) as usize, len);
                if len == 24 {
                    assert_eq!((u32_at(8), u32_at(12)), (pid, tid));
                }
                let time = u64::from_ne_bytes(rec[len - 8..len].try_into().unwrap());
                assert!(time + MS >= t0 && time <= t1 + MS, "{t0} <= {time} <= {t1}");
                pos += len as u64;
                n += 1;
            }
            assert_eq!(pos, head);
            assert!(n >= 2, "{n} records");
            ring.consume_to(head);
        }
    }

    #[test]
    fn sleep_gives_out_then_in() {
        if !available() {
            return;
        }
        let (mut ring, t0, t1) = thread::spawn(|| {
            let mut ring = SwitchRing::open_current_thread(DEFAULT_DATA_PAGES, true).unwrap();
            let _ = collect(&mut ring);
            let t0 = crate::util::mono_ns();
            thread::sleep(Duration::from_millis(20));
            let t1 = crate::util::mono_ns();
            (ring, t0, t1)
        })
        .join()
        .unwrap();
        let recs = collect(&mut ring);
        assert!(!recs.contains(&SwitchRecord::Lost), "{recs:?}");
        check_sequence(&recs, &mut 0, &mut None);
        // Every block in [t0, t1] (give or take clock skew) with the time
        // until the thread was back on a CPU; the sleep must be one of them
        // (there may be other, short ones, e.g. under a tracer).
        let slack = MS;
        let mut blocks = Vec::new();
        for (i, r) in recs.iter().enumerate() {
            if let SwitchRecord::Out {
                time_ns: out,
                preempt: false,
            } = *r
            {
                let inn = recs[i + 1..].iter().find_map(|r| match *r {
                    SwitchRecord::In { time_ns } => Some(time_ns),
                    _ => None,
                });
                if out + slack >= t0 && out <= t1 + slack {
                    let inn = inn.unwrap_or_else(|| panic!("no In after {r:?}: {recs:?}"));
                    assert!(inn <= t1 + slack, "t1={t1}: {recs:?}");
                    blocks.push(inn - out);
                }
            }
        }
        assert!(
            blocks.iter().any(|d| (15 * MS..=200 * MS).contains(d)),
            "t0={t0} t1={t1} blocked for {blocks:?} ns: {recs:?}"
        );
    }

    #[test]
    fn disabled_rings_record_nothing_until_enabled() {
        if !available() {
            return;
        }
        use std::sync::mpsc::channel;
        // The ring travels between its thread (which sleeps) and this one
        // (which reads it and switches it on and off).
        let (to_main, from_thread) = channel::<SwitchRing>();
        let (to_thread, from_main) = channel::<Option<SwitchRing>>();
        let h = thread::spawn(move || {
            let ring = SwitchRing::open_current_thread(DEFAULT_DATA_PAGES, false).unwrap();
            thread::sleep(Duration::from_millis(5));
            to_main.send(ring).unwrap();
            let ring = from_main.recv().unwrap().unwrap();
            thread::sleep(Duration::from_millis(5));
            to_main.send(ring).unwrap();
            let _ = from_main.recv().unwrap();
            thread::sleep(Duration::from_millis(5));
        });
        let mut ring = from_thread.recv().unwrap();
        assert!(collect(&mut ring).is_empty(), "opened off: no records");
        ring.set_enabled(true).unwrap();
        to_thread.send(Some(ring)).unwrap();
        let mut ring = from_thread.recv().unwrap();
        let recs = collect(&mut ring);
        assert!(
            recs.iter()
                .any(|r| matches!(r, SwitchRecord::Out { preempt: false, .. })),
            "on: the sleep is recorded: {recs:?}"
        );
        ring.set_enabled(false).unwrap();
        // What the thread wrote before it was switched off (it may have
        // blocked in `recv` only now).
        let _ = collect(&mut ring);
        to_thread.send(None).unwrap();
        h.join().unwrap();
        let after = collect(&mut ring);
        assert!(after.is_empty(), "switched off: no records: {after:?}");
    }

    #[test]
    fn preemption_is_flagged() {
        if !available() {
            return;
        }
        let allowed = rustix::thread::sched_getaffinity(None).unwrap();
        let cpu = (0..rustix::thread::CpuSet::MAX_CPU)
            .find(|&c| allowed.is_set(c))
            .unwrap();
        for attempt in 0..5 {
            let barrier = Arc::new(Barrier::new(2));
            let spinners: Vec<_> = (0..2)
                .map(|_| {
                    let barrier = barrier.clone();
                    thread::spawn(move || {
                        let mut set = rustix::thread::CpuSet::new();
                        set.set(cpu);
                        rustix::thread::sched_setaffinity(None, &set).unwrap();
                        let mut ring =
                            SwitchRing::open_current_thread(DEFAULT_DATA_PAGES, true).unwrap();
                        barrier.wait();
                        let _ = collect(&mut ring);
                        let end = crate::util::mono_ns() + 60 * MS;
                        while crate::util::mono_ns() < end {
                            std::hint::spin_loop();
                        }
                        ring
                    })
                })
                .collect();
            let mut preempted = false;
            for s in spinners {
                let mut ring = s.join().unwrap();
                let recs = collect(&mut ring);
                check_sequence(&recs, &mut 0, &mut None);
                preempted |= recs
                    .iter()
                    .any(|r| matches!(r, SwitchRecord::Out { preempt: true, .. }));
            }
            if preempted {
                return;
            }
            eprintln!("attempt {attempt}: no preemption seen");
        }
        panic!("two spinners on one CPU were never preempted");
    }

    #[test]
    fn poll_wakes_on_block() {
        if !available() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let worker = thread::spawn(move || {
            let ring = SwitchRing::open_current_thread(DEFAULT_DATA_PAGES, true).unwrap();
            tx.send(ring).unwrap();
            let end = crate::util::mono_ns() + 20 * MS;
            while crate::util::mono_ns() < end {
                std::hint::spin_loop();
            }
            thread::sleep(Duration::from_millis(100));
        });
        let mut ring = rx.recv().unwrap();
        let give_up = crate::util::mono_ns() + 2_000 * MS;
        let mut woke = None;
        'wait: while crate::util::mono_ns() < give_up {
            let ready = poll_readable(&[ring.as_fd()], Some(Duration::from_millis(500)));
            let now = crate::util::mono_ns();
            let mut recs = Vec::new();
            ring.drain(|r| recs.push(r));
            if ready.is_empty() {
                continue;
            }
            assert_eq!(ready, [0]);
            for r in recs {
                if let SwitchRecord::Out {
                    time_ns,
                    preempt: false,
                } = r
                {
                    woke = Some(now.saturating_sub(time_ns));
                    break 'wait;
                }
            }
        }
        worker.join().unwrap();
        let late = woke.expect("poll never reported the block");
        assert!(late < 50 * MS, "woken {late} ns after the block");
    }

    #[test]
    fn poll_times_out_and_reports_exit() {
        if !available() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let worker = thread::spawn(move || {
            let ring = SwitchRing::open_current_thread(DEFAULT_DATA_PAGES, true).unwrap();
            tx.send(ring).unwrap();
            go_rx.recv().unwrap();
        });
        let mut ring = rx.recv().unwrap();
        // Wait for the worker to block in recv, then drain: nothing new.
        // (Time-bounded: on a busy CPU each record written by the worker
        // wakes this thread, which may preempt the worker again at once, so
        // the worker can take milliseconds to get there.)
        let give_up = crate::util::mono_ns() + 2_000 * MS;
        let mut blocked = false;
        while !blocked && crate::util::mono_ns() < give_up {
            poll_readable(&[ring.as_fd()], Some(Duration::from_millis(20)));
            blocked = matches!(
                ring.drain_last(),
                (Some(SwitchRecord::Out { preempt: false, .. }), _)
            );
        }
        assert!(blocked, "the worker never blocked");
        // Nothing runs the worker now, so a poll must time out. The channel
        // may still wake it once (a spurious futex wake-up, the end of a
        // spin-then-park), which writes records; such a poll is retried,
        // but one quiet 30 ms window must come within a few tries.
        let mut quiet = false;
        for _ in 0..10 {
            let start = Instant::now();
            if poll_readable(&[ring.as_fd()], Some(Duration::from_millis(30))).is_empty() {
                assert!(start.elapsed() >= Duration::from_millis(25));
                quiet = true;
                break;
            }
            let _ = ring.drain_last();
        }
        assert!(
            quiet,
            "the blocked worker's ring never stayed quiet for 30 ms"
        );
        assert!(poll_readable(&[], Some(Duration::ZERO)).is_empty());
        go_tx.send(()).unwrap();
        worker.join().unwrap();
        // The thread is gone: the fd hangs up, which counts as readable.
        assert_eq!(
            poll_readable(&[ring.as_fd()], Some(Duration::from_secs(1))),
            [0]
        );
        let _ = collect(&mut ring);
    }

    #[test]
    fn overflow_reports_lost_then_recovers() {
        if !available() {
            return;
        }
        thread::spawn(|| {
            let mut ring = SwitchRing::open_current_thread(1, true).unwrap();
            let _ = collect(&mut ring);
            for _ in 0..600 {
                thread::sleep(Duration::from_micros(1));
            }
            let (mut last, mut state) = (0, None);
            let recs = collect(&mut ring);
            assert_eq!(
                recs.last(),
                Some(&SwitchRecord::Lost),
                "ring should have been full"
            );
            assert!(recs.len() > 200, "{}", recs.len());
            check_sequence(&recs, &mut last, &mut state);
            // The kernel accounts for the dropped records on its next write.
            let mut kernel_lost = false;
            for round in 0..5 {
                for _ in 0..20 {
                    thread::sleep(Duration::from_micros(1));
                }
                let recs = collect(&mut ring);
                if round == 0 {
                    kernel_lost = recs.first() == Some(&SwitchRecord::Lost);
                } else {
                    assert!(!recs.contains(&SwitchRecord::Lost), "{recs:?}");
                }
                let blocks = check_sequence(&recs, &mut last, &mut state);
                assert!(blocks >= 5, "{recs:?}");
            }
            assert!(kernel_lost, "no PERF_RECORD_LOST after the overflow");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn records_wrap_around() {
        if !available() {
            return;
        }
        // With PERF_SAMPLE_TID | PERF_SAMPLE_TIME the records are 24 bytes,
        // which does not divide the data size, so they regularly straddle
        // the end of the data area. The worker sleeps in bursts of 50 (about
        // 100 records, 2400 bytes) and waits for the reader between bursts,
        // so the 4 KiB ring cannot overflow however slow the reader is.
        let (tx, rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let (go_tx, go_rx) = mpsc::channel::<bool>();
        let worker = thread::spawn(move || {
            let ring = open_ring(1, PERF_SAMPLE_TID | PERF_SAMPLE_TIME, false).unwrap();
            tx.send(ring).unwrap();
            while go_rx.recv().unwrap() {
                for _ in 0..50 {
                    thread::sleep(Duration::from_micros(1));
                }
                done_tx.send(()).unwrap();
            }
        });
        let mut ring = rx.recv().unwrap();
        assert_eq!(ring.id_len, 16);
        let size = ring.data_size as u64;
        let (mut last, mut state, mut blocks, mut straddled) = (0, None, 0, 0);
        let mut recs = Vec::new();
        let mut drain = |ring: &mut SwitchRing| {
            let before = ring.tail;
            recs.clear();
            ring.drain(|r| recs.push(r));
            assert!(!recs.contains(&SwitchRecord::Lost), "{recs:?}");
            let mut pos = before;
            for _ in &recs {
                straddled += u64::from(pos % size + 24 > size);
                pos += 24;
            }
            assert_eq!(pos, ring.tail);
            blocks += check_sequence(&recs, &mut last, &mut state);
        };
        while ring.tail < 20 * size {
            go_tx.send(true).unwrap();
            // Read while the worker writes, until its burst is over.
            loop {
                poll_readable(&[ring.as_fd()], Some(Duration::from_millis(1)));
                let done = done_rx.try_recv().is_ok();
                drain(&mut ring);
                if done {
                    break;
                }
            }
        }
        go_tx.send(false).unwrap();
        worker.join().unwrap();
        drain(&mut ring);
        assert!(straddled >= 10, "only {straddled} wrapped records");
        assert!(blocks >= 10, "{blocks}");
    }

    #[test]
    fn drain_last_is_newest() {
        if !available() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let (ack_tx, ack_rx) = mpsc::channel::<u64>();
        let (go_tx, go_rx) = mpsc::channel::<bool>();
        let worker = thread::spawn(move || {
            let ring = SwitchRing::open_current_thread(DEFAULT_DATA_PAGES, true).unwrap();
            tx.send(ring).unwrap();
            loop {
                // Everything before this time is older than the block in recv.
                ack_tx.send(crate::util::mono_ns()).unwrap();
                if !go_rx.recv().unwrap() {
                    break;
                }
                thread::sleep(Duration::from_millis(2));
            }
        });
        let mut ring = rx.recv().unwrap();
        for _ in 0..3 {
            let acked = ack_rx.recv().unwrap();
            // Each drain_last sees the sleep's Out and In, the ack, and
            // finally the block in recv: only that last one may come out.
            let give_up = crate::util::mono_ns() + 2_000 * MS;
            let mut newest = None;
            while crate::util::mono_ns() < give_up {
                poll_readable(&[ring.as_fd()], Some(Duration::from_millis(20)));
                let (last, lost) = ring.drain_last();
                assert!(!lost);
                newest = last.or(newest);
                if matches!(newest, Some(SwitchRecord::Out { preempt: false, time_ns }) if time_ns >= acked)
                {
                    break;
                }
            }
            assert!(
                matches!(newest, Some(SwitchRecord::Out { preempt: false, time_ns }) if time_ns >= acked),
                "{newest:?}, acked at {acked}"
            );
            // Blocked: nothing new.
            assert_eq!(ring.drain_last(), (None, false));
            go_tx.send(true).unwrap();
        }
        ack_rx.recv().unwrap();
        go_tx.send(false).unwrap();
        worker.join().unwrap();
    }

    /// Writes one record at ring position `pos` into a fake data area and
    /// returns the position after it.
    fn put(data: &mut [u8], pos: u64, kind: u32, misc: u16, body: &[u8]) -> u64 {
        let mut rec = Vec::new();
        rec.extend_from_slice(&kind.to_ne_bytes());
        rec.extend_from_slice(&misc.to_ne_bytes());
        rec.extend_from_slice(&((8 + body.len()) as u16).to_ne_bytes());
        rec.extend_from_slice(body);
        let n = data.len() as u64;
        for (i, b) in rec.iter().enumerate() {
            data[((pos + i as u64) % n) as usize] = *b;
        }
        pos + rec.len() as u64
    }

    /// Writes switch records with times `times` from `pos`, alternating Out
    /// and In starting with `first_misc`; returns the position after them.
    fn put_switches(data: &mut [u8], mut pos: u64, first_misc: u16, times: &[u64]) -> u64 {
        let mut misc = first_misc;
        for t in times {
            pos = put(data, pos, PERF_RECORD_SWITCH, misc, &t.to_ne_bytes());
            misc = if misc == 0 {
                PERF_RECORD_MISC_SWITCH_OUT
            } else {
                0
            };
        }
        pos
    }

    /// A ring over an anonymous mapping that the test writes as the kernel
    /// would, with a 128-byte data area placed by data_offset/data_size.
    fn fake_ring() -> SwitchRing {
        let page = rustix::param::page_size();
        let map_len = 2 * page;
        // SAFETY: a fresh private anonymous mapping, aliasing nothing.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                map_len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
        }
        .unwrap();
        let base = NonNull::new(ptr.cast::<u8>()).unwrap();
        // SAFETY: both fields are 8-byte aligned inside the first page of the
        // mapping, which nothing else uses yet.
        unsafe {
            base.as_ptr()
                .add(DATA_OFFSET_OFFSET)
                .cast::<u64>()
                .write(page as u64 + 128);
            base.as_ptr().add(DATA_SIZE_OFFSET).cast::<u64>().write(128);
        }
        let fd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
        // SAFETY: the mapping is page aligned, read/write, 1 + 1 pages, and
        // handed over to the ring, which unmaps it.
        unsafe { SwitchRing::from_mapping(fd, base, map_len, page, 8) }
    }

    /// Runs `f` on the fake data area, then publishes `head`.
    fn publish(ring: &mut SwitchRing, f: impl FnOnce(&mut [u8]) -> u64) {
        // SAFETY: the data area lies inside the mapping and no other
        // reference to it exists while `ring` is mutably borrowed.
        let data = unsafe {
            std::slice::from_raw_parts_mut(ring.base.as_ptr().add(ring.data_offset), ring.data_size)
        };
        let head = f(data);
        ring.data_head().store(head, Ordering::Release);
    }

    #[test]
    fn fake_ring_wraps_and_skips() {
        use SwitchRecord::{In, Lost, Out};
        let mut ring = fake_ring();
        assert_eq!(
            (ring.data_offset, ring.data_size),
            (rustix::param::page_size() + 128, 128)
        );
        assert_eq!(ring.drain_last(), (None, false));
        // 0..40: a preempted Out, an In, a record of another type.
        publish(&mut ring, |d| {
            let p = put_switches(d, 0, 0x6000, &[100, 150]);
            put(d, p, 99, 0, &[])
        });
        assert_eq!(
            collect(&mut ring),
            [
                Out {
                    time_ns: 100,
                    preempt: true
                },
                In { time_ns: 150 }
            ]
        );
        assert_eq!(ring.data_tail().load(Ordering::Relaxed), 40);
        assert_eq!(collect(&mut ring), []);
        // 40..120, then a lost record straddling the end of the data area
        // (120..152 is 120..128 and 0..24), then two more switches.
        publish(&mut ring, |d| {
            put_switches(d, 40, 0x2000, &[160, 170, 180, 190, 200])
        });
        assert_eq!(
            ring.drain_last(),
            (
                Some(Out {
                    time_ns: 200,
                    preempt: false
                }),
                false
            )
        );
        publish(&mut ring, |d| {
            let lost = [7u64, 3, 205].map(u64::to_ne_bytes).concat();
            let p = put(d, 120, PERF_RECORD_LOST, 0, &lost);
            put_switches(d, p, 0x2000, &[210, 220])
        });
        assert_eq!(
            collect(&mut ring),
            [
                Lost,
                Out {
                    time_ns: 210,
                    preempt: false
                },
                In { time_ns: 220 }
            ]
        );
        // 184..264: the last record's header is at 120..128 and its time
        // wraps to 0..8.
        publish(&mut ring, |d| {
            put_switches(d, 184, 0x2000, &[300, 310, 320, 330, 340])
        });
        let recs = collect(&mut ring);
        assert_eq!(recs.len(), 5);
        assert_eq!(
            recs[4],
            Out {
                time_ns: 340,
                preempt: false
            }
        );
        assert_eq!(ring.tail, 264);
        // A full ring (112 of 128 bytes used: the kernel keeps a byte free, so
        // no 16-byte record fits) is reported as possibly lossy, last.
        publish(&mut ring, |d| {
            put_switches(d, 264, 0, &[400, 410, 420, 430, 440, 450, 460])
        });
        let (last, lost) = ring.drain_last();
        assert_eq!((last, lost), (Some(Lost), true));
        // Garbage (a zero size) is reported as Lost and skipped.
        publish(&mut ring, |d| {
            let p = put_switches(d, 376, 0, &[500, 510]);
            d[(376 % 128) + 6] = 0;
            d[(376 % 128) + 7] = 0;
            p
        });
        assert_eq!(collect(&mut ring), [Lost]);
        assert_eq!(ring.tail, 408);
        // A record claiming to be larger than what was published, too.
        publish(&mut ring, |d| {
            put_switches(d, 408, 0, &[600]);
            d[(408 % 128) + 6] = 64;
            424
        });
        assert_eq!(collect(&mut ring), [Lost]);
        // And a switch record of an unexpected size.
        publish(&mut ring, |d| put(d, 424, PERF_RECORD_SWITCH, 0, &[0; 16]));
        assert_eq!(collect(&mut ring), [Lost]);
        publish(&mut ring, |d| put_switches(d, 448, 0, &[700]));
        assert_eq!(collect(&mut ring), [In { time_ns: 700 }]);
    }

    #[test]
    fn ring_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<SwitchRing>();
    }
}
