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
//! A lane group (`pool::Lanes`) gives a workqueue one pwq per lane, and
//! `max_active` is per pod: the group's pwqs of one workqueue share one
//! active count, a [`PodActive`] (the kernel's `wq_node_nr_active`), and
//! a pwq whose items wait for a slot waits on its list until a slot frees
//! in any lane.
//!
//! The locked state of a pwq lives inside its pool's state (a slab indexed
//! by [`Pwq::slot`]), so it is guarded by the pool lock without any unsafe
//! code: `g.pwqs[pwq.slot]`.

use std::collections::VecDeque;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Arc;

use crate::sync::Mutex;

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

/// A counter of [`PwqStats`] that an execution bumps ([`bump`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stat {
    Started,
    Completed,
    Panic,
    CpuHog,
    CmWakeup,
}

/// The counters of a pwq's executions run by a worker of another pool (a
/// sibling lane's thief, `pool::steal`, or after a G3 hand-over), which
/// holds its own pool's lock, not the pwq's, where it counts. A: added by
/// those workers, summed with the pwq's own by `stats`.
#[derive(Default)]
pub(crate) struct ForeignStats([AtomicU64; 5]);

impl ForeignStats {
    /// Add these counts into `st`.
    pub(crate) fn add_into(&self, st: &mut PwqStats) {
        let n = |s: Stat| self.0[s as usize].load(Relaxed);
        st.started += n(Stat::Started);
        st.completed += n(Stat::Completed);
        st.panics += n(Stat::Panic);
        st.cpu_hog += n(Stat::CpuHog);
        st.cm_wakeups += n(Stat::CmWakeup);
    }
}

/// Count `stat` for an execution of `pwq` by a worker of `pool`, holding
/// `pool`'s lock (`g`): in the pwq's locked counters if it is that pool's,
/// else in its [`ForeignStats`].
#[inline]
pub(crate) fn bump(g: &mut PoolState, pool: &WorkerPool, pwq: &Pwq, stat: Stat) {
    if !ptr::eq(pwq.pool, pool) {
        pwq.foreign.0[stat as usize].fetch_add(1, Relaxed);
        return;
    }
    let st = &mut g.pwqs[pwq.slot].stats;
    match stat {
        Stat::Started => st.started += 1,
        Stat::Completed => st.completed += 1,
        Stat::Panic => st.panics += 1,
        Stat::CpuHog => st.cpu_hog += 1,
        Stat::CmWakeup => st.cm_wakeups += 1,
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
    /// L: on its [`PodActive`]'s waiting list.
    pub(crate) waiting: bool,
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
    /// A: counts of its executions by other pools' workers.
    pub(crate) foreign: ForeignStats,
    /// I: the active count it shares with its workqueue's other pwqs of
    /// the same lane group (`None`: its own `nr_active` is the count).
    pub(crate) pod: Option<Arc<PodActive>>,
    /// A (set under L and T, read under L): the slab slot has been
    /// released (the pwq is gone from its workqueue and from its pool);
    /// `slot` must not be used once this is seen.
    pub(crate) released: AtomicBool,
}

impl Pwq {
    /// Create a pwq of `wq` on `pool` with `work_color`, sharing the
    /// active count `pod` with the workqueue's other pwqs of a lane group.
    pub(crate) fn new(
        pool: &'static WorkerPool,
        wq: Arc<WqShared>,
        work_color: u8,
        pod: Option<Arc<PodActive>>,
    ) -> Arc<Pwq> {
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
            foreign: ForeignStats::default(),
            pod,
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
        // Not busy: every execution of it, wherever it ran, has counted.
        let mut stats = st.stats;
        self.foreign.add_into(&mut stats);
        Some(stats)
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
    let active = st.inactive.is_empty() && try_active(st, pwq);
    let st = &mut g.pwqs[pwq.slot];
    let inner = work.inner();
    // SAFETY: the caller owns PENDING and the item is on no list, so its
    // slot is ours to write (see `work::Slot`).
    unsafe { inner.slot_write(Arc::into_raw(pwq.clone()), color, active) };
    inner.pool.store(pwq.pool as *const _ as *mut _, Release);
    let state = &inner.state;
    if active {
        // (`try_active` counted it in `nr_active`.)
        // SAFETY: we hold the pool lock that guards the worklist; the item
        // is on no list.
        unsafe { g.worklist.push_back(work.clone()) };
        crate::pool::touch_watchdog();
    } else {
        // SAFETY: as above, for the pwq's inactive list (same pool lock).
        unsafe { st.inactive.push_back(work.clone()) };
    }
    state.set_queued();
    if !active && pwq.pod.is_some() {
        // Waits for a slot anywhere in the group: on the list, then look
        // once more (a slot freed before it was listed found no waiter).
        wait_for_slot(g, pwq);
        return activate_inactive(g, pwq);
    }
    active
}

/// Take an active slot for one of `pwq`'s items, if `max_active` allows:
/// its own count, or its group's shared one (then also counted in its
/// own `nr_active`, which says whether it is busy). Under its pool lock.
#[inline]
fn try_active(st: &mut PwqState, pwq: &Pwq) -> bool {
    let max = pwq.wq.effective_max_active();
    let got = match &pwq.pod {
        None => st.nr_active < max,
        Some(pod) => pod
            .nr
            .fetch_update(SeqCst, SeqCst, |n| (n < max).then_some(n + 1))
            .is_ok(),
    };
    if got {
        st.nr_active += 1;
    }
    got
}

/// The active count a workqueue's pwqs share in one lane group (G17: at
/// most `max_active` items per pod; the kernel's `wq_node_nr_active`).
/// Annotations: `src/LOCKING.md`.
#[derive(Default)]
pub(crate) struct PodActive {
    /// A: the workqueue's items active in the group's lanes (SeqCst: a
    /// slot freed and a pwq listed as waiting see each other).
    nr: AtomicU32,
    /// Its own lock, a leaf taken under a pool lock (`PWQ_WAIT` in the
    /// order): pwqs with items waiting for a slot, oldest first.
    waiting: Mutex<VecDeque<Arc<Pwq>>>,
    /// A: the length of `waiting`, read without its lock.
    nr_waiting: AtomicU32,
}

impl PodActive {
    /// After `fork()`, in the child, with `waiting` held by the forking
    /// thread: no item is active or waits.
    ///
    /// # Safety
    ///
    /// The calling thread holds `waiting` (taken by [`fork_lock`](Self::fork_lock)).
    pub(crate) unsafe fn reset_after_fork(&self) {
        self.nr.store(0, SeqCst);
        self.nr_waiting.store(0, SeqCst);
        // SAFETY: held by this thread (the caller's contract).
        unsafe { (*self.waiting.data_ptr()).clear() };
    }

    /// Take `waiting` and keep it held (`fork.rs`).
    pub(crate) fn fork_lock(&self) {
        std::mem::forget(self.waiting.lock());
    }

    /// Release what [`fork_lock`](Self::fork_lock) took.
    ///
    /// # Safety
    ///
    /// The calling thread took it with `fork_lock` and has not released it.
    pub(crate) unsafe fn fork_unlock(&self) {
        // SAFETY: the caller's contract.
        unsafe { self.waiting.force_unlock(Default::default()) };
    }
}

/// Whether items wait for `max_active` where `pwq` would queue one (the
/// kernel's `workqueue_congested`): on its inactive list, or in a lane
/// group on another lane's. Under its pool lock (`g`).
pub(crate) fn congested(g: &PoolState, pwq: &Pwq) -> bool {
    !g.pwqs[pwq.slot].inactive.is_empty()
        || pwq
            .pod
            .as_ref()
            .is_some_and(|pod| pod.nr_waiting.load(SeqCst) > 0)
}

/// `pwq` has no item waiting for a slot any more: off its group's
/// waiting list (at most a few pwqs long: one per lane).
fn unlist(st: &mut PwqState, pwq: &Pwq) {
    let (Some(pod), true) = (&pwq.pod, st.waiting) else {
        return;
    };
    st.waiting = false;
    let mut w = pod.waiting.lock();
    if let Some(i) = w.iter().position(|p| ptr::eq(Arc::as_ptr(p), pwq)) {
        w.remove(i);
        pod.nr_waiting.fetch_sub(1, SeqCst);
    }
}

/// `pwq` has items waiting for a slot of its group: list it (once).
fn wait_for_slot(g: &mut PoolState, pwq: &Arc<Pwq>) {
    let (Some(pod), st) = (&pwq.pod, &mut g.pwqs[pwq.slot]) else {
        return;
    };
    if !st.waiting {
        st.waiting = true;
        pod.waiting.lock().push_back(pwq.clone());
        pod.nr_waiting.fetch_add(1, SeqCst);
    }
}

/// A slot freed in `pod`: activate the items of the pwqs waiting there,
/// oldest pwq first, while slots last. Called without any pool lock (by
/// the holder of the lock where the slot freed, once it released it:
/// `PoolGuard`); takes each waiting pwq's pool lock in turn.
pub(crate) fn activate_waiting(pod: &PodActive) {
    loop {
        if pod.nr_waiting.load(SeqCst) == 0 {
            return;
        }
        let Some(p) = pod.waiting.lock().pop_front() else {
            return;
        };
        pod.nr_waiting.fetch_sub(1, SeqCst);
        let mut g = p.pool.lock();
        if p.released.load(Relaxed) {
            continue;
        }
        g.pwqs[p.slot].waiting = false;
        let moved = activate_inactive(&mut g, &p);
        let more = !g.pwqs[p.slot].inactive.is_empty();
        if more {
            // No slot left for the rest: listed again (and looked at once
            // more, as in `insert_work`).
            wait_for_slot(&mut g, &p);
            activate_inactive(&mut g, &p);
        }
        if moved || !g.worklist.is_empty() {
            crate::pool::kick_pool(&mut g);
            if moved {
                // Behind a busy runner: watched, as a queuer's items are.
                crate::pool::note_pending_behind_runner(p.pool, &g);
            }
        }
        if more {
            return;
        }
    }
}

/// Move throttled items to the worklist while `max_active` allows. Returns
/// whether any moved (the pool should be kicked).
pub(crate) fn activate_inactive(g: &mut PoolState, pwq: &Pwq) -> bool {
    let mut moved = false;
    loop {
        let st = &mut g.pwqs[pwq.slot];
        if st.inactive.is_empty() {
            unlist(st, pwq);
            break;
        }
        if !try_active(st, pwq) {
            break;
        }
        let Some(work) = st.inactive.pop_front() else {
            break;
        };
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
    // (A pwq of a lane group whose slot another lane's pwq waits for
    // leaves that activation to the lock's release: `activate_pod`.)
    let st = &mut g.pwqs[pwq.slot];
    st.nr_in_flight[color as usize] -= 1;
    let mut kick = false;
    if active {
        st.nr_active -= 1;
        if let Some(pod) = &pwq.pod {
            pod.nr.fetch_sub(1, SeqCst);
        }
        if !st.inactive.is_empty() {
            kick = activate_inactive(g, pwq);
        }
        if let Some(pod) = &pwq.pod {
            if pod.nr_waiting.load(SeqCst) > 0 {
                // Another lane's pwq waits for this slot: activated once
                // this pool's lock is released (`PoolGuard`).
                g.activate_pod = Some(pod.clone());
            }
        }
    } else if st.inactive.is_empty() {
        // Its last throttled item was cancelled: it waits for no slot
        // (else the list would keep it, and `is_congested` say so).
        unlist(st, pwq);
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
    if let Some(pod) = &pwq.pod {
        pod.nr.fetch_sub(n, SeqCst);
    }
    mine.append(&mut st.inactive);
    std::mem::swap(&mut mine, &mut st.inactive);
}
