//! Small building blocks: a slab, an id allocator, a thread parker, address
//! keyed waits, and clocks.

use std::sync::atomic::{AtomicU32, Ordering::*};
use std::time::Duration;

/// A vector of slots with stable indices and a free list.
pub(crate) struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// The index the next [`insert`](Self::insert) will use.
    pub(crate) fn next_key(&self) -> usize {
        self.free.last().copied().unwrap_or(self.slots.len())
    }

    pub(crate) fn insert(&mut self, v: T) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(i) => {
                debug_assert!(self.slots[i].is_none());
                self.slots[i] = Some(v);
                i
            }
            None => {
                self.slots.push(Some(v));
                self.slots.len() - 1
            }
        }
    }

    pub(crate) fn remove(&mut self, i: usize) -> T {
        let v = self.slots[i].take().expect("slab: vacant slot");
        self.free.push(i);
        self.len -= 1;
        v
    }

    /// Occupied slots.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// No slot is occupied.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value at `i`, if the slot is occupied.
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        self.slots.get(i).and_then(Option::as_ref)
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut T)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.as_mut().map(|v| (i, v)))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|v| (i, v)))
    }
}

impl<T> std::ops::Index<usize> for Slab<T> {
    type Output = T;
    #[inline]
    fn index(&self, i: usize) -> &T {
        self.slots[i].as_ref().expect("slab: vacant slot")
    }
}

impl<T> std::ops::IndexMut<usize> for Slab<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        self.slots[i].as_mut().expect("slab: vacant slot")
    }
}

/// Hands out the smallest free id, like the kernel's ida (worker ids in
/// `kworker/C:N`).
#[derive(Default)]
pub(crate) struct IdAlloc {
    used: Vec<bool>,
}

impl IdAlloc {
    pub(crate) fn alloc(&mut self) -> u32 {
        match self.used.iter().position(|u| !u) {
            Some(i) => {
                self.used[i] = true;
                i as u32
            }
            None => {
                self.used.push(true);
                (self.used.len() - 1) as u32
            }
        }
    }

    pub(crate) fn free(&mut self, id: u32) {
        self.used[id as usize] = false;
    }
}

const EMPTY: u32 = 0;
const NOTIFIED: u32 = 1;
const PARKED: u32 = u32::MAX;

/// The futex bitset an idle worker parks with: ASCII "cmwq". `cmwq top`
/// reads it from `/proc/TID/syscall` (the wait's sixth argument) to tell
/// an idle worker from a blocked one without the process's help.
pub(crate) const PARK_BITSET: std::num::NonZeroU32 = match std::num::NonZeroU32::new(0x636d_7771) {
    Some(b) => b,
    None => unreachable!(),
};

/// A one-token thread parker on a futex (the scheme of std's `Parker`):
/// `unpark` before `park` makes the next `park` return at once. Lives in
/// the worker's shared struct, so a worker can be woken before its thread
/// has even started.
pub(crate) struct Parker {
    state: AtomicU32,
}

impl Parker {
    pub(crate) const fn new() -> Parker {
        Parker {
            state: AtomicU32::new(EMPTY),
        }
    }

    /// Block until [`unpark`](Self::unpark) or `timeout`. Returns false on
    /// timeout. Spurious returns are possible; callers re-check.
    ///
    /// The wait is a `FUTEX_WAIT_BITSET` with the bitset [`PARK_BITSET`]:
    /// a waker's plain `FUTEX_WAKE` matches every bitset, and a tool that
    /// reads `/proc/TID/syscall` (`cmwq top`) can tell a parked, idle
    /// worker from one blocked in its item's futex. Its timeout is an
    /// absolute CLOCK_MONOTONIC time.
    pub(crate) fn park(&self, timeout: Option<Duration>) -> bool {
        // NOTIFIED -> EMPTY (consume the token), or EMPTY -> PARKED.
        if self.state.fetch_sub(1, Acquire) == NOTIFIED {
            return true;
        }
        let deadline = timeout
            .map(|t| mono_ns().saturating_add(u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)));
        loop {
            let ts = match deadline {
                None => None,
                Some(d) => {
                    if mono_ns() >= d {
                        // Timed out: PARKED -> EMPTY, unless a token arrived.
                        return self.state.swap(EMPTY, Acquire) == NOTIFIED;
                    }
                    Some(rustix::time::Timespec {
                        tv_sec: (d / 1_000_000_000) as _,
                        tv_nsec: (d % 1_000_000_000) as _,
                    })
                }
            };
            let _ = rustix::thread::futex::wait_bitset(
                &self.state,
                rustix::thread::futex::Flags::PRIVATE,
                PARKED,
                ts.as_ref(),
                PARK_BITSET,
            );
            if self
                .state
                .compare_exchange(NOTIFIED, EMPTY, Acquire, Acquire)
                .is_ok()
            {
                return true;
            }
        }
    }

    /// In a forked child: the thread that parked here does not exist; the
    /// next thread to park starts from an empty word (a word left PARKED
    /// would make every `park` return at once, a busy loop).
    pub(crate) fn reset(&self) {
        self.state.store(EMPTY, SeqCst);
    }

    /// Whether the thread sleeps in `park` (a waker that finds it awake
    /// knows it will look again before it sleeps).
    #[inline]
    pub(crate) fn parked(&self) -> bool {
        self.state.load(Acquire) == PARKED
    }

    /// Make the parked (or next) `park` return.
    pub(crate) fn unpark(&self) {
        if self.state.swap(NOTIFIED, Release) == PARKED {
            let _ =
                rustix::thread::futex::wake(&self.state, rustix::thread::futex::Flags::PRIVATE, 1);
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds (vDSO; the time base of perf records).
#[inline]
pub(crate) fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// CLOCK_MONOTONIC_COARSE in nanoseconds: a few ns to read, resolution of
/// one scheduler tick. Used on the worker's hot path.
#[inline]
pub(crate) fn coarse_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// CPU time of the calling thread in nanoseconds (a system call).
#[inline]
pub(crate) fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The CPU-time clock of the calling thread, readable from other threads.
pub(crate) fn own_cpu_clock() -> Option<libc::clockid_t> {
    let mut id: libc::clockid_t = 0;
    // SAFETY: pthread_self() is always valid for the calling thread and
    // `id` is a valid out pointer.
    let r = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) };
    (r == 0).then_some(id)
}

/// Read a CPU-time clock obtained from [`own_cpu_clock`] (of any thread of
/// this process that is still alive).
pub(crate) fn read_cpu_clock(id: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out pointer; an id of an exited thread makes
    // the call fail with EINVAL, which we report as None.
    let r = unsafe { libc::clock_gettime(id, &mut ts) };
    (r == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// The CPU the calling thread runs on. glibc answers from the rseq area
/// (no system call), unlike rustix's `sched_getcpu`, which issues one.
#[inline]
pub(crate) fn current_cpu() -> usize {
    // SAFETY: sched_getcpu has no preconditions.
    let c = unsafe { libc::sched_getcpu() };
    if c < 0 {
        0
    } else {
        c as usize
    }
}

/// The message of a panic payload, when it is a string.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic payload)".into())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn slab_reuses_slots() {
        let mut s = Slab::default();
        let a = s.insert("a");
        let b = s.insert("b");
        assert_eq!((a, b), (0, 1));
        assert_eq!(s.remove(a), "a");
        assert_eq!(s.next_key(), 0);
        assert_eq!(s.insert("c"), 0);
        assert_eq!(s.iter().map(|(_, v)| *v).collect::<Vec<_>>(), ["c", "b"]);
    }

    #[test]
    fn ids_are_smallest_free() {
        let mut ids = IdAlloc::default();
        assert_eq!([ids.alloc(), ids.alloc(), ids.alloc()], [0, 1, 2]);
        ids.free(1);
        assert_eq!(ids.alloc(), 1);
        assert_eq!(ids.alloc(), 3);
    }

    #[test]
    fn parker_token_and_timeout() {
        use std::time::Instant;
        let p = Parker::new();
        p.unpark();
        assert!(p.park(Some(Duration::from_secs(5))), "token consumed");
        let t = Instant::now();
        assert!(!p.park(Some(Duration::from_millis(20))));
        assert!(t.elapsed() >= Duration::from_millis(20));
        let p = Arc::new(Parker::new());
        let q = p.clone();
        let h = std::thread::spawn(move || q.park(None));
        std::thread::sleep(Duration::from_millis(10));
        p.unpark();
        assert!(h.join().unwrap());
    }

    #[test]
    fn clocks_advance() {
        let a = mono_ns();
        let c = thread_cpu_ns();
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(mono_ns() > a);
        assert!(thread_cpu_ns() > c);
        let id = own_cpu_clock().unwrap();
        assert!(read_cpu_clock(id).unwrap() > 0);
        assert!(current_cpu() < 4096);
    }
}

/// Put the calling thread back at `SCHED_OTHER` if it inherited another
/// normal policy (`SCHED_BATCH` from the monitor thread that created it).
pub(crate) fn normal_policy() {
    // SAFETY: plain scheduler calls on the calling thread (pid 0) with a
    // valid parameter.
    unsafe {
        if libc::sched_getscheduler(0) != libc::SCHED_OTHER {
            let param = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_OTHER, &param);
        }
    }
}
