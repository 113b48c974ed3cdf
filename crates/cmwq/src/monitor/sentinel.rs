//! Per-CPU sentinels: block detection by the scheduler itself (G15).
//!
//! The kernel starts the next worker when the running one blocks and its
//! CPU would otherwise go idle. A userspace process can see that moment
//! without privileges: one thread per CPU, pinned there, at `SCHED_IDLE`.
//! The scheduler runs a `SCHED_IDLE` thread only when nothing else on its
//! CPU wants to run, apart from a small fair share (its weight is 3 against
//! 1024 for a normal thread). A sentinel is *armed* (runnable) only while a
//! managed pool whose workers may run on its CPU has work pending behind a
//! running worker; otherwise it sleeps on a futex, and the queuer that
//! puts an item behind a runner arms it (one futex wake per busy period).
//!
//! When an armed sentinel runs, it looks at the runners of those pools and
//! reads the state of each from `/proc` (one `pread`, on descriptors opened
//! once per worker). A runner that is not runnable has blocked: once it has
//! been so for the stall window, the sentinel marks it blocked, which
//! wakes a parked spare of the pool. For a bound pool the spare is pinned
//! to the same CPU, so that is a local wake-up, and the woken worker
//! preempts the sentinel at once. A runner found runnable was merely
//! preempted for the sentinel's fair share: the sentinel then waits on its
//! futex for a back-off that doubles on each such pick (`policy.rs`), so a
//! CPU-bound runner is interrupted a few times a second at most.
//!
//! A sentinel never creates a thread (a thread it made would inherit
//! `SCHED_IDLE`, which an unprivileged process cannot leave): when a pool
//! needs a new worker, it asks the monitor. Where a sentinel cannot run (a
//! CPU outside the process's mask, pinning refused, a thread limit) or is
//! starved by other load, the monitor's `/proc` sampling backs it up; see
//! `README.md` beside this file.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering::*};
use std::sync::{Arc, OnceLock};

use crate::config::settings;
use crate::pool::worker::Worker;
use crate::pool::{self, pools_if_started, WorkerPool, WORKER_CPU_INTENSIVE, WORKER_RESCUER};
use crate::topology::topology;
use crate::util;

use super::policy::{self, Pick};

/// Not started (or not yet: the monitor starts them).
const NOT_STARTED: u8 = 0;
/// Running: it watches its CPU.
const RUNNING: u8 = 1;
/// Could not start or be pinned: its CPU relies on the backstop.
const FAILED: u8 = 2;
/// Its thread was spawned and is setting itself up.
const STARTING: u8 = 3;

/// A sentinel's stack: it calls nothing deep (a `/proc` read, a pool
/// lock, a futex), so it does not take the default 2 MiB of address space
/// on every CPU.
const SENTINEL_STACK: usize = 64 * 1024;

/// One CPU's sentinel. Annotations: `src/LOCKING.md`.
pub(crate) struct Sentinel {
    /// I: its CPU.
    cpu: usize,
    /// A: futex word, 1 while armed. Set by queuers that put an item
    /// behind a running worker, cleared by the sentinel when nothing waits
    /// behind a runner of its CPU's pools; see [`arm`] for the ordering.
    armed: AtomicU32,
    /// A: `NOT_STARTED`, `RUNNING` or `FAILED`.
    status: AtomicU8,
    /// A: its thread id (0 until it runs).
    tid: AtomicI32,
    /// A: times it ran while armed.
    picks: AtomicU64,
    /// A: runners it marked blocked.
    acted: AtomicU64,
    /// A: picks that found every runner runnable (its fair share).
    runnable: AtomicU64,
    /// A: asked to retire: a pool with items waiting could not create a
    /// worker at the thread limit, and this thread is the first the
    /// library gives up for it ([`retire_one`]).
    retire: AtomicBool,
    /// A: why it failed (`Why`), for `dump()`, and the error number.
    why: AtomicU8,
    errno: AtomicI32,
}

static SENTINELS: OnceLock<Box<[Sentinel]>> = OnceLock::new();

/// A sentinel asked for a worker it may not create itself; the monitor
/// creates it.
pub(crate) static CREATE_WANTED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static IS_SENTINEL: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is a sentinel (which must not create
/// threads: they would inherit `SCHED_IDLE`).
#[inline]
pub(crate) fn on_sentinel() -> bool {
    IS_SENTINEL.with(|s| s.get())
}

fn all() -> &'static [Sentinel] {
    SENTINELS.get_or_init(|| {
        (0..topology().nr_cpus)
            .map(|cpu| Sentinel {
                cpu,
                armed: AtomicU32::new(0),
                status: AtomicU8::new(NOT_STARTED),
                tid: AtomicI32::new(0),
                picks: AtomicU64::new(0),
                acted: AtomicU64::new(0),
                runnable: AtomicU64::new(0),
                retire: AtomicBool::new(false),
                why: AtomicU8::new(Why::None as u8),
                errno: AtomicI32::new(0),
            })
            .collect()
    })
}

/// Start the sentinel of every CPU the process may use that has none
/// running or starting: with the monitor (`init::start`), and by the monitor thread when it
/// starts (so one that could not start at a thread limit, or in a forked
/// child, starts with the monitor).
pub(crate) fn start_all() {
    let topo = topology();
    for s in all() {
        let st = s.status.load(Acquire);
        if st == FAILED
            && !matches!(s.why.load(Relaxed), w if w == Why::Thread as u8 || w == Why::Retired as u8)
        {
            // Refused pinning or SCHED_IDLE, or outside the mask: trying
            // again changes nothing.
            continue;
        }
        if st == NOT_STARTED || st == FAILED {
            // A retirement asked of an earlier thread is not this one's.
            s.retire.store(false, SeqCst);
        }
        if (st != NOT_STARTED && st != FAILED)
            || s.status
                .compare_exchange(st, STARTING, AcqRel, Acquire)
                .is_err()
        {
            continue;
        }
        if !topo.allowed.contains(s.cpu) {
            fail(s, Why::OutsideMask, None);
            continue;
        }
        let spawned = crate::fault::check_spawn().and_then(|()| {
            std::thread::Builder::new()
                .name(format!("cmwq-sent/{}", s.cpu))
                .stack_size(SENTINEL_STACK)
                .spawn(move || sentinel_main(s))
        });
        match spawned {
            // RUNNING once it is pinned; until then its CPU is backed up.
            Ok(_) => {}
            Err(e) => fail(s, Why::Thread, Some(&e)),
        }
    }
}

/// Why a sentinel is not running (lock-free, so that `dump()` in a forked
/// child never waits on a lock a parent's thread held).
#[derive(Clone, Copy)]
#[repr(u8)]
enum Why {
    None = 0,
    OutsideMask = 1,
    Thread = 2,
    Pinning = 3,
    SchedIdle = 4,
    Retired = 5,
}

fn fail(s: &Sentinel, why: Why, err: Option<&std::io::Error>) {
    s.errno
        .store(err.and_then(|e| e.raw_os_error()).unwrap_or(0), Relaxed);
    s.why.store(why as u8, Relaxed);
    s.status.store(FAILED, Release);
}

fn why_text(s: &Sentinel) -> String {
    let errno = s.errno.load(Relaxed);
    let err = || std::io::Error::from_raw_os_error(errno).to_string();
    match s.why.load(Relaxed) {
        1 => "CPU outside the process's affinity mask".into(),
        2 => format!("thread: {}", err()),
        3 => format!("pinning: {}", err()),
        4 => format!("SCHED_IDLE: {}", err()),
        5 => "retired: its thread went to a worker at the thread limit".into(),
        _ => "failed".into(),
    }
}

/// Workers first at a thread budget (G4): a pool with items waiting could
/// not create a worker (`EAGAIN`) and no idle worker could give way, so
/// the sentinel of the highest-numbered CPU that has one retires: its
/// thread exits, and its CPU falls back to the monitor's `/proc`
/// backstop (shown by `dump()`). Whether one was asked. It comes back
/// with [`start_all`] once threads can be had.
pub(crate) fn retire_one() -> bool {
    let Some(all) = SENTINELS.get() else {
        return false;
    };
    // A sentinel still starting counts: it looks at the flag once it runs.
    let running = |s: &Sentinel| matches!(s.status.load(Acquire), RUNNING | STARTING);
    // One already on its way out: its thread is about to be free (the
    // monitor must not go in its place).
    if all.iter().any(|s| running(s) && s.retire.load(SeqCst)) {
        return true;
    }
    for s in all.iter().rev() {
        if running(s) && !s.retire.swap(true, SeqCst) {
            let _ = rustix::thread::futex::wake(&s.armed, rustix::thread::futex::Flags::PRIVATE, 1);
            return true;
        }
    }
    false
}

/// Whether a sentinel is missing for want of a thread (its start failed,
/// or it retired for a worker): the monitor starts it again once no pool
/// waits for a worker.
pub(crate) fn any_to_restart() -> bool {
    SENTINELS.get().is_some_and(|all| {
        all.iter().any(|s| {
            s.status.load(Relaxed) == FAILED
                && matches!(s.why.load(Relaxed), w if w == Why::Thread as u8 || w == Why::Retired as u8)
        })
    })
}

/// Whether `cpu` has a running sentinel.
#[inline]
pub(crate) fn covers(cpu: usize) -> bool {
    SENTINELS
        .get()
        .and_then(|s| s.get(cpu))
        .is_some_and(|s| s.status.load(Relaxed) == RUNNING)
}

/// Whether every usable CPU of `pool` has a running sentinel (else the
/// monitor samples its runners at the full `/proc` cadence).
pub(crate) fn covers_pool(pool: &WorkerPool) -> bool {
    let topo = topology();
    match pool.cpu {
        Some(c) => covers(c),
        None => pool.attrs.cpus.and(&topo.allowed).iter().all(covers),
    }
}

/// An item was put behind a running worker of `pool` while its
/// `sentinels_armed` was clear: arm the sentinels of its CPUs (one futex
/// wake per sentinel that was disarmed). Called under the pool lock, after
/// the item went on the worklist. No arming is lost: a sentinel disarms by
/// clearing `sentinels_armed` of its pools and its own `armed`, then takes
/// each pool's lock to look for pending work. If it took the lock after
/// this queuer, it sees the item; if before, this queuer's load of
/// `sentinels_armed` comes after the sentinel released the lock, so it saw
/// the flag clear and arms here.
pub(crate) fn arm(pool: &WorkerPool) {
    let Some(all) = SENTINELS.get() else {
        return;
    };
    match pool.cpu {
        Some(c) => {
            if let Some(s) = all.get(c) {
                arm_one(s);
            }
        }
        None => {
            // An unbound pool's CPUs; a lane's whole group (a sentinel
            // whose own lane is idle has it take the lane's work).
            for c in pool.watch_cpus().iter() {
                if let Some(s) = all.get(c) {
                    arm_one(s);
                }
            }
        }
    }
}

fn arm_one(s: &Sentinel) {
    if s.armed.swap(1, SeqCst) == 0 {
        let _ = rustix::thread::futex::wake(&s.armed, rustix::thread::futex::Flags::PRIVATE, 1);
    }
}

/// Arm the sentinel of `cpu` alone: a runner of a lane under the CPU limit
/// starts there, and its sentinel may have disarmed while the limit held
/// the lane back (`Pick::Limited`).
pub(crate) fn arm_cpu(cpu: usize) {
    if let Some(s) = SENTINELS.get().and_then(|all| all.get(cpu)) {
        arm_one(s);
    }
}

/// A running sentinel that lost its pin to a mask set from outside: that
/// mask (`taskset -a -p` gives every thread the same one). One
/// `sched_getaffinity` per running sentinel; None when every one is
/// pinned, or none runs (`pool::lost_pin` stands in then).
pub(crate) fn lost_pin() -> Option<Option<crate::cpumask::CpuMask>> {
    let all = SENTINELS.get()?;
    let mut any = false;
    for s in all.iter().filter(|s| s.status.load(Acquire) == RUNNING) {
        any = true;
        if let Some(mask) = crate::topology::lost_pin_of(s.tid.load(Relaxed), s.cpu) {
            return Some(Some(mask));
        }
    }
    any.then_some(None)
}

/// Pin the running sentinels of `mask`'s CPUs back to their CPU (after
/// `lost_pin` found the mask changed from outside). A sentinel's tid is
/// its own while it runs (`RUNNING`: it leaves only through `fail`).
pub(crate) fn repin(mask: &crate::cpumask::CpuMask) {
    let Some(all) = SENTINELS.get() else {
        return;
    };
    for s in all.iter().filter(|s| mask.contains(s.cpu)) {
        if s.status.load(Acquire) != RUNNING {
            continue;
        }
        if let Some(pid) = rustix::process::Pid::from_raw(s.tid.load(Relaxed)) {
            let cpu = crate::cpumask::CpuMask::from_cpus([s.cpu]);
            let _ = rustix::thread::sched_setaffinity(Some(pid), &cpu.to_rustix());
        }
    }
}

/// Totals for benchmarks: (picks, acted, runnable).
#[cfg(feature = "test-util")]
pub(crate) fn totals() -> (u64, u64, u64) {
    SENTINELS.get().map_or((0, 0, 0), |all| {
        all.iter().fold((0, 0, 0), |(p, a, r), s| {
            (
                p + s.picks.load(Relaxed),
                a + s.acted.load(Relaxed),
                r + s.runnable.load(Relaxed),
            )
        })
    })
}

/// One line per CPU for `dump()`: what watches it and why.
pub(crate) fn describe() -> Vec<String> {
    let Some(all) = SENTINELS.get() else {
        return Vec::new();
    };
    all.iter()
        .map(|s| match s.status.load(Acquire) {
            RUNNING => format!(
                "cpu {}: sentinel tid {} {} picks={} acted={} runnable={}",
                s.cpu,
                s.tid.load(Relaxed),
                if s.armed.load(Relaxed) != 0 {
                    "armed"
                } else {
                    "disarmed"
                },
                s.picks.load(Relaxed),
                s.acted.load(Relaxed),
                s.runnable.load(Relaxed),
            ),
            FAILED => format!(
                "cpu {}: proc backstop (no sentinel: {})",
                s.cpu,
                why_text(s)
            ),
            _ => format!("cpu {}: proc backstop (sentinel not started)", s.cpu),
        })
        .collect()
}

/// In the child after `fork()`: no sentinel thread exists there; they
/// start again with the monitor. Only stores.
pub(crate) fn reset_after_fork() {
    if let Some(all) = SENTINELS.get() {
        for s in all.iter() {
            s.armed.store(0, SeqCst);
            s.status.store(NOT_STARTED, SeqCst);
            s.tid.store(0, SeqCst);
            s.picks.store(0, SeqCst);
            s.acted.store(0, SeqCst);
            s.runnable.store(0, SeqCst);
            s.retire.store(false, SeqCst);
        }
    }
    CREATE_WANTED.store(false, SeqCst);
}

/// Wait on the sentinel's futex while it holds `val`, at most `ns` (None:
/// until woken).
fn futex_wait(s: &Sentinel, val: u32, ns: Option<u64>) {
    let ts = ns.map(|d| rustix::time::Timespec {
        tv_sec: (d / 1_000_000_000) as _,
        tv_nsec: (d % 1_000_000_000) as _,
    });
    let _ = rustix::thread::futex::wait(
        &s.armed,
        rustix::thread::futex::Flags::PRIVATE,
        val,
        ts.as_ref(),
    );
}

/// The managed pools whose workers may run on `cpu`.
fn pools_of(cpu: usize, into: &mut Vec<&'static WorkerPool>) {
    into.clear();
    if let Some(pools) = pools_if_started() {
        for p in pools.all() {
            let mine = match p.cpu {
                Some(c) => c == cpu,
                None => p.attrs.cpus.contains(cpu),
            };
            if mine && p.managed() {
                into.push(p);
            }
        }
    }
}

/// Re-read the pools of `cpu` into `pools` if pools were made since
/// `nr_pools` was taken.
fn refresh_pools(cpu: usize, pools: &mut Vec<&'static WorkerPool>, nr_pools: &mut usize) {
    let count = pools_if_started().map_or(0, |p| p.count());
    if count != *nr_pools {
        pools_of(cpu, pools);
        *nr_pools = count;
    }
}

/// A runner the sentinel found blocked, waiting out the stall window.
struct Seen {
    worker: *const Worker,
    exec: u64,
    since: u64,
    /// Its run time then: if it moved, the runner woke and blocked again
    /// meanwhile, and the window starts over.
    run_ns: Option<u64>,
}

fn sentinel_main(s: &'static Sentinel) {
    IS_SENTINEL.with(|f| f.set(true));
    let cpu = crate::cpumask::CpuMask::from_cpus([s.cpu]);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &cpu.to_rustix()) {
        fail(s, Why::Pinning, Some(&e.into()));
        return;
    }
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: valid policy and parameter for the calling thread (pid 0).
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
        fail(s, Why::SchedIdle, Some(&std::io::Error::last_os_error()));
        return;
    }
    // Precise waits: the back-off is tens of microseconds.
    // SAFETY: PR_SET_TIMERSLACK only affects the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000u64, 0, 0, 0);
    }
    s.tid.store(super::procstat::gettid(), Relaxed);
    s.status.store(RUNNING, Release);
    let stall = settings().stall_window.as_nanos() as u64;
    let mut pools: Vec<&'static WorkerPool> = Vec::new();
    let mut nr_pools = 0;
    let mut backoff = policy::SENTINEL_BACKOFF_MIN_NS;
    let mut seen: Vec<Seen> = Vec::new();
    let mut runners: Vec<(Arc<Worker>, u64)> = Vec::new();
    loop {
        if s.retire.swap(false, SeqCst) {
            // Its thread goes to a worker (`retire_one`).
            fail(s, Why::Retired, None);
            return;
        }
        if s.armed.load(Acquire) == 0 {
            futex_wait(s, 0, None);
            continue;
        }
        refresh_pools(s.cpu, &mut pools, &mut nr_pools);
        s.picks.fetch_add(1, Relaxed);
        let now = util::mono_ns();
        let mut pick = Pick::NothingPending;
        for &pool in &pools {
            runners.clear();
            let idle_lane = {
                let mut g = pool.lock();
                // A window in which no item started (long items) is judged
                // here, so a lane's standby is given up at their end.
                pool::standby_tick(&mut g, util::coarse_ns());
                if !pool::has_pending(&g) {
                    continue;
                }
                for (_, ws) in g.workers.iter() {
                    if ws.current.is_some()
                        && ws.blocked.is_none()
                        && ws.flags & (WORKER_CPU_INTENSIVE | WORKER_RESCUER) == 0
                    {
                        runners.push((ws.worker.clone(), ws.worker.exec_seq.load(Relaxed)));
                    }
                }
                // This CPU's lane has no runner while a sibling's items
                // wait: its spare takes them, unless the CPU limit holds
                // it back (G34).
                let idle_lane = g.lane.is_some() && g.nr_running == 0;
                if idle_lane && runners.is_empty() && g.cpu_limited && crate::cpu_limit::free() == 0
                {
                    if pick == Pick::NothingPending {
                        pick = Pick::Limited;
                    }
                    continue;
                }
                idle_lane
            };
            if matches!(pick, Pick::NothingPending | Pick::Limited) {
                pick = Pick::Runnable;
            }
            if idle_lane && super::start_idle_lane(pool) {
                s.acted.fetch_add(1, Relaxed);
                pick = Pick::Acted;
            }
            for (w, exec) in runners.drain(..) {
                let sample = w.task_stat().and_then(|st| st.sample().ok());
                // Asleep on a pool lock is not blocked (`sync::ShortMutex`);
                // the flag is read after the state it corrects.
                let blocked = sample.is_some_and(|x| x.is_blocked()) && !w.waits_on_short_lock();
                let run_ns = sample.and_then(|x| x.run_ns);
                let key = Arc::as_ptr(&w);
                let mut at = seen.iter().position(|x| x.worker == key && x.exec == exec);
                if let Some(i) = at {
                    if run_ns.is_some() && seen[i].run_ns != run_ns {
                        // It ran since: a new block.
                        seen.swap_remove(i);
                        at = None;
                    }
                }
                if !blocked {
                    if let Some(i) = at {
                        seen.swap_remove(i);
                    }
                    continue;
                }
                match policy::sentinel_blocked(at.map(|i| seen[i].since), now, stall) {
                    Ok(()) => {
                        if let Some(i) = at {
                            seen.swap_remove(i);
                        }
                        if super::mark_from_sentinel(&w, exec) {
                            s.acted.fetch_add(1, Relaxed);
                            pick = Pick::Acted;
                        }
                    }
                    Err(t) => {
                        if at.is_none() {
                            seen.push(Seen {
                                worker: key,
                                exec,
                                since: now,
                                run_ns,
                            });
                        }
                        pick = match pick {
                            Pick::Acted => Pick::Acted,
                            Pick::Window(u) => Pick::Window(u.min(t)),
                            _ => Pick::Window(t),
                        };
                    }
                }
            }
        }
        if pick == Pick::Runnable {
            s.runnable.fetch_add(1, Relaxed);
        }
        // Entries of executions that ended or were marked by others.
        seen.retain(|x| now.saturating_sub(x.since) < stall.max(1) * 4 + 1_000_000);
        if CREATE_WANTED.load(Relaxed) {
            super::wake();
        }
        if matches!(pick, Pick::NothingPending | Pick::Limited) {
            // Disarm until a queuer puts an item behind a runner, then look
            // again (see `arm`). A pool made since the list was read may
            // have been armed while we were armed (no wake): take it in
            // before clearing the flags.
            //
            // `Limited`: its CPU idles by the CPU limit (G34), and every
            // look at it would take quota from the CPUs that run (a
            // process throttles as soon as a CPU the limit keeps idle asks
            // for a slice). It is armed again by a runner starting an item
            // on its lane (`pool::worker`, `start_exec`) or a queuer of one
            // of its other pools. A lane group's flag stays set then:
            // clearing it would have every item start on the running lane
            // arm every sentinel of the group, this one included. The look
            // below also wants a free slot, or a lane runner that started
            // between the pick and the store (its arm swallowed by it).
            let limited = pick == Pick::Limited;
            s.armed.store(0, SeqCst);
            refresh_pools(s.cpu, &mut pools, &mut nr_pools);
            for p in pools.iter().filter(|p| !limited || p.lane.is_none()) {
                p.armed_flag().store(false, SeqCst);
            }
            // Before the lanes' published lengths are read (`has_pending`):
            // pairs with the queuer's store of its lane's length before it
            // reads the flag (`note_pending_behind_runner`).
            std::sync::atomic::fence(SeqCst);
            let again = (limited && crate::cpu_limit::free() > 0)
                || pools.iter().any(|p| {
                    let g = p.lock();
                    g.nr_running > 0 && (pool::has_pending(&g) || (limited && p.lane.is_some()))
                });
            if again {
                s.armed.store(1, Relaxed);
            }
            backoff = policy::SENTINEL_BACKOFF_MIN_NS;
            seen.clear();
            continue;
        }
        let (wait, next) = policy::sentinel_wait(pick, backoff, now);
        backoff = next;
        if wait > 0 {
            futex_wait(s, 1, Some(wait));
        }
    }
}
