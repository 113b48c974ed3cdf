//! The monitor: automatic block detection and CPU-hog detection for
//! managed pools (G15, G16, G19), and retries of failed worker creation.
//!
//! The kernel learns that a worker blocks from the scheduler
//! (`wq_worker_sleeping`); userspace has no such hook, so one monitor
//! thread (and, in the default mode, a sentinel thread per CPU) watches the
//! workers that matter, in the best mode available:
//!
//! * **sentinel**: a thread per CPU at `SCHED_IDLE`, armed while a pool
//!   there has work pending behind a running worker, runs only when its
//!   CPU would otherwise go idle and marks the runner it finds blocked
//!   (`sentinel.rs`); the monitor samples `/proc` as a backstop, rarely
//!   while the runner has its CPU alone.
//! * **perf**: every worker opens a dummy perf event with `context_switch`
//!   on itself. Its ring receives a record at each switch; a switch-out
//!   without the preempt flag means the worker blocked, a switch-in that it
//!   runs again. The monitor polls the rings of the runners it watches and
//!   marks a runner blocked once it has been switched out for the stall
//!   window, running again at its switch-in. Exact and event driven.
//! * **proc**: where perf is refused, the monitor samples
//!   `/proc/self/task/TID/stat` (state letter) and `schedstat` (run time)
//!   through held file descriptors, only for runners whose current item has
//!   run longer than the stall window. Blocked = not `R` over a whole
//!   stall window with no run time gained.
//! * **progress**: where neither is available, a pool with pending items
//!   whose items stopped completing for a while gets another worker.
//! * **hint**: only the explicit [`blocking`](crate::blocking) hint.
//!
//! The monitor sleeps (no timer) while no managed pool has work pending
//! behind a running worker: queuers flag such a pool (`watched`) and wake
//! the monitor once per busy period. The rules are pure functions in
//! `policy.rs`; `README.md` beside this file has the whole picture.

pub(crate) mod perf;
pub(crate) mod policy;
pub(crate) mod procstat;
pub(crate) mod sentinel;
pub(crate) mod state;

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::*};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::config::{settings, Detect};
use crate::pool::worker::Worker;
use crate::pool::{self, pools_if_started, WorkerPool, WORKER_CPU_INTENSIVE, WORKER_RESCUER};
use crate::util;
use state::DetectState;

impl DetectState {
    /// hog: take the worker's CPU clock now as the baseline of the item's
    /// CPU use.
    fn rebase_cpu(&mut self, w: &Worker, now: u64, hog: Option<u64>) {
        self.cpu_base = read_cpu(w);
        self.hog_at = hog.map_or(0, |th| now + th);
    }

    /// perf: switch the ring on or off to match `watch && !quiet`. Records
    /// are written (and wake the monitor) only for workers of watched pools
    /// that may block unannounced, so switches that nobody needs to see
    /// cost neither a record nor a wake-up. Records left from before are
    /// dropped when it goes on; `resync`: whether the next check must ask
    /// /proc what the worker did meanwhile (not when the worker itself
    /// switches it on: it is running).
    /// Returns whether it switched the ring on.
    fn apply(&mut self, resync: bool) -> bool {
        let want = self.watch && !self.quiet;
        let Some(r) = self.ring.as_mut() else {
            return false;
        };
        if want == self.on || r.set_enabled(want).is_err() {
            return false;
        }
        self.on = want;
        if want {
            r.drain(|_| {});
            self.blocked_since = None;
            self.resync = resync;
        }
        want
    }
}

/// perf: the monitor watches (or stops watching) a worker's pool.
fn ring_watch(w: &Worker, watch: bool) {
    debug_assert!(on_monitor(), "only the monitor watches rings");
    let mut d = w.detect.lock();
    if d.watch != watch {
        d.watch = watch;
        d.apply(true);
    }
}

/// perf: the calling worker parks idle or enters `blocking()` (`quiet`),
/// or is back to work: no records while it is quiet. Returns whether this
/// switched its ring on (its pool is watched).
fn worker_quiet(w: &Worker, quiet: bool) -> bool {
    if mode() != Mode::Perf || !w.pool.managed() {
        return false;
    }
    let mut d = w.detect.lock();
    d.quiet = quiet;
    d.apply(false)
}

/// The resolved detection mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Mode {
    Perf = 1,
    Proc = 2,
    Progress = 3,
    Hint = 4,
    Sentinel = 5,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Perf => "perf",
            Mode::Proc => "proc",
            Mode::Progress => "progress",
            Mode::Hint => "hint",
            Mode::Sentinel => "sentinel",
        }
    }
}

struct Monitor {
    mode: Mode,
    /// Why the requested mode was not used, if it was not.
    fallback: Option<String>,
    wake_fd: Option<OwnedFd>,
    running: AtomicBool,
}

static MONITOR: OnceLock<Monitor> = OnceLock::new();
static MODE: AtomicU8 = AtomicU8::new(0);
/// Wake-ups of the monitor thread (for B9 and tests).
pub(crate) static WAKEUPS: AtomicU64 = AtomicU64::new(0);
/// Runners the monitor marked blocked, and CPU hogs it flagged.
pub(crate) static MARKED_BLOCKED: AtomicU64 = AtomicU64::new(0);
pub(crate) static MARKED_HOG: AtomicU64 = AtomicU64::new(0);

fn resolve_mode() -> (Mode, Option<String>) {
    let want = settings().detect;
    let proc_or_progress = |why: String| match procstat::probe() {
        Ok(()) => (Mode::Proc, Some(why)),
        Err(e) => (Mode::Progress, Some(format!("{why}; proc: {e}"))),
    };
    match want {
        Detect::Hint => (Mode::Hint, None),
        Detect::Progress => (Mode::Progress, None),
        Detect::Proc => match procstat::probe() {
            Ok(()) => (Mode::Proc, None),
            Err(e) => (Mode::Progress, Some(format!("proc: {e}"))),
        },
        // The sentinels need /proc to tell a blocked runner from a
        // preempted one; each CPU whose sentinel cannot run falls back to
        // /proc sampling at run time (`dump()` says which).
        Detect::Sentinel => match procstat::probe() {
            Ok(()) => (Mode::Sentinel, None),
            Err(e) => (Mode::Progress, Some(format!("sentinel: {e}"))),
        },
        Detect::Auto if procstat::probe().is_ok() => (Mode::Sentinel, None),
        Detect::Perf | Detect::Auto => match perf::probe() {
            Ok(()) => (Mode::Perf, None),
            Err(e) if want == Detect::Auto => {
                let (m, _) = proc_or_progress(String::new());
                (m, Some(format!("sentinel: /proc unreadable; perf: {e}")))
            }
            Err(e) => proc_or_progress(format!("perf: {e}")),
        },
    }
}

/// The detection mode in use.
pub(crate) fn mode() -> Mode {
    match MODE.load(Relaxed) {
        1 => Mode::Perf,
        2 => Mode::Proc,
        3 => Mode::Progress,
        4 => Mode::Hint,
        5 => Mode::Sentinel,
        _ => MONITOR.get().map_or(Mode::Hint, |m| m.mode),
    }
}

/// A line for `dump()`: the mode and why, if it is not the one asked for.
pub(crate) fn describe() -> String {
    let asked = settings().detect;
    match MONITOR.get() {
        None => format!("detect: {} (not started)", asked.name()),
        Some(m) => {
            let mut s = format!("detect: {} (asked: {})", m.mode.name(), asked.name());
            if let Some(f) = &m.fallback {
                if !f.is_empty() {
                    s.push_str(&format!("; unavailable: {f}"));
                }
            }
            if !m.running.load(Relaxed) {
                if RETIRED.load(Relaxed) {
                    // Workers first at a thread budget (G4).
                    s.push_str(
                        "; monitor thread not running (retired: its thread went to a worker at the thread limit): \
                         blocks seen through the blocking() hint only, no CPU-hog detection, no mayday, \
                         no watchdog; worker creation retried by waiters and by calls into the library",
                    );
                } else {
                    s.push_str("; monitor thread not running: hint only");
                }
            }
            if m.mode == Mode::Sentinel {
                for line in sentinel::describe() {
                    s.push_str("\n  ");
                    s.push_str(&line);
                }
            }
            s
        }
    }
}

/// What the pools see of block detection (`pool::Detector`): the monitor
/// and, in sentinel mode, the sentinels.
struct Monitoring;

impl pool::Detector for Monitoring {
    fn wake(&self) {
        wake();
    }

    fn arm_sentinels(&self, pool: &'static WorkerPool) {
        sentinel::arm(pool);
    }

    fn arm_sentinel_of(&self, cpu: usize) {
        sentinel::arm_cpu(cpu);
    }

    fn defer_creation(&self) -> bool {
        if !sentinel::on_sentinel() {
            return false;
        }
        // A thread made here would inherit SCHED_IDLE: the monitor makes it.
        sentinel::CREATE_WANTED.store(true, Relaxed);
        true
    }

    fn ensure_running(&self) {
        ensure_running();
    }

    fn retire_helper(&self, failing_for_ns: u64) -> bool {
        retire_helper(failing_for_ns)
    }

    fn running(&self) -> bool {
        started()
    }

    fn worker_started(&self, w: &Worker) {
        worker_started(w);
    }

    fn worker_quiet(&self, w: &Worker, quiet: bool) {
        worker_quiet(w, quiet);
    }

    fn worker_idle(&self, w: &Worker, woke: bool) {
        // No switch records while parked (perf detection). Its switch-in
        // goes unrecorded: if it runs an item of a watched pool, the
        // monitor is told (its blocks are recorded from now on).
        if worker_quiet(w, !woke) && woke {
            new_runner_unrecorded();
        }
    }
}

/// Start the monitor thread (once, by `init::start`, before any workqueue
/// exists), and become the pools' detector.
pub(crate) fn start() {
    pool::set_detector(&Monitoring);
    MONITOR.get_or_init(|| {
        let (mode, fallback) = resolve_mode();
        MODE.store(mode as u8, Relaxed);
        let wake_fd = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )
        .ok();
        Monitor {
            mode,
            fallback,
            wake_fd,
            running: AtomicBool::new(false),
        }
    });
    spawn_monitor();
    if mode() == Mode::Sentinel {
        sentinel::start_all();
    }
}

/// A start of the monitor thread is in flight or done.
static STARTED: AtomicBool = AtomicBool::new(false);
/// The monitor thread is asked to exit at its next pass ([`retire_helper`]).
static RETIRE: AtomicBool = AtomicBool::new(false);
/// It exited for a worker, and has not started again since (`dump()`).
static RETIRED: AtomicBool = AtomicBool::new(false);

/// Workers first at a thread budget (G4): a pool with items waiting could
/// not create a worker for want of a thread, and no idle worker of another
/// pool could give way. The library gives up its optional threads, one per
/// failed creation, in this order: a sentinel (its CPU falls back to the
/// monitor's `/proc` backstop), then the monitor thread itself (detection
/// falls back to the `blocking()` hint; creation is retried by waiters and
/// by calls into the library, as before the monitor starts). The timer
/// thread (delayed work) and rescuers (G22) are never given up: items
/// depend on them. Sentinels come back when the monitor finds no pool
/// waiting for a worker; the monitor when a worker is created again
/// ([`ensure_running`]). Whether one was asked to go.
fn retire_helper(failing_for_ns: u64) -> bool {
    // One given up less than a cooldown ago may not have exited yet (its
    // status changes before its thread is gone): the retry after the
    // cooldown has its thread.
    let now = util::mono_ns();
    let last = LAST_RETIRE_NS.load(SeqCst);
    if last != 0 && now.saturating_sub(last) < settings().create_cooldown.as_nanos() as u64 {
        return true;
    }
    let asked = (mode() == Mode::Sentinel && sentinel::retire_one())
        // The monitor only while no worker exists at all: once one does,
        // it becomes idle in time and gives its thread way to the pool
        // that waits (`give_way_for`), which the monitor's retries after
        // each cooldown need to happen without any call into the library.
        // And never while a rescuer exists: the maydays that call it are
        // the monitor's timers (G22), and a rescuer is what a
        // `MEM_RECLAIM` workqueue counts on at a thread limit.
        // And only once creation has failed for a while: a passing
        // failure must not leave the items to calls into the library.
        || (failing_for_ns >= policy::MONITOR_RETIRE_AFTER_NS
            && !pool::any_worker()
            && pool::NR_RESCUERS.load(SeqCst) == 0
            && STARTED.load(SeqCst)
            && MONITOR.get().is_some_and(|m| m.running.load(SeqCst))
            && {
                if !RETIRE.swap(true, SeqCst) {
                    wake();
                }
                true
            });
    if asked {
        LAST_RETIRE_NS.store(now, SeqCst);
    }
    asked
}

/// When [`retire_helper`] last gave up a thread (mono ns; 0: never).
static LAST_RETIRE_NS: AtomicU64 = AtomicU64::new(0);

/// A failed start was reported (once: the retries are quiet).
static START_FAILURE_REPORTED: AtomicBool = AtomicBool::new(false);

fn spawn_monitor() {
    if STARTED.swap(true, AcqRel) {
        return;
    }
    // A retirement asked of an earlier monitor is not this one's.
    RETIRE.store(false, SeqCst);
    let spawned = crate::fault::check_spawn().and_then(|()| {
        std::thread::Builder::new()
            .name("cmwq-monitor".into())
            .spawn(monitor_main)
    });
    if let Err(e) = spawned {
        STARTED.store(false, Release);
        if !START_FAILURE_REPORTED.swap(true, Relaxed) {
            crate::event::report(crate::Event::Misuse {
                message: &format!(
                    "could not start the monitor thread ({e}): block detection limited to the blocking() hint until it can be started (retried with worker creation)"
                ),
            });
        }
    }
}

/// Whether the monitor thread was started (or its start is in flight);
/// true before the monitor is set up (nothing to retry then).
#[inline]
pub(crate) fn started() -> bool {
    MONITOR.get().is_none() || STARTED.load(Relaxed)
}

/// Start the monitor thread if it could not start before (a thread limit at
/// first use). Called where a thread was just had (a worker was created)
/// and by waiters helping stalled creations; one load when it runs.
#[inline]
pub(crate) fn ensure_running() {
    // A monitor that retired for a worker comes back only once no pool
    // waits for one: the thread a created worker freed is theirs first.
    if !STARTED.load(Acquire)
        && MONITOR.get().is_some()
        && !(RETIRED.load(Relaxed) && pool::creation_stalled())
    {
        spawn_monitor();
    }
}

/// Until when (mono ns) the monitor sleeps: 0 while it is awake, u64::MAX
/// while it sleeps with no timeout.
static SLEEP_UNTIL: AtomicU64 = AtomicU64::new(0);

/// perf: a worker woke from idle with its ring off: nothing in its ring
/// told the monitor, which must look again once the worker has taken its
/// item (it is not `current` yet), to follow it from near its start.
static ANNOUNCED: AtomicBool = AtomicBool::new(false);

/// perf: a worker of a watched pool woke from idle with its ring off (so
/// its switch-in woke nobody). If it goes on to run a CPU hog, the monitor
/// must see it soon enough to flag it near `cpu_intensive_thresh`: ask for
/// a second look shortly after the worker has taken its item, and wake the
/// monitor if it is in a pass (which may miss the worker) or would sleep
/// past half the threshold; otherwise it looks soon enough anyway (the
/// records and timers of the pool's other runners wake it). Off the item
/// path: one store, one load and a clock read per wake-up from idle.
#[cold]
fn new_runner_unrecorded() {
    follow_new_runner();
}

/// A runner the monitor has not seen yet starts (a worker woken unrecorded,
/// or a spare a sentinel woke, whose marked predecessor's return must be
/// looked for too): have the monitor look soon ([`policy::wake_to_follow`]),
/// so that a CPU hog is flagged near the threshold. The next pass looks
/// twice ([`ANNOUNCED`]); the monitor is woken only if it is in a pass
/// (which may miss the runner) or would sleep past that, not at every new
/// runner: a blocking service starts one per block, and a wake-up each cost
/// 27 us of CPU per request in B10.
fn follow_new_runner() {
    let th = settings().cpu_intensive_thresh.map(|d| d.as_nanos() as u64);
    ANNOUNCED.store(true, SeqCst);
    // Against the monitor's store of 0 and swap of ANNOUNCED (the other
    // order): one of the two sides sees the other's write.
    let until = SLEEP_UNTIL.load(SeqCst);
    if policy::wake_to_follow(until, util::mono_ns(), th) {
        wake();
    }
}

/// In the child after `fork()` (G26): the monitor thread does not exist
/// here; it starts again with the first worker the child creates. Its
/// wake-up eventfd is shared with the parent's monitor (one open file
/// across the fork), so the same descriptor number is pointed at a new
/// one. Only async-signal-safe calls.
pub(crate) fn reset_after_fork() {
    let Some(m) = MONITOR.get() else {
        return;
    };
    if let Some(fd) = &m.wake_fd {
        // SAFETY: plain system calls on descriptors: `new` is ours, `fd`
        // is the monitor's, replaced in this process only (dup3 is atomic:
        // the number never refers to nothing).
        unsafe {
            let new = libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK);
            if new >= 0 {
                libc::dup3(new, fd.as_raw_fd(), libc::O_CLOEXEC);
                libc::close(new);
            }
        }
    }
    m.running.store(false, SeqCst);
    sentinel::reset_after_fork();
    STARTED.store(false, SeqCst);
    RETIRE.store(false, SeqCst);
    RETIRED.store(false, SeqCst);
    LAST_RETIRE_NS.store(0, SeqCst);
    SLEEP_UNTIL.store(0, SeqCst);
    ANNOUNCED.store(false, SeqCst);
    RESTART_RESCUERS.store(true, SeqCst);
}

/// Set in a forked child: the monitor starts the rescuers' threads again
/// when it starts ([`CHILD_RESTART`]).
static RESTART_RESCUERS: AtomicBool = AtomicBool::new(false);

/// What the monitor runs when it starts in a forked child: set by the
/// fork layer (`fork::register`), which knows the workqueues' threads; a
/// hook, so that detection does not name the layers above it.
static CHILD_RESTART: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Have the monitor run `restart` when it starts in a forked child.
pub(crate) fn on_child_start(restart: fn()) {
    let _ = CHILD_RESTART.set(restart);
}

/// Wake the monitor: a pool needs watching, or a creation must be retried.
#[inline]
pub(crate) fn wake() {
    if let Some(fd) = MONITOR.get().and_then(|m| m.wake_fd.as_ref()) {
        let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
    }
}

/// Called by each worker thread at start: set up what the monitor needs to
/// watch it.
fn worker_started(w: &Worker) {
    if !w.pool.managed() {
        return;
    }
    let mut d = w.detect.lock();
    match mode() {
        Mode::Perf => {
            // On at once if the pool is watched now; otherwise the monitor
            // switches it on when the pool needs watching.
            let on = w.pool.watched.load(Relaxed);
            d.ring = perf::SwitchRing::open_current_thread(perf::DEFAULT_DATA_PAGES, on).ok();
            d.watch = on;
            d.on = on && d.ring.is_some();
        }
        // Its /proc files are opened when it is first sampled
        // (`Worker::task_stat`).
        Mode::Proc | Mode::Sentinel | Mode::Progress | Mode::Hint => {}
    }
}

use policy::{NEW_RUNNER_LOOK_NS, PROC_MAX_INTERVAL_NS};

/// A runner being watched in one pass.
struct Runner {
    w: Arc<Worker>,
    exec: u64,
    blocked_by_monitor: bool,
}

/// What the monitor decided about a runner.
enum Verdict {
    Nothing,
    Blocked,
    Running,
    Hog,
}

thread_local! {
    /// This thread is the monitor (debug check of "Detection state" in
    /// `src/LOCKING.md`: only the monitor decides).
    static IS_MONITOR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is the monitor.
fn on_monitor() -> bool {
    IS_MONITOR.with(|m| m.get())
}

fn monitor_main() {
    IS_MONITOR.with(|m| m.set(true));
    let m = MONITOR.get().expect("monitor initialised");
    m.running.store(true, Relaxed);
    RETIRED.store(false, Relaxed);
    // Sentinels are optional: not while a pool waits for a worker (the
    // periodic retry starts them later).
    if m.mode == Mode::Sentinel && !pool::creation_stalled() {
        sentinel::start_all();
    }
    if RESTART_RESCUERS.swap(false, SeqCst) {
        // A forked child: the threads the workqueue layer above keeps
        // (rescuers, the control socket) start again, from a thread that is
        // not in a fork handler.
        if let Some(restart) = CHILD_RESTART.get() {
            restart();
        }
    }
    // Precise sleeps: the stall window is a few hundred microseconds.
    // SAFETY: PR_SET_TIMERSLACK only affects the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000u64, 0, 0, 0);
    }
    // SCHED_BATCH: a normal share of CPU, but a wake-up never preempts the
    // running thread. In perf mode the monitor is woken by the context
    // switches of the workers it watches; if its wake-up preempted a
    // watched worker, that preemption would itself write switch records
    // and wake it again, a loop that burns the very CPU it watches. In the
    // sampling modes a preempting monitor would interrupt a CPU-bound
    // runner at every sample (SCHED_OTHER made scenarios_proc's timelines
    // miss: 20 preemptions of a 20 ms burn). When a watched worker
    // blocks, its CPU goes idle and the monitor can run there at once.
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: valid policy and parameter for the calling thread (pid 0).
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
    }
    let stall = settings().stall_window.as_nanos() as u64;
    let hog = settings().cpu_intensive_thresh.map(|d| d.as_nanos() as u64);
    // Progress mode: a pool whose items stopped completing for this long.
    let progress_window = policy::progress_window(stall);
    // Hysteresis before a pool with nothing pending stops being watched.
    let unwatch_after = policy::UNWATCH_AFTER_NS;
    let mut idle_since: Vec<Option<u64>> = Vec::new();
    let mut last_completed: Vec<(u64, u64)> = Vec::new();
    // Buffers reused across passes: the monitor does not allocate in its
    // steady state.
    let mut all: Vec<&'static WorkerPool> = Vec::new();
    let mut poll_fds: Vec<Arc<Worker>> = Vec::new();
    let mut runners: Vec<Runner> = Vec::new();
    let mut pfds: Vec<libc::pollfd> = Vec::new();
    let mut watchdog = crate::watchdog::Watchdog::default();
    let mut rescuers: Vec<Arc<crate::pool::worker::Rescuer>> = Vec::new();
    // When the CPU limit (G34) is read again: at most every
    // `cpu_limit::REREAD_NS`, on a pass (passes happen while pools are
    // busy; an idle monitor sleeps with no timeout).
    let mut limit_read_at = util::mono_ns() + crate::cpu_limit::REREAD_NS;
    // When sentinels missing for want of a thread are tried again.
    let mut sentinels_retry_at = util::mono_ns() + policy::SENTINEL_RETRY_NS;
    // Under the CPU limit: the CPUs of the lanes whose runners hold it
    // (rebuilt each pass), and where the monitor followed them.
    let mut runner_cpus = crate::cpumask::CpuMask::new();
    let mut followed: Option<policy::Followed> = None;
    // The mask set from outside that the last re-read found (G35).
    let mut last_outside: Option<crate::cpumask::CpuMask> = None;
    loop {
        if RETIRE.swap(false, SeqCst) && pool::creation_failing() && !pool::any_worker() {
            // Its thread goes to a worker (`retire_helper`), unless a
            // creation succeeded since it was asked. A start from now on
            // (`ensure_running`) begins a new monitor.
            RETIRED.store(true, SeqCst);
            m.running.store(false, SeqCst);
            STARTED.store(false, SeqCst);
            return;
        }
        let Some(pools) = pools_if_started() else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        if pools.count() != all.len() {
            all = pools.all();
            idle_since.resize(all.len(), None);
            last_completed.resize(all.len(), (0, 0));
        }
        let now = util::mono_ns();
        if now >= limit_read_at {
            limit_read_at = now + crate::cpu_limit::REREAD_NS;
            // The process's CPUs, which the CPU limit counts. A thread
            // pinned to one CPU that lost its pin carries a mask set from
            // outside (the sentinels stand for all where they run): the
            // pinned threads are pinned again, and that mask is the
            // process's. Else it is the monitor's own, or the one it
            // saved while it follows the runners.
            let outside = sentinel::lost_pin().unwrap_or_else(pool::lost_pin);
            if let Some(m) = &outside {
                if last_outside.as_ref() != Some(m) {
                    // Pinned threads of the CPUs in it pin themselves
                    // again (workers, before their next item) or are
                    // pinned (sentinels).
                    pool::PIN_EPOCH.0.fetch_add(1, Relaxed);
                    sentinel::repin(m);
                }
                if let Some(f) = followed.as_mut() {
                    // Back to that mask, not to the one saved before it.
                    f.saved = m.clone();
                }
            }
            last_outside = outside.clone();
            let mask = outside.or_else(|| process_mask(followed.as_ref()));
            pool::apply_cpu_limit(match &mask {
                Some(m) => crate::cpu_limit::read_limit_for(m.count()),
                None => crate::cpu_limit::read_limit(),
            });
        }
        runner_cpus.clear();
        if m.mode == Mode::Sentinel
            && now >= sentinels_retry_at
            && !pool::creation_stalled()
            && sentinel::any_to_restart()
        {
            // Sentinels that gave their thread to a worker, or could not
            // start at a thread limit, come back once no pool waits for a
            // worker (tried at most every `SENTINEL_RETRY_NS`).
            sentinels_retry_at = now + policy::SENTINEL_RETRY_NS;
            sentinel::start_all();
        }
        let mut timeout: Option<u64> = None;
        let mut set_timeout = |t: u64| {
            timeout = Some(timeout.map_or(t, |x: u64| x.min(t)));
        };
        if ANNOUNCED.swap(false, SeqCst) {
            // A worker woke unrecorded: it may not be `current` yet.
            set_timeout(now + NEW_RUNNER_LOOK_NS);
        }
        poll_fds.clear();
        if sentinel::CREATE_WANTED.swap(false, Relaxed) {
            // A sentinel found a pool that needs a worker it may not
            // create (it would inherit SCHED_IDLE).
            for pool in all.iter().copied() {
                pool::ensure_worker(pool);
            }
            // And the CPU limit's slots a sentinel saw given back.
            pool::wake_limited(None);
        }

        if let Some(t) = watchdog.poll(&all, now) {
            set_timeout(t);
        }
        for pool in all.iter().copied() {
            // Failed creations: retry after the cooldown; mayday timers.
            pool_timers(pool, &mut set_timeout, &mut rescuers);
            if !pool.managed() || !pool.watched.load(Relaxed) {
                continue;
            }
            runners.clear();
            let first = poll_fds.len();
            let mut unwatched = false;
            {
                let g = pool.lock();
                let pending = !g.worklist.is_empty();
                for (_, ws) in g.workers.iter() {
                    // perf: a kicked idle worker switches its ring on when
                    // it wakes (and may wake us when it starts its item, see
                    // `new_runner_unrecorded`); from then on its blocks are
                    // recorded and wake us.
                    if m.mode == Mode::Perf {
                        poll_fds.push(ws.worker.clone());
                    }
                    // Rescuers never count as running: nothing to detect.
                    if ws.current.is_some()
                        && ws.flags & (WORKER_CPU_INTENSIVE | WORKER_RESCUER) == 0
                    {
                        runners.push(Runner {
                            w: ws.worker.clone(),
                            exec: ws.worker.exec_seq.load(Relaxed),
                            blocked_by_monitor: ws.blocked == Some(pool::BlockedBy::Monitor),
                        });
                    }
                }
                // Not beside a runner at a negative nice (a highpri
                // pool's): the monitor at nice 0 would get about 1% of
                // the CPU next to nice -20, and it creates workers and
                // keeps the timers of every pool.
                if pool.lane.is_some() && pool.attrs.nice >= 0 && pool::holds_cpu_limit(&g) {
                    if let Some(cpu) = pool.attrs.cpus.first() {
                        runner_cpus.set(cpu);
                    }
                }
                let by_monitor = runners.iter().any(|r| r.blocked_by_monitor);
                if pending || by_monitor {
                    idle_since[pool.id as usize] = None;
                } else {
                    let since = *idle_since[pool.id as usize].get_or_insert(now);
                    if now - since >= unwatch_after {
                        // Cleared under the lock: a queuer that adds work
                        // after this sees the flag down and wakes us.
                        pool.watched.store(false, Relaxed);
                        idle_since[pool.id as usize] = None;
                        unwatched = true;
                    }
                }
            }
            if m.mode == Mode::Perf {
                // Rings record only while their pool is watched.
                for w in &poll_fds[first..] {
                    ring_watch(w, !unwatched);
                }
                if unwatched {
                    poll_fds.truncate(first);
                }
            }
            if unwatched {
                continue;
            }
            set_timeout(now + unwatch_after);
            let max_interval = max_interval(m.mode, pool);
            if m.mode == Mode::Proc
                || m.mode == Mode::Sentinel
                || (m.mode == Mode::Perf
                    && runners.iter().any(|r| r.w.detect.lock().ring.is_none()))
            {
                // Without switch records nothing wakes us when a watched
                // pool gets a new runner: look at least this often.
                set_timeout(now + max_interval);
            }

            if m.mode == Mode::Progress {
                let (seen, at) = &mut last_completed[pool.id as usize];
                let done = pool.completed.load(Relaxed);
                if done != *seen {
                    *seen = done;
                    *at = now;
                } else if policy::progress_stalled(*at, now, progress_window) {
                    // No item finished for a while with work pending: the
                    // runner that has run longest is presumed blocked.
                    if let Some(r) = runners
                        .iter()
                        .filter(|r| !r.blocked_by_monitor)
                        .min_by_key(|r| r.exec)
                    {
                        let _ = mark(&r.w, r.exec, true);
                        *at = now;
                    }
                }
                set_timeout(now + progress_window / 2);
            }

            for r in &runners {
                let woke = match check_runner(
                    m.mode,
                    r,
                    now,
                    stall,
                    hog,
                    max_interval,
                    &mut set_timeout,
                ) {
                    Verdict::Nothing => false,
                    Verdict::Blocked => mark(&r.w, r.exec, true),
                    Verdict::Running => mark(&r.w, r.exec, false),
                    Verdict::Hog => mark_hog(&r.w, r.exec),
                };
                if woke {
                    // The woken worker becomes a runner in a moment, and
                    // nothing may wake us to follow it (perf: its ring was
                    // off while it was parked): look again shortly.
                    set_timeout(now + NEW_RUNNER_LOOK_NS);
                }
            }
        }
        runners.clear();
        follow_limited_runners(&runner_cpus, &mut followed);

        // Sleep until a record arrives, a deadline passes, or a queuer
        // wakes us. The rings' fds are polled without holding the workers'
        // detection locks (a starting worker takes its own); each stays
        // open because we hold an `Arc<Worker>` for it in `poll_fds` until
        // after the poll, and a ring is only closed when its `Worker` is
        // dropped.
        pfds.clear();
        if let Some(fd) = &m.wake_fd {
            pfds.push(libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        for w in &poll_fds {
            if let Some(r) = &w.detect.lock().ring {
                pfds.push(libc::pollfd {
                    fd: r.as_fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        let now = util::mono_ns();
        let ts = timeout.map(|t| {
            let d = t.saturating_sub(now);
            libc::timespec {
                tv_sec: (d / 1_000_000_000) as libc::time_t,
                tv_nsec: (d % 1_000_000_000) as libc::c_long,
            }
        });
        SLEEP_UNTIL.store(timeout.unwrap_or(u64::MAX), SeqCst);
        // SAFETY: `pfds` is a valid array of `pfds.len()` pollfd entries
        // whose fds are open (see above); the timeout pointer is null or
        // points to a live timespec; no signal mask is passed.
        let n = unsafe {
            libc::ppoll(
                pfds.as_mut_ptr(),
                pfds.len() as libc::nfds_t,
                ts.as_ref().map_or(std::ptr::null(), |t| t as *const _),
                std::ptr::null(),
            )
        };
        SLEEP_UNTIL.store(0, SeqCst);
        if let (true, Some(fd)) = (n > 0 && pfds[0].revents != 0, &m.wake_fd) {
            let mut buf = [0u8; 8];
            let _ = rustix::io::read(fd, &mut buf);
        }
        poll_fds.clear();
        WAKEUPS.fetch_add(1, Relaxed);
    }
}

/// The process's affinity mask, as the monitor can tell it: its own,
/// unless it narrowed that to follow the limited runners, when it is the
/// mask it saved (if its own is still the one it set: one set from outside
/// meanwhile is the process's).
fn process_mask(followed: Option<&policy::Followed>) -> Option<crate::cpumask::CpuMask> {
    let own = crate::topology::affinity_mask()?;
    Some(match followed {
        Some(f) if own == f.applied => f.saved.clone(),
        _ => own,
    })
}

/// Under the CPU limit, run on the CPUs of the runners that hold it, and
/// go back once it is lifted or nobody holds it (`policy::follow_runners`
/// says why: a wake-up on a CPU the limit keeps idle gets the process
/// throttled). One `sched_setaffinity` per change; nothing at all without
/// a limit.
fn follow_limited_runners(
    runner_cpus: &crate::cpumask::CpuMask,
    followed: &mut Option<policy::Followed>,
) {
    let limited = crate::cpu_limit::limit().is_some();
    if followed.is_none() && (!limited || runner_cpus.is_empty()) {
        return;
    }
    if limited && followed.as_ref().is_some_and(|f| f.applied == *runner_cpus) {
        // Where it is: the steady state, without a system call or an
        // allocation.
        return;
    }
    // The mask as set now: a narrowing in force is checked against it
    // before it is changed (set from outside meanwhile: theirs stands).
    let now = crate::topology::affinity_mask();
    let set = |m: &crate::cpumask::CpuMask| {
        rustix::thread::sched_setaffinity(None, &m.to_rustix()).is_ok()
    };
    match policy::follow_runners(limited, runner_cpus, now.as_ref(), followed.as_ref()) {
        policy::Follow::Keep => {}
        policy::Follow::Narrow(f) => {
            if set(&f.applied) {
                *followed = Some(f);
            }
        }
        policy::Follow::Restore(saved) => {
            let _ = set(&saved);
            *followed = None;
        }
        policy::Follow::Forget => *followed = None,
    }
}

/// A pool's timers kept by the monitor: the retry of a failed creation
/// after its cooldown, and the mayday timer (G22, `rescuer.rs`).
fn pool_timers(
    pool: &'static WorkerPool,
    set_timeout: &mut impl FnMut(u64),
    rescuers: &mut Vec<Arc<crate::pool::worker::Rescuer>>,
) {
    let (retry, mayday) = {
        let mut g = pool.lock();
        if g.create_retry_at.is_none() && g.mayday_at.is_none() {
            return;
        }
        let mayday = crate::rescuer::mayday_check(pool, &mut g, rescuers);
        (g.create_retry_at, mayday)
    };
    crate::rescuer::wake_all(rescuers);
    let now = Instant::now();
    let mut at = |t: Instant| set_timeout(util::mono_ns() + (t - now).as_nanos() as u64);
    if let Some(t) = mayday {
        at(t.max(now));
    }
    match retry {
        Some(t) if t <= now => pool::ensure_worker(pool),
        Some(t) => at(t),
        None => {}
    }
}

/// The longest interval between two `/proc` samples of a runner of
/// `pool` that keeps running: in sentinel mode, where a sentinel watches
/// every CPU of the pool, sampling is only the backstop.
fn max_interval(mode: Mode, pool: &WorkerPool) -> u64 {
    if mode == Mode::Sentinel && sentinel::covers_pool(pool) {
        policy::BACKSTOP_MAX_INTERVAL_NS
    } else {
        PROC_MAX_INTERVAL_NS
    }
}

/// Decide about one runner.
#[allow(clippy::too_many_arguments)]
fn check_runner(
    mode: Mode,
    r: &Runner,
    now: u64,
    stall: u64,
    hog: Option<u64>,
    max_interval: u64,
    set_timeout: &mut impl FnMut(u64),
) -> Verdict {
    debug_assert!(on_monitor(), "only the monitor decides about runners");
    let mut d = r.w.detect.lock();
    if d.seen_exec != r.exec {
        // A new execution: start following it. The sentinel's backstop
        // keeps its cadence across the executions of a worker that does
        // not block (B9: short CPU-bound items would otherwise be sampled
        // fast at each start).
        let track = match mode {
            Mode::Sentinel if d.track.interval > 0 && d.track.blocked_since.is_none() => d.track,
            _ => policy::ProcTrack::new(now, stall),
        };
        *d = DetectState {
            ring: d.ring.take(),
            seen_exec: r.exec,
            blocked_since: d.blocked_since,
            track,
            last_cpu: d.last_cpu,
            cpu_base: None,
            hog_at: 0,
            blocked_by_monitor: false,
            watch: d.watch,
            quiet: d.quiet,
            on: d.on,
            resync: d.resync,
        };
        d.rebase_cpu(&r.w, now, hog);
    }
    if matches!(mode, Mode::Sentinel | Mode::Proc) && r.blocked_by_monitor && !d.blocked_by_monitor
    {
        // Marked since the last look (by a sentinel or by us): look for
        // its return at the marked cadence, not at the backstop's or the
        // confirming one.
        policy::on_blocked(&mut d.track, now);
    }
    d.blocked_by_monitor = r.blocked_by_monitor;
    let mut blocked: Option<bool> = None;
    match mode {
        Mode::Perf if d.ring.is_some() => {
            // Just switched on: like lost records, the ring cannot tell.
            let mut lost = std::mem::take(&mut d.resync);
            let mut out = d.blocked_since;
            d.ring.as_mut().unwrap().drain(|rec| {
                let sw = match rec {
                    perf::SwitchRecord::Out {
                        time_ns,
                        preempt: false,
                    } => policy::Switch::Blocked(time_ns),
                    perf::SwitchRecord::Out { preempt: true, .. }
                    | perf::SwitchRecord::In { .. } => policy::Switch::Runnable,
                    perf::SwitchRecord::Lost => {
                        lost = true;
                        return;
                    }
                };
                out = policy::perf_fold(out, [sw]);
            });
            if lost {
                // The ring overflowed while nobody read it: ask /proc once.
                out = match r.w.task_stat().and_then(|s| s.sample().ok()) {
                    Some(s) if s.is_blocked() => Some(out.unwrap_or(now)),
                    _ => None,
                };
            }
            let woke = d.blocked_since.is_some() && out.is_none();
            d.blocked_since = out;
            if woke {
                d.rebase_cpu(&r.w, now, hog);
            }
            match policy::perf_verdict(out, now, stall) {
                Ok(b) => blocked = Some(b),
                Err(t) => {
                    set_timeout(t);
                    blocked = Some(false);
                }
            }
        }
        Mode::Perf | Mode::Proc | Mode::Sentinel => {
            if now >= d.track.next_sample {
                if let Some(x) = r.w.task_stat().and_then(|s| s.sample().ok()) {
                    let sample = policy::ProcSample {
                        blocked: x.is_blocked(),
                        run_ns: x.run_ns,
                    };
                    let by_monitor = d.blocked_by_monitor;
                    let before = d.track.interval;
                    // A marked runner's return is looked for on the
                    // return grid (`policy::on_blocked`); once back, it is
                    // followed at the /proc cadence at most, whatever the
                    // mode.
                    let max = if by_monitor {
                        max_interval.min(PROC_MAX_INTERVAL_NS)
                    } else {
                        max_interval
                    };
                    match policy::proc_sample(&mut d.track, sample, now, stall, by_monitor, max) {
                        policy::ProcVerdict::Blocked => {
                            blocked = Some(true);
                            if !by_monitor {
                                // About to be marked: its return is looked
                                // for on the grid from now, not at the
                                // confirming cadence (one wake-up saved per
                                // mark). A mark that does not take is seen
                                // at the next look (new execution, or not
                                // marked after all).
                                policy::on_blocked(&mut d.track, now);
                            }
                        }
                        policy::ProcVerdict::Running { woke } => {
                            if woke {
                                d.rebase_cpu(&r.w, now, hog);
                            }
                            blocked = Some(false);
                            if mode == Mode::Sentinel && max_interval > PROC_MAX_INTERVAL_NS {
                                // The backstop: slow while the runner has
                                // its CPU alone (its sentinel is not
                                // starved), fast while it shares it.
                                let cpu = read_cpu(&r.w);
                                if let (Some((t0, c0)), Some(c)) = (d.last_cpu, cpu) {
                                    d.track.interval = policy::backstop_interval(
                                        before,
                                        c.saturating_sub(c0),
                                        now.saturating_sub(t0),
                                    );
                                    d.track.next_sample = now + d.track.interval;
                                }
                                d.last_cpu = cpu.map(|c| (now, c));
                            }
                        }
                        policy::ProcVerdict::Undecided => {}
                    }
                } else {
                    d.track.next_sample = now + d.track.interval.max(policy::PROC_MIN_INTERVAL_NS);
                }
            }
            set_timeout(d.track.next_sample);
        }
        Mode::Progress | Mode::Hint => {}
    }
    match blocked {
        Some(true) if !d.blocked_by_monitor => return Verdict::Blocked,
        Some(false) if d.blocked_by_monitor => return Verdict::Running,
        _ => {}
    }
    if let (Some(th), false) = (hog, d.blocked_by_monitor || blocked == Some(true)) {
        if d.cpu_base.is_some() && now < d.hog_at {
            // Too early to have crossed the threshold: no clock read (a
            // system call) on the many wake-ups in between.
            set_timeout(d.hog_at);
        } else if let (Some(base), Some(cpu)) = (d.cpu_base, read_cpu(&r.w)) {
            match policy::hog_check(cpu.saturating_sub(base), th, now) {
                policy::HogCheck::Hog => {
                    d.cpu_base = None;
                    return Verdict::Hog;
                }
                policy::HogCheck::CheckAt(t) => {
                    d.hog_at = t;
                    set_timeout(t);
                }
            }
        }
    }
    Verdict::Nothing
}

fn read_cpu(w: &Worker) -> Option<u64> {
    let id = w.cpu_clock.load(Relaxed);
    (id != -1).then(|| util::read_cpu_clock(id)).flatten()
}

/// Mark a runner blocked or running again, if it still runs the
/// execution the verdict is about. Returns whether that woke another
/// worker.
pub(crate) fn mark(w: &Worker, exec: u64, blocked: bool) -> bool {
    if blocked && w.waits_on_short_lock() {
        // Asleep on a pool lock, not blocked (`sync::ShortMutex`).
        return false;
    }
    let mut g = w.pool.lock();
    let Some(ws) = g.running_slot(w, exec) else {
        return false;
    };
    if blocked {
        if ws.blocked.is_none() {
            MARKED_BLOCKED.fetch_add(1, Relaxed);
        }
        pool::mark_blocked(&mut g, w.slot, pool::BlockedBy::Monitor)
    } else {
        pool::mark_running(&mut g, w.slot, pool::BlockedBy::Monitor);
        false
    }
}

/// A sentinel found a runner blocked: mark it blocked as [`mark`] does,
/// but wake the spare after the pool lock is dropped
/// ([`pool::mark_blocked_wake_later`] says why), and leave a missing one
/// to the monitor to create. Returns whether it acted (woke a spare, or
/// asked the monitor for a worker).
pub(crate) fn mark_from_sentinel(w: &Worker, exec: u64) -> bool {
    let mut g = w.pool.lock();
    if g.running_slot(w, exec).is_none() {
        return false;
    }
    let spare = pool::mark_blocked_wake_later(&mut g, w.slot);
    if !matches!(spare, pool::Spare::Unchanged) {
        MARKED_BLOCKED.fetch_add(1, Relaxed);
    }
    drop(g);
    match spare {
        pool::Spare::Unchanged | pool::Spare::NotNeeded => return false,
        pool::Spare::Wake(s) => s.parker.unpark(),
        // A thread made by the sentinel would inherit SCHED_IDLE.
        pool::Spare::Create => sentinel::CREATE_WANTED.store(true, Relaxed),
    }
    // The monitor follows the new runner (a possible hog) from near its
    // start, and the blocked one's return at its next pass.
    follow_new_runner();
    true
}

/// A sentinel found its CPU's lane without a runner while a sibling lane's
/// items wait (`pool::idle_lane_spare`): wake the lane's spare, which
/// steals them, or have the monitor create one. Whether it acted.
pub(crate) fn start_idle_lane(pool: &'static WorkerPool) -> bool {
    let mut g = pool.lock();
    let spare = pool::idle_lane_spare(&mut g);
    drop(g);
    match spare {
        pool::Spare::Unchanged | pool::Spare::NotNeeded => false,
        pool::Spare::Wake(s) => {
            s.parker.unpark();
            true
        }
        // A thread made by the sentinel would inherit SCHED_IDLE.
        pool::Spare::Create => {
            sentinel::CREATE_WANTED.store(true, Relaxed);
            true
        }
    }
}

/// A runner used more than `cpu_intensive_thresh` of CPU without blocking:
/// it no longer counts toward concurrency (G16, [`pool::mark_hog`]).
fn mark_hog(w: &Worker, exec: u64) -> bool {
    let mut g = w.pool.lock();
    let Some(ws) = g.running_slot(w, exec) else {
        return false;
    };
    if !ws.hog {
        MARKED_HOG.fetch_add(1, Relaxed);
    }
    pool::mark_hog(&mut g, w.slot)
}
