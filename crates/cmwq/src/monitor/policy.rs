//! The detection policy: the rules that turn what the monitor and the
//! sentinels observe into verdicts, as pure functions of the observation
//! and the time, with every knob a named constant here.
//!
//! The I/O lives elsewhere: `sentinel.rs` (the per-CPU `SCHED_IDLE`
//! threads), `procstat.rs` (`/proc` samples), `perf.rs` (switch records),
//! and `mod.rs` (the monitor loop that applies the verdicts to the pools).
//! The unit tests at the bottom drive each rule without threads or clocks.
//! `README.md` beside this file explains why the rules are what they are.

use crate::cpumask::CpuMask;

/// A managed pool with nothing pending for this long stops being watched
/// (its sentinels disarm, its rings stop recording) (ns).
pub(crate) const UNWATCH_AFTER_NS: u64 = 20_000_000;

/// After the monitor woke a worker for a pool: when to look again, so that
/// the new runner is followed from its start (ns).
pub(crate) const NEW_RUNNER_LOOK_NS: u64 = 1_000_000;

/// A new runner starts that the monitor has not seen: whether to wake the
/// monitor, which sleeps until `sleep_until` (0: it is in a pass, which may
/// miss the runner; `u64::MAX`: no timeout), given the hog threshold `th`
/// (None: hog detection off). It must look within an eighth of the
/// threshold, at most [`RETURN_LOOK_NS`] (a hog is then flagged within
/// that of the threshold, and a marked runner's return looked for from
/// then): woken only if it would not look that soon anyway. A deadline
/// already past counts as a pass (the monitor may be past its look).
pub(crate) fn wake_to_follow(sleep_until: u64, now: u64, th: Option<u64>) -> bool {
    let within = th.map_or(RETURN_LOOK_NS, |t| (t / 8).min(RETURN_LOOK_NS));
    sleep_until <= now || sleep_until > now.saturating_add(within)
}

/// proc: the longest interval between two samples of a runner that keeps
/// running, where `/proc` sampling is the detection (ns).
pub(crate) const PROC_MAX_INTERVAL_NS: u64 = 1_000_000;

/// proc: the shortest interval between two samples (ns): with a stall
/// window of 0 the first blocked sample is confirmed by the next one.
pub(crate) const PROC_MIN_INTERVAL_NS: u64 = 20_000;

/// A runner just marked blocked: about how long after the monitor's first
/// look at the mark its return is looked for, and then how often (ns). Not
/// urgent: most blocks end and their item finishes (which counts the worker
/// again) before; and a runner that came back unseen keeps its CPU busy,
/// so that CPU's sentinel does not run and wakes nobody. Until it is seen,
/// a queue or an item's end may start one worker too many on its CPU, for
/// about two of these (the first look comes within one,
/// [`wake_to_follow`]). Looking sooner cost a sample every 20-40 us per
/// blocked worker: 30% of a CPU for a blocking service (B10) on two CPUs.
pub(crate) const RETURN_LOOK_NS: u64 = 1_000_000;

/// A runner was just marked blocked at `now`: sample it for its return
/// about [`RETURN_LOOK_NS`] from now, and as often while it stays blocked
/// ([`return_look_after`]).
pub(crate) fn on_blocked(t: &mut ProcTrack, now: u64) {
    t.interval = RETURN_LOOK_NS;
    t.next_sample = return_look_after(now + RETURN_LOOK_NS / 2);
}

/// The next look for marked runners' returns after `t`: on a grid of
/// [`RETURN_LOOK_NS`], so that one monitor wake-up looks at every marked
/// runner (a blocking service has a few dozen, marked at different times).
pub(crate) fn return_look_after(t: u64) -> u64 {
    (t / RETURN_LOOK_NS + 1) * RETURN_LOOK_NS
}

/// sentinel: the longest interval between two backstop samples of a runner
/// that keeps its CPU to itself (ns). The sentinel reacts to blocks on its
/// own; the backstop only matters where the sentinel is starved (another
/// process keeps the CPU busy), so it samples rarely while the runner gets
/// its CPU alone and fast while it does not ([`backstop_interval`]).
pub(crate) const BACKSTOP_MAX_INTERVAL_NS: u64 = 20_000_000;

/// sentinel: the backstop interval while a runner shares its CPU with
/// other load (or is blocked): where the sentinel may be starved (ns).
pub(crate) const BACKSTOP_FAST_NS: u64 = 1_000_000;

/// sentinel: a runner that was on a CPU at least this share (percent) of
/// the time since the last sample has its CPU alone: no other load starves
/// its sentinel.
pub(crate) const BACKSTOP_ALONE_PERCENT: u64 = 90;

/// sentinel backstop: the interval after a sample that found the runner
/// runnable, given the CPU time it gained over the wall time since the
/// previous sample.
pub(crate) fn backstop_interval(interval: u64, cpu_gained: u64, wall: u64) -> u64 {
    if wall > 0 && cpu_gained * 100 >= wall * BACKSTOP_ALONE_PERCENT {
        (interval * 2).clamp(BACKSTOP_FAST_NS, BACKSTOP_MAX_INTERVAL_NS)
    } else {
        BACKSTOP_FAST_NS
    }
}

/// sentinel: first wait after a pick that found every runner runnable (it
/// was picked for its small fair share, not because its CPU went idle).
/// The wait doubles with each such pick, up to the maximum, so a CPU-bound
/// runner sees few picks; a block during the wait is found when it ends.
pub(crate) const SENTINEL_BACKOFF_MIN_NS: u64 = 50_000;

/// sentinel: the longest wait after picks that found the runners runnable.
pub(crate) const SENTINEL_BACKOFF_MAX_NS: u64 = 2_000_000;

/// progress: a watched pool that completed nothing for this long with work
/// pending has its longest runner presumed blocked (ns, from the stall
/// window).
pub(crate) fn progress_window(stall: u64) -> u64 {
    (stall * 5).max(1_000_000)
}

/// What a sentinel pick found, for [`sentinel_wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pick {
    /// It marked a runner blocked (a spare was woken).
    Acted,
    /// A runner is blocked but not yet for the stall window: look again at
    /// this time.
    Window(u64),
    /// Items wait but every runner is runnable: picked for its fair share.
    Runnable,
    /// Nothing waits behind a runner in the pools of its CPU: it disarms
    /// (the next queue behind a runner arms it again).
    NothingPending,
    /// Items wait, but its CPU's lane may not start a runner: the CPU limit
    /// (G34) is reached (or the lane's only runner is a CPU hog, which
    /// counts for the limit and not in `nr_running`), so its CPU idles by
    /// the limit, not by a block. It disarms (a look at a CPU the limit
    /// keeps idle costs the process quota); a runner starting an item on
    /// its lane arms it again (`sentinel_main` has the protocol).
    Limited,
}

/// The monitor gives its thread to a worker (`retire_helper`) only after
/// creations have failed at a thread limit for this long with no worker
/// anywhere: a passing failure (an injected one, a moment at the limit)
/// must not leave the items to calls into the library.
pub(crate) const MONITOR_RETIRE_AFTER_NS: u64 = 1_000_000_000;

/// How often the monitor tries again to start sentinels that are missing
/// for want of a thread (retired for a worker, or refused at a thread
/// limit), while no pool waits for a worker: each try at the limit costs
/// a failed `clone`, and a sentinel that did start may be asked to retire
/// again by the next creation that needs its thread.
pub(crate) const SENTINEL_RETRY_NS: u64 = 5_000_000_000;

/// How long a sentinel waits after a pick (ns; 0: run again at once) and
/// the back-off to use after the next `Runnable` pick.
pub(crate) fn sentinel_wait(pick: Pick, backoff: u64, now: u64) -> (u64, u64) {
    match pick {
        // The woken worker preempts it at once; when it runs again its
        // CPU went idle again.
        Pick::Acted => (0, SENTINEL_BACKOFF_MIN_NS),
        Pick::Window(t) => (t.saturating_sub(now), backoff),
        Pick::Runnable => {
            let b = backoff.clamp(SENTINEL_BACKOFF_MIN_NS, SENTINEL_BACKOFF_MAX_NS);
            (b, (b * 2).min(SENTINEL_BACKOFF_MAX_NS))
        }
        // Both disarm before any wait (`sentinel_main`).
        Pick::NothingPending | Pick::Limited => (0, SENTINEL_BACKOFF_MIN_NS),
    }
}

/// A sentinel found a runner not runnable. `first_seen`: when a pick first
/// found this execution blocked (None: now is the first). Blocked for the
/// whole stall window: mark it; else look again when the window ends.
pub(crate) fn sentinel_blocked(first_seen: Option<u64>, now: u64, stall: u64) -> Result<(), u64> {
    let since = first_seen.unwrap_or(now);
    if now.saturating_sub(since) >= stall {
        Ok(())
    } else {
        Err(since + stall)
    }
}

/// One `/proc` sample of a runner: not runnable, and its run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcSample {
    /// The state letter is not `R`.
    pub(crate) blocked: bool,
    /// Time on CPU so far (schedstat), if known.
    pub(crate) run_ns: Option<u64>,
}

/// What the sampling of one execution has established so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProcTrack {
    /// First sample that found it blocked: (time, run time then).
    pub(crate) blocked_since: Option<(u64, Option<u64>)>,
    /// Current sampling interval (ns).
    pub(crate) interval: u64,
    /// Next sample due (mono ns).
    pub(crate) next_sample: u64,
}

impl ProcTrack {
    /// Start following a new execution.
    pub(crate) fn new(now: u64, stall: u64) -> ProcTrack {
        let interval = (stall / 2).max(PROC_MIN_INTERVAL_NS);
        ProcTrack {
            blocked_since: None,
            interval,
            next_sample: now + interval,
        }
    }
}

/// Verdict of a `/proc` sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProcVerdict {
    /// Not runnable, with no run time gained, over a whole stall window.
    Blocked,
    /// Runnable. `woke`: it had been seen blocked (or was marked): its CPU
    /// use restarts from now for hog detection.
    Running {
        /// It had been seen blocked or was marked.
        woke: bool,
    },
    /// Seen blocked, not yet for a whole window.
    Undecided,
}

/// Apply one sample taken at `now`. `blocked_by_monitor`: the pool counts
/// the runner blocked
/// (its return is not urgent: it counts again at its item's end anyway);
/// `max_interval`: the back-off limit of the mode. Sets the next sample.
pub(crate) fn proc_sample(
    t: &mut ProcTrack,
    s: ProcSample,
    now: u64,
    stall: u64,
    blocked_by_monitor: bool,
    max_interval: u64,
) -> ProcVerdict {
    let fast = (stall / 2).max(PROC_MIN_INTERVAL_NS);
    let v = if s.blocked {
        let v = match t.blocked_since {
            Some((since, run)) if run == s.run_ns || s.run_ns.is_none() => {
                if now.saturating_sub(since) >= stall {
                    ProcVerdict::Blocked
                } else {
                    ProcVerdict::Undecided
                }
            }
            _ => {
                t.blocked_since = Some((now, s.run_ns));
                ProcVerdict::Undecided
            }
        };
        if blocked_by_monitor {
            t.interval = RETURN_LOOK_NS;
            t.next_sample = return_look_after(now);
            return v;
        }
        t.interval = fast;
        v
    } else {
        let woke = t.blocked_since.take().is_some() || blocked_by_monitor;
        // Back off while it keeps running: cheap on CPU-bound items.
        t.interval = (t.interval * 2).clamp(fast, max_interval);
        ProcVerdict::Running { woke }
    };
    t.next_sample = now + t.interval;
    v
}

/// perf: one context-switch record of a runner, as the rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Switch {
    /// Switched out without the preempt flag at this time: it blocked.
    Blocked(u64),
    /// Switched out preempted (still runnable), or switched back in.
    Runnable,
}

/// perf: fold a runner's new records into "blocked since" (None: running
/// or runnable). Records come in order; the last one decides.
pub(crate) fn perf_fold(
    blocked_since: Option<u64>,
    records: impl IntoIterator<Item = Switch>,
) -> Option<u64> {
    records.into_iter().fold(blocked_since, |_, r| match r {
        Switch::Blocked(t) => Some(t),
        Switch::Runnable => None,
    })
}

/// perf: the verdict on a runner switched out (blocked) since `blocked_since`:
/// `Ok(true)`: blocked for the whole stall window; `Ok(false)`: running;
/// `Err(t)`: blocked, look again at `t` when the window ends.
pub(crate) fn perf_verdict(blocked_since: Option<u64>, now: u64, stall: u64) -> Result<bool, u64> {
    match blocked_since {
        Some(t) if now.saturating_sub(t) >= stall => Ok(true),
        Some(t) => Err(t + stall),
        None => Ok(false),
    }
}

/// Verdict of a CPU-hog check (G16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HogCheck {
    /// It used the threshold of CPU time without blocking.
    Hog,
    /// Not yet: check again at this time (it cannot have used the rest
    /// sooner: a thread gains CPU time no faster than wall time; and not
    /// more often than every eighth of the threshold).
    CheckAt(u64),
}

/// A hog check: `used` ns of CPU since the execution started (or last woke)
/// against the threshold `th`, at `now`.
pub(crate) fn hog_check(used: u64, th: u64, now: u64) -> HogCheck {
    if used >= th {
        HogCheck::Hog
    } else {
        HogCheck::CheckAt(now + (th - used).max(th / 8))
    }
}

/// progress: whether a watched pool with work pending that last completed
/// an item at `last_done_at` has its longest runner presumed blocked now.
pub(crate) fn progress_stalled(last_done_at: u64, now: u64, window: u64) -> bool {
    now.saturating_sub(last_done_at) >= window
}

#[cfg(test)]
mod tests;

/// The monitor's own CPUs under the CPU limit (G34): what it ran on before
/// it followed the limited runners (`saved`), and where it follows them
/// (`applied`).
///
/// A process under a CPU quota is throttled as soon as a CPU the limit
/// keeps idle asks for a slice of the quota while the runners use all of
/// it; work on a CPU that a runner already keeps busy only delays that
/// runner (one CPU cannot use more than its own time). Measured with a
/// quota of 1 CPU on 2 CPUs and one thread burning CPU 0 (3 s): a thread
/// that woke for 10 us every 20 ms got the process throttled 7 times when
/// it ran on CPU 1, never on CPU 0. So while runners of spreading pools
/// hold the limit, the monitor runs on their CPUs (the sentinels of the
/// CPUs the limit keeps idle disarm: `Pick::Limited`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Followed {
    pub(crate) saved: CpuMask,
    pub(crate) applied: CpuMask,
}

/// What the monitor does with its own affinity after a pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Follow {
    /// Nothing to change.
    Keep,
    /// Narrow (or move) to these CPUs, remembering `saved`.
    Narrow(Followed),
    /// Go back to `saved`: the limit is gone, or no runner holds it.
    Restore(CpuMask),
    /// Forget the narrowing without restoring it: the mask was changed
    /// from outside meanwhile (`taskset -a`), which stands.
    Forget,
}

/// Decide the monitor's affinity. `limited`: a CPU limit is in force;
/// `runner_cpus`: the CPUs of the lanes with a running worker counted by
/// it; `now`: the monitor's own mask as read now (None: unreadable);
/// `followed`: the narrowing in force.
pub(crate) fn follow_runners(
    limited: bool,
    runner_cpus: &CpuMask,
    now: Option<&CpuMask>,
    followed: Option<&Followed>,
) -> Follow {
    let Some(now) = now else {
        return Follow::Keep;
    };
    if let Some(f) = followed {
        if *now != f.applied {
            return Follow::Forget;
        }
    }
    let saved = followed.map_or(now, |f| &f.saved);
    let want = runner_cpus.and(saved);
    if !limited || want.is_empty() || want == *saved {
        return match followed {
            Some(f) => Follow::Restore(f.saved.clone()),
            None => Follow::Keep,
        };
    }
    if followed.is_some_and(|f| f.applied == want) {
        return Follow::Keep;
    }
    Follow::Narrow(Followed {
        saved: saved.clone(),
        applied: want,
    })
}
