//! # cmwq: the Linux kernel's Concurrency Managed Workqueue, in userspace
//!
//! Queue a [`Work`] item on a [`Workqueue`] and its function runs on a
//! worker thread. A workqueue spreads its items over every CPU the process
//! may use (per-CPU pools, the kernel's classic kind, are asked for with
//! [`WqFlags::PERCPU`]); each pool keeps exactly one running worker per
//! CPU while it has pending work (a spreading pool one more on a CPU whose
//! items block often, so the scheduler covers a block at once), and starts
//! another the moment one blocks: found automatically (a `SCHED_IDLE` sentinel per CPU, perf
//! context-switch records, `/proc` sampling, or a progress check) or told
//! with [`blocking`]. You never size a thread pool.
//!
//! ```
//! use std::time::Duration;
//! use cmwq::{Work, Workqueue, WqFlags};
//!
//! let wq = Workqueue::builder("example").max_active(16).build().unwrap();
//! let w = Work::named("tick", |w| {
//!     // blocks: the pool starts the next item meanwhile
//!     std::thread::sleep(Duration::from_millis(1));
//!     let _ = w; // the handle of the running item
//! });
//! assert!(wq.queue(&w));
//! assert!(!wq.queue(&w) || true); // pending items are not queued twice
//! wq.flush();
//!
//! let ordered = Workqueue::ordered("log", WqFlags::empty()).unwrap();
//! for i in 0..3 {
//!     ordered.spawn(move || println!("in order: {i}"));
//! }
//! ordered.flush();
//! ```
//!
//! ## The Rust API
//!
//! - Items and queues: [`Work`], [`Workqueue`] (with [`WorkqueueBuilder`],
//!   [`WqFlags`], [`WqAttrs`], [`AffinityScope`]), [`WqStats`].
//! - "Run this somewhere": [`spawn`], [`scope()`] / [`scope_on`] (closures
//!   that borrow), [`Workqueue::submit`] with its [`Handle`] (a result, or
//!   an `await`), [`unblock`] (blocking code from async).
//! - Inside an item: [`blocking`] (a hint that the item is about to
//!   block), [`current_work`].
//! - Process-wide settings: [`Config`] (with [`Detect`]; [`detection`] says
//!   the mode in use), applied before first use; errors are [`Error`].
//! - Modules: [`dump`](mod@dump) (live workqueues, `wq_monitor.py`'s table),
//!   [`event`] (the library's reports), [`clock`] (virtual time for tests
//!   of delayed work), [`control`] (the control socket's protocol),
//!   [`coming_from`] (rayon, tokio and std calls beside cmwq's), and with
//!   the `test-util` feature `test_util` (fault injection).
//!
//! ## The kernel's names
//!
//! For code ported from the kernel, or readers who know it, the root
//! also has the kernel's workqueue API under its own names:
//!
//! - the system workqueues: [`system_wq`] (and its newer name
//!   [`system_percpu_wq`]), [`system_highpri_wq`], [`system_long_wq`],
//!   [`system_unbound_wq`], [`system_dfl_wq`], [`system_freezable_wq`],
//!   [`system_power_efficient_wq`],
//!   [`system_freezable_power_efficient_wq`];
//! - [`schedule_work`], [`schedule_work_on`], [`schedule_delayed_work`],
//!   [`work_on_cpu`], [`freeze()`] / [`thaw`], [`nr_cpus`], [`dump()`]
//!   (`wq_dump.py`), [`WQ_MAX_ACTIVE`], [`WQ_DFL_ACTIVE`];
//! - and in [`compat`], `alloc_workqueue`, `queue_work`, `flush_work`,
//!   `cancel_work_sync` and the rest, spelled as in C.
//!
//! ## Where reports go
//!
//! The library reports what it contains or refuses rather than failing
//! the program: a work function's panic (G5), a queue refused while a
//! workqueue drains or is destroyed (G8, G25), a stalled pool (G23), a
//! worker that could not be created, a `CMWQ_*` variable it could not
//! read. Each report, an [`Event`], goes to one place:
//!
//! | build | reports go to |
//! |---|---|
//! | a hook set with [`Config::log`] (a closure or `fn`) | the hook only, whatever the features |
//! | feature `tracing` | `tracing` events, target `cmwq` (panics and stalls at `ERROR`, the rest at `WARN`) |
//! | feature `log` (without `tracing`) | the `log` facade, target `cmwq`, same levels |
//! | neither (the default) | stderr, one line each: `cmwq: ` and the event |
//!
//! With both features on, reports go to `tracing` (whose `log`
//! compatibility can forward them). Reports of one kind are rate limited
//! ([`event::RATELIMIT_BURST`] per [`event::RATELIMIT_INTERVAL`]).
//!
//! ## Features
//!
//! - `tracing`: the kernel's workqueue tracepoints as `tracing` events and
//!   spans, and the reports to `tracing`.
//! - `log`: the reports to the `log` facade.
//! - `test-util`: fault injection for tests (`cmwq::test_util`); not for
//!   production builds.
//!
//! ## Guarantees
//!
//! The guarantees are numbered G1..G35 in [`guarantees`] (with their
//! exceptions): every "G15" in these docs refers to it. Tests carry the
//! numbers in their names, and the repository's `RELIABILITY.md` says how
//! they are tested.
//!
//! cmwq runs on Linux only (futexes, `/proc`, `perf_event_open`, thread
//! affinity and cgroups are what it is made of); on any other target it
//! does not compile.
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "cmwq runs on Linux only: it is built on futexes, /proc, perf_event_open, \
     sched_setaffinity and cgroups, which this target does not have"
);

mod attrs;
pub mod clock;
pub mod coming_from;
pub mod compat;
mod config;
pub mod control;
mod cpu_limit;
mod cpumask;
pub mod dump;
mod error;
pub mod event;
mod fault;
mod fork;
mod freeze;
#[doc = include_str!("../docs/guarantees.md")]
pub mod guarantees {}
mod init;
mod item;
mod list;
mod loom;
mod monitor;
mod pool;
mod rcu;
mod rescuer;
mod scope;
mod stats;
mod submit;
mod sync;
mod timer;
mod topology;
mod trace;
mod util;
mod watchdog;
mod workqueue;

pub use attrs::{AffinityScope, ParseError, WqFlags, WQ_DFL_ACTIVE, WQ_MAX_ACTIVE};
pub use config::{Config, Detect};
pub use error::Error;
pub use event::Event;
pub use freeze::{freeze, thaw};
pub use pool::work::Work;
pub use scope::{scope, scope_on, Scope};
pub use stats::WqStats;
pub use submit::{unblock, Handle, JoinError};
pub use workqueue::{Workqueue, WorkqueueBuilder, WqAttrs};
// The kernel's names (the crate docs group them under their own heading).
pub use workqueue::{
    system_dfl_wq, system_freezable_power_efficient_wq, system_freezable_wq, system_highpri_wq,
    system_long_wq, system_percpu_wq, system_power_efficient_wq, system_unbound_wq, system_wq,
};

/// Run `f` on a worker of [`system_dfl_wq`] and return its item (to
/// [`flush`](Work::flush) or [`cancel`](Work::cancel) it). Items spawned
/// from one thread run on every CPU, as many at once as there are CPUs,
/// more while some of them block (G19):
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// let done = Arc::new(AtomicUsize::new(0));
/// let items: Vec<cmwq::Work> = (0..8)
///     .map(|_| {
///         let done = done.clone();
///         cmwq::spawn(move || {
///             done.fetch_add(1, Ordering::Relaxed);
///         })
///     })
///     .collect();
/// for w in &items {
///     w.flush();
/// }
/// assert_eq!(done.load(Ordering::Relaxed), 8);
/// ```
///
/// Unlike [`Workqueue::spawn`] on a per-CPU workqueue such as [`system_wq`],
/// which runs every item on the caller's CPU, this is the call for "run
/// this on some thread".
pub fn spawn<F: FnOnce() + Send + 'static>(f: F) -> Work {
    system_dfl_wq().spawn(f)
}

/// Queue `work` on [`system_wq`].
pub fn schedule_work(work: &Work) -> bool {
    system_wq().queue(work)
}

/// Queue `work` on [`system_wq`] on `cpu`.
///
/// # Panics
///
/// If `cpu >= nr_cpus()`.
pub fn schedule_work_on(cpu: usize, work: &Work) -> bool {
    system_wq().queue_on(cpu, work)
}

/// Queue `work` on [`system_wq`] after `delay`.
pub fn schedule_delayed_work(work: &Work, delay: std::time::Duration) -> bool {
    system_wq().queue_delayed(work, delay)
}

/// Tell the pool that the calling worker is about to block (G15) and run
/// `f`: the pool starts another worker at once if items wait. Outside a
/// worker it just runs `f`. Nesting is allowed.
///
/// ```
/// let w = cmwq::Work::new(|_| {
///     cmwq::blocking(|| std::thread::sleep(std::time::Duration::from_millis(2)));
/// });
/// cmwq::schedule_work(&w);
/// w.flush();
/// ```
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    pool::worker::blocking(f)
}

/// The item the calling worker is executing.
pub fn current_work() -> Option<Work> {
    // SAFETY: the executing worker holds a reference to its item while it
    // is recorded as current.
    pool::worker::current_exec().map(|(w, _)| unsafe { Work::clone_from_ptr(w) })
}

/// The block detection mode in use (G15): the one asked for with
/// `CMWQ_DETECT` or [`Config::detect`], or for [`Detect::Auto`] the best
/// this process may use; a mode the process may not use falls back to the
/// next best (`dump()` says why). Starts the pools if they have not started.
pub fn detection() -> Detect {
    init::start();
    match monitor::mode() {
        monitor::Mode::Perf => Detect::Perf,
        monitor::Mode::Proc => Detect::Proc,
        monitor::Mode::Progress => Detect::Progress,
        monitor::Mode::Hint => Detect::Hint,
        monitor::Mode::Sentinel => Detect::Sentinel,
    }
}

/// Number of possible CPUs = number of per-CPU pool pairs.
pub fn nr_cpus() -> usize {
    topology::topology().nr_cpus
}

/// Run `f` on a worker of `cpu`'s pool (on [`system_wq`]) and return its
/// result.
///
/// # Panics
///
/// If `cpu >= nr_cpus()`, or with `f`'s panic.
pub fn work_on_cpu<R: Send + 'static>(cpu: usize, f: impl FnOnce() -> R + Send + 'static) -> R {
    let slot = std::sync::Arc::new(crate::sync::Mutex::new(None));
    let s2 = slot.clone();
    let mut f = Some(f);
    let w = Work::named("work_on_cpu", move |_| {
        if let Some(f) = f.take() {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            *s2.lock() = Some(r);
        }
    });
    assert!(schedule_work_on(cpu, &w));
    w.flush();
    let r = slot.lock().take().expect("work_on_cpu: the item ran");
    match r {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// `wq_dump.py`'s report (G30): affinity scopes and pods, pools, the
/// workqueue -> pool map, rescuers, and each pool's in-flight items.
pub fn dump() -> String {
    init::start();
    dump::dump()
}

/// Fault injection for tests (feature `test-util`, absent without it):
/// make the library's thread creation fail or slow down, to test what a
/// program does when the system runs out of threads (G22, G27).
///
/// ```
/// # // The crate's doc tests build with `test-util`.
/// use cmwq::test_util::fail_next_spawns;
/// fail_next_spawns(2); // the next two thread creations fail (EAGAIN)
/// let w = cmwq::spawn(|| {}); // still runs: the pool retries (G27)
/// w.flush();
/// fail_next_spawns(0);
/// ```
///
/// The manual clock for tests of delayed work is [`clock`], in every
/// build.
#[cfg(feature = "test-util")]
pub mod test_util {
    pub use crate::fault::{delay_after_spawn, fail_next_spawns, slow_spawns};
}

/// Counters for the benchmark harness (feature `test-util`); not part of
/// the API.
#[cfg(feature = "test-util")]
#[doc(hidden)]
pub mod __bench {
    use std::sync::atomic::Ordering::Relaxed;

    /// Wake-ups of the monitor thread so far.
    pub fn monitor_wakeups() -> u64 {
        crate::monitor::WAKEUPS.load(Relaxed)
    }
    /// The sentinels' picks, runners they marked blocked, and picks that
    /// found every runner runnable, so far.
    pub fn sentinel_counts() -> (u64, u64, u64) {
        crate::monitor::sentinel::totals()
    }

    /// Runners marked blocked by the monitor or the sentinels.
    pub fn monitor_marked_blocked() -> u64 {
        crate::monitor::MARKED_BLOCKED.load(Relaxed)
    }
    /// CPU hogs the monitor flagged so far.
    pub fn monitor_marked_hog() -> u64 {
        crate::monitor::MARKED_HOG.load(Relaxed)
    }
    /// Reports suppressed by the rate limit so far: (work item panics,
    /// destructor panics).
    pub fn reports_suppressed() -> (u64, u64) {
        (
            crate::event::PANICS.suppressed.load(Relaxed),
            crate::event::DROP_PANICS.suppressed.load(Relaxed),
        )
    }
    /// Idle workers that exited so another pool could have their thread.
    pub fn workers_gave_way() -> u64 {
        crate::pool::GAVE_WAY.load(Relaxed)
    }
    /// Wake-ups of the timer thread so far.
    pub fn timer_wakeups() -> u64 {
        crate::timer::WAKEUPS.load(Relaxed)
    }
    /// The default stall window (`Config::stall_window`).
    pub fn default_stall_window() -> std::time::Duration {
        crate::config::DEFAULT_STALL_WINDOW
    }
    /// Bytes of one work item's allocation (header + a zero-sized closure).
    pub fn work_size() -> usize {
        crate::pool::work::size_of_empty()
    }
}

// The old paths of the items that moved into modules, for one release.

/// Moved to [`dump::monitor_table`].
#[deprecated(note = "moved to cmwq::dump::monitor_table")]
#[doc(hidden)]
pub fn monitor_table() -> String {
    dump::monitor_table()
}

/// Moved to [`dump::workqueues`].
#[deprecated(note = "moved to cmwq::dump::workqueues")]
#[doc(hidden)]
pub fn workqueues() -> Vec<dump::WqInfo> {
    dump::workqueues()
}

/// Moved to [`dump::WqInfo`].
#[deprecated(note = "moved to cmwq::dump::WqInfo")]
#[doc(hidden)]
pub type WqInfo = dump::WqInfo;

/// Moved to [`event::RATELIMIT_BURST`].
#[deprecated(note = "moved to cmwq::event::RATELIMIT_BURST")]
#[doc(hidden)]
pub const RATELIMIT_BURST: u32 = event::RATELIMIT_BURST;

/// Moved to [`event::RATELIMIT_INTERVAL`].
#[deprecated(note = "moved to cmwq::event::RATELIMIT_INTERVAL")]
#[doc(hidden)]
pub const RATELIMIT_INTERVAL: std::time::Duration = event::RATELIMIT_INTERVAL;

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;
