//! Errors returned by the library.

use crate::attrs::WqFlags;

/// What went wrong. Misuse is reported, never silently clamped (G27).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `max_active` outside `1..=WQ_MAX_ACTIVE` (G17).
    #[error("max_active {0} is out of range 1..={max}", max = crate::attrs::WQ_MAX_ACTIVE)]
    InvalidMaxActive(u32),
    /// A flag combination that makes no sense (for example `UNBOUND |
    /// CPU_INTENSIVE`, or anything but `FREEZABLE | MEM_RECLAIM` on an
    /// ordered workqueue).
    #[error("invalid workqueue flags {0:?}")]
    InvalidFlags(WqFlags),
    /// A CPU id that is not a possible CPU of this machine.
    #[error("CPU {0} does not exist (nr_cpus() is {n})", n = crate::topology::topology().nr_cpus)]
    InvalidCpu(usize),
    /// Unbound attributes given to a per-CPU workqueue.
    #[error("attributes apply to unbound workqueues only")]
    NotUnbound,
    /// The operation is not allowed on an ordered workqueue (its max_active
    /// and attributes are fixed).
    #[error("operation not allowed on the ordered workqueue {0:?}")]
    Ordered(String),
    /// A nice level outside -20..=19.
    #[error("nice level {0} is out of range -20..=19")]
    InvalidNice(i32),
    /// A CPU set that contains no CPU this process may use.
    #[error("the CPU set contains no usable CPU")]
    EmptyCpumask,
    /// Process-wide settings (`Config`, the manual clock) must be applied
    /// before the first workqueue is used.
    #[error("cmwq has already started: {0} must be set before first use")]
    AlreadyStarted(&'static str),
    /// An environment variable or configuration value could not be parsed.
    #[error("invalid setting {name}={value:?}")]
    InvalidSetting {
        /// The variable or option.
        name: &'static str,
        /// What it was set to.
        value: String,
    },
    /// A thread the workqueue needs could not be started: the rescuer of a
    /// `MEM_RECLAIM` workqueue (G22), or the monitor thread that sends it
    /// maydays. As in the kernel's `alloc_workqueue`, the workqueue is not
    /// created rather than created without its guarantee.
    #[error("could not start {what}: {error}")]
    ThreadStart {
        /// The thread, e.g. `rescuer kworker/R-name`.
        what: String,
        /// The error from the OS.
        error: String,
    },
}
