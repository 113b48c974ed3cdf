//! The monitor's per-worker detection state, as data: each worker holds
//! one (`Worker::detect`), the monitor and the sentinels read and change it
//! (`monitor/mod.rs` has its methods). A leaf, so that the workers can
//! hold it without naming the layer that watches them.

use super::perf;
use super::policy;

/// Per-worker detection state, owned by the monitor (the worker only
/// installs its ring or stat files when it starts, and sets `quiet`). All
/// fields are `D:` (the `Worker::detect` lock), never held together with a
/// pool lock; see `src/LOCKING.md`.
#[derive(Default)]
pub(crate) struct DetectState {
    /// perf: the worker's context-switch ring (`perf::SwitchRing`).
    pub(crate) ring: Option<perf::SwitchRing>,
    /// exec_seq of the execution being followed.
    pub(crate) seen_exec: u64,
    /// perf: switched out (blocked) since this time, not switched in yet.
    pub(crate) blocked_since: Option<u64>,
    /// proc and sentinel backstop: what the samples of this execution
    /// established (`policy::proc_sample`).
    pub(crate) track: policy::ProcTrack,
    /// sentinel backstop: (time, CPU clock) of the last sample.
    pub(crate) last_cpu: Option<(u64, u64)>,
    /// hog: CPU clock of the worker when the execution was first seen or
    /// last woke.
    pub(crate) cpu_base: Option<u64>,
    /// hog: no need to read the CPU clock before this time (mono ns): the
    /// item cannot have used its threshold of CPU sooner (a thread gains
    /// CPU time no faster than wall time). Set with every `cpu_base`.
    pub(crate) hog_at: u64,
    /// The pool counts it blocked by the monitor (`BlockedBy::Monitor`),
    /// as of the monitor's last look.
    pub(crate) blocked_by_monitor: bool,
    /// perf: the monitor wants the ring on (the worker's pool is watched).
    pub(crate) watch: bool,
    /// perf: the worker needs no records now: it is idle (parked), or
    /// inside `blocking()`, which told its pool already.
    pub(crate) quiet: bool,
    /// perf: the ring records: `watch && !quiet`, as last applied.
    pub(crate) on: bool,
    /// perf: the ring was just switched on and says nothing of what came
    /// before: ask /proc once, as after lost records.
    pub(crate) resync: bool,
}
