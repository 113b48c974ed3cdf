//! CPU topology: affinity scopes and the pods each scope defines, as
//! [`CpuMask`]s (`cpumask.rs`).
//!
//! This is the userspace counterpart of the pod machinery in the kernel's
//! `kernel/workqueue.c` (`struct wq_pod_type`, `init_pod_type()`,
//! `wq_pod_init()`).  An unbound workqueue's worker pools are created per
//! *pod*: a group of CPUs that share something worth keeping work close to.
//! Which grouping is used is the workqueue's *affinity scope*:
//!
//! * `cpu`    - every CPU is its own pod;
//! * `smt`    - CPUs that are SMT siblings (hyper-threads of one core);
//! * `cache`  - CPUs that share the last-level cache;
//! * `numa`   - CPUs of one NUMA node;
//! * `system` - all CPUs form a single pod.
//!
//! The kernel asks its scheduler topology; we read the same facts from sysfs
//! (`/sys/devices/system/cpu` and `/sys/devices/system/node`).  Discovery never
//! fails: a missing or malformed file only makes the result coarser or finer
//! (see the rules on [`Topology::from_sysfs`]), so that a workqueue can always
//! be created, even in a container with a stripped-down `/sys`.
//!
//! The topology is discovered once per process ([`topology`]).  CPU hotplug
//! after that is not tracked: like the kernel, pods are laid out over all
//! *possible* CPUs, so a CPU coming online later already has its pod.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustix::thread::CpuSet;

use crate::cpumask::{parse_decimal, CpuMask};

// ---------------------------------------------------------------------------
// Affinity scopes and pods
// ---------------------------------------------------------------------------

/// Affinity scopes, as the kernel's `WQ_AFFN_*` (`enum wq_affn_scope`).
///
/// A scope names how CPUs are grouped into pods for an unbound workqueue;
/// they run from the finest (`Cpu`) to the coarsest (`System`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Scope {
    /// Every CPU is its own pod (`WQ_AFFN_CPU`).
    Cpu,
    /// SMT siblings - the hardware threads of one core - share a pod
    /// (`WQ_AFFN_SMT`).
    Smt,
    /// CPUs sharing the last-level cache share a pod (`WQ_AFFN_CACHE`).
    Cache,
    /// CPUs of one NUMA node share a pod (`WQ_AFFN_NUMA`).
    Numa,
    /// All CPUs are in one pod (`WQ_AFFN_SYSTEM`).
    System,
}

impl Scope {
    /// All scopes, in the order of [`Scope::index`].
    pub(crate) const ALL: [Scope; 5] = [
        Scope::Cpu,
        Scope::Smt,
        Scope::Cache,
        Scope::Numa,
        Scope::System,
    ];

    /// The scope's name as the kernel spells it (`wq_affn_names[]`):
    /// `"cpu"`, `"smt"`, `"cache"`, `"numa"` or `"system"`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scope::Cpu => "cpu",
            Scope::Smt => "smt",
            Scope::Cache => "cache",
            Scope::Numa => "numa",
            Scope::System => "system",
        }
    }

    /// The scope's position in [`Scope::ALL`] and [`Topology::pod_types`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// How CPUs are grouped for one scope (the kernel's `struct wq_pod_type`).
///
/// Only possible CPUs are placed in pods.  Pods are numbered in the order of
/// their lowest CPU, and together they partition the possible CPUs.
#[derive(Clone, Debug)]
pub(crate) struct PodType {
    /// The CPUs of each pod; only possible CPUs, never empty.
    pub(crate) pod_cpus: Vec<CpuMask>,
    /// The NUMA node of each pod: the node of the pod's first CPU.
    pub(crate) pod_node: Vec<usize>,
    /// The pod of each CPU, indexed by CPU id, `nr_cpus` long.  Entries of
    /// ids that are not possible CPUs are 0, as in the kernel's zeroed array.
    pub(crate) cpu_pod: Vec<usize>,
}

impl PodType {
    /// The number of pods.
    pub(crate) fn nr_pods(&self) -> usize {
        self.pod_cpus.len()
    }

    /// Groups the possible CPUs into pods the way the kernel's
    /// `init_pod_type()` does.
    ///
    /// Walk the CPUs in ascending order.  Each CPU joins the pod of the first
    /// (lowest) earlier CPU it shares a pod with according to
    /// `cpus_share_pod(cur, pre)`; if there is none, it starts a new pod.
    /// This yields a partition with pods numbered by their lowest CPU even
    /// if `cpus_share_pod` is not a proper equivalence relation, as can
    /// happen with inconsistent sysfs data.
    fn build(
        possible: &CpuMask,
        nr_cpus: usize,
        cpu_node: &[usize],
        cpus_share_pod: impl Fn(usize, usize) -> bool,
    ) -> PodType {
        let mut pt = PodType {
            pod_cpus: Vec::new(),
            pod_node: Vec::new(),
            cpu_pod: vec![0; nr_cpus],
        };
        for cur in possible.iter() {
            let shared = possible
                .iter()
                .take_while(|&pre| pre < cur)
                .find(|&pre| cpus_share_pod(cur, pre));
            match shared {
                Some(pre) => {
                    let pod = pt.cpu_pod[pre];
                    pt.cpu_pod[cur] = pod;
                    pt.pod_cpus[pod].set(cur);
                }
                None => {
                    pt.cpu_pod[cur] = pt.pod_cpus.len();
                    pt.pod_cpus.push(CpuMask::from_cpus([cur]));
                    pt.pod_node.push(cpu_node[cur]);
                }
            }
        }
        pt
    }
}

// ---------------------------------------------------------------------------
// Topology
// ---------------------------------------------------------------------------

/// The CPUs of the machine and their grouping into pods for every scope.
#[derive(Clone, Debug)]
pub(crate) struct Topology {
    /// The number of possible CPU ids: the highest possible CPU plus one
    /// (the kernel's `nr_cpu_ids`).  Per-CPU arrays are this long.
    pub(crate) nr_cpus: usize,
    /// The CPUs that can ever be online; never empty.
    pub(crate) possible: CpuMask,
    /// The CPUs online at discovery; a non-empty subset of `possible`.
    pub(crate) online: CpuMask,
    /// The CPUs this process may run on at discovery (its affinity mask),
    /// intersected with `possible`; never empty.
    pub(crate) allowed: CpuMask,
    /// The NUMA node of each CPU, indexed by CPU id (0 where unknown).
    pub(crate) cpu_node: Vec<usize>,
    /// The pods of each scope, indexed by [`Scope::index`].
    pub(crate) pod_types: [PodType; 5],
}

impl Topology {
    /// Discovers the topology of the running system from `/sys`.
    pub(crate) fn discover() -> Topology {
        Topology::from_sysfs(Path::new("/sys"), None)
    }

    /// Discovers the topology from a sysfs tree mounted at `root` (in place
    /// of `/sys`), for the process allowed to run on `allowed` (`None`: ask
    /// `sched_getaffinity()`).
    ///
    /// The rules, after the kernel's `wq_pod_init()`:
    ///
    /// * Possible CPUs come from `devices/system/cpu/possible`.  If it is
    ///   missing, malformed or empty, CPUs `0..available_parallelism()` are
    ///   taken, plus those of the affinity mask.  Online CPUs come from
    ///   `.../online`, otherwise all possible CPUs are online.
    /// * `Cpu`: one pod per CPU.
    /// * `Smt`: two CPUs share a pod when either is in the other's
    ///   `cpuN/topology/thread_siblings_list` (or `core_cpus_list`).
    /// * `Cache`: likewise with the `shared_cpu_list` of the CPU's last-level
    ///   cache: the `cpuN/cache/index*` entry of the highest `level` that is
    ///   not an `Instruction` cache.  If no CPU has readable cache data, the
    ///   NUMA grouping is used instead.
    /// * `Numa`: CPUs of one node share a pod.  A CPU's node is the `K` of
    ///   the `nodeK` link in `cpuN/`, otherwise the first
    ///   `devices/system/node/nodeK/cpulist` listing it, otherwise 0.
    /// * `System`: one pod with every possible CPU.
    ///
    /// Only possible CPUs are grouped: CPUs that sysfs lists but are not
    /// possible are ignored.  A CPU whose sibling or cache data cannot be
    /// read (typically an offline CPU, whose `topology/` and `cache/` are
    /// removed) shares an `Smt`/`Cache` pod with no other CPU.
    pub(crate) fn from_sysfs(root: &Path, allowed: Option<CpuMask>) -> Topology {
        let sysfs = Sysfs::new(root);

        let affinity = allowed.or_else(affinity_mask);
        let possible = read_mask(&sysfs.cpu_dir.join("possible"))
            .filter(|mask| !mask.is_empty())
            .unwrap_or_else(|| fallback_possible(affinity.as_ref()));
        // `possible` is never empty, so it has a last CPU.
        let nr_cpus = possible.last().map_or(1, |last| last + 1);

        let online = read_mask(&sysfs.cpu_dir.join("online"))
            .map(|mask| mask.and(&possible))
            .filter(|mask| !mask.is_empty())
            .unwrap_or_else(|| possible.clone());

        let allowed = affinity
            .map(|mask| mask.and(&possible))
            .filter(|mask| !mask.is_empty())
            .unwrap_or_else(|| possible.clone());

        let cpu_node = sysfs.cpu_nodes(&possible, nr_cpus);

        // Per-CPU sibling and LLC masks; `None` where sysfs has nothing.
        let mut smt: Vec<Option<CpuMask>> = vec![None; nr_cpus];
        let mut llc: Vec<Option<CpuMask>> = vec![None; nr_cpus];
        for cpu in possible.iter() {
            smt[cpu] = sysfs.smt_siblings(cpu).map(|mask| mask.and(&possible));
            llc[cpu] = sysfs.llc_cpus(cpu).map(|mask| mask.and(&possible));
        }
        let have_llc = possible.iter().any(|cpu| llc[cpu].is_some());

        let share_numa = |cur: usize, pre: usize| cpu_node[cur] == cpu_node[pre];
        let pod_types = Scope::ALL.map(|scope| {
            let build = |share: &dyn Fn(usize, usize) -> bool| {
                PodType::build(&possible, nr_cpus, &cpu_node, share)
            };
            match scope {
                Scope::Cpu => build(&|_, _| false),
                Scope::Smt => build(&|cur, pre| masks_share(&smt, cur, pre)),
                Scope::Cache if have_llc => build(&|cur, pre| masks_share(&llc, cur, pre)),
                // No cache information at all (some VMs, containers and
                // architectures): group by NUMA node rather than pretend
                // that every CPU has a private cache.
                Scope::Cache | Scope::Numa => build(&share_numa),
                Scope::System => build(&|_, _| true),
            }
        });

        Topology {
            nr_cpus,
            possible,
            online,
            allowed,
            cpu_node,
            pod_types,
        }
    }

    /// The pods of `scope`.
    pub(crate) fn pod_type(&self, scope: Scope) -> &PodType {
        &self.pod_types[scope.index()]
    }

    /// The pod of `cpu` in `scope`.
    ///
    /// For an id that is not a possible CPU this is 0, as the kernel's
    /// zero-initialized `cpu_pod[]` would say.
    #[cfg(test)]
    pub(crate) fn pod_of(&self, scope: Scope, cpu: usize) -> usize {
        self.pod_type(scope).cpu_pod.get(cpu).copied().unwrap_or(0)
    }
}

/// Returns the process-wide topology, discovered on first use.
pub(crate) fn topology() -> &'static Topology {
    static TOPOLOGY: OnceLock<Topology> = OnceLock::new();
    TOPOLOGY.get_or_init(Topology::discover)
}

/// Whether `cur` and `pre` share a pod according to per-CPU masks such as
/// SMT siblings: yes when either is in the other's mask.  A CPU without a
/// mask shares with nobody.
fn masks_share(masks: &[Option<CpuMask>], cur: usize, pre: usize) -> bool {
    match (&masks[cur], &masks[pre]) {
        (Some(cur_mask), Some(pre_mask)) => cur_mask.contains(pre) || pre_mask.contains(cur),
        _ => false,
    }
}

/// The process's CPU affinity mask, or `None` if it cannot be read (e.g. on
/// a machine with more CPUs than a [`CpuSet`] holds, where the kernel
/// refuses the small buffer).
pub(crate) fn affinity_mask() -> Option<CpuMask> {
    mask_of(rustix::thread::sched_getaffinity(None).ok()?)
}

/// Thread `tid` of this process, pinned to `cpu`, lost its pin: the mask
/// it has instead (None: pinned, or unreadable). No allocation unless it
/// lost it.
pub(crate) fn lost_pin_of(tid: i32, cpu: usize) -> Option<CpuMask> {
    let pid = rustix::process::Pid::from_raw(tid)?;
    let set = rustix::thread::sched_getaffinity(Some(pid)).ok()?;
    if set.is_set(cpu) && set.count() == 1 {
        return None;
    }
    mask_of(set)
}

fn mask_of(set: CpuSet) -> Option<CpuMask> {
    Some(CpuMask::from_cpus(
        (0..CpuSet::MAX_CPU).filter(|&cpu| set.is_set(cpu)),
    ))
}

/// The CPUs online now (`/sys/devices/system/cpu/online`), if readable.
pub(crate) fn online_now() -> Option<CpuMask> {
    read_mask(Path::new("/sys/devices/system/cpu/online"))
}

/// The possible CPUs to assume when sysfs does not say: CPUs
/// `0..available_parallelism()`, plus any CPU of the affinity mask so that
/// the CPUs we may run on are always possible.
fn fallback_possible(affinity: Option<&CpuMask>) -> CpuMask {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mask = CpuMask::from_cpus(0..n);
    match affinity {
        Some(affinity) => mask.or(affinity),
        None => mask,
    }
}

/// Reads a cpulist file; `None` if unreadable or malformed.
fn read_mask(path: &Path) -> Option<CpuMask> {
    CpuMask::parse_list(&fs::read_to_string(path).ok()?)
}

/// Reads a one-line sysfs attribute, without surrounding whitespace.
fn read_attr(path: &Path) -> Option<String> {
    Some(fs::read_to_string(path).ok()?.trim().to_string())
}

/// Returns `K` if `name` is `prefix` followed by the decimal number `K`
/// (e.g. `node1`, `index3`).
fn numbered_entry(name: &std::ffi::OsStr, prefix: &str) -> Option<usize> {
    parse_decimal(name.to_str()?.strip_prefix(prefix)?)
}

/// The parts of a sysfs tree we read.
struct Sysfs {
    /// `<root>/devices/system/cpu`.
    cpu_dir: PathBuf,
    /// `<root>/devices/system/node`.
    node_dir: PathBuf,
}

impl Sysfs {
    /// Locates the CPU and node directories under `root`.
    fn new(root: &Path) -> Sysfs {
        Sysfs {
            cpu_dir: root.join("devices/system/cpu"),
            node_dir: root.join("devices/system/node"),
        }
    }

    /// `<root>/devices/system/cpu/cpu<cpu>`.
    fn cpu_path(&self, cpu: usize) -> PathBuf {
        self.cpu_dir.join(format!("cpu{cpu}"))
    }

    /// The NUMA node of every possible CPU, indexed by CPU id; 0 where
    /// unknown.
    fn cpu_nodes(&self, possible: &CpuMask, nr_cpus: usize) -> Vec<usize> {
        // The node directories are only read if some CPU lacks a link.
        let mut node_lists: Option<Vec<(usize, CpuMask)>> = None;
        let mut cpu_node = vec![0; nr_cpus];
        for cpu in possible.iter() {
            cpu_node[cpu] = self.node_link(cpu).unwrap_or_else(|| {
                node_lists
                    .get_or_insert_with(|| self.node_cpulists())
                    .iter()
                    .find(|(_, cpus)| cpus.contains(cpu))
                    .map_or(0, |&(node, _)| node)
            });
        }
        cpu_node
    }

    /// The node named by the `node<K>` entry (a symlink to the node's
    /// directory) in the CPU's directory.  Should there be several, the
    /// lowest wins.
    fn node_link(&self, cpu: usize) -> Option<usize> {
        fs::read_dir(self.cpu_path(cpu))
            .ok()?
            .flatten()
            .filter_map(|entry| numbered_entry(&entry.file_name(), "node"))
            .min()
    }

    /// Every `node<K>/cpulist` that can be read, by ascending `K`.
    fn node_cpulists(&self) -> Vec<(usize, CpuMask)> {
        let Ok(entries) = fs::read_dir(&self.node_dir) else {
            return Vec::new();
        };
        let mut nodes: Vec<(usize, CpuMask)> = entries
            .flatten()
            .filter_map(|entry| {
                let node = numbered_entry(&entry.file_name(), "node")?;
                Some((node, read_mask(&entry.path().join("cpulist"))?))
            })
            .collect();
        nodes.sort_by_key(|&(node, _)| node);
        nodes
    }

    /// The SMT siblings of `cpu` (including itself), from
    /// `topology/thread_siblings_list` or, failing that,
    /// `topology/core_cpus_list`.
    fn smt_siblings(&self, cpu: usize) -> Option<CpuMask> {
        let topology = self.cpu_path(cpu).join("topology");
        ["thread_siblings_list", "core_cpus_list"]
            .iter()
            .find_map(|file| read_mask(&topology.join(file)).filter(|m| !m.is_empty()))
    }

    /// The CPUs sharing `cpu`'s last-level cache.
    ///
    /// Each `cache/index<I>` directory describes one cache the CPU uses; the
    /// last level is the one with the highest `level` among data and unified
    /// caches (instruction caches never hold the data work items touch).
    /// On a tie the lowest index wins.  If that entry's `shared_cpu_list`
    /// cannot be read the answer is unknown rather than a lower level.
    fn llc_cpus(&self, cpu: usize) -> Option<CpuMask> {
        let entries = fs::read_dir(self.cpu_path(cpu).join("cache")).ok()?;
        let mut best: Option<(usize, usize, PathBuf)> = None;
        for entry in entries.flatten() {
            let Some(index) = numbered_entry(&entry.file_name(), "index") else {
                continue;
            };
            let path = entry.path();
            if read_attr(&path.join("type")).as_deref() == Some("Instruction") {
                continue;
            }
            let Some(level) = read_attr(&path.join("level")).and_then(|l| parse_decimal(&l)) else {
                continue;
            };
            let better = match &best {
                None => true,
                Some((best_level, best_index, _)) => {
                    level > *best_level || (level == *best_level && index < *best_index)
                }
            };
            if better {
                best = Some((level, index, path));
            }
        }
        let (_, _, path) = best?;
        read_mask(&path.join("shared_cpu_list")).filter(|m| !m.is_empty())
    }
}

#[cfg(test)]
mod tests;
