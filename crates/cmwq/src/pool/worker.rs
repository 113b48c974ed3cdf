//! Worker threads: the loop that takes items off a pool's worklist and runs
//! them (the kernel's worker_thread and process_one_work).

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering::*};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::sync::Mutex;

use crate::attrs::WqFlags;
use crate::config::settings;
use crate::cpu_limit;
use crate::event::{report, Event};
use crate::monitor::procstat::TaskStat;
use crate::monitor::state::DetectState;
use crate::pool::pwq::{self, Pwq};
use crate::pool::work::state::{Dequeued, Finished};
use crate::pool::work::{Work, WorkInner};
use crate::pool::{
    self, keep_working, may_start_working, need_more_worker, update_worker, BlockedBy, Current,
    Idle, Kick, PoolGuard, PoolState, WorkerPool, WORKER_CPU_INTENSIVE, WORKER_DIE, WORKER_IDLE,
    WORKER_PREP, WORKER_RESCUER, WORKER_SEARCH,
};
use crate::util::{self, Parker};

/// A worker thread's shared part. Its pool-side state (flags, current
/// item) is in the pool's worker slab at `slot`. Annotations:
/// `src/LOCKING.md`.
pub(crate) struct Worker {
    /// I: the pool.
    pub(crate) pool: &'static WorkerPool,
    /// I: index in the pool's worker slab.
    pub(crate) slot: usize,
    /// I: N in `kworker/C:N`.
    pub(crate) id: u32,
    /// A: wakes the worker when idle.
    pub(crate) parker: Parker,
    /// A: the thread id (0 until the thread runs).
    pub(crate) tid: AtomicI32,
    /// A: incremented when an execution starts; the monitor reads it to see
    /// progress without taking the pool lock.
    pub(crate) exec_seq: AtomicU64,
    /// A: the thread's CPU-time clock id (-1 until known).
    pub(crate) cpu_clock: AtomicI32,
    /// A (written by its own thread only): the `pool::PIN_EPOCH` it last
    /// pinned itself for.
    pin_epoch: AtomicU64,
    /// A: when the thread began to sleep on a pool lock (a
    /// `sync::ShortMutex`; CLOCK_MONOTONIC ns, 0 while it does not): it is
    /// not blocked, and detection leaves it counted as running for a
    /// while ([`Worker::waits_on_short_lock`]).
    short_wait: AtomicU64,
    /// D: the monitor's per-worker detection state (perf ring, /proc
    /// fds); see "Detection state" in `src/LOCKING.md`.
    pub(crate) detect: Mutex<DetectState>,
    /// A (set once, when it is first sampled; see [`Worker::task_stat`]):
    /// its `/proc` state files, read by the monitor and the sentinels.
    stat: OnceLock<TaskStat>,
    /// A (set once, on its first execution while traced): its ring of
    /// execution records (`trace`).
    pub(crate) trace_ring: OnceLock<Arc<crate::trace::Ring>>,
}

impl Worker {
    pub(crate) fn new(pool: &'static WorkerPool, slot: usize, id: u32) -> Worker {
        Worker {
            pool,
            slot,
            id,
            parker: Parker::new(),
            tid: AtomicI32::new(0),
            exec_seq: AtomicU64::new(0),
            cpu_clock: AtomicI32::new(-1),
            pin_epoch: AtomicU64::new(0),
            short_wait: AtomicU64::new(0),
            detect: Mutex::new(DetectState::default()),
            stat: OnceLock::new(),
            trace_ring: OnceLock::new(),
        }
    }

    /// Whether the worker sleeps on a pool lock, and began less than
    /// [`SHORT_WAIT_MAX_NS`] ago: a runner detection found not runnable is
    /// then not blocked (the holder hands the lock over within
    /// microseconds; the kernel's pool lock is a spinlock, which never
    /// sleeps). A longer wait (its holder preempted for long) is a block
    /// like any other. Read after the observation it corrects (SeqCst).
    pub(crate) fn waits_on_short_lock(&self) -> bool {
        let since = self.short_wait.load(SeqCst);
        since != 0 && util::mono_ns().saturating_sub(since) < SHORT_WAIT_MAX_NS
    }

    /// The worker's `/proc` state files (two descriptors), opened the first
    /// time it is sampled; an open that fails (a descriptor limit) is
    /// tried again at the next sample.
    pub(crate) fn task_stat(&self) -> Option<&TaskStat> {
        if let Some(s) = self.stat.get() {
            return Some(s);
        }
        let tid = self.tid.load(Relaxed);
        if tid == 0 {
            return None;
        }
        // Two samplers racing here open it twice; one copy is dropped.
        let _ = self.stat.set(TaskStat::open(tid).ok()?);
        self.stat.get()
    }
}

/// How long a sleep on a pool lock is taken for the lock's hand-over
/// rather than a block ([`Worker::waits_on_short_lock`]). A pool lock is
/// held for about a microsecond, but its holder may be preempted while it
/// holds it: a queuer by the runner it woke on its CPU, for up to a
/// scheduler time slice (with 200 us here, one producer of tiny items on a
/// spreading workqueue had 100-180 spares woken in 2 s for such waits).
/// Longer than a slice, the holder is starved (a sentinel at `SCHED_IDLE`
/// on a CPU that other work keeps busy), and the wait is a block.
pub(crate) const SHORT_WAIT_MAX_NS: u64 = 5_000_000;

thread_local! {
    /// The worker this thread is, if any.
    static SELF: Cell<*const Worker> = const { Cell::new(ptr::null()) };
    /// The item this worker executes and its pwq.
    static CURRENT: Cell<Option<(NonNull<WorkInner>, *const Pwq)>> = const { Cell::new(None) };
    /// Nesting depth of `blocking` on this thread.
    static BLOCKING: Cell<u32> = const { Cell::new(0) };
    /// This thread forked a child from inside a work item and is that
    /// child's only thread (G26).
    static FORKED_IN_ITEM: Cell<bool> = const { Cell::new(false) };
}

/// In the child after `fork()`: if the forking thread was a worker, it is
/// no longer one (its pool was reset); remember that it is inside an item.
/// `CURRENT` stays: the thread still executes that item (`current_work()`
/// returns it, and a `flush` or `cancel_sync` of it from its own function
/// does not wait for itself).
pub(crate) fn forget_self_after_fork() {
    let was_worker = !SELF.with(|s| s.replace(ptr::null())).is_null();
    BLOCKING.with(|b| b.set(0));
    if was_worker {
        FORKED_IN_ITEM.with(|f| f.set(true));
    }
}

/// The item that forked returned (or panicked) in the child: there is no
/// worker to return to here. The child ends, as if the item's function had
/// called `exit(0)`, or with status 101 (a Rust panic's) if it panicked (a
/// child forked from inside an item should `exec` or exit before the item
/// returns).
#[cold]
fn item_returned_in_forked_child(panicked: bool) -> ! {
    report(Event::Misuse {
        message: "a work item that called fork() returned in the child: there is no worker to return to, the child exits",
    });
    // SAFETY: ends the process without running the parent's exit handlers
    // or destructors in this copy.
    unsafe { libc::_exit(if panicked { 101 } else { 0 }) }
}

/// The worker the calling thread is, if it is one.
#[inline]
pub(crate) fn current_worker() -> Option<&'static Worker> {
    let p = SELF.with(|s| s.get());
    // SAFETY: SELF is set by the worker thread to its own `Arc<Worker>`,
    // which that thread keeps alive until it clears SELF before exiting; so
    // for the calling thread the pointer is valid for as long as it can
    // observe it.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// The item the calling worker executes and its pwq.
#[inline]
pub(crate) fn current_exec() -> Option<(NonNull<WorkInner>, *const Pwq)> {
    CURRENT.with(|c| c.get())
}

/// The workqueue of the item the calling worker executes.
#[inline]
pub(crate) fn current_wq_id() -> Option<u64> {
    // SAFETY: while CURRENT is set the worker holds a reference to the pwq.
    current_exec().map(|(_, p)| unsafe { (&*p).wq.id })
}

/// Whether the calling thread is executing `work`.
#[inline]
pub(crate) fn executing(work: &WorkInner) -> bool {
    current_exec().is_some_and(|(w, _)| ptr::addr_eq(w.as_ptr(), work))
}

/// Start a worker's thread.
pub(crate) fn spawn(w: Arc<Worker>) -> io::Result<()> {
    crate::fault::check_spawn()?;
    let name = w.pool.worker_name(w.id);
    crate::config::item_thread(name)
        .spawn(move || worker_main(w))
        .map(drop)
}

/// The blocking hint (G15): mark the calling worker as sleeping so that its
/// pool starts another worker at once, run `f`, then mark it running.
pub(crate) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    let Some(w) = current_worker() else {
        return f();
    };
    if current_exec().is_none() {
        return f();
    }
    let depth = BLOCKING.with(|b| {
        let d = b.get();
        b.set(d + 1);
        d
    });
    if depth == 0 {
        worker_sleeping(w, BlockedBy::Hint);
        pool::detector().worker_quiet(w, true);
    }
    struct Wake<'a>(&'a Worker, u32);
    impl Drop for Wake<'_> {
        fn drop(&mut self) {
            BLOCKING.with(|b| b.set(self.1));
            if self.1 == 0 && !FORKED_IN_ITEM.with(|f| f.get()) {
                pool::detector().worker_quiet(self.0, false);
                worker_running(self.0, BlockedBy::Hint);
            }
        }
    }
    let _wake = Wake(w, depth);
    f()
}

/// A worker is known to block (the kernel's wq_worker_sleeping): it leaves
/// `nr_running`; if that leaves the pool without a running worker while
/// items wait, wake an idle worker. `by`: hinted or detected. Returns
/// whether a worker was woken.
pub(crate) fn worker_sleeping(w: &Worker, by: BlockedBy) -> bool {
    let mut g = w.pool.lock();
    pool::mark_blocked(&mut g, w.slot, by)
}

/// A worker known to block runs again (the kernel's wq_worker_running).
pub(crate) fn worker_running(w: &Worker, by: BlockedBy) {
    let mut g = w.pool.lock();
    pool::mark_running(&mut g, w.slot, by);
}

/// CPU-time bookkeeping of one worker thread: CPU time is read at the
/// boundaries where the pwq being charged changes, when the worker goes
/// idle, and after long items, and charged to that pwq (G29 `cpu_time`).
/// Runs of short items of one workqueue cost no system call.
struct Acct {
    pwq: Option<Arc<Pwq>>,
    cpu0: u64,
    coarse0: u64,
    /// The last CLOCK_MONOTONIC_COARSE reading: taken once per item, at its
    /// end, and reused as the start of the next one (the clock's resolution
    /// is a scheduler tick, far coarser than the gap between two items).
    clock: u64,
    /// `cpu_intensive_thresh` in ns (0: disabled).
    hog_ns: u64,
}

/// Charge at least this often (ns of wall time) while busy.
const ACCT_PERIOD_NS: u64 = 2_000_000;

impl Acct {
    fn new() -> Acct {
        let now = util::coarse_ns();
        Acct {
            pwq: None,
            cpu0: util::thread_cpu_ns(),
            coarse0: now,
            clock: now,
            hog_ns: settings()
                .cpu_intensive_thresh
                .map_or(0, |d| d.as_nanos() as u64),
        }
    }

    fn charge(&mut self) {
        let now = util::thread_cpu_ns();
        if let Some(p) = &self.pwq {
            p.cpu_time_ns
                .fetch_add(now.saturating_sub(self.cpu0), Relaxed);
        }
        self.cpu0 = now;
        self.coarse0 = self.clock;
    }

    /// Read the coarse clock.
    #[inline]
    fn tick(&mut self) -> u64 {
        self.clock = util::coarse_ns();
        self.clock
    }

    fn begin(&mut self, pwq: &Arc<Pwq>) {
        if !self.pwq.as_ref().is_some_and(|p| Arc::ptr_eq(p, pwq)) {
            self.charge();
            self.pwq = Some(pwq.clone());
        }
    }

    fn idle(&mut self) {
        if self.pwq.is_some() {
            self.charge();
            self.pwq = None;
        }
    }
}

fn worker_main(w: Arc<Worker>) {
    setup_thread(&w);
    crate::config::run_thread_hook(true);
    SELF.with(|s| s.set(Arc::as_ptr(&w)));
    // `w` is held until this thread unregisters the word below.
    crate::sync::set_short_wait_word(&w.short_wait);
    let pool = w.pool;
    let mut acct = Acct::new();
    let mut deferred = Deferred::default();
    let mut g = pool.lock();
    // A lane worker going idle looks at its siblings once more before it
    // parks (`pool::idle_lane_looks_again`), once per idle period.
    let mut look_again = true;
    'woke_up: loop {
        // `create_worker` registers a worker idle before its thread starts,
        // so it may have been asked to give way (`WORKER_DIE`) before its
        // first look at the pool: it is judged as if woken. Later, only a
        // park can end with the flag set, and `idle_verdict` judges that.
        if g.workers[w.slot].flags & WORKER_DIE != 0
            && pool::idle_verdict(pool, &mut g, w.slot, true) == Idle::Leave
        {
            break 'woke_up;
        }
        leave_idle(&mut g, w.slot);
        // Whether this wake-up ran anything (for the CPU limit, below).
        let mut ran = false;
        if g.workers[w.slot].flags & WORKER_SEARCH != 0 {
            // Woken to search the sibling lanes (`pool::wakep`).
            pool::search(&mut g, w.slot);
        }
        'recheck: loop {
            if !need_more_worker(&g) {
                break 'recheck;
            }
            if !may_start_working(&g) && pool::manage_workers(pool, &mut g) {
                continue 'recheck;
            }
            if g.worklist.is_empty() {
                // A lane with no runner and a busy sibling: take from it,
                // then look again (the lock was released meanwhile: items
                // may have come, or the lane got a runner).
                pool::steal(&mut g);
                if g.worklist.is_empty() {
                    break 'recheck;
                }
                continue 'recheck;
            }
            let over = update_worker(&mut g, w.slot, |ws| ws.flags &= !WORKER_PREP);
            if pool::took_over_limit(&mut g, w.slot, over) {
                // Another pool took the CPU limit's last slot (G34).
                break 'recheck;
            }
            look_again = true;
            ran = true;
            loop {
                let work = g.worklist.pop_front().expect("worklist not empty");
                g = process_one_work(g, &w, &mut acct, &mut deferred, work);
                if !keep_working(&g) {
                    // A lane's runner that emptied its worklist takes from
                    // a busy sibling before it stops; and looks at its own
                    // again either way (the lock was released meanwhile:
                    // an item queued then saw it running and woke nobody).
                    if g.worklist.is_empty() && g.nr_running <= 1 {
                        pool::steal(&mut g);
                    }
                    if keep_working(&g) {
                        continue;
                    }
                    break;
                }
            }
            update_worker(&mut g, w.slot, |ws| ws.flags |= WORKER_PREP);
            break 'recheck;
        }
        if !ran && g.cpu_limited && cpu_limit::free() > 0 && !need_more_worker(&g) {
            // Woken for a slot of the CPU limit its pool no longer needs
            // (G34): pass the wake on to a limited pool that waits.
            g.limit_freed = true;
        }
        acct.idle();
        enter_idle(&mut g, w.slot);
        // Sleep until kicked; whether a worker that woke works, parks
        // again or leaves, and for how long it parks, is the pool's
        // policy (`pool::idle_park_for`, `pool::idle_verdict`).
        let mut park_for = pool::idle_park_for(pool, &g);
        loop {
            let woken = g.unlocked(|| {
                deferred.drop_now();
                if std::mem::take(&mut look_again) && pool::idle_lane_looks_again(pool) {
                    // Work it may take waits in a sibling lane: as if woken.
                    return true;
                }
                // Detection is told it parks and woke (`Monitoring`).
                pool::detector().worker_idle(&w, false);
                let woken = w.parker.park(Some(park_for));
                pool::detector().worker_idle(&w, true);
                woken
            });
            acct.tick();
            match pool::idle_verdict(pool, &mut g, w.slot, woken) {
                Idle::Work => continue 'woke_up,
                Idle::Leave => break 'woke_up,
                Idle::Park(d) => park_for = d,
            }
        }
    }
    pool::remove_worker(&mut g, w.slot);
    drop(g);
    deferred.drop_now();
    crate::sync::set_short_wait_word(ptr::null());
    SELF.with(|s| s.set(ptr::null()));
    crate::config::run_thread_hook(false);
}

fn leave_idle(g: &mut PoolState, slot: usize) {
    let ws = &mut g.workers[slot];
    if ws.flags & WORKER_IDLE != 0 {
        ws.flags &= !WORKER_IDLE;
        g.nr_idle -= 1;
        g.idle.retain(|&s| s != slot);
    }
}

fn enter_idle(g: &mut PoolState, slot: usize) {
    let ws = &mut g.workers[slot];
    debug_assert!(ws.flags & WORKER_IDLE == 0 && ws.flags & WORKER_PREP != 0);
    ws.flags |= WORKER_IDLE;
    ws.last_active = Instant::now();
    g.nr_idle += 1;
    g.idle.push(slot);
}

/// Thread setup: name is set by the builder; pin, nice, detection.
fn setup_thread(w: &Worker) {
    let tid = rustix::thread::gettid().as_raw_nonzero().get();
    w.tid.store(tid, Relaxed);
    // A worker made by the monitor inherits its SCHED_BATCH: workers run
    // at the normal policy.
    util::normal_policy();
    if let Some(id) = util::own_cpu_clock() {
        w.cpu_clock.store(id, Relaxed);
    }
    let pool = w.pool;
    w.pin_epoch.store(pool::PIN_EPOCH.0.load(Relaxed), Relaxed);
    let topo = crate::topology::topology();
    let cpus = pool.attrs.cpus.and(&topo.allowed);
    // G14: bound workers are pinned when their CPU is in the process's
    // mask; pools of other CPUs run unpinned (inheriting the mask).
    if !cpus.is_empty() {
        let _ = rustix::thread::sched_setaffinity(None, &cpus.to_rustix());
    }
    if pool.attrs.nice != 0 {
        let got = set_nice(tid, pool.attrs.nice);
        pool.nice_actual.store(got, Relaxed);
    }
    pool::detector().worker_started(w);
}

/// A worker of a per-CPU pool or a lane pins itself to its CPU again if
/// the monitor found pins taken away by a mask set from outside
/// (`pool::PIN_EPOCH`), where its CPU is in the mask it has now. Unlocked,
/// before an item: two relaxed loads when nothing changed.
#[inline]
fn repin_if_asked(w: &Worker) {
    let epoch = pool::PIN_EPOCH.0.load(Relaxed);
    if epoch == w.pin_epoch.load(Relaxed) {
        return;
    }
    w.pin_epoch.store(epoch, Relaxed);
    let pool = w.pool;
    if !pool.bound() && pool.lane.is_none() {
        return;
    }
    let Some(own) = crate::topology::affinity_mask() else {
        return;
    };
    let want = pool.attrs.cpus.and(&own);
    if !want.is_empty() && want != own {
        let _ = rustix::thread::sched_setaffinity(None, &want.to_rustix());
    }
}

/// Set the thread's nice level, or the best one allowed (G20).
fn set_nice(tid: i32, want: i32) -> i32 {
    let pid = rustix::process::Pid::from_raw(tid);
    let mut n = want;
    loop {
        if rustix::process::setpriority_process(pid, n).is_ok() {
            return n;
        }
        if n >= 0 {
            return rustix::process::getpriority_process(pid).unwrap_or(0);
        }
        n += 1;
    }
}

/// One execution's bookkeeping.
struct Exec {
    pwq: Arc<Pwq>,
    color: u8,
    active: bool,
    seq: u32,
}

/// Run one item taken off the worklist (the kernel's process_one_work). The
/// lock is dropped while the function runs.
fn process_one_work(
    mut g: PoolGuard,
    w: &Worker,
    acct: &mut Acct,
    deferred: &mut Deferred,
    work: Work,
) -> PoolGuard {
    let inner = work.inner();
    // SAFETY: the item was QUEUED on this pool's worklist and we hold the
    // pool lock, so its slot is stable and ours to read.
    let (pwq_ptr, color, active) = unsafe { inner.slot_read() };
    let seq = match inner.state.dequeue() {
        // G3: it is running on another worker, which will run it again.
        Dequeued::Collided => {
            deferred.put(&mut g, work);
            return g;
        }
        Dequeued::Start { seq } => seq,
    };
    // SAFETY: starting the execution made us the owner of the reference to
    // the pwq that the slot held (taken with `Arc::into_raw` at queue time).
    let pwq = unsafe { Arc::from_raw(pwq_ptr) };
    let pool = w.pool;
    let mut exec = Exec {
        pwq,
        color,
        active,
        seq,
    };
    start_exec(&mut g, w, &work, &exec, acct.clock);
    // Unbound and CPU_INTENSIVE: nobody counts as running, so chain-wake
    // the next idle worker for the next item.
    let k = pool::kick_pool(&mut g);
    if k != Kick::Woken && !g.worklist.is_empty() {
        // Items wait behind this execution: have the monitor watch it.
        pool::note_pending_behind_runner(pool, &g);
    }
    // A worker the kick asked for is created in the first unlocked section
    // below, so one lock round trip serves both the kick and the
    // execution. A rescuer never creates workers itself (the kernel's only
    // wakes idle ones): creation is what is failing; the monitor keeps
    // retrying it.
    if g.workers[w.slot].flags & WORKER_RESCUER != 0 {
        g.no_create();
    }
    let mut first = true;
    loop {
        let since = acct.clock;
        let cpu0 = acct.cpu0;
        let (panicked, item_cpu, traced) = g.unlocked(|| {
            if std::mem::take(&mut first) {
                deferred.drop_now();
            }
            repin_if_asked(w);
            acct.begin(&exec.pwq);
            CURRENT.with(|c| c.set(Some((work.as_ptr(), Arc::as_ptr(&exec.pwq)))));
            crate::trace::execute_start!(exec.pwq.wq.name, work);
            // The one load tracing costs when no tracer is attached. The
            // ring is made here, outside the pool lock (its registry's lock
            // is never taken under a pool lock).
            let traced = crate::trace::on().then(|| {
                crate::trace::ring_in(&w.trace_ring, || crate::trace::Owner {
                    tid: w.tid.load(Relaxed),
                    pool: w.pool.id,
                    name: w.pool.worker_name(w.id),
                });
                crate::trace::Record {
                    wq: Arc::as_ptr(&exec.pwq.wq) as usize,
                    item: work.name(),
                    cpu: util::current_cpu() as u32,
                    queued_ns: inner.queued_ns.load(Relaxed),
                    start_ns: util::mono_ns(),
                    ..Default::default()
                }
            });
            #[cfg(feature = "tracing")]
            let span = tracing::trace_span!(
                target: "cmwq",
                "execute",
                workqueue = %exec.pwq.wq.name,
                item = work.name().unwrap_or("work"),
                cpu = util::current_cpu(),
            )
            .entered();
            // SAFETY: we hold RUNNING for this execution, so no other thread
            // calls the function (G3).
            let r = catch_unwind(AssertUnwindSafe(|| unsafe { inner.call(&work) }));
            #[cfg(feature = "tracing")]
            drop(span);
            if FORKED_IN_ITEM.with(|f| f.get()) {
                item_returned_in_forked_child(r.is_err());
            }
            CURRENT.with(|c| c.set(None));
            crate::trace::execute_end!(exec.pwq.wq.name, work);
            let panicked = match r {
                Ok(()) => false,
                Err(payload) => {
                    report_panic(&exec.pwq, &work, payload);
                    true
                }
            };
            // A long item: measure its CPU time (for the hog count) before
            // the periodic charge resets the baseline. The baseline was
            // taken at or before the item's start, so this may include up to
            // one charging period of earlier short items.
            let now = acct.tick();
            let mut item_cpu = 0;
            if acct.hog_ns > 0 && now.saturating_sub(since) >= acct.hog_ns {
                item_cpu = util::thread_cpu_ns().saturating_sub(cpu0);
            }
            if now.saturating_sub(acct.coarse0) >= ACCT_PERIOD_NS {
                acct.charge();
            }
            (panicked, item_cpu, traced)
        });
        if let (Some(mut rec), Some(ring)) = (traced, w.trace_ring.get()) {
            rec.end_ns = util::mono_ns();
            g.workers[w.slot].blocked_spans.take_into(&mut rec);
            // SAFETY: a worker's ring is pushed to by that worker's thread
            // only, and this is it.
            unsafe { ring.push(rec) };
        }
        // Back under our pool lock: account the execution before it ends,
        // so that a flush that returns sees the workqueue's books balanced.
        let ws = &g.workers[w.slot];
        let managed = ws.flags & WORKER_CPU_INTENSIVE == 0; // hogs are managed items
        if managed && !ws.hog && !ws.blocked_in_item && acct.hog_ns > 0 && item_cpu >= acct.hog_ns {
            // A hog nobody flagged while it ran (nothing waited behind it).
            pwq::bump(&mut g, pool, &exec.pwq, pwq::Stat::CpuHog);
        }
        // The kernel's order: the execution's counters first (so a flush
        // that returns sees them), then the item reads idle, and only then
        // its in-flight count drops, which is what releases workqueue
        // flushers and drainers: when `Workqueue::flush` returns, the items
        // it waited for read idle (G7), panicking ones too (G5).
        count_exec(&mut g, pool, &exec, panicked);
        inner.done.store(exec.seq, Release);
        let finished = inner.state.finish();
        let next = match finished {
            Finished::Idle { waiters } | Finished::Handover { waiters } => {
                if waiters {
                    work.wake_waiters();
                }
                matches!(finished, Finished::Handover { .. })
            }
        };
        if !next {
            end_exec(&mut g, pool, w.slot, exec);
            break;
        }
        let prev = std::mem::replace(&mut exec, handover(&mut g, w, &work, acct.clock));
        end_exec(&mut g, pool, w.slot, prev);
    }
    update_worker(&mut g, w.slot, |ws| {
        ws.current = None;
        ws.flags &= !WORKER_CPU_INTENSIVE;
        ws.blocked = None;
    });
    g.nr_completed += 1;
    pool.completed.store(g.nr_completed, Relaxed);
    deferred.put(&mut g, work);
    g
}

/// Record the start of an execution on the worker (under its pool lock).
fn start_exec(g: &mut PoolState, w: &Worker, work: &Work, exec: &Exec, since: u64) {
    // G16: CPU_INTENSIVE items do not count toward concurrency (on a
    // managed unbound pool, up to its cap: `may_leave_cm`).
    let intensive = exec.pwq.wq.flags.contains(WqFlags::CPU_INTENSIVE)
        && crate::pool::may_leave_cm(w.pool, g, w.slot);
    let mut rescuer = false;
    update_worker(g, w.slot, |ws| {
        rescuer = ws.flags & WORKER_RESCUER != 0;
        ws.current = Some(Current {
            work: work.as_ptr(),
            pwq: Arc::as_ptr(&exec.pwq),
            since,
        });
        ws.blocked_in_item = false;
        ws.hog = false;
        // Blocked spans of earlier executions (or of one that started
        // untraced) are not this one's.
        ws.blocked_spans = crate::trace::Blocked::default();
        // The caller is this worker, running: a mark left from the previous
        // execution (a G3 hand-over starts the next one without going
        // through the end-of-item reset) no longer holds.
        ws.blocked = None;
        if intensive {
            ws.flags |= WORKER_CPU_INTENSIVE;
        } else {
            ws.flags &= !WORKER_CPU_INTENSIVE;
        }
    });
    if g.cpu_limited && w.pool.lane.is_some() {
        // Its CPU's sentinel disarms while the limit holds this lane back,
        // or while this worker's last item was a CPU hog (neither counts
        // in `nr_running`: `Pick::Limited`): it watches this execution
        // (a G3 hand-over's too). One swap per item, under the CPU limit
        // only, under the pool lock (the sentinel's look after it
        // disarms takes it: see there).
        if let Some(cpu) = w.pool.attrs.cpus.first() {
            crate::pool::detector().arm_sentinel_of(cpu);
        }
    }
    // Only this thread writes exec_seq: no read-modify-write needed.
    w.exec_seq.store(w.exec_seq.load(Relaxed) + 1, Relaxed);
    g.nr_started += 1;
    crate::pool::standby_tick(g, since);
    pwq::bump(g, w.pool, &exec.pwq, pwq::Stat::Started);
    if rescuer && ptr::eq(exec.pwq.pool, w.pool) {
        g.pwqs[exec.pwq.slot].stats.rescued += 1;
    }
}

/// The worker's handle on the item it ran last, given up at its next
/// unlocked moment (the next execution's unlocked section, or before it
/// parks): never under the pool lock, since whether it is the last handle
/// (whose drop runs the closure's destructor, user code) can change at any
/// moment, and without an extra lock round trip per item.
#[derive(Default)]
struct Deferred(Option<Work>);

impl Deferred {
    /// Keep `work` to drop later (under the pool lock `g`).
    fn put(&mut self, g: &mut PoolGuard, work: Work) {
        if let Some(old) = self.0.replace(work) {
            // Two in a row without an unlocked moment (a collision): drop
            // the older one now.
            g.unlocked(move || crate::pool::work::drop_contained(old));
        }
    }

    /// Drop the kept handle; only without the pool lock.
    fn drop_now(&mut self) {
        if let Some(w) = self.0.take() {
            crate::pool::work::drop_contained(w);
        }
    }
}

/// Count a finished execution on its pwq, while it still reads running
/// (a pwq of another pool, after a hand-over or a steal, in its
/// `ForeignStats`).
fn count_exec(g: &mut PoolGuard, pool: &'static WorkerPool, exec: &Exec, panicked: bool) {
    pwq::bump(g, pool, &exec.pwq, pwq::Stat::Completed);
    if panicked {
        pwq::bump(g, pool, &exec.pwq, pwq::Stat::Panic);
    }
}

/// Retire an execution that ended (and reads idle, or was handed over):
/// drop its in-flight count on its pwq (which may belong to another pool
/// after a handover), releasing flushers. `g` is the worker's own pool
/// lock.
fn end_exec(g: &mut PoolGuard, pool: &'static WorkerPool, slot: usize, exec: Exec) {
    if ptr::eq(exec.pwq.pool, pool) {
        if pwq::dec_nr_in_flight(g, &exec.pwq, exec.color, exec.active) {
            // A worker this asks for is created when the caller next
            // unlocks (a rescuer never creates one: see process_one_work).
            pool::kick_pool(g);
            if g.workers[slot].flags & WORKER_RESCUER != 0 {
                g.no_create();
            }
        }
    } else {
        let other = exec.pwq.pool;
        g.unlocked(|| {
            let mut g2 = other.lock();
            if pwq::dec_nr_in_flight(&mut g2, &exec.pwq, exec.color, exec.active) {
                pool::kick_pool(&mut g2);
            }
        });
    }
}

/// G3 hand-over: a collided pending instance was handed to us when the
/// previous execution ended. Start it (under our pool lock `g`).
fn handover(g: &mut PoolGuard, w: &Worker, work: &Work, since: u64) -> Exec {
    let inner = work.inner();
    // SAFETY: `finish` returned Handover, which made us the owner of
    // PENDING, so the slot is ours to read.
    let (pwq_ptr, color, active) = unsafe { inner.slot_read() };
    // SAFETY: the slot held a reference taken with `Arc::into_raw`, which
    // we now own.
    let pwq = unsafe { Arc::from_raw(pwq_ptr) };
    let (seq, waiters) = inner.state.start_handover();
    if waiters {
        work.wake_waiters();
    }
    let exec = Exec {
        pwq,
        color,
        active,
        seq,
    };
    start_exec(g, w, work, &exec, since);
    exec
}

fn report_panic(pwq: &Pwq, work: &Work, payload: Box<dyn std::any::Any + Send>) {
    let msg = util::panic_message(&*payload);
    crate::event::PANICS.report(Event::WorkPanicked {
        workqueue: &pwq.wq.name,
        work: work.name(),
        message: &msg,
    });
    // The payload may run user code when dropped; contain that too.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
}

// ---------------------------------------------------------------- rescuers

/// A rescuer not attached to any pool (`Rescuer::attached`).
pub(crate) const DETACHED: u32 = u32::MAX;

/// The rescuer of one `MEM_RECLAIM` workqueue: a worker of its own (the
/// kernel's `wq->rescuer`, with `wq->maydays`), which `rescuer.rs` starts,
/// runs and stops. Annotations: `src/LOCKING.md`; `M:` is the mayday-list
/// lock, a leaf taken under a pool lock (the kernel's `wq_mayday_lock`).
pub(crate) struct Rescuer {
    /// I: the thread name, `kworker/R-NAME` cut to 15 bytes.
    pub(crate) name: String,
    /// A: wakes the thread.
    pub(crate) parker: Parker,
    /// M: pwqs that sent a mayday, FIFO (the kernel's `wq->maydays`).
    pub(crate) maydays: Mutex<VecDeque<Arc<Pwq>>>,
    /// A: the workqueue is destroyed: exit once the list is empty.
    pub(crate) stop: AtomicBool,
    /// A: the thread id (0 until it runs).
    pub(crate) tid: AtomicI32,
    /// A: the id of the pool it is attached to, or `DETACHED`.
    pub(crate) attached: AtomicU32,
    /// Its own lock: the thread, joined when the workqueue is destroyed.
    pub(crate) thread: Mutex<Option<JoinHandle<()>>>,
    /// A: in a child process after `fork()`, its thread does not exist:
    /// started again when the monitor starts there (G26).
    pub(crate) needs_thread: AtomicBool,
}

impl Rescuer {
    /// Put a pwq on the mayday list and wake the thread. The caller holds
    /// the pwq's pool lock and has set its `on_mayday`.
    pub(crate) fn push(&self, pwq: Arc<Pwq>) {
        self.maydays.lock().push_back(pwq);
        self.parker.unpark();
    }
}

/// A rescuer runs the items of its workqueue's pwq `pwq` that wait on that
/// pwq's pool (the kernel's rescuer_thread, for one mayday): it attaches to
/// the pool as an extra worker (pinned to the pool's CPUs; `WORKER_PREP`
/// kept, so it never counts in `nr_running`), runs those items one by one
/// through the same path as any worker (non-reentrancy, max_active, flush
/// colours and stats all hold; each execution counts in `rescued`), then
/// detaches. If the pool still cannot get a worker and more of the pwq's
/// items wait, it asks again.
pub(crate) fn rescue(r: &Rescuer, pwq: Arc<Pwq>) {
    let pool = pwq.pool;
    let topo = crate::topology::topology();
    let cpus = pool.attrs.cpus.and(&topo.allowed);
    if !cpus.is_empty() {
        let _ = rustix::thread::sched_setaffinity(None, &cpus.to_rustix());
    }
    let target = Arc::as_ptr(&pwq);
    let mine = |i: &WorkInner| ptr::addr_eq(i.queued_pwq_raw(), target);
    let mut g = pool.lock();
    if pwq.released.load(Relaxed) {
        return;
    }
    g.pwqs[pwq.slot].on_mayday = false;
    let w = crate::pool::WorkerSlot::insert(&mut g, pool, 0, WORKER_RESCUER);
    let slot = w.slot;
    w.tid.store(r.tid.load(Relaxed), Relaxed);
    if let Some(id) = util::own_cpu_clock() {
        w.cpu_clock.store(id, Relaxed);
    }
    r.attached.store(pool.id, Relaxed);
    SELF.with(|s| s.set(Arc::as_ptr(&w)));
    let mut acct = Acct::new();
    let mut deferred = Deferred::default();
    // The items waiting now; ones queued meanwhile wait for the next round
    // (asked for below while the pool still needs help).
    let mut budget = 0usize;
    g.worklist.for_each(|i| budget += mine(i) as usize);
    while budget > 0 {
        let Some(work) = g.worklist.take_first(mine) else {
            break;
        };
        budget -= 1;
        acct.tick();
        g = process_one_work(g, &w, &mut acct, &mut deferred, work);
    }
    let mut more = false;
    g.worklist.for_each(|i| more |= mine(i));
    if more && pool::need_to_create_worker(&g) && !g.pwqs[pwq.slot].on_mayday {
        g.pwqs[pwq.slot].on_mayday = true;
        r.push(pwq.clone());
    }
    // Leave the rest to the pool's workers: wake an idle one if there is
    // one (never create one, see process_one_work).
    pool::kick_pool(&mut g);
    g.no_create();
    let ws = g.workers.remove(slot);
    drop(g);
    r.attached.store(u32::MAX, Relaxed);
    SELF.with(|s| s.set(ptr::null()));
    acct.idle();
    deferred.drop_now();
    drop(ws);
}
