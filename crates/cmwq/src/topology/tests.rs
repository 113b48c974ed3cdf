//! Unit tests of `topology` (in a file of their own, beside the code).

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

fn mask(s: &str) -> CpuMask {
    CpuMask::parse_list(s).unwrap_or_else(|| panic!("bad cpulist {s:?}"))
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
