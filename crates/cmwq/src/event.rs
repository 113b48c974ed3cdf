//! Reports delivered to the log hook (`Config::log`).

use std::fmt;

/// A report from the library: a contained panic (G5), a queue refused during
/// a drain (G8), a worker that could not be created, and the like. Delivered
/// to the hook set with [`Config::log`](crate::Config::log); by default they
/// are written to stderr (and emitted as `tracing` events with the
/// `tracing` feature).
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
    /// A misuse detected at run time (an unbalanced `enable`, for example).
    Misuse {
        /// What happened.
        message: &'a str,
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
            Event::Misuse { message } => write!(f, "misuse: {message}"),
        }
    }
}

/// Deliver an event to the configured hook.
pub(crate) fn report(ev: Event<'_>) {
    (crate::config::settings().log)(&ev);
}

/// The default hook: stderr, plus a `tracing` event with that feature.
pub(crate) fn default_log(ev: &Event<'_>) {
    #[cfg(feature = "tracing")]
    tracing::warn!(target: "cmwq", "{ev}");
    eprintln!("cmwq: {ev}");
}
