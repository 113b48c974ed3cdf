//! Worker pools and concurrency management.
//!
//! See `README.md` beside this file for how concurrency management and
//! block detection work. In short: a bound pool counts its *running*
//! workers (`nr_running`: executing an item and not known to be blocked)
//! and starts a worker on its worklist only while that count is zero; when
//! the last running worker blocks, an idle worker is woken at once.
//!
//! This folder is the library's essential knot: the pools (this file),
//! their workers (`worker.rs`), the pool-workqueue links (`pwq.rs`) and a
//! work item's queue-side state (`work.rs`, with its state word in
//! `work/state.rs`) share the pool lock and name each other, as the
//! kernel keeps them in one file. Every `nr_running` change is made here,
//! in this file. Everything else sits in layers above or below
//! (`src/LAYERS.md`).
//!
//! Field annotations follow kernel/workqueue.c; the legend and the lock
//! order are in `src/LOCKING.md` (`I:` set at creation, `L:` the pool
//! lock, `A:` atomic, ...).

pub(crate) mod pwq;
pub(crate) mod searchers;
pub(crate) mod work;
pub(crate) mod worker;

use std::io;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::sync::{Mutex, ShortMutex, ShortMutexGuard};

use crate::config::settings;
use crate::cpu_limit;
use crate::cpumask::CpuMask;
use crate::pool::pwq::{Pwq, PwqState};
use crate::pool::searchers::Searchers;
use crate::pool::work::WorkList;
use crate::pool::work::{Work, WorkInner};
use crate::pool::worker::Worker;
use crate::topology::topology;
use crate::util::{IdAlloc, Slab};

/// The worker is exiting.
pub(crate) const WORKER_DIE: u32 = 1 << 1;
/// The worker is on the idle list.
pub(crate) const WORKER_IDLE: u32 = 1 << 2;
/// The worker is preparing to work or going idle (not running).
pub(crate) const WORKER_PREP: u32 = 1 << 3;
/// The worker runs an item of a CPU_INTENSIVE workqueue, or a CPU hog.
pub(crate) const WORKER_CPU_INTENSIVE: u32 = 1 << 6;
/// The worker belongs to an unmanaged unbound pool (one serving a
/// `CPU_INTENSIVE` unbound workqueue): it never counts in `nr_running`.
pub(crate) const WORKER_UNBOUND: u32 = 1 << 7;
/// A rescuer attached to the pool for a while (G22). It keeps
/// `WORKER_PREP` (as the kernel's rescuer does), so it never counts in
/// `nr_running`, and it is never on the idle list nor in `nr_workers`.
pub(crate) const WORKER_RESCUER: u32 = 1 << 8;
/// An idle worker of a lane woken to search the sibling lanes for work
/// (`wakep`); it counts in its group's `searchers` until it has
/// looked.
pub(crate) const WORKER_SEARCH: u32 = 1 << 9;
/// Flags that keep a worker out of `nr_running`.
pub(crate) const WORKER_NOT_RUNNING: u32 = WORKER_PREP | WORKER_CPU_INTENSIVE | WORKER_UNBOUND;

/// Attributes of a pool; unbound pools are shared by equal attributes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PoolAttrs {
    /// Nice level asked for.
    pub(crate) nice: i32,
    /// CPUs the workers may run on.
    pub(crate) cpus: CpuMask,
    /// The affinity pod the pool serves (equal to `cpus` when strict).
    pub(crate) pod_cpus: CpuMask,
    /// Workers confined to the pod.
    pub(crate) strict: bool,
    /// Concurrency managed over the pod (G19): false only for the pools of
    /// `CPU_INTENSIVE` unbound workqueues, which keep the kernel's unbound
    /// behaviour (every item starts as soon as a worker can be had). Part of
    /// the key pools are shared by; whether the pool is managed also
    /// depends on the process detecting blocks ([`WorkerPool::managed`]).
    pub(crate) managed: bool,
}

/// What the pool knows of the item a worker executes. L.
#[derive(Clone, Copy)]
pub(crate) struct Current {
    /// The item (the worker holds a reference while executing).
    pub(crate) work: std::ptr::NonNull<WorkInner>,
    /// The execution's pwq (the worker holds a reference).
    pub(crate) pwq: *const Pwq,
    /// When the execution started (`util::coarse_ns`), for the watchdog's
    /// report.
    pub(crate) since: u64,
}

// SAFETY: `Current` holds addresses of objects the executing worker keeps
// alive while they are recorded here; they are only dereferenced under the
// pool lock, which the worker takes before releasing its references.
unsafe impl Send for Current {}

/// Who told the pool a worker is blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BlockedBy {
    /// The worker itself, inside `blocking()`: it says when it runs again.
    Hint,
    /// Detection (the monitor, a sentinel), which also says when it runs
    /// again, unless a hint took over.
    Monitor,
}

/// A worker as seen by its pool. L.
pub(crate) struct WorkerSlot {
    /// L: the worker's shared part.
    pub(crate) worker: Arc<Worker>,
    /// L: `WORKER_*` flags; changed through `update_worker` when they
    /// affect `nr_running`.
    pub(crate) flags: u32,
    /// L: known blocked, and who said so ([`BlockedBy`]); out of
    /// `nr_running` while set. The one record of a worker being blocked:
    /// detection's own state (`monitor::state`) only remembers what it
    /// told the pool.
    pub(crate) blocked: Option<BlockedBy>,
    /// L: it was known blocked at some point during the current item.
    pub(crate) blocked_in_item: bool,
    /// L: the current item was flagged a CPU hog.
    pub(crate) hog: bool,
    /// L: the execution in progress (set and cleared by the worker).
    pub(crate) current: Option<Current>,
    /// L: when it last went idle.
    pub(crate) last_active: Instant,
    /// L: its blocked spans in the current execution, while traced.
    pub(crate) blocked_spans: crate::trace::Blocked,
}

impl WorkerSlot {
    /// Insert a new slot for a worker with `flags` (plus `WORKER_PREP`, and
    /// `WORKER_UNBOUND` in an unmanaged pool) and return its worker, made
    /// for the slot it gets.
    pub(crate) fn insert(
        g: &mut PoolState,
        pool: &'static WorkerPool,
        id: u32,
        flags: u32,
    ) -> Arc<Worker> {
        let slot = g.workers.next_key();
        let w = Arc::new(Worker::new(pool, slot, id));
        let unbound = if pool.managed() { 0 } else { WORKER_UNBOUND };
        let got = g.workers.insert(WorkerSlot {
            worker: w.clone(),
            flags: flags | WORKER_PREP | unbound,
            blocked: None,
            blocked_in_item: false,
            hog: false,
            current: None,
            last_active: Instant::now(),
            blocked_spans: crate::trace::Blocked::default(),
        });
        debug_assert_eq!(got, slot);
        w
    }

    /// What a worker with an execution in progress is doing, as `dump()`
    /// and the control socket say it: known `blocked`, `cpu-intensive` (out
    /// of concurrency management, G16) or `running`.
    pub(crate) fn busy_state(&self) -> &'static str {
        if self.blocked.is_some() {
            "blocked"
        } else if self.flags & WORKER_CPU_INTENSIVE != 0 {
            "cpu-intensive"
        } else {
            "running"
        }
    }

    /// Counted in `nr_running`.
    #[inline]
    fn counts(&self) -> bool {
        self.flags & WORKER_NOT_RUNNING == 0 && self.blocked.is_none()
    }

    /// Counted against the CPU limit while its pool is limited
    /// ([`cpu_limit::RUNNING`]): it runs an item and is not blocked, CPU
    /// hogs and `CPU_INTENSIVE` items included (they use the quota too).
    #[inline]
    fn counts_for_limit(&self) -> bool {
        self.flags & (WORKER_NOT_RUNNING & !WORKER_CPU_INTENSIVE) == 0 && self.blocked.is_none()
    }
}

/// Whether a worker of this pool runs an item counted by the CPU limit
/// (G34): the monitor runs on such runners' CPUs
/// (`monitor::follow_limited_runners`). Under the pool lock.
pub(crate) fn holds_cpu_limit(g: &PoolState) -> bool {
    g.cpu_limited && g.workers.iter().any(|(_, ws)| ws.counts_for_limit())
}

/// Bumped (by the monitor) when a mask set from outside took their pin
/// away from threads the library pins to one CPU (`taskset -a -p` gives
/// every thread of the process the same mask: after it widens the mask
/// again they would run anywhere). A worker of a per-CPU pool or a lane
/// that sees it move pins itself to its CPU again before its next item
/// (`worker::repin_if_asked`: two relaxed loads per item otherwise), as
/// it did when it started (G14, G35). On a cache line of its own: every
/// item reads it, so no counter written on the queue path may share it.
pub(crate) static PIN_EPOCH: PinEpoch = PinEpoch(AtomicU64::new(0));

/// [`PIN_EPOCH`]'s cache line.
#[repr(align(64))]
pub(crate) struct PinEpoch(pub(crate) AtomicU64);

/// A worker of a per-CPU pool or a lane whose CPU is in its own mask but
/// that is not pinned to it: the mask it has (an outside change gave every
/// thread that one). Looks at the first worker of each such pool (one
/// `sched_getaffinity` each); the monitor asks only where no sentinel
/// stands for all (`sentinel::lost_pin`). No pool lock is held across the
/// system call.
pub(crate) fn lost_pin() -> Option<CpuMask> {
    let pools = pools_if_started()?;
    for pool in pools.all() {
        if !pool.bound() && pool.lane.is_none() {
            continue;
        }
        let tid = pool
            .lock()
            .workers
            .iter()
            .map(|(_, ws)| ws.worker.tid.load(Relaxed))
            .find(|&t| t > 0);
        let Some(cpu) = pool.attrs.cpus.first() else {
            continue;
        };
        if let Some(mask) = tid.and_then(|t| crate::topology::lost_pin_of(t, cpu)) {
            return Some(mask);
        }
    }
    None
}

/// Locked state of a pool. L.
pub(crate) struct PoolState {
    /// L: active items waiting for a worker, FIFO.
    pub(crate) worklist: WorkList,
    /// L: workers executing and not blocked (managed pools only); changed
    /// only by `update_worker`.
    pub(crate) nr_running: u32,
    /// I: how many running workers the pool keeps while it has pending
    /// work: 1 for a bound pool, the pod's usable CPUs for a managed
    /// unbound one (G15, G19). Kept here, beside `nr_running`, so the
    /// rules below read one cache line.
    pub(crate) concurrency: u32,
    /// L: workers of the pool (idle or not).
    pub(crate) nr_workers: u32,
    /// L: workers on the idle list.
    pub(crate) nr_idle: u32,
    /// L: idle workers' slots; the last is the most recently idle (LIFO).
    pub(crate) idle: Vec<usize>,
    /// L: the workers.
    pub(crate) workers: Slab<WorkerSlot>,
    /// L: locked state of the pwqs feeding this pool (check
    /// `Pwq::released` before using a pwq's slot).
    pub(crate) pwqs: Slab<PwqState>,
    /// L: a worker (or the monitor, or a queuer) is creating a worker.
    pub(crate) manager_active: bool,
    /// L: creation failed: no new attempt before this instant (counted in
    /// `NR_STALLED` while set).
    pub(crate) create_retry_at: Option<Instant>,
    /// L: worker ids (N in `kworker/C:N`).
    ids: IdAlloc,
    /// L: executions completed (progress, for the monitor and watchdog).
    pub(crate) nr_completed: u64,
    /// L: executions started (progress, for the watchdog).
    pub(crate) nr_started: u64,
    /// L: a worker creation is slow or failing while rescuers exist: when
    /// the pool's mayday timer fires (the kernel's `mayday_timer`; see
    /// `rescuer.rs`).
    pub(crate) mayday_at: Option<Instant>,
    /// I: the pool's lane group and its index there (a copy of
    /// [`WorkerPool::lane`], so the rules below read it with the counts).
    pub(crate) lane: Option<(&'static Lanes, usize)>,
    /// L: a slot freed in this shared active count while a pwq of another
    /// lane waited for one (`pwq::dec_nr_in_flight`): its items are
    /// activated once the lock is released (`PoolGuard`).
    pub(crate) activate_pod: Option<Arc<pwq::PodActive>>,
    /// L: workers of this lane taking items from a sibling ([`steal`]),
    /// its lock released meanwhile: the lane has no runner yet, but one is
    /// on its way, so a sentinel wakes nobody more ([`idle_lane_spare`]).
    pub(crate) stealing: u32,
    /// L: a lane's standby: whether it keeps one runner more than
    /// `concurrency` because its items block often ([`standby_tick`]).
    pub(crate) standby: Standby,
    /// L: a spreading pool under the CPU limit (G34): its workers that
    /// count for it are counted in [`cpu_limit::RUNNING`], and it starts a
    /// runner only while a slot is free ([`running_target`]). Set and
    /// cleared by [`apply_cpu_limit`], with the count adjusted.
    pub(crate) cpu_limited: bool,
    /// L: a worker of this limited pool gave back its slot: once the lock
    /// is released, a limited pool with items waiting is woken
    /// ([`wake_limited`]).
    pub(crate) limit_freed: bool,
}

/// A lane's standby (the issue of blocks that each cost an idle moment and
/// a detection): while the lane's items block at least
/// [`STANDBY_ON_PER_S`] times a second, it keeps one more runner than
/// its CPU, so that when one blocks the scheduler switches to the other at
/// once, as it does between the kernel's tolerated extra runners and
/// IOCP's "temporary excess"; below [`STANDBY_OFF_PER_S`] the extra runner
/// is shed at its next item boundary (`keep_working`). At most one per
/// lane. Annotations: `src/LOCKING.md`.
#[derive(Default)]
pub(crate) struct Standby {
    /// L: the lane keeps one runner more.
    pub(crate) on: bool,
    /// L: blocks of its runners since `since` (coarse ns; 0: not begun).
    blocks: u32,
    since: u64,
}

/// The window over which a lane's block rate is judged.
pub(crate) const STANDBY_WINDOW_NS: u64 = 100_000_000;
/// Blocks a second (over a window) from which a lane keeps a standby.
pub(crate) const STANDBY_ON_PER_S: u64 = 200;
/// Blocks a second below which a lane with a standby sheds it.
pub(crate) const STANDBY_OFF_PER_S: u64 = 50;

/// Whether a lane keeps a standby after a window of `elapsed_ns` in which
/// its runners blocked `blocks` times, having kept one (`on`) or not
/// (hysteresis between [`STANDBY_ON_PER_S`] and [`STANDBY_OFF_PER_S`]).
pub(crate) fn standby_verdict(on: bool, blocks: u32, elapsed_ns: u64) -> bool {
    let per_s = u64::from(blocks).saturating_mul(1_000_000_000) / elapsed_ns.max(1);
    per_s
        >= if on {
            STANDBY_OFF_PER_S
        } else {
            STANDBY_ON_PER_S
        }
}

/// A lane's runner starts an item at `now` (coarse ns): once a window has
/// passed, judge the lane's block rate ([`standby_verdict`]) and start the
/// next window. A standby taken on is started by the kick that follows
/// the start; one given up leaves at its next item boundary.
#[inline]
pub(crate) fn standby_tick(g: &mut PoolState, now: u64) {
    if g.lane.is_none() {
        return;
    }
    let sb = &mut g.standby;
    if sb.since == 0 {
        sb.since = now;
        return;
    }
    let elapsed = now.saturating_sub(sb.since);
    if elapsed < STANDBY_WINDOW_NS {
        return;
    }
    sb.on = standby_verdict(sb.on, sb.blocks, elapsed);
    sb.blocks = 0;
    sb.since = now;
}

/// How many running workers the pool keeps while it has pending work: its
/// `concurrency`, and a lane's standby while every sibling lane has a
/// runner (a sibling with none takes the lane's items instead: the extra
/// runner never keeps a CPU idle).
#[inline]
fn running_target(g: &PoolState) -> u32 {
    if g.cpu_limited {
        // Under the CPU limit (G34): as many as its slots allow, no standby.
        return g
            .concurrency
            .min(g.nr_running.saturating_add(cpu_limit::free()));
    }
    let extra = g.standby.on && g.lane.is_some_and(|(l, me)| l.all_busy(me));
    g.concurrency + u32::from(extra)
}

impl PoolState {
    /// The slot of worker `w` if it is still in the pool and still runs
    /// execution `exec` (a worker seen running may have finished, gone
    /// idle and exited since, and its slot been reused by another).
    pub(crate) fn running_slot(&self, w: &Worker, exec: u64) -> Option<&WorkerSlot> {
        let ws = self.workers.get(w.slot)?;
        (std::ptr::eq(Arc::as_ptr(&ws.worker), w)
            && ws.current.is_some()
            && w.exec_seq.load(Relaxed) == exec)
            .then_some(ws)
    }
}

/// A worker pool.
pub(crate) struct WorkerPool {
    /// I: the pool id shown by `dump()`.
    pub(crate) id: u32,
    /// I: the CPU of a bound pool.
    pub(crate) cpu: Option<usize>,
    /// I: highpri pool (nice -20).
    pub(crate) highpri: bool,
    /// I: nice level and CPUs.
    pub(crate) attrs: PoolAttrs,
    /// I: concurrency managed: bound, or unbound with `attrs.managed` in a
    /// process that detects blocks (with the hint alone, an unbound pool
    /// keeps the kernel's unmanaged behaviour: items that wait for each
    /// other without the hint must not stall it).
    managed: bool,
    /// The pool lock (`L:`): everything in [`PoolState`].
    pub(crate) lock: ShortMutex<PoolState>,
    /// A: the nice level workers actually got (G20).
    pub(crate) nice_actual: AtomicI32,
    /// A: the monitor watches this pool (it had pending work behind a
    /// running worker). Set by queuers, cleared by the monitor.
    pub(crate) watched: AtomicBool,
    /// A: copy of `nr_completed` for lock-free progress checks.
    pub(crate) completed: AtomicU64,
    /// A: the sentinels of the pool's CPUs are armed (or there are no
    /// sentinels). Set by queuers that put an item behind a running
    /// worker, cleared by a sentinel that disarms (`monitor/sentinel.rs`).
    /// A lane uses its group's flag instead ([`WorkerPool::armed_flag`]).
    pub(crate) sentinels_armed: AtomicBool,
    /// I: the lane group this pool is a lane of, and its index there
    /// (managed unbound pools are groups of per-CPU lanes, see "Lanes").
    pub(crate) lane: Option<(&'static Lanes, usize)>,
    /// A: the worklist's length, published (SeqCst) by every holder of the
    /// lock when it releases it, and by queuers right after they link an
    /// item: what searching siblings and sentinels read without the lock.
    pub(crate) queued: AtomicU32,
    /// A: `nr_running`, published with `queued`.
    pub(crate) running: AtomicU32,
    /// A: `nr_idle`, published with `queued`.
    pub(crate) idle_workers: AtomicU32,
}

/// The pool lock's guard. A kick that finds the pool needs a worker
/// nobody is creating ([`kick_pool`]) is recorded here, and the worker is
/// created when the lock is released, by dropping the guard or by
/// [`PoolGuard::unlocked`]: kicking is one call, under the lock, and its
/// follow-up cannot be forgotten (the kernel's kick_pool wakes a worker
/// and leaves creation to the manager; here whoever unlocks manages).
pub(crate) struct PoolGuard {
    /// The lock itself (released in `drop`).
    g: ManuallyDrop<ShortMutexGuard<'static, PoolState>>,
    /// The pool it locks.
    pool: &'static WorkerPool,
    /// A kick needs a worker created once the lock is released.
    create: bool,
    /// A kick found items waiting behind this lane's runner: wake a
    /// searcher in a sibling lane once the lock is released.
    search: bool,
}

impl PoolGuard {
    /// Run `f` with the lock released, creating first the worker a kick
    /// asked for.
    #[inline]
    pub(crate) fn unlocked<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let create = std::mem::take(&mut self.create);
        let search = std::mem::take(&mut self.search);
        let activate = self.g.activate_pod.take();
        let freed = std::mem::take(&mut self.g.limit_freed);
        let pool = self.pool;
        publish(pool, &self.g);
        ShortMutexGuard::unlocked(&mut self.g, || {
            if let Some(pod) = activate {
                pwq::activate_waiting(&pod);
            }
            if create {
                ensure_worker(pool);
            }
            if search {
                wakep(pool);
            }
            if freed {
                wake_limited_from(pool);
            }
            f()
        })
    }

    /// Forget a kick's request for a worker: the caller never creates
    /// workers (a rescuer: creation is what is failing, and the monitor
    /// keeps retrying it; or the creator whose attempt just failed, which
    /// the cooldown retries).
    #[inline]
    pub(crate) fn no_create(&mut self) {
        self.create = false;
        // Waking a searcher may create a worker in a sibling lane.
        self.search = false;
    }
}

impl std::ops::Deref for PoolGuard {
    type Target = PoolState;
    #[inline]
    fn deref(&self) -> &PoolState {
        &self.g
    }
}

impl std::ops::DerefMut for PoolGuard {
    #[inline]
    fn deref_mut(&mut self) -> &mut PoolState {
        &mut self.g
    }
}

impl Drop for PoolGuard {
    #[inline]
    fn drop(&mut self) {
        publish(self.pool, &self.g);
        let activate = self.g.activate_pod.take();
        let freed = std::mem::take(&mut self.g.limit_freed);
        // SAFETY: `g` is dropped here only, once; the guard is not used
        // after.
        unsafe { ManuallyDrop::drop(&mut self.g) };
        if let Some(pod) = activate {
            pwq::activate_waiting(&pod);
        }
        if self.create {
            ensure_worker(self.pool);
        }
        if self.search {
            wakep(self.pool);
        }
        if freed {
            wake_limited_from(self.pool);
        }
    }
}

impl WorkerPool {
    fn new(
        id: u32,
        cpu: Option<usize>,
        highpri: bool,
        attrs: PoolAttrs,
        detects: bool,
        lane: Option<(&'static Lanes, usize)>,
    ) -> WorkerPool {
        // A bound pool and a lane keep one runner; a plain unbound pool
        // its pod's usable CPUs (unmanaged: not used).
        let concurrency = if cpu.is_some() || lane.is_some() {
            1
        } else {
            pod_concurrency(&attrs.pod_cpus)
        };
        let managed = cpu.is_some() || lane.is_some() || (attrs.managed && detects);
        WorkerPool {
            managed,
            id,
            cpu,
            highpri,
            nice_actual: AtomicI32::new(attrs.nice),
            attrs,
            lock: ShortMutex::new(PoolState {
                worklist: WorkList::new(),
                nr_running: 0,
                concurrency,
                nr_workers: 0,
                nr_idle: 0,
                idle: Vec::new(),
                workers: Slab::default(),
                pwqs: Slab::default(),
                manager_active: false,
                create_retry_at: None,
                ids: IdAlloc::default(),
                nr_completed: 0,
                nr_started: 0,
                mayday_at: None,
                lane,
                activate_pod: None,
                stealing: 0,
                standby: Standby::default(),
                cpu_limited: managed && cpu.is_none() && cpu_limit::limit().is_some(),
                limit_freed: false,
            }),
            watched: AtomicBool::new(false),
            completed: AtomicU64::new(0),
            sentinels_armed: AtomicBool::new(false),
            lane,
            queued: AtomicU32::new(0),
            running: AtomicU32::new(0),
            idle_workers: AtomicU32::new(0),
        }
    }

    #[inline]
    pub(crate) fn lock(&'static self) -> PoolGuard {
        PoolGuard {
            g: ManuallyDrop::new(self.lock.lock()),
            pool: self,
            create: false,
            search: false,
        }
    }

    /// The flag a queuer sets when it arms the sentinels for this pool: a
    /// lane's group shares one, since every CPU of the group may take the
    /// lane's work (a sentinel whose own lane is idle wakes a thief).
    #[inline]
    pub(crate) fn armed_flag(&self) -> &AtomicBool {
        match self.lane {
            Some((l, _)) => &l.sentinels_armed,
            None => &self.sentinels_armed,
        }
    }

    /// The CPUs whose sentinels watch this pool: a bound pool's CPU, an
    /// unbound pool's CPUs, a lane's whole group.
    pub(crate) fn watch_cpus(&self) -> &CpuMask {
        match self.lane {
            Some((l, _)) => &l.cpus,
            None => &self.attrs.cpus,
        }
    }

    /// A per-CPU pool.
    #[inline]
    pub(crate) fn bound(&self) -> bool {
        self.cpu.is_some()
    }

    /// Concurrency managed: a bound pool, or an unbound one that does not
    /// serve a `CPU_INTENSIVE` workqueue, in a process that detects blocks
    /// (G15, G19).
    #[inline]
    pub(crate) fn managed(&self) -> bool {
        self.managed
    }

    /// The thread name of worker `id` (G28).
    pub(crate) fn worker_name(&self, id: u32) -> String {
        match self.cpu {
            Some(c) => format!("kworker/{c}:{id}{}", if self.highpri { "H" } else { "" }),
            None => format!("kworker/u{}:{id}", self.id),
        }
    }

    /// A short description for reports: `cpu 3`, `cpu 3 highpri`,
    /// `unbound pool 9`.
    pub(crate) fn describe(&self) -> String {
        match self.cpu {
            Some(c) if self.highpri => format!("cpu {c} highpri (pool {})", self.id),
            Some(c) => format!("cpu {c} (pool {})", self.id),
            None if self.lane.is_some() => {
                let (l, i) = self.lane.expect("a lane");
                format!(
                    "unbound lane {i} cpu {} of cpus {} (pool {}, managed, 1 running)",
                    self.attrs.cpus.to_list(),
                    l.cpus.to_list(),
                    self.id
                )
            }
            None if self.managed() => format!(
                "unbound pool {} cpus {} (managed, {} running)",
                self.id,
                self.attrs.pod_cpus.to_list(),
                pod_concurrency(&self.attrs.pod_cpus)
            ),
            None => format!(
                "unbound pool {} cpus {} (unmanaged)",
                self.id,
                self.attrs.pod_cpus.to_list()
            ),
        }
    }
}

/// The running workers a managed unbound pool keeps: the CPUs of its pod
/// the process may use (at least one).
fn pod_concurrency(pod: &CpuMask) -> u32 {
    let usable = pod.and(&topology().allowed).count();
    usable.max(1) as u32
}

/// Work a worker of this pool could start: its worklist, or for a lane,
/// a sibling's items waiting behind a busy runner, which it may steal.
#[inline]
pub(crate) fn has_pending(g: &PoolState) -> bool {
    !g.worklist.is_empty() || g.lane.is_some_and(|(l, me)| l.backlog(me))
}

/// Need to wake up a worker? (the kernel's need_more_worker, for a pool
/// that keeps `concurrency` workers running: 1 on a bound pool and a lane)
#[inline]
pub(crate) fn need_more_worker(g: &PoolState) -> bool {
    g.nr_running < running_target(g) && has_pending(g)
}

/// Items wait with nobody running and no idle worker to wake: only a new
/// worker (or a rescuer) can run them (the kernel's need_to_create_worker).
#[inline]
pub(crate) fn need_to_create_worker(g: &PoolState) -> bool {
    need_more_worker(g) && !may_start_working(g)
}

/// Can a worker that just left idle start working? (may_start_working)
#[inline]
pub(crate) fn may_start_working(g: &PoolState) -> bool {
    g.nr_idle > 0
}

/// Should a running worker go on with the next item? (keep_working: at
/// most one worker more than the pool keeps running goes on)
#[inline]
pub(crate) fn keep_working(g: &PoolState) -> bool {
    !g.worklist.is_empty()
        && g.nr_running <= running_target(g)
        && !(g.cpu_limited && cpu_limit::over())
}

/// Too many idle workers? (too_many_workers: more than 2 idle and
/// (idle - 2) * 4 >= busy, G21)
#[inline]
pub(crate) fn too_many_workers(g: &PoolState) -> bool {
    let idle = g.nr_idle;
    let busy = g.nr_workers - idle;
    idle > 2 && (idle - 2) * 4 >= busy
}

/// Is this pool retired? An unbound pool that no workqueue uses any more
/// (no pwq links it: `pwqs` is empty, the kernel's `pool->refcnt` at 0):
/// its idle workers leave as soon as they are woken for it
/// ([`maybe_retire_pool`] wakes them), not at the idle timeout. Bound
/// pools never retire. Where a retired pool gets a pwq again (a workqueue
/// with the same attrs), its workers stay. Under the pool lock, which
/// `Pwq::new` and `Pwq::try_release` hold to link and unlink a pwq.
#[inline]
pub(crate) fn pool_retired(pool: &WorkerPool, g: &PoolState) -> bool {
    !pool.bound() && g.pwqs.is_empty()
}

/// What an idle worker does when its park ends ([`idle_verdict`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Idle {
    /// Leave idle and look for work (it was woken, or work waits).
    Work,
    /// Park again, for at most this long.
    Park(std::time::Duration),
    /// Exit: the pool is retired, or has idle workers to spare (G21), or
    /// the worker gives its thread to another pool at the thread limit.
    Leave,
}

/// How long an idle worker parks when it goes idle: the idle timeout,
/// whatever the pool's state (a rule that depends on it, such as a grace
/// period for an unused pool, reads `pool` and `g`). Later parks last what
/// [`idle_verdict`] says. Under the pool lock.
#[inline]
pub(crate) fn idle_park_for(_pool: &WorkerPool, _g: &PoolState) -> std::time::Duration {
    settings().idle_timeout
}

/// An idle worker's park ended, by a wake-up (`woken`) or at its timeout
/// (the first park lasts [`idle_park_for`]; later ones what this
/// returned): work, park again or leave. Every way an idle worker leaves
/// is decided here:
/// - asked to give way to another pool at the thread limit
///   (`WORKER_DIE`, set by `give_way_for`): it leaves, unless its own pool
///   got work meanwhile, when it stays (the flag cleared) and works;
/// - work waits that the pool may start, or it was woken and its pool is
///   not retired: work;
/// - a retired pool's ([`pool_retired`]) idle workers leave when woken for
///   it (by [`maybe_retire_pool`]);
/// - a worker that sat out the idle timeout leaves if the pool has more
///   idle workers than the kernel's rule allows ([`too_many_workers`],
///   G21).
///
/// Under the pool lock.
#[inline]
pub(crate) fn idle_verdict(pool: &WorkerPool, g: &mut PoolState, slot: usize, woken: bool) -> Idle {
    let timeout = settings().idle_timeout;
    if g.workers[slot].flags & WORKER_DIE != 0 {
        if !need_more_worker(g) {
            return Idle::Leave;
        }
        g.workers[slot].flags &= !WORKER_DIE;
        return Idle::Work;
    }
    let retired = pool_retired(pool, g);
    if need_more_worker(g) || (woken && !retired) {
        Idle::Work
    } else if retired || (too_many_workers(g) && g.workers[slot].last_active.elapsed() >= timeout) {
        Idle::Leave
    } else {
        Idle::Park(timeout)
    }
}

/// Change a worker's flags or blocked state, keeping `nr_running` equal to
/// the number of workers that count (and, in a pool under the CPU limit,
/// [`cpu_limit::RUNNING`] to those that count for it). Returns true if the
/// change took a slot of the CPU limit that was not free (the caller that
/// starts a runner gives it back: [`took_over_limit`]).
#[inline]
pub(crate) fn update_worker(
    g: &mut PoolState,
    slot: usize,
    f: impl FnOnce(&mut WorkerSlot),
) -> bool {
    let limited = g.cpu_limited;
    let ws = &mut g.workers[slot];
    let before = ws.counts();
    // Only a pool under the CPU limit pays for its count.
    let before_limit = limited && ws.counts_for_limit();
    let was_blocked = ws.blocked.is_some();
    f(ws);
    let blocked = ws.blocked.is_some();
    if blocked != was_blocked && crate::trace::on() {
        ws.blocked_spans.change(blocked, crate::util::mono_ns());
    }
    let after = ws.counts();
    let after_limit = limited && ws.counts_for_limit();
    match (before, after) {
        (false, true) => g.nr_running += 1,
        (true, false) => g.nr_running -= 1,
        _ => {}
    }
    if !limited {
        return false;
    }
    match (before_limit, after_limit) {
        (false, true) => cpu_limit::RUNNING.fetch_add(1, SeqCst) >= cpu_limit::LIMIT.load(SeqCst),
        (true, false) => {
            cpu_limit::RUNNING.fetch_sub(1, SeqCst);
            g.limit_freed = true;
            false
        }
        _ => false,
    }
}

/// A worker about to run items in a pool under the CPU limit (its
/// `WORKER_PREP` just cleared) took a slot that another pool took first
/// (`over`: what [`update_worker`] returned): it gives it back and does
/// not run. Whoever holds the slot gives it back in turn, which wakes a
/// limited pool with items waiting ([`wake_limited`]).
pub(crate) fn took_over_limit(g: &mut PoolState, slot: usize, over: bool) -> bool {
    if over && g.cpu_limited {
        update_worker(g, slot, |ws| ws.flags |= WORKER_PREP);
        return true;
    }
    false
}

/// A slot was given back by a worker of `pool`: wake a limited pool now,
/// or, on a sentinel (`SCHED_IDLE`: it must not take other pools' locks
/// and wake their workers), have the monitor do it.
fn wake_limited_from(pool: &'static WorkerPool) {
    if detector().defer_creation() {
        // The monitor wakes the limited pools with what it creates.
        return;
    }
    wake_limited(Some(pool));
}

/// Bring the spreading pools under the CPU limit `limit`, or out of it
/// (G34): store it, then have every managed unbound pool count its running
/// workers in [`cpu_limit::RUNNING`] or stop counting them. Idempotent:
/// the monitor calls it again with what it re-reads, which also takes in a
/// pool made while this ran. A pool whose allowance grew is woken.
pub(crate) fn apply_cpu_limit(limit: Option<u32>) {
    let Some(pools) = pools_if_started() else {
        cpu_limit::LIMIT.store(limit.unwrap_or(u32::MAX), SeqCst);
        return;
    };
    let old = cpu_limit::LIMIT.swap(limit.unwrap_or(u32::MAX), SeqCst);
    // After the store: a pool made from now on reads the new limit (under
    // `Pools::all`'s lock, which `all()` takes).
    for pool in pools.all() {
        if !pool.managed() || pool.bound() {
            continue;
        }
        let mut g = pool.lock();
        let want = limit.is_some();
        if g.cpu_limited != want {
            let n = g
                .workers
                .iter()
                .filter(|(_, ws)| ws.counts_for_limit())
                .count() as u32;
            if want {
                cpu_limit::RUNNING.fetch_add(n, SeqCst);
            } else {
                cpu_limit::RUNNING.fetch_sub(n, SeqCst);
            }
            g.cpu_limited = want;
        }
        if limit.unwrap_or(u32::MAX) > old {
            // More may run now, watched by sentinels that disarmed while
            // the limit held their lanes back (a lane runner under a limit
            // arms its own at each item start; without one, nothing
            // would).
            kick_pool(&mut g);
            if has_pending(&g) {
                detector().arm_sentinels(pool);
            }
        }
    }
}

/// A slot of the CPU limit was given back by a worker of `from` (its lock
/// released): wake one limited pool that has items waiting and no runner
/// it may start, beginning after `from` so that the pools take turns.
/// Called without any pool lock.
pub(crate) fn wake_limited(from: Option<&'static WorkerPool>) {
    let free = cpu_limit::free();
    if free == 0 {
        return;
    }
    let Some(pools) = pools_if_started() else {
        return;
    };
    let all = pools.all();
    // `from` first: its own spare (woken by the block that freed the
    // slot, or about to be) takes it before another pool's.
    let start = from
        .and_then(|f| all.iter().position(|p| std::ptr::eq(*p, f)))
        .unwrap_or(0);
    let mut on_the_way = 0;
    for k in 0..all.len() {
        let pool = all[(start + k) % all.len()];
        if !pool.managed() || pool.bound() {
            continue;
        }
        let mut g = pool.lock();
        if !g.cpu_limited || !need_more_worker(&g) {
            continue;
        }
        // A worker already woken and not yet running will take a slot:
        // count it rather than wake it again (a second kick of the same
        // worker would stand for a wake that never happens).
        let awake = g
            .idle
            .last()
            .is_some_and(|&s| !g.workers[s].worker.parker.parked());
        if awake
            || matches!(
                kick_pool(&mut g),
                Kick::Woken | Kick::NeedWorker | Kick::Pending
            )
        {
            on_the_way += 1;
            if on_the_way >= free {
                return;
            }
        }
    }
}

// ------------------------------------------------------------ the detector

/// Block detection and the monitor thread as the pools see them: the layer
/// above (`monitor`) installs itself with [`set_detector`] when it starts,
/// which `init::start` does before any workqueue exists. Until then, and
/// in a process that never starts it, [`NoDetector`] stands in: nothing is
/// watched and nothing wakes (items still run; blocks go unnoticed unless
/// hinted). Every call the pools and workers make to detection goes
/// through here, so this trait is the whole interface between the two.
pub(crate) trait Detector: Sync {
    /// Wake the monitor thread: a pool became watched, its mayday timer or
    /// the watchdog was armed, or a worker creation failed (the monitor
    /// retries it after the cooldown). Cheap enough to call under a pool
    /// lock (an eventfd write).
    fn wake(&self);
    /// Items wait behind a running worker of `pool`: arm the sentinels of
    /// its CPUs. Called under the pool lock, after the item was put on the
    /// worklist.
    fn arm_sentinels(&self, pool: &'static WorkerPool);
    /// A worker of a lane under the CPU limit starts running on `cpu`: arm
    /// that CPU's sentinel, which may have disarmed while the limit held
    /// the lane back (G34).
    fn arm_sentinel_of(&self, cpu: usize);
    /// Whether the calling thread must not create a worker (a thread it
    /// starts would inherit its scheduling policy, as on a sentinel). If
    /// so it has recorded that one is wanted: the monitor creates it.
    fn defer_creation(&self) -> bool;
    /// A thread could be had: start the monitor thread if it could not
    /// start before.
    fn ensure_running(&self);
    /// No worker could be created for items that wait, for want of a
    /// thread, and creations have failed so for `failing_for_ns`: give up
    /// one of detection's optional threads (a sentinel, then the monitor)
    /// so that the next creation has it. Whether one was asked to go.
    fn retire_helper(&self, failing_for_ns: u64) -> bool;
    /// The monitor thread runs. While it does not, waiters retry stalled
    /// worker creations themselves ([`wait_on`]).
    fn running(&self) -> bool;
    /// A worker thread starts: set up what watching it needs.
    fn worker_started(&self, w: &Worker);
    /// The calling worker enters a hinted block (`quiet`) or leaves it.
    fn worker_quiet(&self, w: &Worker, quiet: bool);
    /// The calling worker parks idle (`woke` false) or woke from idle
    /// (true): it may start running an item nothing recorded it taking.
    fn worker_idle(&self, w: &Worker, woke: bool);
}

/// The detector before (or without) the monitor: nothing is watched.
pub(crate) struct NoDetector;

impl Detector for NoDetector {
    fn wake(&self) {}
    fn arm_sentinels(&self, _: &'static WorkerPool) {}
    fn arm_sentinel_of(&self, _: usize) {}
    fn defer_creation(&self) -> bool {
        false
    }
    fn ensure_running(&self) {}
    fn retire_helper(&self, _failing_for_ns: u64) -> bool {
        false
    }
    fn running(&self) -> bool {
        true
    }
    fn worker_started(&self, _: &Worker) {}
    fn worker_quiet(&self, _: &Worker, _: bool) {}
    fn worker_idle(&self, _: &Worker, _: bool) {}
}

static DETECTOR: OnceLock<&'static dyn Detector> = OnceLock::new();

/// Install the detector (once; later calls are ignored).
pub(crate) fn set_detector(d: &'static dyn Detector) {
    let _ = DETECTOR.set(d);
}

/// Whether the monitor installed itself (`init::start` has run).
pub(crate) fn detector_installed() -> bool {
    DETECTOR.get().is_some()
}

/// The installed detector, or [`NoDetector`].
#[inline]
pub(crate) fn detector() -> &'static dyn Detector {
    match DETECTOR.get() {
        Some(d) => *d,
        None => &NoDetector,
    }
}

// ---------------------------------------------------- safety-net triggers

/// Rescuers alive (`rescuer.rs` counts them). Pools arm mayday timers only
/// while there is one (a process without `MEM_RECLAIM` workqueues pays
/// nothing).
pub(crate) static NR_RESCUERS: AtomicUsize = AtomicUsize::new(0);

/// A pool begins creating a worker (under its lock): arm its mayday timer
/// (`mayday_at`, the kernel's `pool->mayday_timer` armed in
/// `maybe_create_worker`) if rescuers exist and it is not armed. Returns
/// whether the caller must wake the monitor (after dropping the lock),
/// which fires the timer (`rescuer::mayday_check`).
fn arm_mayday(g: &mut PoolState) -> bool {
    if NR_RESCUERS.load(Relaxed) == 0 || g.mayday_at.is_some() {
        return false;
    }
    g.mayday_at = Some(Instant::now() + settings().mayday_timeout);
    true
}

/// A: the stall watchdog is checking (some pool had items waiting at its
/// last check, or a queue armed it since); `watchdog.rs` disarms it.
/// Disabled watchdog: stays true, so queuers never arm it.
pub(crate) static WATCHDOG_ARMED: AtomicBool = AtomicBool::new(false);

/// An item was put on a pool's worklist (called under that pool's lock):
/// one relaxed load, unless the watchdog must be armed (the kernel's
/// `wq_watchdog_touch`, inverted: here the watchdog only ticks while armed).
#[inline]
pub(crate) fn touch_watchdog() {
    if !WATCHDOG_ARMED.load(Relaxed) {
        arm_watchdog();
    }
}

#[cold]
fn arm_watchdog() {
    if settings().watchdog_thresh.is_none() {
        WATCHDOG_ARMED.store(true, Relaxed);
        return;
    }
    if !WATCHDOG_ARMED.swap(true, AcqRel) {
        detector().wake();
    }
}

// ---------------------------------------------- blocked and running again

/// The pool's half of [`worker_sleeping`](crate::pool::worker::worker_sleeping)
/// (the kernel's wq_worker_sleeping), for a caller holding the lock: the
/// worker in `slot` is known blocked, `by` the hint or detection; it
/// leaves `nr_running`, and if that leaves too few running while items
/// wait, an idle worker is woken (or one created once the lock is
/// released). Returns whether one was woken.
pub(crate) fn mark_blocked(g: &mut PoolGuard, slot: usize, by: BlockedBy) -> bool {
    if !set_blocked(g, slot, by) {
        return false;
    }
    let woke = kick_pool(g) == Kick::Woken;
    if woke {
        count_cm_wakeup(g, slot);
    }
    woke
}

/// What a sentinel does once it has released the pool lock, after
/// [`mark_blocked_wake_later`].
#[must_use = "the spare is woken, or a worker asked for, after the unlock"]
pub(crate) enum Spare {
    /// The runner was not newly marked blocked: nothing changed.
    Unchanged,
    /// Marked blocked; no item waits for another worker.
    NotNeeded,
    /// Marked blocked; wake this idle worker.
    Wake(Arc<Worker>),
    /// Marked blocked; no worker is idle: one must be created (not by a
    /// sentinel, whose threads inherit `SCHED_IDLE`).
    Create,
}

/// [`mark_blocked`] for a sentinel that found the runner in `slot`
/// blocked: the same state change, but the spare is woken by the caller
/// after it releases the lock, and a missing one is not created here. The
/// sentinel runs at `SCHED_IDLE` and the spare it wakes (pinned to the
/// same CPU for a bound pool) preempts it at once: woken under the lock,
/// the spare would find the lock held by a thread that may then stay off
/// the CPU for milliseconds while anything else is runnable there. Waking
/// after the unlock is safe: the woken worker looks at the pool again
/// under its lock, and if another kick woke it first, the worker that
/// starts an item chain-wakes the next.
pub(crate) fn mark_blocked_wake_later(g: &mut PoolState, slot: usize) -> Spare {
    if !set_blocked(g, slot, BlockedBy::Monitor) {
        return Spare::Unchanged;
    }
    if !need_more_worker(g) {
        return Spare::NotNeeded;
    }
    match g.idle.last() {
        Some(&idle) => {
            let spare = g.workers[idle].worker.clone();
            count_cm_wakeup(g, slot);
            Spare::Wake(spare)
        }
        None => Spare::Create,
    }
}

/// A lane without a runner while a sibling's items wait behind its busy
/// runner, found by the sentinel of the lane's CPU (which runs because
/// that CPU idles): its most recently idle worker is woken, after the
/// sentinel unlocks, and steals them; or one must be created.
pub(crate) fn idle_lane_spare(g: &mut PoolState) -> Spare {
    if g.lane.is_none() || g.stealing > 0 || !need_more_worker(g) {
        return Spare::NotNeeded;
    }
    match g.idle.last() {
        // Awake (spinning before it parks, or woken and on its way to the
        // lock): it looks at the siblings before it sleeps, and this CPU's
        // sentinel runs again once it does.
        Some(&idle) if !g.workers[idle].worker.parker.parked() => Spare::NotNeeded,
        Some(&idle) => Spare::Wake(g.workers[idle].worker.clone()),
        None if g.manager_active => Spare::NotNeeded,
        None => Spare::Create,
    }
}

/// The runner in `slot` is known blocked, `by` the hint or detection: it
/// leaves `nr_running`. False if it runs no item, or was known blocked
/// already (a hint then takes over the monitor's mark: the worker itself
/// will say when it runs again, and the monitor's view, which may lag and
/// sees nothing while the ring is off inside blocking(), must not clear it
/// before).
fn set_blocked(g: &mut PoolState, slot: usize, by: BlockedBy) -> bool {
    let ws = &mut g.workers[slot];
    if ws.current.is_none() {
        return false;
    }
    if ws.blocked.is_some() {
        if by == BlockedBy::Hint {
            ws.blocked = Some(BlockedBy::Hint);
        }
        return false;
    }
    update_worker(g, slot, |ws| {
        ws.blocked = Some(by);
        ws.blocked_in_item = true;
    });
    if g.lane.is_some() {
        g.standby.blocks = g.standby.blocks.saturating_add(1);
    }
    true
}

/// A worker was woken because the runner in `slot` blocked or became a
/// hog: counted for the pwq of the item it runs (`cm_wakeups`).
fn count_cm_wakeup(g: &mut PoolState, slot: usize) {
    if let Some(c) = g.workers[slot].current {
        // SAFETY: `current` is valid while recorded (see `Current`).
        let p = unsafe { &*c.pwq };
        let pool = g.workers[slot].worker.pool;
        pwq::bump(g, pool, p, pwq::Stat::CmWakeup);
    }
}

/// A runner used more than `cpu_intensive_thresh` of CPU without blocking
/// (G16): flagged a hog, counted in its pwq's `cpu_hog`, and let out of
/// concurrency management, so the next item may start (a worker is woken
/// or created, as for a block). An unbound pool lets at most
/// `concurrency` hogs out (the rest keep their slots): CPU-bound jobs
/// spawned by the thousand run at most twice as many at once as there are
/// CPUs, while short items still find a slot beside up to `concurrency`
/// hogs. A bound pool lets every hog out, as the kernel does. False if it
/// was flagged already; otherwise whether a worker was woken.
pub(crate) fn mark_hog(g: &mut PoolGuard, slot: usize) -> bool {
    let ws = &g.workers[slot];
    let Some(c) = ws.current else {
        return false;
    };
    if ws.hog {
        return false;
    }
    let leaves = may_leave_cm(ws.worker.pool, g, slot);
    // A lane running a CPU hog is not one whose items block often: its
    // standby would only share the CPU three ways.
    g.standby.on = false;
    update_worker(g, slot, |ws| {
        ws.hog = true;
        if leaves {
            ws.flags |= WORKER_CPU_INTENSIVE;
        }
    });
    // SAFETY: `current` is valid while recorded (see `Current`).
    let p = unsafe { &*c.pwq };
    let pool = g.workers[slot].worker.pool;
    pwq::bump(g, pool, p, pwq::Stat::CpuHog);
    if !leaves {
        return false;
    }
    let woke = kick_pool(g) == Kick::Woken;
    if woke {
        count_cm_wakeup(g, slot);
    }
    woke
}

/// May the runner in `slot` leave concurrency management, as a CPU hog
/// ([`mark_hog`]) or for an item of a `CPU_INTENSIVE` workqueue (G16)? On
/// a bound pool always, as in the kernel. A managed unbound pool lets at
/// most `concurrency` runners out at once (hogs and `CPU_INTENSIVE` items
/// together); the others keep their runner's slot, so CPU-bound items
/// never run more than twice as many at once as the pod has CPUs, while
/// short items still find a slot beside them.
#[inline]
pub(crate) fn may_leave_cm(pool: &WorkerPool, g: &PoolState, slot: usize) -> bool {
    pool.bound()
        || (g.workers.iter())
            .filter(|&(s, x)| s != slot && x.flags & WORKER_CPU_INTENSIVE != 0)
            .count()
            < g.concurrency as usize
}

/// The pool's half of [`worker_running`](crate::pool::worker::worker_running)
/// (the kernel's wq_worker_running): the worker in `slot` runs again, as
/// `by` the hint or detection says; it counts in `nr_running` again.
/// Detection does not clear a block the hint took over.
pub(crate) fn mark_running(g: &mut PoolState, slot: usize, by: BlockedBy) {
    let ws = &g.workers[slot];
    match (ws.blocked, by) {
        (None, _) | (Some(BlockedBy::Hint), BlockedBy::Monitor) => return,
        _ => {}
    }
    update_worker(g, slot, |ws| ws.blocked = None);
}

/// Outcome of [`kick_pool`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kick {
    /// Nothing to do.
    NotNeeded,
    /// An idle worker was woken.
    Woken,
    /// A worker is needed but none is idle and nobody is creating one: the
    /// guard creates one once the lock is released.
    NeedWorker,
    /// A worker is needed and one is being created (or creation is cooling
    /// down and the monitor will retry).
    Pending,
}

/// Wake an idle worker if the pool needs one (the kernel's kick_pool); if
/// none is idle and nobody is creating one, have `g` create one when it
/// releases the lock. On a lane whose items wait behind its runner, have
/// `g` wake a searcher in a sibling lane when it releases the lock
/// ([`wakep`]).
#[inline]
pub(crate) fn kick_pool(g: &mut PoolGuard) -> Kick {
    let k = kick(g);
    if k == Kick::NeedWorker {
        g.create = true;
    }
    if g.lane.is_some()
        && g.nr_running > 0
        && !g.worklist.is_empty()
        && !(g.cpu_limited && cpu_limit::free() == 0)
    {
        // (At the CPU limit a searcher could take the items but not run
        // them.)
        g.search = true;
    }
    k
}

/// What [`kick_pool`] does under the lock.
#[inline]
fn kick(g: &mut PoolState) -> Kick {
    if !need_more_worker(g) {
        return Kick::NotNeeded;
    }
    if let Some(&slot) = g.idle.last() {
        g.workers[slot].worker.parker.unpark();
        return Kick::Woken;
    }
    if g.manager_active || g.stealing > 0 {
        // A worker is being made, or one of this lane's is taking items
        // from a sibling and looks at its own worklist when it is back.
        return Kick::Pending;
    }
    match g.create_retry_at {
        // A creation failed: the caller retries once the cooldown is over
        // (so queueing retries even where the monitor thread could not
        // start); until then the monitor or a waiter will.
        Some(t) if Instant::now() < t => Kick::Pending,
        _ => Kick::NeedWorker,
    }
}

/// After queueing on a managed pool without waking anyone: the new item
/// waits behind running workers, so ask the monitor to watch for one of
/// them blocking (G15, G19).
#[inline]
pub(crate) fn note_pending_behind_runner(pool: &'static WorkerPool, g: &PoolState) {
    if pool.managed() && g.nr_running > 0 {
        if !pool.watched.load(Relaxed) {
            pool.watched.store(true, Relaxed);
            detector().wake();
        }
        // A lane's length is published before its group's flag is read:
        // a sentinel of another CPU of the group clears the flag, then
        // reads the lengths (`sentinel::arm`).
        if pool.lane.is_some() {
            pool.queued.store(g.worklist.len() as u32, SeqCst);
        }
        let flag = pool.armed_flag();
        if !flag.load(SeqCst) {
            // Under the pool lock, after the item was put on the worklist:
            // see `sentinel::arm` for why no arming is lost.
            flag.store(true, SeqCst);
            detector().arm_sentinels(pool);
        }
    }
}

/// Create a worker if the pool needs one and nobody else is creating one.
/// Called without the pool lock by queuers and the monitor.
///
/// Like the kernel's manager it checks the pool again after each creation:
/// kicks that came while it was creating returned [`Kick::Pending`] and
/// rely on it, and the worker it made may already be busy or gone (an
/// unbound pool's last pwq was released meanwhile and its idle workers
/// left; or one gave its thread way).
pub(crate) fn ensure_worker(pool: &'static WorkerPool) {
    if detector().defer_creation() {
        return;
    }
    let mut g = pool.lock();
    loop {
        if let Some(t) = g.create_retry_at {
            if Instant::now() < t {
                return;
            }
            clear_retry(&mut g);
        }
        // A worker of this lane taking items from a sibling is on its way
        // back: it looks at this lane's worklist before it idles (`steal`).
        if g.manager_active || g.stealing > 0 || !g.idle.is_empty() || !need_more_worker(&g) {
            return;
        }
        g.manager_active = true;
        let mayday = arm_mayday(&mut g);
        let r = g.unlocked(|| {
            if mayday {
                detector().wake();
            }
            let r = create_worker(pool);
            crate::fault::after_spawn();
            r
        });
        g.manager_active = false;
        let err = creation_done(&mut g, r);
        let failed = err.is_some();
        // Items wait with no worker: ask another pool's idle one to give
        // its thread way.
        g.unlocked(|| after_creation(pool, err, true));
        if failed {
            // Cooldown: the monitor, the next queue and waiters retry.
            return;
        }
    }
}

/// Called by a worker that left idle and found no other idle worker (the
/// kernel's manage_workers / maybe_create_worker): create one so that the
/// pool always has a spare to wake when a running worker blocks. Returns
/// true if it managed (and the caller must recheck the pool).
pub(crate) fn manage_workers(pool: &'static WorkerPool, g: &mut PoolGuard) -> bool {
    if g.manager_active {
        return false;
    }
    if let Some(t) = g.create_retry_at {
        if Instant::now() < t {
            return false;
        }
        clear_retry(g);
    }
    g.manager_active = true;
    let mayday = arm_mayday(g);
    let r = g.unlocked(|| {
        if mayday {
            detector().wake();
        }
        create_worker(pool)
    });
    g.manager_active = false;
    let err = creation_done(g, r);
    // A spare: the caller runs the items itself, so nothing waits for this
    // worker and no other pool's worker is asked to give way (two pools
    // would take turns killing each other's spares).
    g.unlocked(|| after_creation(pool, err, false));
    true
}

/// Pools whose last worker creation failed and that wait out the cooldown
/// (`create_retry_at` set). Waiters poll while it is non-zero (see
/// [`help_stalled_creation`]).
static NR_STALLED: AtomicU32 = AtomicU32::new(0);

fn clear_retry(g: &mut PoolState) {
    if g.create_retry_at.take().is_some() {
        NR_STALLED.fetch_sub(1, Relaxed);
    }
}

/// Record the outcome of a creation attempt (under the pool lock). Returns
/// the error if it failed; the caller then calls [`after_creation`]
/// unlocked (which reports it: the log hook is user code, never called
/// under a pool lock).
fn creation_done(g: &mut PoolState, r: io::Result<()>) -> Option<io::Error> {
    let Err(e) = r else {
        // A worker could be had: no mayday for this attempt.
        g.mayday_at = None;
        return None;
    };
    if g.create_retry_at.is_none() {
        NR_STALLED.fetch_add(1, Relaxed);
    }
    g.create_retry_at = Some(Instant::now() + settings().create_cooldown);
    Some(e)
}

/// After a creation attempt, without the pool lock. On failure: ask an
/// idle worker of a pool with nothing pending to give its thread way (at a
/// thread limit, an idle worker elsewhere must not starve this pool), and
/// have the monitor retry after the cooldown (the next queue, and waiters,
/// retry too). On success: threads can be had, so start the monitor if it
/// could not start before.
fn after_creation(pool: &'static WorkerPool, err: Option<io::Error>, ask_give_way: bool) {
    match err {
        Some(e) => {
            crate::event::report(crate::Event::WorkerCreateFailed {
                pool: pool.worker_name(0).trim_end_matches('0'),
                error: &e.to_string(),
            });
            // Workers first at a thread budget (G4): another pool's idle
            // worker gives its thread, else one of detection's optional
            // threads does (`Detector::retire_helper`). Only for a real
            // thread limit (EAGAIN from clone: RLIMIT_NPROC, threads-max,
            // a cgroup's pids.max).
            let gave_way = ask_give_way && give_way_for(pool);
            if e.raw_os_error() == Some(libc::EAGAIN) {
                let now = crate::util::mono_ns();
                let since = match FAILING_SINCE.compare_exchange(0, now, SeqCst, SeqCst) {
                    Ok(_) => now,
                    Err(t) => t,
                };
                if ask_give_way && !gave_way {
                    detector().retire_helper(now.saturating_sub(since));
                }
            }
            detector().wake();
        }
        None => {
            if FAILING_SINCE.load(Relaxed) != 0 {
                FAILING_SINCE.store(0, Relaxed);
            }
            detector().ensure_running();
        }
    }
}

/// When the current run of worker creations failing at a thread limit
/// began (mono ns; 0: the last creation succeeded).
static FAILING_SINCE: AtomicU64 = AtomicU64::new(0);

/// Whether worker creations are failing at a thread limit now (since the
/// last one that succeeded).
pub(crate) fn creation_failing() -> bool {
    FAILING_SINCE.load(SeqCst) != 0
}

/// In the child after `fork()`: the parent's creation failures and the
/// CPU limit's count of its workers, which do not exist here (every pool
/// was reset, so the count is exactly 0). Only stores.
pub(crate) fn reset_counts_after_fork() {
    FAILING_SINCE.store(0, SeqCst);
    cpu_limit::RUNNING.store(0, SeqCst);
}

/// Whether some pool waits out a creation cooldown (cheap: one load).
#[inline]
pub(crate) fn creation_stalled() -> bool {
    NR_STALLED.load(Relaxed) > 0
}

/// Sleep on the futex word `word` until `ready()` holds. The word is read
/// before each check of `ready`, and whoever makes `ready` true changes the
/// word (or bumps it) and wakes it after, so no wake-up is lost.
///
/// While some pool waits out a failed worker creation, the wait wakes every
/// cooldown to retry it: what it waits for may need that worker, and at a
/// thread limit nothing else may be left to retry (G4: items start once a
/// thread can be had).
pub(crate) fn wait_on(word: &std::sync::atomic::AtomicU32, ready: impl Fn() -> bool) {
    loop {
        let seen = word.load(Acquire);
        if ready() {
            return;
        }
        // Also while the monitor is not running (it could not start): a
        // creation that fails after this wait began would have nobody else
        // to retry it.
        let stalled = creation_stalled() || !detector().running();
        let deadline = stalled.then(|| Instant::now() + crate::config::settings().create_cooldown);
        crate::sync::wait(word, seen, deadline);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            help_stalled_creation();
        }
    }
}

/// Retry the creations whose cooldown is over: called by threads that wait
/// for items (flush, cancel_sync) while [`creation_stalled`], so that items
/// start once a thread can be had even where the monitor thread could not
/// start and nothing else is queued.
#[cold]
pub(crate) fn help_stalled_creation() {
    let Some(pools) = pools_if_started() else {
        return;
    };
    for pool in pools.all() {
        let due = pool
            .lock()
            .create_retry_at
            .is_some_and(|t| Instant::now() >= t);
        if due {
            ensure_worker(pool);
        }
    }
    detector().ensure_running();
}

/// `pool` could not create a worker: one idle worker of another pool whose
/// worklist is empty exits, so that its thread can be had (the pool it
/// leaves creates another on demand). Returns whether one was found.
fn give_way_for(pool: &'static WorkerPool) -> bool {
    let Some(pools) = pools_if_started() else {
        return false;
    };
    for other in pools.all() {
        if std::ptr::eq(other, pool) {
            continue;
        }
        let mut g = other.lock();
        // Not a pool with work, nor one creating a worker itself, nor the
        // last spare of a pool whose runners may block and need it.
        if !g.worklist.is_empty()
            || g.manager_active
            || g.idle.is_empty()
            || (g.nr_idle == 1 && g.nr_running > 0)
        {
            continue;
        }
        // The coldest idle worker; off the idle list at once, so no kick
        // picks it; when it wakes, `idle_verdict` sees DIE and it leaves.
        let slot = g.idle.remove(0);
        g.nr_idle -= 1;
        let ws = &mut g.workers[slot];
        ws.flags = (ws.flags & !WORKER_IDLE) | WORKER_DIE;
        ws.worker.parker.unpark();
        GAVE_WAY.fetch_add(1, Relaxed);
        return true;
    }
    false
}

/// Whether any pool has a worker (the failure path of creation asks:
/// `Detector::retire_helper`). Takes each pool's lock in turn.
pub(crate) fn any_worker() -> bool {
    pools_if_started().is_some_and(|p| p.all().iter().any(|pool| pool.lock().nr_workers > 0))
}

/// Idle workers that exited to let another pool have their thread.
pub(crate) static GAVE_WAY: AtomicU64 = AtomicU64::new(0);

/// Create one worker: register it as idle, then start its thread (the
/// kernel's create_worker). On failure nothing is left behind.
pub(crate) fn create_worker(pool: &'static WorkerPool) -> io::Result<()> {
    let w = {
        let mut g = pool.lock();
        let id = g.ids.alloc();
        let w = WorkerSlot::insert(&mut g, pool, id, WORKER_IDLE);
        g.nr_workers += 1;
        g.nr_idle += 1;
        g.idle.push(w.slot);
        w
    };
    match worker::spawn(w.clone()) {
        Ok(()) => Ok(()),
        Err(e) => {
            let mut g = pool.lock();
            remove_worker(&mut g, w.slot);
            // A kick may have picked the dead worker: pass it on (to an
            // idle one; the failed creation is retried after the cooldown).
            let _ = kick(&mut g);
            Err(e)
        }
    }
}

/// Take a worker out of the pool (it exits, or its thread never started).
pub(crate) fn remove_worker(g: &mut PoolState, slot: usize) {
    if g.workers[slot].flags & WORKER_SEARCH != 0 {
        // Woken to search, leaving before it looked (it gave way, or its
        // lane retired): another may be woken.
        if let Some((l, _)) = g.lane {
            l.searchers.done();
        }
    }
    if g.workers[slot].flags & WORKER_IDLE != 0 {
        g.nr_idle -= 1;
        g.idle.retain(|&s| s != slot);
    }
    update_worker(g, slot, |ws| ws.flags |= WORKER_PREP);
    let ws = g.workers.remove(slot);
    g.nr_workers -= 1;
    g.ids.free(ws.worker.id);
}

/// A pwq was unlinked from `pool` (under its lock `g`, which a rule may
/// change, e.g. to note when the pool went unused): if the pool is retired
/// now ([`pool_retired`]), wake its idle workers so they go.
pub(crate) fn maybe_retire_pool(pool: &WorkerPool, g: &mut PoolState) {
    if !pool_retired(pool, g) {
        return;
    }
    for &slot in &g.idle {
        g.workers[slot].worker.parker.unpark();
    }
}

/// After `fork()`, in the child, with the pool lock held by the forking
/// thread (G26): no worker of the parent exists here and no item of the
/// parent may run here. Every item on the worklist or a pwq's inactive
/// list becomes idle and is let go (its handle is leaked: dropping the
/// last one would run the closure's destructor, user code, in a child
/// that may only be about to `exec`); so does every item a worker was
/// running. Counters of in-flight and active items start from zero; the
/// pool creates workers afresh on its next queue.
pub(crate) fn reset_after_fork(pool: &WorkerPool, g: &mut PoolState, own: Option<*const u8>) {
    let forget = |w: Work| {
        w.reset_after_fork();
        std::mem::forget(w);
    };
    while let Some(w) = g.worklist.pop_front() {
        forget(w);
    }
    for (_, st) in g.pwqs.iter_mut() {
        while let Some(w) = st.inactive.pop_front() {
            forget(w);
        }
        st.nr_in_flight = Default::default();
        st.nr_active = 0;
        st.flush_color = None;
        st.on_mayday = false;
        st.waiting = false;
    }
    for (_, ws) in g.workers.iter() {
        if let Some(c) = ws.current {
            if own == Some(c.work.as_ptr() as *const u8) {
                // The forking thread's own item, still running in the
                // child: it stays RUNNING (so no second execution can
                // start beside it); the child exits when it returns.
                continue;
            }
            // SAFETY: the item was being run by a worker of the parent,
            // which held a reference to it: it is alive (that reference is
            // leaked with the worker's stack).
            let inner = unsafe { c.work.as_ref() };
            let seq = inner.state.reset_after_fork();
            inner.done.store(seq, Release);
        }
    }
    // The workers' handles are leaked too: their threads' stacks hold
    // references nobody will drop, and their detection state may be locked.
    std::mem::forget(std::mem::take(&mut g.workers));
    g.nr_running = 0;
    g.nr_workers = 0;
    g.nr_idle = 0;
    g.limit_freed = false;
    g.idle.clear();
    g.manager_active = false;
    if g.create_retry_at.take().is_some() {
        NR_STALLED.fetch_sub(1, Relaxed);
    }
    g.ids = IdAlloc::default();
    g.mayday_at = None;
    g.activate_pod = None;
    // A thief of the parent does not exist here.
    g.stealing = 0;
    g.standby = Standby::default();
    pool.watched.store(false, Relaxed);
    // No sentinel is armed in the child: the next queue behind a runner
    // must arm them again.
    pool.sentinels_armed.store(false, Relaxed);
    pool.queued.store(0, Relaxed);
    pool.running.store(0, Relaxed);
    pool.idle_workers.store(0, Relaxed);
    if let Some((l, _)) = pool.lane {
        // No searcher of the parent exists here.
        l.searchers.reset();
        l.sentinels_armed.store(false, Relaxed);
    }
}

// ------------------------------------------------------------------ lanes

/// Most items a thief takes from a sibling lane at once.
pub(crate) const STEAL_MAX: usize = 32;

/// A lane group: a managed unbound pod served by one pool per usable CPU,
/// the *lanes* (G19; `README.md`, "Lanes"). A lane is a pool like a bound
/// one: its workers are pinned to its CPU, it keeps one runner while it
/// has work, and its CPU's sentinel wakes its own spare when that runner
/// blocks, a local wake-up. A queuer puts an item on the lane of its own
/// CPU; a lane with nothing to do takes a batch from a busy sibling
/// ([`steal`]), so one producer still fills every CPU, and no lock shared
/// by the group's CPUs is on the queue path. Annotations:
/// `src/LOCKING.md`.
pub(crate) struct Lanes {
    /// I: the group's CPUs: one lane each (the pod's CPUs the process may
    /// use; the pod's CPUs, in one unpinned lane, if it may use none).
    pub(crate) cpus: CpuMask,
    /// I (set once, right after the lanes are made): the lanes, in the
    /// order of `cpus`.
    lanes: OnceLock<Box<[&'static WorkerPool]>>,
    /// A: idle workers woken to search the siblings that have not looked
    /// yet; while one is, queuers wake nobody more (Go's `nmspinning`).
    pub(crate) searchers: Searchers,
    /// A: the sentinels of the group's CPUs are armed (the lanes' shared
    /// `sentinels_armed`).
    pub(crate) sentinels_armed: AtomicBool,
}

impl Lanes {
    /// The lanes, in the order of `cpus`.
    #[inline]
    pub(crate) fn pools(&self) -> &[&'static WorkerPool] {
        self.lanes.get().map_or(&[], |l| l)
    }

    /// The lane that serves `cpu`: its own, or for a CPU outside the group,
    /// one chosen by its number.
    pub(crate) fn lane_for(&self, cpu: usize) -> &'static WorkerPool {
        let lanes = self.pools();
        let i = self
            .cpus
            .iter()
            .position(|c| c == cpu)
            .unwrap_or(cpu % lanes.len());
        lanes[i]
    }

    /// Whether a lane other than `me` has items waiting behind its busy
    /// runner: what a thief could take. One SeqCst load of two published
    /// counts per sibling.
    #[inline]
    pub(crate) fn backlog(&self, me: usize) -> bool {
        self.victim(me).is_some()
    }

    /// Whether every lane other than `me` has a runner (published counts,
    /// one load each).
    #[inline]
    pub(crate) fn all_busy(&self, me: usize) -> bool {
        (self.pools().iter().enumerate()).all(|(i, l)| i == me || l.running.load(Relaxed) > 0)
    }

    /// The sibling of `me` with the most items waiting behind a busy
    /// runner.
    fn victim(&self, me: usize) -> Option<&'static WorkerPool> {
        let lanes = self.pools();
        let mut best = None;
        let mut most = 0;
        for (i, &l) in lanes.iter().enumerate() {
            if i == me {
                continue;
            }
            let q = l.queued.load(Relaxed);
            if q > most && l.running.load(Relaxed) > 0 {
                (best, most) = (Some(l), q);
            }
        }
        best
    }
}

/// Publish a pool's counts for lock-free readers (the lanes' thieves and
/// searchers, the sentinels), as its lock is released. A count is stored
/// only when it changed (the line stays shared between its readers
/// otherwise); readers that must not miss a change pair it with a SeqCst
/// fence of their own and of the writer's next step ([`wakep`],
/// [`search`], `sentinel`).
#[inline]
fn publish(pool: &WorkerPool, g: &PoolState) {
    if pool.lane.is_some() {
        let put = |a: &AtomicU32, v: u32| {
            if a.load(Relaxed) != v {
                a.store(v, Relaxed);
            }
        };
        put(&pool.queued, g.worklist.len() as u32);
        put(&pool.running, g.nr_running);
        put(&pool.idle_workers, g.nr_idle);
    }
}

/// Items wait behind the runner of lane `from`: wake an idle worker of a
/// sibling lane that has no runner, to search (the kernel has no
/// counterpart; Go's `wakep`). At most one searcher at a time: while one
/// is, nobody else is woken, and it wakes the next if it found work and
/// more waits ([`search`]). Called without any pool lock.
pub(crate) fn wakep(from: &'static WorkerPool) {
    let Some((lanes, me)) = from.lane else {
        return;
    };
    // The lane's length was published before the siblings' runners are
    // read: a worker that publishes it went idle, then looks at the
    // lengths (`idle_lane_looks_again`), is seen here, or sees this.
    std::sync::atomic::fence(SeqCst);
    let all = lanes.pools();
    for k in 1..all.len() {
        let l = all[(me + k) % all.len()];
        if l.running.load(Relaxed) != 0 {
            continue;
        }
        if l.idle_workers.load(Relaxed) == 0 {
            // A free lane without a worker (never used, or its idle ones
            // left): one is made, which steals once it runs.
            ensure_worker(l);
            continue;
        }
        // The lane's length was published before: see `searchers`.
        if !lanes.searchers.claim() {
            return;
        }
        let g = l.lock();
        if g.nr_running == 0 {
            if let Some(&slot) = g.idle.last() {
                let mut g = g;
                g.workers[slot].flags |= WORKER_SEARCH;
                g.workers[slot].worker.parker.unpark();
                return;
            }
        }
        drop(g);
        lanes.searchers.give_back();
    }
}

/// A worker woken to search ([`wakep`]), under its lane's lock: take work
/// from a sibling if its own lane has none and no runner, stop counting as
/// a searcher, then look once more (a queuer that saw it searching woke
/// nobody); if it found work and more waits, have the next searcher woken.
pub(crate) fn search(g: &mut PoolGuard, slot: usize) {
    let Some((lanes, me)) = g.lane else {
        return;
    };
    g.workers[slot].flags &= !WORKER_SEARCH;
    let may = |g: &PoolState| g.worklist.is_empty() && g.nr_running == 0;
    let mut got = may(g) && steal(g);
    // Then look once more: see `searchers`.
    lanes.searchers.done();
    if !got && may(g) && lanes.backlog(me) {
        got = steal(g);
    }
    if got && lanes.backlog(me) {
        g.search = true;
    }
}

/// A lane's worker about to run (its lane has no other runner) found its
/// worklist empty: take up to half of the items waiting behind the busiest
/// sibling's runner (at most [`STEAL_MAX`], oldest first) onto its own
/// worklist. Returns whether it took any.
///
/// The items move, their accounting does not: each keeps the pwq of the
/// lane it was queued on (`Slot`), whose counts (in flight per flush
/// colour, active) change only when it completes or is cancelled, under
/// that pwq's pool lock, as after a G3 hand-over. So flush colours and
/// `max_active` hold wherever an item runs. The two pool locks are taken
/// one after the other, never together: the thief takes each item's
/// PENDING from the victim's list (`steal(Held::Queued)`, as a canceller
/// does), and links it on its own list under its own lock; meanwhile the
/// item is in transit and a canceller waits for it. (`FREEZABLE`
/// workqueues get no lanes: a freeze moves a pool's queued items back to
/// their pwqs under that pool's lock, which a stolen item would escape.)
pub(crate) fn steal(g: &mut PoolGuard) -> bool {
    let Some((lanes, me)) = g.lane else {
        return false;
    };
    let pool = g.pool;
    if g.cpu_limited && g.nr_running == 0 && cpu_limit::free() == 0 {
        // At the CPU limit this lane may not start a runner: items taken
        // would wait here instead of behind the victim's runner.
        return false;
    }
    let mut batch = WorkList::new();
    g.stealing += 1;
    g.unlocked(|| {
        let Some(victim) = lanes.victim(me) else {
            return;
        };
        let mut v = victim.lock();
        if v.nr_running == 0 {
            // Its own spare is about to run them.
            return;
        }
        let take = v.worklist.len().div_ceil(2).min(STEAL_MAX);
        for _ in 0..take {
            let Some(w) = v.worklist.pop_front() else {
                break;
            };
            let stolen = w.inner().state.steal(work::state::Held::Queued);
            debug_assert!(stolen, "a queued item under its pool's lock");
            // SAFETY: the thief owns the item's PENDING now (in transit):
            // nobody else touches its link until it is linked again.
            unsafe { batch.push_back(w) };
        }
    });
    g.stealing -= 1;
    if batch.is_empty() {
        return false;
    }
    while let Some(w) = batch.pop_front() {
        let inner = w.inner();
        inner
            .pool
            .store(pool as *const WorkerPool as *mut WorkerPool, Release);
        inner.state.set_queued();
        // SAFETY: we hold our pool's lock, which guards its worklist, and
        // the item is on no list (it was in transit, owned by us).
        unsafe { g.worklist.push_back(w) };
    }
    STOLEN.fetch_add(1, Relaxed);
    if g.nr_running > 0 {
        // Our lane got a runner while we stole (or we are it): the items
        // wait behind it, watched as a queuer's are, and a sibling may
        // take them.
        note_pending_behind_runner(pool, g);
        g.search = true;
    }
    true
}

/// A lane's worker has gone idle (its lane's counts published, lock
/// released): whether a sibling's items wait behind a busy runner, which
/// it should take rather than park. Pairs with the fence in [`wakep`]: a
/// queuer that read this lane's runner as busy before it went idle is
/// seen here.
///
/// It looks once, it does not spin: a worker that watched its siblings
/// for 5, 20 or 50 us before parking gained nothing in B1 (1 and 2
/// producers on `system_dfl_wq`, 2 CPUs: 2.8-3.1 M items/s with 0, 5 or 20
/// us; 2.1-2.6 with 50), and would cost every idle transition of a
/// blocking service that much CPU. What made lanes churn was waking the
/// same spare again and again ([`idle_lane_spare`]).
pub(crate) fn idle_lane_looks_again(pool: &WorkerPool) -> bool {
    pool.lane.is_some_and(|(l, me)| {
        std::sync::atomic::fence(SeqCst);
        l.backlog(me)
    })
}

/// Batches thieves took from sibling lanes (for `dump()` and benchmarks).
pub(crate) static STOLEN: AtomicU64 = AtomicU64::new(0);

/// The process-wide set of pools. Pools live for the whole process (like
/// the kernel's per-CPU pools), which lets a work item refer to the pool it
/// is queued on by a plain reference.
pub(crate) struct Pools {
    /// I: per possible CPU: [normal, highpri].
    pub(crate) cpu: Box<[[&'static WorkerPool; 2]]>,
    /// Its own lock (taken before `all`): unbound pools, shared by equal
    /// attributes.
    pub(crate) unbound: Mutex<Vec<&'static WorkerPool>>,
    /// The same lock level as `unbound` (never held with it): lane groups
    /// of managed unbound pods, shared by equal attributes.
    pub(crate) lanes: Mutex<Vec<(PoolAttrs, &'static Lanes)>>,
    /// Its own lock: every pool by id (written when a pool is made).
    pub(crate) all: Mutex<Vec<&'static WorkerPool>>,
    /// A: the number of pools in `all` (read without its lock by the
    /// monitor and the sentinels on every pass).
    nr: std::sync::atomic::AtomicUsize,
}

static POOLS: OnceLock<Pools> = OnceLock::new();

/// The pools, created on first use (which also fixes the settings). The
/// services above them (the monitor, the fork handlers, the control
/// socket) are started by `init::start`, which every way of making a
/// workqueue goes through first.
pub(crate) fn pools() -> &'static Pools {
    POOLS.get_or_init(|| {
        let _ = settings();
        let topo = topology();
        let mut all = Vec::new();
        let mut cpu = Vec::with_capacity(topo.nr_cpus);
        for c in 0..topo.nr_cpus {
            let mut pair = [None, None];
            for (hp, p) in pair.iter_mut().enumerate() {
                let mask = CpuMask::from_cpus([c]);
                let pool: &'static WorkerPool = Box::leak(Box::new(WorkerPool::new(
                    all.len() as u32,
                    Some(c),
                    hp == 1,
                    PoolAttrs {
                        nice: if hp == 1 { -20 } else { 0 },
                        cpus: mask.clone(),
                        pod_cpus: mask,
                        strict: true,
                        managed: true,
                    },
                    true,
                    None,
                )));
                all.push(pool);
                *p = Some(pool);
            }
            cpu.push([pair[0].unwrap(), pair[1].unwrap()]);
        }
        crate::clock::seal();
        Pools {
            cpu: cpu.into_boxed_slice(),
            unbound: Mutex::new(Vec::new()),
            lanes: Mutex::new(Vec::new()),
            nr: std::sync::atomic::AtomicUsize::new(all.len()),
            all: Mutex::new(all),
        }
    })
}

/// The pools if they exist already (for dump and the monitor).
pub(crate) fn pools_if_started() -> Option<&'static Pools> {
    POOLS.get()
}

impl Pools {
    /// The bound pool of `cpu`.
    #[inline]
    pub(crate) fn cpu_pool(&self, cpu: usize, highpri: bool) -> &'static WorkerPool {
        self.cpu[cpu][highpri as usize]
    }

    /// Find or create the unbound pool with these attributes. `detects`:
    /// the process detects blocks (its mode is not the hint alone), so a
    /// pool with `attrs.managed` is concurrency managed.
    pub(crate) fn unbound_pool(&self, attrs: &PoolAttrs, detects: bool) -> &'static WorkerPool {
        let mut ub = self.unbound.lock();
        if let Some(p) = ub.iter().find(|p| &p.attrs == attrs) {
            return p;
        }
        let mut all = self.all.lock();
        let pool: &'static WorkerPool = Box::leak(Box::new(WorkerPool::new(
            all.len() as u32,
            None,
            attrs.nice < 0,
            attrs.clone(),
            detects,
            None,
        )));
        all.push(pool);
        self.nr.store(all.len(), Release);
        ub.push(pool);
        pool
    }

    /// Find or create the lane group of a managed unbound pod with these
    /// attributes (`attrs.pod_cpus`): one lane per CPU of the pod the
    /// process may use, its workers pinned there (a pod the process may
    /// use none of gets one lane, unpinned).
    pub(crate) fn lane_group(&self, attrs: &PoolAttrs) -> &'static Lanes {
        let mut groups = self.lanes.lock();
        if let Some((_, l)) = groups.iter().find(|(a, _)| a == attrs) {
            return l;
        }
        let usable = attrs.pod_cpus.and(&topology().allowed);
        let (cpus, per_lane): (CpuMask, Vec<CpuMask>) = if usable.is_empty() {
            (attrs.pod_cpus.clone(), vec![attrs.pod_cpus.clone()])
        } else {
            let each = usable.iter().map(|c| CpuMask::from_cpus([c])).collect();
            (usable, each)
        };
        let lanes: &'static Lanes = Box::leak(Box::new(Lanes {
            cpus,
            lanes: OnceLock::new(),
            searchers: Searchers::new(),
            sentinels_armed: AtomicBool::new(false),
        }));
        let mut all = self.all.lock();
        let made: Vec<&'static WorkerPool> = per_lane
            .into_iter()
            .enumerate()
            .map(|(i, cpus)| {
                let pool: &'static WorkerPool = Box::leak(Box::new(WorkerPool::new(
                    all.len() as u32,
                    None,
                    attrs.nice < 0,
                    PoolAttrs {
                        nice: attrs.nice,
                        pod_cpus: cpus.clone(),
                        cpus,
                        strict: true,
                        managed: true,
                    },
                    true,
                    Some((lanes, i)),
                )));
                all.push(pool);
                pool
            })
            .collect();
        let _ = lanes.lanes.set(made.into_boxed_slice());
        self.nr.store(all.len(), Release);
        groups.push((attrs.clone(), lanes));
        lanes
    }

    /// Number of pools.
    pub(crate) fn count(&self) -> usize {
        self.nr.load(Acquire)
    }

    /// Every pool, by id.
    pub(crate) fn all(&self) -> Vec<&'static WorkerPool> {
        self.all.lock().clone()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_lane_takes_a_standby_when_its_items_block_often() {
        // 200 a second over 100 ms is 20 blocks.
        assert!(!standby_verdict(false, 19, 100 * MS));
        assert!(standby_verdict(false, 20, 100 * MS));
        // A longer window (no item started for a while) dilutes the rate.
        assert!(!standby_verdict(false, 20, 200 * MS));
    }

    #[test]
    fn a_lane_keeps_its_standby_until_blocks_turn_rare() {
        // Hysteresis: kept down to 50 a second (5 in 100 ms).
        assert!(standby_verdict(true, 19, 100 * MS));
        assert!(standby_verdict(true, 5, 100 * MS));
        assert!(!standby_verdict(true, 4, 100 * MS));
        // CPU-bound: no block at all.
        assert!(!standby_verdict(true, 0, 100 * MS));
        assert!(!standby_verdict(false, 0, 0));
    }
}
