//! Delayed work: timers that queue an item when they expire.
//!
//! The timer wheel arrives with delayed work; until then nothing arms a
//! timer (the TIMER bit of the state word is never set), and these entry
//! points used by flush, cancel and destroy have nothing to act on.

use crate::work::Work;

/// Fire an armed item's timer now (flush of an armed item, G6).
pub(crate) fn fire_now(_work: &Work) {}

/// Disarm an armed item's timer; true if this call disarmed it.
pub(crate) fn try_disarm(_work: &Work) -> bool {
    false
}

/// Cancel every timer armed for workqueue `wq_id`; returns how many.
pub(crate) fn cancel_all_for(_wq_id: u64) -> usize {
    0
}
