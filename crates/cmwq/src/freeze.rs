//! Freezing (G24): `freeze()` stops FREEZABLE workqueues from starting items
//! and waits for their running ones; `thaw()` resumes them.

use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::Arc;

use crate::sync::Mutex;

use crate::pool::pwq::{self, Pwq, FROZEN};
use crate::workqueue::all_workqueues;
use crate::WqFlags;

/// Serialises freeze and thaw state changes. Not held while a freeze waits
/// for running items, so a `thaw` from another thread never waits for
/// them.
pub(crate) static FREEZER: Mutex<()> = Mutex::new(());
/// Incremented by every freeze and thaw: a freeze waits only while the
/// state it set is still in force.
static GENERATION: AtomicU64 = AtomicU64::new(0);

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
/// are unaffected. Freezing while frozen changes nothing and waits the
/// same way.
///
/// Called from inside an item of a `FREEZABLE` workqueue it freezes the
/// rest and does not wait for the calling item (as `flush` from inside an
/// item does not wait for itself). A [`thaw`] from another thread ends the
/// wait.
pub fn freeze() {
    let gen = {
        let _g = FREEZER.lock();
        if FROZEN.swap(true, SeqCst) {
            // Frozen already: wait like the freeze that did it (whose wait
            // may still be in progress).
            GENERATION.load(SeqCst)
        } else {
            freeze_locked()
        }
    };
    wait_frozen(gen);
}

/// Freeze, under the freezer lock: returns the new generation.
fn freeze_locked() -> u64 {
    let gen = GENERATION.fetch_add(1, SeqCst) + 1;
    for p in freezable_pwqs() {
        let mut g = p.pool.lock();
        if p.released.load(Relaxed) {
            continue;
        }
        // Items already on the worklist have not started: put them back at
        // the head of the inactive list, in order.
        pwq::deactivate_queued(&mut g, &p);
    }
    gen
}

/// Wait until no item of a FREEZABLE workqueue runs (but the caller's
/// own), or a thaw ended freeze generation `gen`.
fn wait_frozen(gen: u64) {
    // The calling item's own execution (if any) is active on its pwq.
    let own = crate::pool::worker::current_exec().map(|(_, pwq)| pwq);
    for p in freezable_pwqs() {
        let allowed = u32::from(own.is_some_and(|o| std::ptr::eq(o, Arc::as_ptr(&p))));
        crate::pool::worker::blocking(|| {
            while GENERATION.load(SeqCst) == gen && {
                let g = p.pool.lock();
                !p.released.load(Relaxed) && g.pwqs[p.slot].nr_active > allowed
            } {
                // Poll: running items of a frozen workqueue are few and
                // their ends are not announced.
                std::thread::sleep(std::time::Duration::from_millis(1));
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
    GENERATION.fetch_add(1, SeqCst);
    for p in freezable_pwqs() {
        pwq::reactivate(&p);
    }
}
