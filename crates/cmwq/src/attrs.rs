//! A workqueue's flags and attribute values (the kernel's `WQ_*` flags
//! and `WQ_AFFN_*` scopes of `workqueue.h`): plain values the layers below
//! the workqueue front end (errors, settings, the pools) name too.

use std::fmt;
use std::str::FromStr;

use crate::topology::Scope;

/// The most `max_active` a workqueue may have.
pub const WQ_MAX_ACTIVE: u32 = 2048;
/// The default `max_active`.
pub const WQ_DFL_ACTIVE: u32 = 1024;

bitflags::bitflags! {
    /// Workqueue flags (the kernel's `WQ_*`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
    pub struct WqFlags: u32 {
        /// Not bound to a CPU: items go to the pool of the queueing CPU's
        /// affinity pod, which keeps as many workers running as the pod
        /// has CPUs (concurrency managed over the pod, G19). Asked for
        /// explicitly, the affinity scope defaults to `Cache` and, with
        /// `CPU_INTENSIVE`, the pools are not managed (the kernel's unbound
        /// behaviour). A workqueue built without `PERCPU` is unbound
        /// anyway (spreading, scope `System`, always managed) and reports
        /// this flag.
        const UNBOUND         = 1 << 1;
        /// Stopped by [`freeze`](crate::freeze) (G24).
        const FREEZABLE       = 1 << 2;
        /// Guaranteed forward progress with a rescuer thread (G22).
        const MEM_RECLAIM     = 1 << 3;
        /// Served by the highpri pools, nice -20 (G20).
        const HIGHPRI         = 1 << 4;
        /// Items do not count toward concurrency (G16). On a per-CPU
        /// workqueue every such item starts as soon as a worker can be
        /// had (up to `max_active` per CPU, the kernel's meaning). On a
        /// spreading workqueue (no `UNBOUND`, no `PERCPU`) the pools stay
        /// managed: up to as many such items as the pod has CPUs leave
        /// concurrency management at once, the rest take a runner's slot
        /// (so CPU-bound items never run more than twice the CPUs at
        /// once). With an explicit `UNBOUND` the workqueue gets pools of
        /// its own that are not managed at all (every item starts as soon
        /// as a worker can be had, up to `max_active`: the kernel's
        /// unbound behaviour, G19).
        const CPU_INTENSIVE   = 1 << 5;
        /// Unbound when `Config::power_efficient(true)`, else per-CPU (the
        /// kernel's meaning, whether `PERCPU` is given or not).
        const POWER_EFFICIENT = 1 << 7;
        /// Per-CPU (the kernel's `WQ_PERCPU`, G14): an item runs on the
        /// pool of the CPU that queues it, or the one `queue_on` names.
        /// Without it a workqueue spreads its items over every CPU the
        /// process may use. `PERCPU | UNBOUND` is
        /// [`Error::InvalidFlags`](crate::Error::InvalidFlags).
        const PERCPU          = 1 << 8;
    }
}

/// Affinity scopes of unbound workqueues (the kernel's `WQ_AFFN_*`, G19).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum AffinityScope {
    /// The process default (`Config::default_affinity_scope`, else `Cache`).
    #[default]
    Default,
    /// One pod per CPU.
    Cpu,
    /// CPUs that share a core (SMT siblings).
    Smt,
    /// CPUs that share the last-level cache.
    Cache,
    /// CPUs of a NUMA node.
    Numa,
    /// All CPUs.
    System,
}

impl AffinityScope {
    /// Every scope, in the order of the kernel's `WQ_AFFN_*`.
    const ALL: [AffinityScope; 6] = [
        AffinityScope::Default,
        AffinityScope::Cpu,
        AffinityScope::Smt,
        AffinityScope::Cache,
        AffinityScope::Numa,
        AffinityScope::System,
    ];

    /// The kernel's name of the scope (`workqueue.default_affinity_scope`,
    /// `/sys/devices/virtual/workqueue/*/affinity_scope`): `default`,
    /// `cpu`, `smt`, `cache`, `numa` or `system`. What `Display` writes
    /// and `FromStr` reads.
    pub fn name(self) -> &'static str {
        match self {
            AffinityScope::Default => "default",
            AffinityScope::Cpu => "cpu",
            AffinityScope::Smt => "smt",
            AffinityScope::Cache => "cache",
            AffinityScope::Numa => "numa",
            AffinityScope::System => "system",
        }
    }

    pub(crate) fn scope(self) -> Option<Scope> {
        Some(match self {
            AffinityScope::Default => return None,
            AffinityScope::Cpu => Scope::Cpu,
            AffinityScope::Smt => Scope::Smt,
            AffinityScope::Cache => Scope::Cache,
            AffinityScope::Numa => Scope::Numa,
            AffinityScope::System => Scope::System,
        })
    }
}

impl fmt::Display for AffinityScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The kernel's names, any case, surrounding spaces ignored.
///
/// ```
/// use cmwq::AffinityScope;
/// assert_eq!("numa".parse::<AffinityScope>(), Ok(AffinityScope::Numa));
/// assert_eq!(AffinityScope::Cache.to_string(), "cache");
/// assert!("pod".parse::<AffinityScope>().is_err());
/// ```
impl FromStr for AffinityScope {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        ParseError::find(s, "affinity scope", &Self::ALL, |a| a.name())
    }
}

/// A name that [`AffinityScope`] or [`Detect`](crate::Detect) does not
/// know (their `FromStr`): says what was given and what is accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    what: &'static str,
    value: String,
    expected: Vec<&'static str>,
}

impl ParseError {
    /// The value of `all` whose name is `s` (any case, spaces around
    /// ignored), or the error naming them.
    pub(crate) fn find<T: Copy>(
        s: &str,
        what: &'static str,
        all: &[T],
        name: impl Fn(T) -> &'static str,
    ) -> Result<T, ParseError> {
        let t = s.trim();
        all.iter()
            .copied()
            .find(|&v| name(v).eq_ignore_ascii_case(t))
            .ok_or_else(|| ParseError {
                what,
                value: s.to_string(),
                expected: all.iter().map(|&v| name(v)).collect(),
            })
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?} (expected {})",
            self.what,
            self.value,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for ParseError {}
