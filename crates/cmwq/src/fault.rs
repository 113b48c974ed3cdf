//! Fault injection for tests: make the library's thread creation fail, or
//! slow, and widen a race window. The knobs exist with the `test-util`
//! feature only (users reach them through `cmwq::test_util`); without it
//! the checks below compile to nothing.

#[cfg(feature = "test-util")]
use std::sync::atomic::{AtomicU64, Ordering::*};

#[cfg(feature = "test-util")]
static FAIL_SPAWNS: AtomicU64 = AtomicU64::new(0);

/// Make the next `n` thread creations of the library (workers, rescuers,
/// the monitor, the timer thread) fail with an OS-like error (`EAGAIN`,
/// as when `RLIMIT_NPROC` is reached): "thread creation failure does not
/// panic or lose work". `0` ends it.
#[cfg(feature = "test-util")]
pub fn fail_next_spawns(n: u64) {
    FAIL_SPAWNS.store(n, SeqCst);
}

/// Microseconds a thread that created a worker outside a worker (a queuer,
/// the monitor) waits before it looks at the pool again.
#[cfg(feature = "test-util")]
static DELAY_AFTER_SPAWN_US: AtomicU64 = AtomicU64::new(0);

/// Make a thread that created a worker from outside the pool wait `d`
/// before it looks at the pool again: widens the window in which kicks
/// rely on that creator. `Duration::ZERO` ends it.
#[cfg(feature = "test-util")]
pub fn delay_after_spawn(d: std::time::Duration) {
    DELAY_AFTER_SPAWN_US.store(d.as_micros() as u64, SeqCst);
}

#[inline]
pub(crate) fn after_spawn() {
    #[cfg(feature = "test-util")]
    {
        let us = DELAY_AFTER_SPAWN_US.load(Relaxed);
        if us > 0 {
            std::thread::sleep(std::time::Duration::from_micros(us));
        }
    }
}

/// Microseconds every thread creation of the library takes before it
/// starts the thread (slow creation, as under memory pressure).
#[cfg(feature = "test-util")]
static SLOW_SPAWNS_US: AtomicU64 = AtomicU64::new(0);

/// Make every thread creation of the library take `d` longer: creation
/// that is slow rather than failing (G22). `Duration::ZERO` ends it.
#[cfg(feature = "test-util")]
pub fn slow_spawns(d: std::time::Duration) {
    SLOW_SPAWNS_US.store(d.as_micros() as u64, SeqCst);
}

/// Before the library creates a thread: the injected delay and failure,
/// if any.
#[inline]
pub(crate) fn check_spawn() -> std::io::Result<()> {
    #[cfg(feature = "test-util")]
    {
        let slow = SLOW_SPAWNS_US.load(Relaxed);
        if slow > 0 {
            std::thread::sleep(std::time::Duration::from_micros(slow));
        }
        if FAIL_SPAWNS.load(Relaxed) == 0 {
            return Ok(());
        }
        let took = FAIL_SPAWNS
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if took {
            return Err(std::io::Error::from_raw_os_error(libc::EAGAIN));
        }
    }
    Ok(())
}
