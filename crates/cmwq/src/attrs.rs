//! A workqueue's flags and attribute values (the kernel's `WQ_*` flags
//! and `WQ_AFFN_*` scopes of `workqueue.h`): plain values the layers below
//! the workqueue front end (errors, settings, the pools) name too.

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
        /// has CPUs (concurrency managed over the pod, G19; not with
        /// `CPU_INTENSIVE`).
        const UNBOUND         = 1 << 1;
        /// Stopped by [`freeze`](crate::freeze) (G24).
        const FREEZABLE       = 1 << 2;
        /// Guaranteed forward progress with a rescuer thread (G22).
        const MEM_RECLAIM     = 1 << 3;
        /// Served by the highpri pools, nice -20 (G20).
        const HIGHPRI         = 1 << 4;
        /// Items do not count toward concurrency (G16). On an unbound
        /// workqueue: its pools are not concurrency managed (every item
        /// starts as soon as a worker can be had, the kernel's unbound
        /// behaviour, G19).
        const CPU_INTENSIVE   = 1 << 5;
        /// Unbound when `Config::power_efficient(true)`, else per-CPU.
        const POWER_EFFICIENT = 1 << 7;
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
