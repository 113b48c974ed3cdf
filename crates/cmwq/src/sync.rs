//! The library's locks and waits, on bare futexes.
//!
//! Why not `parking_lot`: its waiters wait in queues kept in the process's
//! own memory, linked through each waiting thread's thread-local data and
//! guarded by spin-locked buckets. A forked child (G26) inherits those
//! queues with the parent's threads still in them: a bucket that one of
//! them held at the instant of the fork stays locked for ever, an unlock
//! may hand the lock to a thread that does not exist, and glibc gives the
//! dead threads' stacks to the child's new threads, whose thread-locals
//! then overwrite the links (lost wake-ups). A futex keeps its waiters in
//! the kernel, per process: the child starts with none. So every lock here
//! is one 32-bit word (the `lock_api` interface, so guards, `unlocked` and
//! `force_unlock` work as with `parking_lot`), and every wait sleeps on a
//! word that its waker changes.
//!
//! [`RawLock`] is the classic three-state futex mutex (unlocked, locked,
//! locked with waiters; the algorithm of std's futex mutex): one CAS to
//! take it, one swap to release it, a system call only when a waiter
//! sleeps.
//!
//! A [`ShortMutex`] is the same lock for sections that never block (a
//! pool's lock: the kernel's `raw_spinlock_t`). A worker that sleeps on
//! one is not blocked in the sense of concurrency management: the holder
//! runs and hands the lock over within microseconds, as a spinning CPU in
//! the kernel would get it, so detection must not start another worker for
//! it. The sleeping worker says so through the word it registered
//! ([`set_short_wait_word`]): when it began to sleep, which detection reads
//! before it marks a runner blocked, and honours for a short while only
//! (a holder preempted for long, a `SCHED_IDLE` sentinel on a busy CPU,
//! must not leave the waiter's CPU idle uncovered).

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

use rustix::thread::futex;

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
/// Locked, and some thread may sleep on the word.
const CONTENDED: u32 = 2;

/// Spins before a contended lock sleeps (the holders' sections are short).
const SPINS: u32 = 100;

/// A futex mutex. `A:` its word. `SHORT`: a lock whose holders never
/// block ([`ShortMutex`]): a thread that registered a word writes there
/// when it began to sleep on the lock.
pub(crate) struct RawLock<const SHORT: bool = false> {
    state: AtomicU32,
}

thread_local! {
    /// Where this thread writes when it began to sleep on a [`ShortMutex`]
    /// (CLOCK_MONOTONIC ns; 0 while it does not: a worker's
    /// `Worker::short_wait`), or null.
    static SHORT_WAIT: Cell<*const AtomicU64> = const { Cell::new(ptr::null()) };
}

/// Register the word the calling thread writes while it sleeps on a
/// [`ShortMutex`] (null: none). The word must outlive the registration: a
/// worker registers its own for as long as its thread runs.
pub(crate) fn set_short_wait_word(flag: *const AtomicU64) {
    SHORT_WAIT.with(|f| f.set(flag));
}

// SAFETY: `lock` returns only once this thread moved the word from
// UNLOCKED to LOCKED or CONTENDED, which excludes every other thread until
// `unlock` stores UNLOCKED; the acquire/release orderings order the
// critical sections.
unsafe impl<const SHORT: bool> lock_api::RawMutex for RawLock<SHORT> {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: RawLock<SHORT> = RawLock {
        state: AtomicU32::new(UNLOCKED),
    };
    type Guard = lock_api::GuardNoSend;

    #[inline]
    fn lock(&self) -> Self::Guard {
        if self
            .state
            .compare_exchange_weak(UNLOCKED, LOCKED, Acquire, Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        lock_api::GuardNoSend::new()
    }

    #[inline]
    fn try_lock(&self) -> Option<Self::Guard> {
        self.state
            .compare_exchange(UNLOCKED, LOCKED, Acquire, Relaxed)
            .ok()
            .map(|_| lock_api::GuardNoSend::new())
    }

    #[inline]
    unsafe fn unlock(&self, _guard: Self::Guard) {
        if self.state.swap(UNLOCKED, Release) == CONTENDED {
            self.wake_one();
        }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.state.load(Relaxed) != UNLOCKED
    }
}

impl<const SHORT: bool> RawLock<SHORT> {
    #[cold]
    fn lock_contended(&self) {
        let mut state = self.spin();
        if state == UNLOCKED {
            match self
                .state
                .compare_exchange(UNLOCKED, LOCKED, Acquire, Relaxed)
            {
                Ok(_) => return,
                Err(s) => state = s,
            }
        }
        loop {
            // Say a thread sleeps; if the lock was free meanwhile, this
            // took it (marked contended, which costs one spurious wake).
            if state != CONTENDED && self.state.swap(CONTENDED, Acquire) == UNLOCKED {
                return;
            }
            self.sleep();
            state = self.spin();
        }
    }

    /// Sleep while the word says CONTENDED; on a short lock, with this
    /// thread's short-wait word set to when it began (SeqCst: detection
    /// reads `/proc`, then the word; a thread it saw asleep on the lock has
    /// written it).
    fn sleep(&self) {
        let flag = if SHORT {
            SHORT_WAIT.with(|f| f.get())
        } else {
            ptr::null()
        };
        // SAFETY: a registered flag outlives its registration
        // (`set_short_wait_word`).
        let flag = unsafe { flag.as_ref() };
        if let Some(f) = flag {
            // Never 0, which says "not asleep".
            f.store(crate::util::mono_ns().max(1), SeqCst);
        }
        let _ = futex::wait(&self.state, futex::Flags::PRIVATE, CONTENDED, None);
        if let Some(f) = flag {
            f.store(0, Relaxed);
        }
    }

    /// Spin while the lock is held without waiters, a little.
    fn spin(&self) -> u32 {
        let mut n = SPINS;
        loop {
            let s = self.state.load(Relaxed);
            if s != LOCKED || n == 0 {
                return s;
            }
            std::hint::spin_loop();
            n -= 1;
        }
    }

    #[cold]
    fn wake_one(&self) {
        let _ = futex::wake(&self.state, futex::Flags::PRIVATE, 1);
    }
}

/// A mutex of the library (the `lock_api` interface).
pub(crate) type Mutex<T> = lock_api::Mutex<RawLock, T>;
/// Its guard.
pub(crate) type MutexGuard<'a, T> = lock_api::MutexGuard<'a, RawLock, T>;
/// A mutex whose holders never block (see the module's text).
pub(crate) type ShortMutex<T> = lock_api::Mutex<RawLock<true>, T>;
/// Its guard.
pub(crate) type ShortMutexGuard<'a, T> = lock_api::MutexGuard<'a, RawLock<true>, T>;

/// Sleep while `word` holds `expected`, until woken or `deadline`
/// (spurious returns are possible: callers re-check).
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) {
    let ts = match deadline {
        None => None,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            Some(timespec(left))
        }
    };
    let _ = futex::wait(word, futex::Flags::PRIVATE, expected, ts.as_ref());
}

/// Wake every thread sleeping on `word`.
pub(crate) fn wake_all(word: &AtomicU32) {
    let _ = futex::wake(word, futex::Flags::PRIVATE, i32::MAX as u32);
}

fn timespec(d: Duration) -> futex::Timespec {
    futex::Timespec {
        tv_sec: d.as_secs() as _,
        tv_nsec: d.subsec_nanos() as _,
    }
}

/// A condition variable for [`Mutex`]: waiters sleep on a counter that
/// every notification bumps. `A:` both words.
#[derive(Default)]
pub(crate) struct Condvar {
    seq: AtomicU32,
    waiters: AtomicU32,
}

impl Condvar {
    pub(crate) const fn new() -> Condvar {
        Condvar {
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// Unlock `g`, sleep until notified (or spuriously), lock again.
    pub(crate) fn wait<T: ?Sized>(&self, g: &mut MutexGuard<'_, T>) {
        // Read under the lock: a notification made under it after this
        // read changes `seq`, so the sleep below returns at once.
        let seq = self.seq.load(Acquire);
        self.waiters.fetch_add(1, SeqCst);
        MutexGuard::unlocked(g, || wait(&self.seq, seq, None));
        self.waiters.fetch_sub(1, Relaxed);
    }

    /// Wake every waiter (call with the mutex held).
    pub(crate) fn notify_all(&self) {
        self.seq.fetch_add(1, Release);
        if self.waiters.load(SeqCst) > 0 {
            wake_all(&self.seq);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn lock_excludes_under_contention() {
        let m = Arc::new(Mutex::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..50_000 {
                        let mut g = m.lock();
                        let v = *g;
                        std::hint::black_box(&v);
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*m.lock(), 200_000);
    }

    #[test]
    fn condvar_wakes_a_waiter() {
        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let p2 = pair.clone();
        let t = std::thread::spawn(move || {
            let mut g = p2.0.lock();
            while !*g {
                p2.1.wait(&mut g);
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        *pair.0.lock() = true;
        {
            let _g = pair.0.lock();
            pair.1.notify_all();
        }
        t.join().unwrap();
    }

    /// A thread that registered its word writes it while it sleeps on a
    /// short lock, and only then: not on a plain `Mutex`, not once it has
    /// the lock.
    #[test]
    fn a_sleeper_on_a_short_lock_writes_its_word() {
        fn sleeper_flag<L: lock_api::RawMutex + Send + Sync + 'static>(
            m: Arc<lock_api::Mutex<L, ()>>,
        ) -> (bool, bool) {
            let flag: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
            let g = m.lock();
            let m2 = m.clone();
            let t = std::thread::spawn(move || {
                set_short_wait_word(flag);
                drop(m2.lock());
                set_short_wait_word(ptr::null());
            });
            // Until the thread sleeps on the lock (or long enough to be sure
            // a plain lock's sleeper never raises the flag).
            let until = Instant::now() + Duration::from_millis(300);
            while flag.load(SeqCst) == 0 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(1));
            }
            let raised = flag.load(SeqCst) != 0;
            drop(g);
            t.join().unwrap();
            (raised, flag.load(SeqCst) != 0)
        }
        let (raised, after) = sleeper_flag(Arc::new(ShortMutex::new(())));
        assert!(raised, "a sleeper on a short lock raised its flag");
        assert!(!after, "and lowered it once it had the lock");
        let (raised, _) = sleeper_flag(Arc::new(Mutex::new(())));
        assert!(!raised, "a sleeper on a plain lock raises nothing");
    }
}
