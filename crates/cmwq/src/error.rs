//! Errors returned by the library.

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::attrs::WqFlags;

/// What went wrong. Misuse is reported, never silently clamped (G27).
///
/// `Clone + Eq`: an OS error it carries ([`ThreadStart`](Error::ThreadStart))
/// is shared (`Arc`) and compared by its errno (or its kind when it has
/// none), and is the error's [`source`](std::error::Error::source).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// `max_active` outside `1..=WQ_MAX_ACTIVE` (G17).
    InvalidMaxActive(u32),
    /// A flag combination that makes no sense (for example `UNBOUND |
    /// CPU_INTENSIVE`, or anything but `FREEZABLE | MEM_RECLAIM` on an
    /// ordered workqueue).
    InvalidFlags(WqFlags),
    /// A CPU id that is not a possible CPU of this machine.
    InvalidCpu(usize),
    /// Unbound attributes given to a per-CPU workqueue.
    NotUnbound,
    /// The operation is not allowed on an ordered workqueue (its max_active
    /// and attributes are fixed).
    Ordered(String),
    /// A nice level outside -20..=19.
    InvalidNice(i32),
    /// A CPU set that contains no CPU this process may use.
    EmptyCpumask,
    /// Process-wide settings (`Config`, the manual clock) must be applied
    /// before the first workqueue is used.
    AlreadyStarted(&'static str),
    /// An environment variable or configuration value could not be parsed.
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
    ThreadStart {
        /// The thread, e.g. `rescuer kworker/R-name`.
        what: String,
        /// The error from the OS (`EAGAIN` when the process is out of
        /// threads), also the error's `source()`.
        source: Arc<io::Error>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidMaxActive(n) => write!(
                f,
                "max_active {n} is out of range 1..={}",
                crate::attrs::WQ_MAX_ACTIVE
            ),
            Error::InvalidFlags(flags) => write!(f, "invalid workqueue flags {flags:?}"),
            Error::InvalidCpu(cpu) => write!(
                f,
                "CPU {cpu} does not exist (nr_cpus() is {})",
                crate::topology::topology().nr_cpus
            ),
            Error::NotUnbound => f.write_str("attributes apply to unbound workqueues only"),
            Error::Ordered(name) => {
                write!(f, "operation not allowed on the ordered workqueue {name:?}")
            }
            Error::InvalidNice(n) => write!(f, "nice level {n} is out of range -20..=19"),
            Error::EmptyCpumask => f.write_str("the CPU set contains no usable CPU"),
            Error::AlreadyStarted(what) => write!(
                f,
                "cmwq has already started: {what} must be set before first use"
            ),
            Error::InvalidSetting { name, value } => {
                write!(f, "invalid setting {name}={value:?}")
            }
            // The OS error is the source, not repeated here (a reporter
            // that walks the chain would print it twice).
            Error::ThreadStart { what, .. } => write!(f, "could not start {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::ThreadStart { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

/// Two OS errors are the same error when they have the same errno, or,
/// without one, the same kind.
fn same_io(a: &io::Error, b: &io::Error) -> bool {
    match (a.raw_os_error(), b.raw_os_error()) {
        (Some(x), Some(y)) => x == y,
        (None, None) => a.kind() == b.kind(),
        _ => false,
    }
}

impl PartialEq for Error {
    fn eq(&self, other: &Error) -> bool {
        use Error::*;
        match (self, other) {
            (InvalidMaxActive(a), InvalidMaxActive(b)) => a == b,
            (InvalidFlags(a), InvalidFlags(b)) => a == b,
            (InvalidCpu(a), InvalidCpu(b)) => a == b,
            (NotUnbound, NotUnbound) => true,
            (Ordered(a), Ordered(b)) => a == b,
            (InvalidNice(a), InvalidNice(b)) => a == b,
            (EmptyCpumask, EmptyCpumask) => true,
            (AlreadyStarted(a), AlreadyStarted(b)) => a == b,
            (
                InvalidSetting { name, value },
                InvalidSetting {
                    name: n2,
                    value: v2,
                },
            ) => name == n2 && value == v2,
            (
                ThreadStart { what, source },
                ThreadStart {
                    what: w2,
                    source: s2,
                },
            ) => what == w2 && same_io(source, s2),
            _ => false,
        }
    }
}

impl Eq for Error {}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn thread_start_keeps_its_os_error_and_compares_by_errno() {
        let e = |errno| Error::ThreadStart {
            what: "rescuer kworker/R-x".into(),
            source: Arc::new(io::Error::from_raw_os_error(errno)),
        };
        let a = e(libc::EAGAIN);
        assert_eq!(a, a.clone());
        assert_eq!(a, e(libc::EAGAIN));
        assert_ne!(a, e(libc::ENOMEM));
        let src = a.source().expect("the OS error is the source");
        let io = src.downcast_ref::<io::Error>().expect("an io::Error");
        assert_eq!(io.raw_os_error(), Some(libc::EAGAIN));
        assert_eq!(a.to_string(), "could not start rescuer kworker/R-x");
        assert!(Error::NotUnbound.source().is_none());
    }
}
