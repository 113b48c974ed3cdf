//! Pool-workqueues: where a workqueue meets a worker pool.
//!
//! As in the kernel, a workqueue is only a front end: for each CPU (bound)
//! or affinity pod (unbound) it has one `pool_workqueue` that links it to
//! the worker pool serving that CPU or pod. The pwq is where the
//! workqueue's per-pool accounting lives:
//!
//! * `nr_active` and the inactive list implement `max_active` (G17): an
//!   item is *active* when it is on the pool's worklist or running; beyond
//!   `max_active` new items wait on the pwq's inactive list in FIFO order
//!   and are activated as active ones finish.
//! * `nr_in_flight[color]` implements flush colours (G7): every item takes
//!   the pwq's current colour when queued; `Workqueue::flush` closes the
//!   current colour and waits until no pwq has items of that colour (or an
//!   older one) in flight.
//! * the `PWQ_STAT_*` counters behind `Workqueue::stats` (G29).
//!
//! The locked state of a pwq lives inside its pool's state (a slab indexed
//! by [`Pwq::slot`]), so it is guarded by the pool lock without any unsafe
//! code: `g.pwqs[pwq.slot]`.

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Arc;

use crate::attrs::WqFlags;
use crate::pool::work::Work;
use crate::pool::work::WorkList;
use crate::pool::{PoolState, WorkerPool};

/// A: FREEZABLE workqueues are frozen (G24): their pwqs activate nothing
/// ([`WqShared::effective_max_active`]). Set and cleared by `freeze`/`thaw`
/// (`freeze.rs`), which then reactivate the pwqs.
pub(crate) static FROZEN: AtomicBool = AtomicBool::new(false);

/// Number of flush colours (the kernel's WORK_NR_COLORS).
pub(crate) const NR_COLORS: usize = 16;

#[inline]
pub(crate) fn next_color(c: u8) -> u8 {
    ((c as usize + 1) % NR_COLORS) as u8
}

/// The part of a workqueue its pwqs and executing workers need. It holds no
/// reference to the pwqs, so there is no cycle. Annotations:
/// `src/LOCKING.md`.
pub(crate) struct WqShared {
    /// I: process-unique id.
    pub(crate) id: u64,
    /// I: the name given at creation.
    pub(crate) name: String,
    /// I: the flags as given, with the kind resolved: exactly one of
    /// `PERCPU` and `UNBOUND` (`workqueue::resolve_kind`).
    pub(crate) flags: WqFlags,
    /// I: unbound because `PERCPU` was not asked for (G14): affinity
    /// scope `System` by default, managed even with `CPU_INTENSIVE`.
    pub(crate) spreading: bool,
    /// I: an explicit `UNBOUND | CPU_INTENSIVE` workqueue: its pools are
    /// not concurrency managed (G19).
    pub(crate) unmanaged: bool,
    /// I: an ordered workqueue (one pwq, max_active 1).
    pub(crate) ordered: bool,
    /// A: max_active.
    pub(crate) max_active: AtomicU32,
    /// A: number of drain() calls in progress (G8).
    pub(crate) nr_drainers: AtomicU32,
    /// A: Drop has started (G25).
    pub(crate) destroying: AtomicBool,
    /// A: queue attempts refused because of a drain or destruction.
    pub(crate) refused: AtomicU64,
    /// A: a refusal has been logged for the current drain.
    pub(crate) refusal_logged: AtomicBool,
    /// A: a delayed item dropped by the current drain has been logged.
    pub(crate) dropped_logged: AtomicBool,
    /// A: pwqs that still have items of the colour being flushed, plus one
    /// while the flusher is still counting. The flusher parks on its address.
    pub(crate) nr_pwqs_to_flush: AtomicU32,
    /// A: timers armed for this workqueue (G25 cancels them on destroy).
    pub(crate) nr_timers: AtomicUsize,
    /// I: the rescuer of a `MEM_RECLAIM` workqueue (G22).
    pub(crate) rescuer: Option<Arc<crate::pool::worker::Rescuer>>,
}

impl WqShared {
    /// Whether a queue from outside this workqueue's own items is refused.
    #[inline]
    pub(crate) fn refusing(&self) -> bool {
        self.nr_drainers.load(Relaxed) > 0 || self.destroying.load(Relaxed)
    }

    /// Count and (once per drain) report a refused queue.
    pub(crate) fn note_refused(&self) {
        self.refused.fetch_add(1, Relaxed);
        if !self.refusal_logged.swap(true, Relaxed) {
            crate::event::report(crate::Event::QueueRefused {
                workqueue: &self.name,
                reason: if self.destroying.load(Relaxed) {
                    "being destroyed"
                } else {
                    "draining"
                },
            });
        }
    }

    /// Report (once per drain) a delayed item whose timer fired while the
    /// workqueue drained (its refusal is already counted).
    pub(crate) fn note_delayed_dropped(&self, work: Option<&str>) {
        if !self.dropped_logged.swap(true, Relaxed) {
            crate::event::report(crate::Event::DelayedDropped {
                workqueue: &self.name,
                work,
            });
        }
    }

    /// Effective max_active for new activations: zero while frozen (G24).
    #[inline]
    pub(crate) fn effective_max_active(&self) -> u32 {
        if self.flags.contains(WqFlags::FREEZABLE) && FROZEN.load(Relaxed) {
            0
        } else {
            self.max_active.load(Relaxed)
        }
    }
}

/// Counters of one pwq (the kernel's PWQ_STAT_*). L: pool lock.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PwqStats {
    pub(crate) started: u64,
    pub(crate) completed: u64,
    pub(crate) cpu_hog: u64,
    pub(crate) cm_wakeups: u64,
    pub(crate) mayday: u64,
    pub(crate) rescued: u64,
    pub(crate) panics: u64,
}

impl PwqStats {
    pub(crate) fn add(&mut self, o: &PwqStats) {
        self.started += o.started;
        self.completed += o.completed;
        self.cpu_hog += o.cpu_hog;
        self.cm_wakeups += o.cm_wakeups;
        self.mayday += o.mayday;
        self.rescued += o.rescued;
        self.panics += o.panics;
    }
}

/// The locked state of a pwq, in its pool's slab. Annotations:
/// `src/LOCKING.md`.
#[derive(Default)]
pub(crate) struct PwqState {
    /// L: colour given to newly queued items.
    pub(crate) work_color: u8,
    /// L: the colour being flushed, while this pwq still has items of it.
    pub(crate) flush_color: Option<u8>,
    /// L: items queued (active or inactive) or running, per colour.
    pub(crate) nr_in_flight: [u32; NR_COLORS],
    /// L: items on the pool's worklist or running (<= max_active).
    pub(crate) nr_active: u32,
    /// L: throttled items, FIFO.
    pub(crate) inactive: WorkList,
    /// L: the `PWQ_STAT_*` counters.
    pub(crate) stats: PwqStats,
    /// L: on its workqueue rescuer's mayday list (the kernel's
    /// `mayday_node` being linked): asked for once until the rescuer takes
    /// it.
    pub(crate) on_mayday: bool,
}

impl PwqState {
    pub(crate) fn in_flight(&self) -> u64 {
        self.nr_in_flight.iter().map(|&n| n as u64).sum()
    }
}

/// A pool-workqueue. Annotations: `src/LOCKING.md`.
pub(crate) struct Pwq {
    /// I: the pool it feeds.
    pub(crate) pool: &'static WorkerPool,
    /// I: the workqueue it belongs to.
    pub(crate) wq: Arc<WqShared>,
    /// I: index of its locked state in `pool`'s pwq slab.
    pub(crate) slot: usize,
    /// A: CPU time of its executions, in ns (added by its workers).
    pub(crate) cpu_time_ns: AtomicU64,
    /// A (set under L and T, read under L): the slab slot has been
    /// released (the pwq is gone from its workqueue and from its pool);
    /// `slot` must not be used once this is seen.
    pub(crate) released: AtomicBool,
}

impl Pwq {
    /// Create a pwq of `wq` on `pool` with `work_color`.
    pub(crate) fn new(pool: &'static WorkerPool, wq: Arc<WqShared>, work_color: u8) -> Arc<Pwq> {
        let slot = {
            let mut g = pool.lock();
            g.pwqs.insert(PwqState {
                work_color,
                ..Default::default()
            })
        };
        Arc::new(Pwq {
            pool,
            wq,
            slot,
            cpu_time_ns: AtomicU64::new(0),
            released: AtomicBool::new(false),
        })
    }

    /// Whether any item of this pwq is queued, throttled or running (a
    /// released pwq has none).
    pub(crate) fn busy(&self) -> bool {
        let g = self.pool.lock();
        if self.released.load(Relaxed) {
            return false;
        }
        let st = &g.pwqs[self.slot];
        st.in_flight() > 0 || st.nr_active > 0 || !st.inactive.is_empty()
    }

    /// Free the pwq's slot in its pool, if it is not busy; its counters are
    /// returned so the workqueue can keep them. The check and the release
    /// happen under one hold of the pool lock, where `insert_grabbed` also
    /// checks `released`, so no item can slip in between.
    pub(crate) fn try_release(&self) -> Option<PwqStats> {
        let st = {
            let mut g = self.pool.lock();
            if self.released.load(Relaxed) {
                return Some(PwqStats::default());
            }
            let st = &g.pwqs[self.slot];
            if st.in_flight() > 0 || st.nr_active > 0 || !st.inactive.is_empty() {
                return None;
            }
            self.released.store(true, Relaxed);
            let st = g.pwqs.remove(self.slot);
            crate::pool::maybe_retire_pool(self.pool, &mut g);
            st
        };
        Some(st.stats)
    }
}

/// Put a work item whose PENDING the caller owns on `pwq`: on the pool's
/// worklist if an active slot is free, else on the pwq's inactive list.
/// The caller holds `pwq.pool`'s lock (`g`). Returns whether it went to the
/// worklist (and the pool should be kicked).
pub(crate) fn insert_work(g: &mut PoolState, pwq: &Arc<Pwq>, work: &Work) -> bool {
    let st = &mut g.pwqs[pwq.slot];
    let color = st.work_color;
    st.nr_in_flight[color as usize] += 1;
    let active = st.inactive.is_empty() && st.nr_active < pwq.wq.effective_max_active();
    let inner = work.inner();
    // SAFETY: the caller owns PENDING and the item is on no list, so its
    // slot is ours to write (see `work::Slot`).
    unsafe { inner.slot_write(Arc::into_raw(pwq.clone()), color, active) };
    inner.pool.store(pwq.pool as *const _ as *mut _, Release);
    let state = &inner.state;
    if active {
        st.nr_active += 1;
        // SAFETY: we hold the pool lock that guards the worklist; the item
        // is on no list.
        unsafe { g.worklist.push_back(work.clone()) };
        crate::pool::touch_watchdog();
    } else {
        // SAFETY: as above, for the pwq's inactive list (same pool lock).
        unsafe { st.inactive.push_back(work.clone()) };
    }
    state.set_queued();
    active
}

/// Move throttled items to the worklist while `max_active` allows. Returns
/// whether any moved (the pool should be kicked).
pub(crate) fn activate_inactive(g: &mut PoolState, pwq: &Pwq) -> bool {
    let max = pwq.wq.effective_max_active();
    let mut moved = false;
    loop {
        let st = &mut g.pwqs[pwq.slot];
        if st.nr_active >= max {
            break;
        }
        let Some(work) = st.inactive.pop_front() else {
            break;
        };
        st.nr_active += 1;
        // SAFETY: the item was QUEUED on this pool (its inactive list) and
        // we hold the pool lock, so its slot is ours to update.
        unsafe { work.inner().slot_set_active(true) };
        crate::trace::activate_work!(pwq.wq.name, work);
        // SAFETY: pool lock held, the item was just unlinked.
        unsafe { g.worklist.push_back(work) };
        crate::pool::touch_watchdog();
        moved = true;
    }
    moved
}

/// Activate what `max_active` now allows on `pwq` (after a change of
/// max_active, or a thaw) and wake its pool if needed.
pub(crate) fn reactivate(pwq: &Pwq) {
    let pool = pwq.pool;
    let mut g = pool.lock();
    if pwq.released.load(Relaxed) {
        return;
    }
    if activate_inactive(&mut g, pwq) {
        crate::pool::kick_pool(&mut g);
    }
}

/// An execution (or a stolen pending instance) of `pwq` in colour `color`
/// is over: update in-flight and active counts, activate a throttled item,
/// and report flush progress (the kernel's pwq_dec_nr_in_flight). Caller
/// holds `pwq.pool`'s lock. Returns whether the pool should be kicked.
pub(crate) fn dec_nr_in_flight(g: &mut PoolState, pwq: &Pwq, color: u8, active: bool) -> bool {
    let st = &mut g.pwqs[pwq.slot];
    st.nr_in_flight[color as usize] -= 1;
    let mut kick = false;
    if active {
        st.nr_active -= 1;
        if !st.inactive.is_empty() {
            kick = activate_inactive(g, pwq);
        }
    }
    let st = &mut g.pwqs[pwq.slot];
    if st.flush_color == Some(color) && st.nr_in_flight[color as usize] == 0 {
        st.flush_color = None;
        if pwq.wq.nr_pwqs_to_flush.fetch_sub(1, AcqRel) == 1 {
            crate::sync::wake_all(&pwq.wq.nr_pwqs_to_flush);
        }
    }
    kick
}

/// Freeze: move this pwq's items that wait on the pool's worklist back to
/// the head of its inactive list, in order, so they do not start.
pub(crate) fn deactivate_queued(g: &mut PoolState, pwq: &Pwq) {
    let mut mine = g
        .worklist
        .extract(|w| ptr::addr_eq(w.queued_pwq_raw(), pwq as *const Pwq));
    let n = mine.len() as u32;
    if n == 0 {
        return;
    }
    mine.for_each(|w| {
        // SAFETY: the items are QUEUED on this pool and we hold its lock.
        unsafe { w.slot_set_active(false) }
    });
    let st = &mut g.pwqs[pwq.slot];
    st.nr_active -= n;
    mine.append(&mut st.inactive);
    std::mem::swap(&mut mine, &mut st.inactive);
}
