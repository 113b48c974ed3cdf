//! Fault injection for tests: make worker thread creation fail.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::*};

static FAIL_SPAWNS: AtomicU64 = AtomicU64::new(0);

/// Make the next `n` thread creations of the library (workers, the
/// monitor, the timer thread) fail with an OS-like error (testing support
/// for "thread creation failure does not panic or lose work").
#[doc(hidden)]
pub fn fail_next_spawns(n: u64) {
    FAIL_SPAWNS.store(n, SeqCst);
}

/// Microseconds a thread that created a worker outside a worker (a queuer,
/// the monitor) waits before it looks at the pool again.
static DELAY_AFTER_SPAWN_US: AtomicU64 = AtomicU64::new(0);

/// Make a thread that created a worker from outside the pool wait `d`
/// before it looks at the pool again (testing support: widens the window
/// in which kicks rely on that creator).
#[doc(hidden)]
pub fn delay_after_spawn(d: std::time::Duration) {
    DELAY_AFTER_SPAWN_US.store(d.as_micros() as u64, SeqCst);
}

#[inline]
pub(crate) fn after_spawn() {
    let us = DELAY_AFTER_SPAWN_US.load(Relaxed);
    if us > 0 {
        std::thread::sleep(std::time::Duration::from_micros(us));
    }
}

/// Microseconds every thread creation of the library takes before it
/// starts the thread (slow creation, as under memory pressure).
static SLOW_SPAWNS_US: AtomicU64 = AtomicU64::new(0);

/// Make every thread creation of the library take `d` longer (testing
/// support: creation that is slow rather than failing, G22).
#[doc(hidden)]
pub fn slow_spawns(d: std::time::Duration) {
    SLOW_SPAWNS_US.store(d.as_micros() as u64, SeqCst);
}

pub(crate) fn check_spawn() -> io::Result<()> {
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
        Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "Resource temporarily unavailable (injected)",
        ))
    } else {
        Ok(())
    }
}
