//! Virtual time for tests of delayed work (G31).
//!
//! By default delayed work follows `CLOCK_MONOTONIC`. A test process may
//! switch to a manual clock before first use; from then on time moves only
//! when the test calls [`advance`], which fires every timer that became due,
//! in deadline order, and returns once their items are queued. Items still
//! run on real workers, so a test flushes or waits for them as usual.
//!
//! This is the way to test debounce and timeout logic without sleeping:
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use cmwq::{clock, Work};
//!
//! clock::use_manual().expect("before any workqueue is used");
//!
//! // A "save" that is debounced: it runs 100 ms after the last edit.
//! let saves = Arc::new(AtomicUsize::new(0));
//! let s = saves.clone();
//! let save = Work::new(move |_| {
//!     s.fetch_add(1, SeqCst);
//! });
//! let wq = cmwq::system_wq();
//! for _edit in 0..5 {
//!     wq.mod_delayed(&save, Duration::from_millis(100)); // push it back
//!     clock::advance(Duration::from_millis(60));          // 60 ms between edits
//! }
//! // Still armed: it never went 100 ms without an edit, so it never ran.
//! // (`save.flush()` here would fire the armed timer at once, as the
//! // kernel's `flush_delayed_work` does.)
//! assert!(save.is_pending());
//! assert_eq!(saves.load(SeqCst), 0, "never 100 ms without an edit");
//!
//! clock::advance(Duration::from_millis(40)); // 100 ms after the last edit
//! save.flush();
//! assert_eq!(saves.load(SeqCst), 1, "one save, after the last edit");
//! assert_eq!(clock::now(), Duration::from_millis(340));
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::*};
use std::sync::OnceLock;
use std::time::Duration;

use crate::Error;

/// Which clock the process uses: not decided yet, the real one (decided
/// by the first read of the clock or the start of the pools), or the
/// manual one ([`use_manual`]). Decided once, by one compare-exchange.
static MODE: AtomicU8 = AtomicU8::new(UNDECIDED);
const UNDECIDED: u8 = 0;
const REAL: u8 = 1;
const MANUAL: u8 = 2;
/// The pools started ([`seal`]).
static SEALED: AtomicBool = AtomicBool::new(false);
/// Manual time, ns since the clock started.
static MANUAL_NOW: AtomicU64 = AtomicU64::new(0);
/// Serialises `advance` calls so timers fire in order.
pub(crate) static ADVANCE: crate::sync::Mutex<()> = crate::sync::Mutex::new(());
/// CLOCK_MONOTONIC (ns) when the clock started.
static START: OnceLock<u64> = OnceLock::new();
/// What [`advance`] calls to fire the timers due at the new time: set by
/// the timer module when its wheel is made (before that, nothing is
/// armed). Keeps this module a leaf of the library.
static FIRE_DUE: OnceLock<fn(u64)> = OnceLock::new();

/// Whether the manual clock is in use.
#[inline]
pub(crate) fn is_manual() -> bool {
    MODE.load(Relaxed) == MANUAL
}

/// The pools started: [`use_manual`] is refused from now on, and the clock
/// is the real one unless the manual one was chosen before.
pub(crate) fn seal() {
    SEALED.store(true, SeqCst);
    decide_real();
}

/// The real clock from now on, unless the manual one was chosen.
fn decide_real() {
    let _ = MODE.compare_exchange(UNDECIDED, REAL, AcqRel, Acquire);
}

/// The timers' "fire what is due at this time" for [`advance`].
pub(crate) fn on_advance(fire: fn(u64)) {
    let _ = FIRE_DUE.set(fire);
}

/// The clock in ns since it started: virtual or real.
#[inline]
pub(crate) fn now_ns() -> u64 {
    if is_manual() {
        MANUAL_NOW.load(Acquire)
    } else {
        let start = *START.get_or_init(|| {
            decide_real();
            crate::util::mono_ns()
        });
        crate::util::mono_ns().saturating_sub(start)
    }
}

/// Switch the process to a manual clock. Call before any workqueue is used;
/// an error afterwards. From then on delays follow [`advance`] only.
pub fn use_manual() -> Result<(), Error> {
    if SEALED.load(SeqCst) {
        return Err(Error::AlreadyStarted("the manual clock"));
    }
    match MODE.compare_exchange(UNDECIDED, MANUAL, AcqRel, Acquire) {
        Ok(_) | Err(MANUAL) => Ok(()),
        Err(_) => Err(Error::AlreadyStarted("the manual clock")),
    }
}

/// Move the manual clock forward by `d`: fires every timer due, in deadline
/// order, and returns once their items are queued.
///
/// # Panics
///
/// If the manual clock is not in use.
pub fn advance(d: Duration) {
    assert!(
        is_manual(),
        "cmwq::clock::advance: the manual clock is not in use (call clock::use_manual() first)"
    );
    let _g = ADVANCE.lock();
    let now = MANUAL_NOW.load(Acquire).saturating_add(d.as_nanos() as u64);
    MANUAL_NOW.store(now, Release);
    if let Some(fire) = FIRE_DUE.get() {
        fire(now);
    }
}

/// Time since the clock started, virtual or real.
pub fn now() -> Duration {
    Duration::from_nanos(now_ns())
}
