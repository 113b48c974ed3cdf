//! The library's reports ([`Event`]: contained panics, refused queues,
//! stalls...) and their rate limit. Where they go is set with
//! [`Config::log`](crate::Config::log); the crate docs say where they go
//! without a hook.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::sync::Mutex;

/// A report from the library: a contained panic (G5), a queue refused during
/// a drain (G8), a stall (G23), a worker that could not be created, an
/// environment variable that could not be read, and the like. Delivered to
/// one place: the hook set with [`Config::log`](crate::Config::log); without
/// one, the `tracing` facade with the `tracing` feature, else the `log`
/// facade with the `log` feature (target `cmwq`; contained panics and
/// stalls at level error, the rest at warn), else stderr (`cmwq: ` and the
/// event's `Display`).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A work function panicked; the panic was contained (G5).
    WorkPanicked {
        /// The workqueue the execution belonged to.
        workqueue: &'a str,
        /// The item's name, if it has one.
        work: Option<&'a str>,
        /// The panic message, when it was a string.
        message: &'a str,
    },
    /// The destructor of a work item's closure panicked when a library
    /// thread dropped the last handle; the panic was contained (G4, G5).
    DropPanicked {
        /// The item's name, if it has one.
        work: Option<&'a str>,
        /// The panic message, when it was a string.
        message: &'a str,
    },
    /// A delayed item's timer fired into its workqueue while that
    /// workqueue was draining: the item was dropped, as in the kernel (the
    /// documented G4 exception). Reported once per drain.
    DelayedDropped {
        /// The workqueue.
        workqueue: &'a str,
        /// The item's name, if it has one.
        work: Option<&'a str>,
    },
    /// A queue attempt was refused because the workqueue is being drained
    /// or destroyed (G8, G25). Reported once per drain.
    QueueRefused {
        /// The workqueue.
        workqueue: &'a str,
        /// "draining" or "being destroyed".
        reason: &'static str,
    },
    /// A worker thread could not be created; the pool retries after a
    /// cooldown and no work is lost.
    WorkerCreateFailed {
        /// The pool's worker name prefix, e.g. `kworker/3:`.
        pool: &'a str,
        /// The error from the OS.
        error: &'a str,
    },
    /// A destroyed workqueue still had armed delayed items; they were
    /// cancelled (G25).
    TimersCancelled {
        /// The workqueue.
        workqueue: &'a str,
        /// How many timers were cancelled.
        count: usize,
    },
    /// A pool with pending work made no progress for the watchdog threshold
    /// (G23).
    Stall {
        /// The pool, e.g. `cpu 3` or `unbound pool 9`.
        pool: &'a str,
        /// How long it has made no progress.
        for_ms: u64,
        /// What its workers are running: `workqueue/item for 12.3s`,
        /// comma-separated, `(blocked)` after those known to block.
        running: &'a str,
    },
    /// Reports of one kind came faster than the rate limit allows (a
    /// burst of [`RATELIMIT_BURST`] per [`RATELIMIT_INTERVAL`], as the
    /// kernel's
    /// `printk_ratelimit`); this many were not delivered. Sent before the
    /// next one that is. The counters (`WqStats::panics`) still count
    /// every one.
    ReportsSuppressed {
        /// What was suppressed, e.g. "work item panic".
        what: &'static str,
        /// How many reports were suppressed.
        count: u64,
    },
    /// A misuse detected at run time (an unbalanced `enable`, for example).
    Misuse {
        /// What happened.
        message: &'a str,
    },
    /// A `CMWQ_*` environment variable could not be read: it is ignored,
    /// the setting keeps its default (or what [`Config`](crate::Config)
    /// says). Reported once, when the settings are resolved.
    InvalidSetting {
        /// The variable.
        name: &'a str,
        /// What it was set to.
        value: &'a str,
    },
    /// The control socket (G32) was asked for but could not be started.
    ControlFailed {
        /// The socket's path, or where it would have been.
        path: &'a str,
        /// What went wrong.
        error: &'a str,
    },
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::WorkPanicked {
                workqueue,
                work,
                message,
            } => write!(
                f,
                "work item {} on workqueue {workqueue:?} panicked: {message}",
                work.unwrap_or("(unnamed)")
            ),
            Event::DropPanicked { work, message } => write!(
                f,
                "the closure of work item {} panicked in its destructor: {message}",
                work.unwrap_or("(unnamed)")
            ),
            Event::DelayedDropped { workqueue, work } => write!(
                f,
                "delayed work item {} fired into workqueue {workqueue:?} while it was draining: dropped",
                work.unwrap_or("(unnamed)")
            ),
            Event::QueueRefused { workqueue, reason } => write!(
                f,
                "queue on workqueue {workqueue:?} refused: it is {reason}"
            ),
            Event::ControlFailed { path, error } => {
                write!(f, "control socket {path} not started: {error}")
            }
            Event::WorkerCreateFailed { pool, error } => write!(
                f,
                "could not create a worker for pool {pool}: {error}; retrying after a cooldown"
            ),
            Event::TimersCancelled { workqueue, count } => write!(
                f,
                "workqueue {workqueue:?} destroyed with {count} armed delayed item(s); cancelled"
            ),
            Event::Stall {
                pool,
                for_ms,
                running,
            } => write!(
                f,
                "BUG: workqueue lockup - pool {pool} stuck for {}.{:01}s, running: {running}",
                for_ms / 1000,
                for_ms % 1000 / 100
            ),
            Event::ReportsSuppressed { what, count } => {
                write!(f, "{count} {what} reports suppressed (rate limit)")
            }
            Event::Misuse { message } => write!(f, "misuse: {message}"),
            Event::InvalidSetting { name, value } => write!(
                f,
                "invalid setting {name}={value:?}: ignored, using the default"
            ),
        }
    }
}

impl Event<'_> {
    /// A contained panic or a stall, the reports the facades get at level
    /// error (the rest at warn).
    #[cfg(any(feature = "tracing", feature = "log"))]
    fn is_error(&self) -> bool {
        matches!(
            self,
            Event::WorkPanicked { .. } | Event::DropPanicked { .. } | Event::Stall { .. }
        )
    }
}

/// Reports of one rate-limited kind allowed per interval (the kernel's
/// `DEFAULT_RATELIMIT_BURST`).
pub const RATELIMIT_BURST: u32 = 10;
/// The rate-limit interval (the kernel's `DEFAULT_RATELIMIT_INTERVAL`).
pub const RATELIMIT_INTERVAL: Duration = Duration::from_secs(5);

/// One rate-limit window: the kernel's `ratelimit_state`, as a pure
/// transition so tests drive it without a clock.
#[derive(Debug, Default)]
struct Window {
    begin: Option<Instant>,
    printed: u32,
    missed: u64,
}

impl Window {
    /// A report at `now`: whether to deliver it, and how many suppressed
    /// ones to announce first (when a new interval begins).
    fn check(&mut self, now: Instant, burst: u32, interval: Duration) -> (bool, u64) {
        let mut announce = 0;
        match self.begin {
            Some(b) if now.saturating_duration_since(b) < interval => {}
            _ => {
                announce = std::mem::take(&mut self.missed);
                self.begin = Some(now);
                self.printed = 0;
            }
        }
        if self.printed < burst {
            self.printed += 1;
            (true, announce)
        } else {
            self.missed += 1;
            (false, announce)
        }
    }
}

/// A rate-limited kind of report.
pub(crate) struct RateLimit {
    /// I: what it reports, for [`Event::ReportsSuppressed`].
    what: &'static str,
    /// Its own lock, a leaf: the window.
    window: Mutex<Window>,
    /// A: reports suppressed so far.
    pub(crate) suppressed: AtomicU64,
}

impl RateLimit {
    const fn new(what: &'static str) -> RateLimit {
        RateLimit {
            what,
            window: Mutex::new(Window {
                begin: None,
                printed: 0,
                missed: 0,
            }),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Deliver `ev` unless this kind exceeds its rate.
    pub(crate) fn report(&self, ev: Event<'_>) {
        let (deliver, announce) =
            self.window
                .lock()
                .check(Instant::now(), RATELIMIT_BURST, RATELIMIT_INTERVAL);
        if announce > 0 {
            report(Event::ReportsSuppressed {
                what: self.what,
                count: announce,
            });
        }
        if deliver {
            report(ev);
        } else {
            self.suppressed.fetch_add(1, Relaxed);
        }
    }

    /// Fork: the window's lock, held across `fork()` like the others.
    pub(crate) fn fork_lock(&self) {
        std::mem::forget(self.window.lock());
    }

    /// Release what [`fork_lock`](Self::fork_lock) took.
    ///
    /// # Safety
    ///
    /// The calling thread took it with `fork_lock` and has not released it.
    pub(crate) unsafe fn fork_unlock(&self) {
        // SAFETY: held by this thread, guard forgotten (the contract).
        unsafe { self.window.force_unlock(Default::default()) };
    }
}

/// Panics of work functions (G5).
pub(crate) static PANICS: RateLimit = RateLimit::new("work item panic");
/// Panics of closures' destructors.
pub(crate) static DROP_PANICS: RateLimit = RateLimit::new("work item destructor panic");

/// A log hook ([`Config::log`](crate::Config::log)).
pub(crate) type LogHook = std::sync::Arc<dyn Fn(&Event<'_>) + Send + Sync>;

/// The hook events go to, set once when the settings are resolved
/// (`config::settings`), so that this module stays below `config`. Every
/// path that reports runs after that: from the pools, which resolve them
/// first, or (`Work::enable` on an item that is not disabled, the control
/// socket) resolving them itself. Anything earlier, or with no hook
/// configured, goes to [`default_log`].
static HOOK: std::sync::OnceLock<Option<LogHook>> = std::sync::OnceLock::new();

/// Where [`report`] delivers: called once, with the resolved settings.
pub(crate) fn set_hook(hook: Option<LogHook>) {
    let _ = HOOK.set(hook);
}

/// Deliver an event to the configured hook, else to [`default_log`]: one
/// place, never two.
pub(crate) fn report(ev: Event<'_>) {
    match HOOK.get() {
        Some(Some(hook)) => hook(&ev),
        _ => default_log(&ev),
    }
}

/// Where reports go without a hook: the `tracing` facade with that
/// feature, else the `log` facade with that one, else stderr.
fn default_log(ev: &Event<'_>) {
    #[cfg(feature = "tracing")]
    if ev.is_error() {
        tracing::error!(target: "cmwq", "{ev}");
    } else {
        tracing::warn!(target: "cmwq", "{ev}");
    }
    #[cfg(all(feature = "log", not(feature = "tracing")))]
    {
        let level = if ev.is_error() {
            log::Level::Error
        } else {
            log::Level::Warn
        };
        log::log!(target: "cmwq", level, "{ev}");
    }
    #[cfg(not(any(feature = "tracing", feature = "log")))]
    eprintln!("cmwq: {ev}");
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_suppressed_then_announced() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut w = Window::default();
        let iv = Duration::from_secs(5);
        for i in 0..10 {
            assert_eq!(w.check(ms(i), 10, iv), (true, 0), "burst {i}");
        }
        for i in 10..10_000 {
            assert_eq!(w.check(ms(i / 10), 10, iv), (false, 0));
        }
        // The next interval: the 9,990 suppressed are announced once.
        assert_eq!(w.check(ms(5_001), 10, iv), (true, 9_990));
        assert_eq!(w.check(ms(5_002), 10, iv), (true, 0));
    }
}
