//! CPU topology: CPU masks, affinity scopes and the pods each scope defines.
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

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustix::thread::CpuSet;

/// Bits per word of a [`CpuMask`].
const WORD_BITS: usize = u64::BITS as usize;

/// The largest CPU id [`CpuMask::parse_list`] accepts.
///
/// The kernel's own limit (`CONFIG_NR_CPUS`) is at most 8192 today; the cap
/// is far above that and only keeps a corrupt file such as `"0-4294967295"`
/// from making us allocate gigabytes.
const MAX_PARSED_CPU: usize = (1 << 20) - 1;

// ---------------------------------------------------------------------------
// CpuMask
// ---------------------------------------------------------------------------

/// A set of CPU ids (0-based), any size.
///
/// The bitmap is kept normalized: it never ends in a zero word, so two masks
/// with the same CPUs compare and hash equal however they were built, and an
/// empty mask holds no words at all.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct CpuMask {
    /// Bit `cpu % 64` of word `cpu / 64` is set when `cpu` is in the mask.
    /// Invariant: the last word, if any, is non-zero.
    words: Vec<u64>,
}

impl CpuMask {
    /// Returns an empty mask.
    pub(crate) fn new() -> Self {
        Self { words: Vec::new() }
    }

    /// Returns the mask holding exactly `cpus` (duplicates are fine).
    pub(crate) fn from_cpus(cpus: impl IntoIterator<Item = usize>) -> Self {
        let mut mask = Self::new();
        for cpu in cpus {
            mask.set(cpu);
        }
        mask
    }

    /// Parses the kernel's cpulist format, as found in sysfs files such as
    /// `/sys/devices/system/cpu/online`: comma-separated CPU ids and
    /// inclusive ranges, e.g. `"0-3,8,10-11\n"`.
    ///
    /// Like the kernel's `bitmap_parselist()`, a range may carry a stride
    /// suffix `:used/group` (`"0-15:2/4"` is `0,1,4,5,8,9,12,13`).  Leading
    /// and trailing whitespace (the newline sysfs appends) is ignored, as is
    /// whitespace around each comma-separated item.  An empty string is the
    /// empty mask.
    ///
    /// Returns `None` when the text is malformed: an empty item, a
    /// non-numeric id, a reversed range, a bad stride, or an id above an
    /// internal sanity cap of about a million CPUs.
    pub(crate) fn parse_list(s: &str) -> Option<Self> {
        let s = s.trim();
        let mut mask = Self::new();
        if s.is_empty() {
            return Some(mask);
        }
        for item in s.split(',') {
            let item = item.trim();
            let (range, stride) = match item.split_once(':') {
                Some((range, stride)) => (range, Some(stride)),
                None => (item, None),
            };
            let (start, end) = match range.split_once('-') {
                Some((start, end)) => (parse_cpu_id(start)?, parse_cpu_id(end)?),
                None => {
                    // A stride only makes sense after a range ("5:1/2" is
                    // rejected by the kernel too).
                    if stride.is_some() {
                        return None;
                    }
                    let cpu = parse_cpu_id(range)?;
                    (cpu, cpu)
                }
            };
            if start > end {
                return None;
            }
            // Without a stride every CPU of the range is set, which is the
            // same as "used 1 of every group of 1".
            let (used, group) = match stride {
                Some(stride) => {
                    let (used, group) = stride.split_once('/')?;
                    (parse_cpu_id(used)?, parse_cpu_id(group)?)
                }
                None => (1, 1),
            };
            if group == 0 || used > group {
                return None;
            }
            for cpu in start..=end {
                if (cpu - start) % group < used {
                    mask.set(cpu);
                }
            }
        }
        Some(mask)
    }

    /// Adds `cpu` to the mask.
    pub(crate) fn set(&mut self, cpu: usize) {
        let word = cpu / WORD_BITS;
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (cpu % WORD_BITS);
    }

    /// Returns whether `cpu` is in the mask.
    pub(crate) fn contains(&self, cpu: usize) -> bool {
        self.words
            .get(cpu / WORD_BITS)
            .is_some_and(|&word| word & (1 << (cpu % WORD_BITS)) != 0)
    }

    /// Returns whether the mask holds no CPU.
    pub(crate) fn is_empty(&self) -> bool {
        // Normalized: an empty mask has no words.
        self.words.is_empty()
    }

    /// Returns the number of CPUs in the mask.
    pub(crate) fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Returns the lowest CPU in the mask.
    #[cfg(test)]
    pub(crate) fn first(&self) -> Option<usize> {
        self.iter().next()
    }

    /// Returns the highest CPU in the mask.
    pub(crate) fn last(&self) -> Option<usize> {
        // Normalized: the last word, if any, has a bit set.
        let top = *self.words.last()?;
        let bit = WORD_BITS - 1 - top.leading_zeros() as usize;
        Some((self.words.len() - 1) * WORD_BITS + bit)
    }

    /// Iterates over the CPUs of the mask in ascending order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words
            .iter()
            .enumerate()
            .flat_map(|(index, &word)| WordBits {
                word,
                base: index * WORD_BITS,
            })
    }

    /// Returns the CPUs that are in both `self` and `other`.
    pub(crate) fn and(&self, other: &CpuMask) -> CpuMask {
        let mut out = CpuMask {
            words: self
                .words
                .iter()
                .zip(&other.words)
                .map(|(a, b)| a & b)
                .collect(),
        };
        out.normalize();
        out
    }

    /// Returns the CPUs that are in `self`, `other` or both.
    pub(crate) fn or(&self, other: &CpuMask) -> CpuMask {
        let (long, short) = if self.words.len() >= other.words.len() {
            (self, other)
        } else {
            (other, self)
        };
        let mut out = long.clone();
        for (a, b) in out.words.iter_mut().zip(&short.words) {
            *a |= b;
        }
        // The longer operand ends in a non-zero word, so `out` does too.
        out
    }

    /// Returns whether every CPU of `self` is also in `other`.
    #[cfg(test)]
    pub(crate) fn is_subset(&self, other: &CpuMask) -> bool {
        self.words
            .iter()
            .enumerate()
            .all(|(index, &word)| word & !other.words.get(index).copied().unwrap_or(0) == 0)
    }

    /// Formats the mask the way the kernel's `tools/workqueue/wq_dump.py`
    /// (`cpumask_str()`) prints one, so that dumps can be compared.
    ///
    /// The CPUs are cut into 32-bit groups starting from CPU 0.  Every group
    /// before the one holding the highest CPU is printed as Python's `hex()`
    /// would (`0x0`, `0xff`, ...) followed by a space; the last group is
    /// printed as eight zero-padded hex digits.  So `{0,1}` is `"00000003"`,
    /// `{0,40}` is `"0x1 00000100"`, and the empty mask is `""`.
    pub(crate) fn to_hex(&self) -> String {
        use fmt::Write as _;

        let mut out = String::new();
        let mut base = 0;
        let mut group: u64 = 0;
        for cpu in self.iter() {
            while cpu - base >= 32 {
                // `{:#x}` writes 0 as "0x0", just like Python's hex().
                let _ = write!(out, "{group:#x} ");
                base += 32;
                group = 0;
            }
            group |= 1 << (cpu - base);
        }
        if group > 0 {
            let _ = write!(out, "{group:08x}");
        }
        // wq_dump.py strips the result; only matters for odd inputs, but
        // keep the behaviour identical.
        out.trim().to_string()
    }

    /// Formats the mask in the kernel's cpulist format, e.g. `"0-3,8"`
    /// (without the trailing newline sysfs adds).  The empty mask is `""`.
    pub(crate) fn to_list(&self) -> String {
        use fmt::Write as _;

        let mut out = String::new();
        let mut cpus = self.iter().peekable();
        while let Some(start) = cpus.next() {
            // Extend the run while the next CPU is adjacent.
            let mut end = start;
            while cpus.peek() == Some(&(end + 1)) {
                end += 1;
                cpus.next();
            }
            if !out.is_empty() {
                out.push(',');
            }
            let _ = if start == end {
                write!(out, "{start}")
            } else {
                write!(out, "{start}-{end}")
            };
        }
        out
    }

    /// Converts the mask to a [`CpuSet`] for `sched_setaffinity()`.
    ///
    /// A `CpuSet` has room for [`CpuSet::MAX_CPU`] CPUs (glibc's
    /// `CPU_SETSIZE`, 1024); CPUs at or above that are silently left out.
    pub(crate) fn to_rustix(&self) -> CpuSet {
        let mut set = CpuSet::new();
        for cpu in self.iter().take_while(|&cpu| cpu < CpuSet::MAX_CPU) {
            set.set(cpu);
        }
        set
    }

    /// Drops trailing zero words to restore the invariant.
    fn normalize(&mut self) {
        while self.words.last() == Some(&0) {
            self.words.pop();
        }
    }
}

impl FromIterator<usize> for CpuMask {
    fn from_iter<I: IntoIterator<Item = usize>>(cpus: I) -> Self {
        Self::from_cpus(cpus)
    }
}

impl fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}", self.to_list())
    }
}

/// Iterator over the set bits of one bitmap word, lowest first.
struct WordBits {
    /// Bits not yet returned.
    word: u64,
    /// CPU id of bit 0 of `word`.
    base: usize,
}

impl Iterator for WordBits {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.word == 0 {
            return None;
        }
        let bit = self.word.trailing_zeros() as usize;
        // Clear the lowest set bit.
        self.word &= self.word - 1;
        Some(self.base + bit)
    }
}

/// Parses one CPU id of a cpulist: decimal digits only (no sign, no spaces),
/// at most [`MAX_PARSED_CPU`].
fn parse_cpu_id(s: &str) -> Option<usize> {
    parse_decimal(s).filter(|&cpu| cpu <= MAX_PARSED_CPU)
}

/// Parses a non-empty string of ASCII decimal digits.
///
/// Stricter than `str::parse`, which would also take a leading `+`.
fn parse_decimal(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

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
fn affinity_mask() -> Option<CpuMask> {
    let set = rustix::thread::sched_getaffinity(None).ok()?;
    Some(CpuMask::from_cpus(
        (0..CpuSet::MAX_CPU).filter(|&cpu| set.is_set(cpu)),
    ))
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
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;
    use std::hash::{Hash, Hasher};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn mask(s: &str) -> CpuMask {
        CpuMask::parse_list(s).unwrap_or_else(|| panic!("bad cpulist {s:?}"))
    }

    fn hash_of(m: &CpuMask) -> u64 {
        let mut h = DefaultHasher::new();
        m.hash(&mut h);
        h.finish()
    }

    // --- CpuMask ----------------------------------------------------------

    #[test]
    fn parse_list_accepts_kernel_format() {
        assert_eq!(
            mask("0-3,8,10-11\n"),
            CpuMask::from_cpus([0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(mask("5"), CpuMask::from_cpus([5]));
        assert_eq!(mask("0"), CpuMask::from_cpus([0]));
        assert_eq!(mask("7-7"), CpuMask::from_cpus([7]));
        assert_eq!(mask("  1, 3 ,64-65 \n"), CpuMask::from_cpus([1, 3, 64, 65]));
        // Overlaps and unsorted items are fine.
        assert_eq!(mask("4,0-2,1"), CpuMask::from_cpus([0, 1, 2, 4]));
        assert_eq!(mask("127"), CpuMask::from_cpus([127]));
        assert_eq!(mask("0-199").count(), 200);
    }

    #[test]
    fn parse_list_empty() {
        assert!(mask("").is_empty());
        assert!(mask("\n").is_empty());
        assert!(mask("   ").is_empty());
        assert_eq!(mask(""), CpuMask::new());
    }

    #[test]
    fn parse_list_stride() {
        assert_eq!(
            mask("0-15:2/4"),
            CpuMask::from_cpus([0, 1, 4, 5, 8, 9, 12, 13])
        );
        assert_eq!(mask("1-9:1/3,20"), CpuMask::from_cpus([1, 4, 7, 20]));
        assert_eq!(mask("0-3:4/4"), mask("0-3"));
        assert!(mask("0-3:0/4").is_empty());
    }

    #[test]
    fn parse_list_rejects_malformed() {
        for bad in [
            "x",
            "1,",
            ",1",
            "1,,2",
            "3-1",
            "-1",
            "1-",
            "1-2-3",
            "+1",
            "0x3",
            "1 2",
            "1.5",
            "0-3:2",
            "0-3:5/4",
            "0-3:1/0",
            "3:1/2",
            "0-3:a/4",
            "99999999999999999999999",
            "0-4294967295",
        ] {
            assert_eq!(CpuMask::parse_list(bad), None, "{bad:?} should be rejected");
        }
    }

    #[test]
    fn basic_queries() {
        let m = mask("3,64-66,200");
        assert!(!m.is_empty());
        assert_eq!(m.count(), 5);
        assert_eq!(m.first(), Some(3));
        assert_eq!(m.last(), Some(200));
        assert!(m.contains(65) && m.contains(200) && !m.contains(4) && !m.contains(100_000));
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![3, 64, 65, 66, 200]);
        assert_eq!(CpuMask::new().first(), None);
        assert_eq!(CpuMask::new().last(), None);
        assert_eq!(CpuMask::new().count(), 0);
        assert_eq!(m.iter().collect::<CpuMask>(), m);
    }

    #[test]
    fn to_list_round_trips() {
        for s in [
            "",
            "0",
            "0-3,8",
            "0-3,8,10-11",
            "1,3,5",
            "0-63",
            "63-64",
            "0-127,129",
        ] {
            assert_eq!(mask(s).to_list(), s);
        }
        assert_eq!(format!("{:?}", mask("0-3,8")), "{0-3,8}");
        assert_eq!(format!("{:?}", CpuMask::new()), "{}");
    }

    #[test]
    fn to_hex_matches_wq_dump() {
        // Expected strings computed with wq_dump.py's cpumask_str().
        assert_eq!(CpuMask::new().to_hex(), "");
        assert_eq!(mask("0-1").to_hex(), "00000003");
        assert_eq!(mask("0").to_hex(), "00000001");
        assert_eq!(mask("4").to_hex(), "00000010");
        assert_eq!(mask("0-31").to_hex(), "ffffffff");
        assert_eq!(mask("0-7").to_hex(), "000000ff");
        assert_eq!(mask("0,40").to_hex(), "0x1 00000100");
        assert_eq!(mask("32").to_hex(), "0x0 00000001");
        assert_eq!(mask("0-63").to_hex(), "0xffffffff ffffffff");
        assert_eq!(mask("0-31,64").to_hex(), "0xffffffff 0x0 00000001");
        assert_eq!(mask("8-15,32-39,96").to_hex(), "0xff00 0xff 0x0 00000001");
        assert_eq!(
            mask("0-127").to_hex(),
            "0xffffffff 0xffffffff 0xffffffff ffffffff"
        );
    }

    #[test]
    fn and_or_subset() {
        let a = mask("0-3,64");
        let b = mask("2-5");
        assert_eq!(a.and(&b), mask("2-3"));
        assert_eq!(b.and(&a), mask("2-3"));
        assert_eq!(a.or(&b), mask("0-5,64"));
        assert_eq!(b.or(&a), mask("0-5,64"));
        // `and` dropping the high words must still be equal to a short mask.
        assert_eq!(a.and(&mask("0,100")), mask("0"));
        assert_eq!(hash_of(&a.and(&mask("0,100"))), hash_of(&mask("0")));
        assert!(a.and(&mask("100")).is_empty());
        assert_eq!(a.and(&mask("100")), CpuMask::new());

        assert!(mask("2-3").is_subset(&a));
        assert!(CpuMask::new().is_subset(&a));
        assert!(CpuMask::new().is_subset(&CpuMask::new()));
        assert!(a.is_subset(&a));
        assert!(!a.is_subset(&b));
        assert!(!mask("64").is_subset(&mask("0-63")));
        assert!(!mask("0,200").is_subset(&mask("0")));
    }

    #[test]
    fn eq_and_hash_ignore_trailing_zero_words() {
        // Same CPUs reached through masks of different word lengths.
        let short = mask("1");
        let long = mask("1,300").and(&mask("0-10"));
        assert_eq!(short, long);
        assert_eq!(hash_of(&short), hash_of(&long));
        // A mask that had a high CPU and lost it through `and`.
        let emptied = mask("500").and(&mask("0-1"));
        assert_eq!(emptied, CpuMask::default());
        assert_eq!(hash_of(&emptied), hash_of(&CpuMask::new()));
        assert_ne!(mask("1"), mask("1,64"));
    }

    #[test]
    fn to_rustix_sets_cpus_below_max() {
        let max = CpuSet::MAX_CPU;
        let set = CpuMask::from_cpus([0, 3, max - 1, max, max + 5]).to_rustix();
        for cpu in 0..max {
            assert_eq!(set.is_set(cpu), [0, 3, max - 1].contains(&cpu), "cpu {cpu}");
        }
    }

    #[test]
    fn scope_names_and_indices() {
        let names: Vec<_> = Scope::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names, ["cpu", "smt", "cache", "numa", "system"]);
        for (i, scope) in Scope::ALL.iter().enumerate() {
            assert_eq!(scope.index(), i);
        }
    }

    // --- fake sysfs trees --------------------------------------------------

    /// A sysfs-like tree in a private temporary directory, removed on drop.
    struct FakeSysfs {
        root: PathBuf,
    }

    impl FakeSysfs {
        fn new(tag: &str) -> Self {
            static SEQ: AtomicUsize = AtomicUsize::new(0);
            let root = std::env::temp_dir().join(format!(
                "cmwq-topology-{}-{}-{}",
                std::process::id(),
                tag,
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(&root).unwrap();
            FakeSysfs { root }
        }

        /// Writes `contents` to `rel` (relative to the root), creating
        /// directories as needed.
        fn write(&self, rel: &str, contents: &str) {
            let path = self.root.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, contents).unwrap();
        }

        fn cpu_file(&self, cpu: usize, rel: &str, contents: &str) {
            self.write(&format!("devices/system/cpu/cpu{cpu}/{rel}"), contents);
        }

        fn smt(&self, cpu: usize, siblings: &str) {
            self.cpu_file(
                cpu,
                "topology/thread_siblings_list",
                &format!("{siblings}\n"),
            );
        }

        fn cache(&self, cpu: usize, index: usize, level: usize, ty: &str, shared: &str) {
            let dir = format!("cache/index{index}");
            self.cpu_file(cpu, &format!("{dir}/level"), &format!("{level}\n"));
            self.cpu_file(cpu, &format!("{dir}/type"), &format!("{ty}\n"));
            self.cpu_file(
                cpu,
                &format!("{dir}/shared_cpu_list"),
                &format!("{shared}\n"),
            );
        }

        /// Creates `cpuN/node<node>` as the kernel does: a symlink to the
        /// node's directory.
        fn node_link(&self, cpu: usize, node: usize) {
            let dir = self.root.join(format!("devices/system/cpu/cpu{cpu}"));
            fs::create_dir_all(&dir).unwrap();
            std::os::unix::fs::symlink(
                format!("../../node/node{node}"),
                dir.join(format!("node{node}")),
            )
            .unwrap();
        }

        fn node_cpulist(&self, node: usize, cpus: &str) {
            self.write(
                &format!("devices/system/node/node{node}/cpulist"),
                &format!("{cpus}\n"),
            );
        }

        fn topology(&self, allowed: Option<CpuMask>) -> Topology {
            let topo = Topology::from_sysfs(&self.root, allowed);
            check_invariants(&topo);
            topo
        }
    }

    impl Drop for FakeSysfs {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    /// The pods of `scope` in cpulist form.
    fn pods(topo: &Topology, scope: Scope) -> Vec<String> {
        topo.pod_type(scope)
            .pod_cpus
            .iter()
            .map(CpuMask::to_list)
            .collect()
    }

    /// The pod of every possible CPU in `scope`.
    fn cpu_pods(topo: &Topology, scope: Scope) -> Vec<usize> {
        topo.possible
            .iter()
            .map(|cpu| topo.pod_of(scope, cpu))
            .collect()
    }

    /// Checks what must hold for any topology, real or fake.
    fn check_invariants(topo: &Topology) {
        assert!(!topo.possible.is_empty());
        assert_eq!(topo.nr_cpus, topo.possible.last().unwrap() + 1);
        assert!(!topo.online.is_empty() && topo.online.is_subset(&topo.possible));
        assert!(!topo.allowed.is_empty() && topo.allowed.is_subset(&topo.possible));
        assert_eq!(topo.cpu_node.len(), topo.nr_cpus);

        for scope in Scope::ALL {
            let pt = topo.pod_type(scope);
            assert_eq!(pt.pod_node.len(), pt.nr_pods(), "{scope:?}");
            assert_eq!(pt.cpu_pod.len(), topo.nr_cpus, "{scope:?}");
            let mut seen = CpuMask::new();
            let mut prev_first = None;
            for (pod, cpus) in pt.pod_cpus.iter().enumerate() {
                // Non-empty, possible-only, disjoint, ordered by lowest CPU.
                let first = cpus.first().expect("empty pod");
                assert!(prev_first < Some(first), "{scope:?}: pods out of order");
                prev_first = Some(first);
                assert!(cpus.is_subset(&topo.possible), "{scope:?}");
                assert!(cpus.and(&seen).is_empty(), "{scope:?}: pods overlap");
                seen = seen.or(cpus);
                for cpu in cpus.iter() {
                    assert_eq!(pt.cpu_pod[cpu], pod, "{scope:?}: cpu {cpu}");
                    assert_eq!(topo.pod_of(scope, cpu), pod, "{scope:?}: cpu {cpu}");
                }
                assert_eq!(pt.pod_node[pod], topo.cpu_node[first], "{scope:?}");
            }
            assert_eq!(seen, topo.possible, "{scope:?}: pods do not cover");
        }
        assert_eq!(topo.pod_type(Scope::Cpu).nr_pods(), topo.possible.count());
        assert_eq!(topo.pod_type(Scope::System).nr_pods(), 1);
    }

    /// 8 CPUs on two NUMA nodes, one L3 per node, SMT pairs (n, n + 4).
    fn two_node_machine(tag: &str) -> FakeSysfs {
        let fs = FakeSysfs::new(tag);
        fs.write("devices/system/cpu/possible", "0-7\n");
        fs.write("devices/system/cpu/online", "0-7\n");
        for cpu in 0..8 {
            let core = cpu % 4;
            fs.smt(cpu, &format!("{},{}", core, core + 4));
            let l3 = if core < 2 { "0-1,4-5" } else { "2-3,6-7" };
            fs.cache(cpu, 0, 1, "Data", &format!("{core},{}", core + 4));
            fs.cache(cpu, 1, 1, "Instruction", &format!("{core},{}", core + 4));
            fs.cache(cpu, 2, 2, "Unified", &format!("{core},{}", core + 4));
            fs.cache(cpu, 3, 3, "Unified", l3);
            // A bogus instruction cache above the LLC must be ignored.
            fs.cache(cpu, 4, 4, "Instruction", "0-7");
        }
        fs
    }

    #[test]
    fn sysfs_two_nodes_smt_and_l3() {
        let fs = two_node_machine("full");
        for cpu in 0..8 {
            fs.node_link(cpu, usize::from(cpu % 4 >= 2));
        }
        let topo = fs.topology(Some(mask("0-7")));

        assert_eq!(topo.nr_cpus, 8);
        assert_eq!(topo.possible, mask("0-7"));
        assert_eq!(topo.online, mask("0-7"));
        assert_eq!(topo.allowed, mask("0-7"));
        assert_eq!(topo.cpu_node, [0, 0, 1, 1, 0, 0, 1, 1]);

        let cpu = topo.pod_type(Scope::Cpu);
        assert_eq!(
            pods(&topo, Scope::Cpu),
            ["0", "1", "2", "3", "4", "5", "6", "7"]
        );
        assert_eq!(cpu.cpu_pod, [0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(cpu.pod_node, [0, 0, 1, 1, 0, 0, 1, 1]);

        let smt = topo.pod_type(Scope::Smt);
        assert_eq!(pods(&topo, Scope::Smt), ["0,4", "1,5", "2,6", "3,7"]);
        assert_eq!(smt.cpu_pod, [0, 1, 2, 3, 0, 1, 2, 3]);
        assert_eq!(smt.pod_node, [0, 0, 1, 1]);

        let cache = topo.pod_type(Scope::Cache);
        assert_eq!(pods(&topo, Scope::Cache), ["0-1,4-5", "2-3,6-7"]);
        assert_eq!(cache.cpu_pod, [0, 0, 1, 1, 0, 0, 1, 1]);
        assert_eq!(cache.pod_node, [0, 1]);

        let numa = topo.pod_type(Scope::Numa);
        assert_eq!(pods(&topo, Scope::Numa), ["0-1,4-5", "2-3,6-7"]);
        assert_eq!(numa.cpu_pod, [0, 0, 1, 1, 0, 0, 1, 1]);
        assert_eq!(numa.pod_node, [0, 1]);

        let system = topo.pod_type(Scope::System);
        assert_eq!(pods(&topo, Scope::System), ["0-7"]);
        assert_eq!(system.cpu_pod, [0; 8]);
        assert_eq!(system.pod_node, [0]);

        assert_eq!(topo.pod_of(Scope::Smt, 6), 2);
        assert_eq!(topo.pod_of(Scope::Cache, 7), 1);
    }

    #[test]
    fn sysfs_nodes_from_node_directory() {
        // No nodeK links in the CPU directories: the node cpulists decide.
        let fs = two_node_machine("nodedir");
        fs.node_cpulist(0, "0-1,4-5");
        fs.node_cpulist(1, "2-3,6-7");
        fs.write("devices/system/node/online", "0-1\n");
        let topo = fs.topology(None);
        assert_eq!(topo.cpu_node, [0, 0, 1, 1, 0, 0, 1, 1]);
        assert_eq!(pods(&topo, Scope::Numa), ["0-1,4-5", "2-3,6-7"]);
        assert_eq!(topo.pod_type(Scope::Numa).pod_node, [0, 1]);
    }

    #[test]
    fn sysfs_core_cpus_list_fallback() {
        let fs = FakeSysfs::new("corecpus");
        fs.write("devices/system/cpu/possible", "0-3\n");
        for cpu in 0..4 {
            let pair = if cpu < 2 { "0-1" } else { "2-3" };
            fs.cpu_file(cpu, "topology/core_cpus_list", &format!("{pair}\n"));
        }
        let topo = fs.topology(None);
        assert_eq!(pods(&topo, Scope::Smt), ["0-1", "2-3"]);
    }

    #[test]
    fn sysfs_missing_cache_falls_back_to_numa() {
        let fs = FakeSysfs::new("nocache");
        fs.write("devices/system/cpu/possible", "0-5\n");
        fs.write("devices/system/cpu/online", "0-5\n");
        for cpu in 0..6 {
            fs.smt(cpu, &cpu.to_string());
        }
        // Nodes interleaved: {0,2,4} and {1,3,5}.
        fs.node_cpulist(0, "0,2,4");
        fs.node_cpulist(1, "1,3,5");
        let topo = fs.topology(None);
        assert_eq!(pods(&topo, Scope::Smt), ["0", "1", "2", "3", "4", "5"]);
        assert_eq!(pods(&topo, Scope::Numa), ["0,2,4", "1,3,5"]);
        assert_eq!(pods(&topo, Scope::Cache), ["0,2,4", "1,3,5"]);
        assert_eq!(cpu_pods(&topo, Scope::Cache), [0, 1, 0, 1, 0, 1]);
        assert_eq!(topo.pod_type(Scope::Cache).pod_node, [0, 1]);
    }

    #[test]
    fn sysfs_only_possible() {
        let fs = FakeSysfs::new("bare");
        fs.write("devices/system/cpu/possible", "0-3\n");
        let topo = fs.topology(Some(mask("1-2")));
        assert_eq!(topo.nr_cpus, 4);
        assert_eq!(topo.online, mask("0-3"));
        assert_eq!(topo.allowed, mask("1-2"));
        assert_eq!(topo.cpu_node, [0; 4]);
        assert_eq!(pods(&topo, Scope::Cpu), ["0", "1", "2", "3"]);
        assert_eq!(pods(&topo, Scope::Smt), ["0", "1", "2", "3"]);
        // No cache data: NUMA grouping, and everything is on node 0.
        assert_eq!(pods(&topo, Scope::Cache), ["0-3"]);
        assert_eq!(pods(&topo, Scope::Numa), ["0-3"]);
        assert_eq!(pods(&topo, Scope::System), ["0-3"]);
    }

    #[test]
    fn sysfs_offline_and_impossible_cpus() {
        // CPUs 0-3 online, 4-5 possible but offline with no topology or
        // cache directories; sysfs also mentions CPU 9, which is not
        // possible.
        let fs = FakeSysfs::new("offline");
        fs.write("devices/system/cpu/possible", "0-5\n");
        fs.write("devices/system/cpu/online", "0-3\n");
        fs.smt(0, "0-1,9");
        fs.smt(1, "0-1,9");
        fs.smt(2, "2-3");
        fs.smt(3, "2-3");
        for cpu in 0..4 {
            fs.cache(cpu, 0, 3, "Unified", "0-3,9");
            fs.node_link(cpu, 1);
        }
        fs.node_cpulist(1, "0-3,9");
        let topo = fs.topology(Some(mask("0-63")));

        assert_eq!(topo.nr_cpus, 6);
        assert_eq!(topo.online, mask("0-3"));
        assert_eq!(topo.allowed, mask("0-5"));
        assert_eq!(topo.cpu_node, [1, 1, 1, 1, 0, 0]);
        assert_eq!(pods(&topo, Scope::Smt), ["0-1", "2-3", "4", "5"]);
        assert_eq!(pods(&topo, Scope::Cache), ["0-3", "4", "5"]);
        assert_eq!(topo.pod_type(Scope::Cache).pod_node, [1, 0, 0]);
        assert_eq!(pods(&topo, Scope::Numa), ["0-3", "4-5"]);
        assert_eq!(topo.pod_type(Scope::Numa).pod_node, [1, 0]);
        assert_eq!(pods(&topo, Scope::System), ["0-5"]);
        assert_eq!(topo.pod_type(Scope::System).pod_node, [1]);
    }

    #[test]
    fn sysfs_sparse_possible() {
        // Holes in the possible mask: per-CPU arrays still span 0..=max.
        let fs = FakeSysfs::new("sparse");
        fs.write("devices/system/cpu/possible", "0-1,4-5\n");
        fs.write("devices/system/cpu/online", "0-1,4\n");
        let topo = fs.topology(Some(mask("0-7")));
        assert_eq!(topo.nr_cpus, 6);
        assert_eq!(topo.allowed, mask("0-1,4-5"));
        assert_eq!(pods(&topo, Scope::Cpu), ["0", "1", "4", "5"]);
        assert_eq!(topo.pod_type(Scope::Cpu).cpu_pod, [0, 1, 0, 0, 2, 3]);
    }

    #[test]
    fn sysfs_inconsistent_siblings_use_first_match() {
        // CPU 2 claims CPU 1 as a sibling, but CPU 1 lists only 0-1.  As in
        // the kernel's init_pod_type(), CPU 2 joins the pod of the first
        // earlier CPU it shares with, so the result is still a partition.
        let fs = FakeSysfs::new("inconsistent");
        fs.write("devices/system/cpu/possible", "0-3\n");
        fs.smt(0, "0-1");
        fs.smt(1, "0-1");
        fs.smt(2, "1-2");
        fs.smt(3, "3");
        let topo = fs.topology(None);
        assert_eq!(pods(&topo, Scope::Smt), ["0-2", "3"]);
    }

    #[test]
    fn sysfs_llc_picks_highest_data_level() {
        // Index numbering does not follow the level; the tie at the top
        // level goes to the lowest index.
        let fs = FakeSysfs::new("llc");
        fs.write("devices/system/cpu/possible", "0-3\n");
        for cpu in 0..4 {
            fs.cache(cpu, 0, 2, "Unified", "0-3");
            fs.cache(cpu, 1, 1, "Data", &cpu.to_string());
            let pair = if cpu < 2 { "0-1" } else { "2-3" };
            fs.cache(cpu, 5, 2, "Unified", pair);
        }
        let topo = fs.topology(None);
        assert_eq!(pods(&topo, Scope::Cache), ["0-3"]);
        assert_eq!(
            Sysfs::new(&fs.root).llc_cpus(1),
            Some(mask("0-3")),
            "index0 wins the level-2 tie"
        );
    }

    #[test]
    fn sysfs_missing_or_malformed_possible_falls_back() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let expected = CpuMask::from_cpus(0..n);

        let fs = FakeSysfs::new("missing");
        let topo = fs.topology(Some(mask("0")));
        assert_eq!(topo.possible, expected);
        assert_eq!(topo.online, expected);
        assert_eq!(topo.allowed, mask("0"));
        assert_eq!(topo.pod_type(Scope::Cpu).nr_pods(), n);

        let fs = FakeSysfs::new("malformed");
        fs.write("devices/system/cpu/possible", "zero-three\n");
        fs.write("devices/system/cpu/online", "bogus\n");
        let topo = fs.topology(None);
        assert!(expected.is_subset(&topo.possible));
        assert_eq!(topo.online, topo.possible);

        let fs = FakeSysfs::new("emptypossible");
        fs.write("devices/system/cpu/possible", "\n");
        let topo = fs.topology(Some(mask("0")));
        assert_eq!(topo.possible, expected);

        // The affinity mask joins the fallback so that it stays usable.
        let fs = FakeSysfs::new("affinity");
        let topo = fs.topology(Some(mask("0,300")));
        assert_eq!(topo.possible, expected.or(&mask("300")));
        assert_eq!(topo.allowed, mask("0,300"));
        assert_eq!(topo.nr_cpus, 301);
    }

    #[test]
    fn sysfs_allowed_is_clamped_to_possible() {
        let fs = FakeSysfs::new("allowed");
        fs.write("devices/system/cpu/possible", "0-3\n");
        assert_eq!(fs.topology(Some(mask("2-9"))).allowed, mask("2-3"));
        // Nothing usable: fall back to all possible CPUs.
        assert_eq!(fs.topology(Some(mask("8-9"))).allowed, mask("0-3"));
        assert_eq!(fs.topology(Some(CpuMask::new())).allowed, mask("0-3"));
    }

    #[test]
    fn discover_real_system() {
        let topo = topology();
        check_invariants(topo);
        assert!(std::ptr::eq(topo, topology()));
        // We are running, so some CPU we may use is online.
        assert!(!topo.allowed.and(&topo.online).is_empty());
        // Finer scopes never have fewer pods than coarser ones here except
        // in odd firmware; only check the two ends.
        for scope in Scope::ALL {
            let nr = topo.pod_type(scope).nr_pods();
            assert!((1..=topo.possible.count()).contains(&nr), "{scope:?}");
        }
    }
}
