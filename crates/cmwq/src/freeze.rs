//! Freezing (G24): `freeze()` stops FREEZABLE workqueues from starting items
//! and waits for their running ones; `thaw()` resumes them.

use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::pwq::{self, Pwq};
use crate::util;
use crate::workqueue::all_workqueues;
use crate::WqFlags;

static FROZEN: AtomicBool = AtomicBool::new(false);
static FREEZER: Mutex<()> = Mutex::new(());

/// Whether FREEZABLE workqueues are frozen.
#[inline]
pub(crate) fn frozen() -> bool {
    FROZEN.load(Relaxed)
}

fn freezable_pwqs() -> Vec<Arc<Pwq>> {
    all_workqueues()
        .into_iter()
        .filter(|wq| wq.shared.flags.contains(WqFlags::FREEZABLE))
        .flat_map(|wq| wq.all_pwqs.lock().clone())
        .filter(|p| !p.released.load(Relaxed))
        .collect()
}

/// Stop starting items of `FREEZABLE` workqueues (queued ones stay queued)
/// and wait until none of their items is running (G24). Other workqueues
/// are unaffected. Freezing twice is a no-op.
pub fn freeze() {
    let _g = FREEZER.lock();
    if FROZEN.swap(true, SeqCst) {
        return;
    }
    for p in freezable_pwqs() {
        let mut g = p.pool.lock();
        if p.released.load(Relaxed) {
            continue;
        }
        // Items already on the worklist have not started: put them back at
        // the head of the inactive list, in order.
        pwq::deactivate_queued(&mut g, &p);
    }
    for p in freezable_pwqs() {
        let key = Arc::as_ptr(&p) as usize;
        crate::worker::blocking(|| {
            while {
                let g = p.pool.lock();
                !p.released.load(Relaxed) && g.pwqs[p.slot].nr_active > 0
            } {
                // Woken by the frozen pwq's last completion, or poll.
                util::wait_on_until(
                    key,
                    std::time::Instant::now() + std::time::Duration::from_millis(1),
                    || false,
                );
            }
        });
    }
}

/// Resume `FREEZABLE` workqueues (G24).
pub fn thaw() {
    let _g = FREEZER.lock();
    if !FROZEN.swap(false, SeqCst) {
        return;
    }
    for p in freezable_pwqs() {
        pwq::reactivate(&p);
    }
}
