use super::*;

#[test]
fn cpu_max_is_read() {
    assert_eq!(parse_cpu_max("max 100000\n"), None);
    assert_eq!(
        parse_cpu_max("150000 100000\n"),
        Some(Quota {
            quota_us: 150_000,
            period_us: 100_000
        })
    );
    assert_eq!(parse_cpu_max("garbage"), None);
    assert_eq!(parse_cpu_max("50000 0"), None);
}

#[test]
fn cfs_quota_is_read() {
    assert_eq!(parse_cfs("-1\n", "100000\n"), None);
    assert_eq!(
        parse_cfs("50000\n", "100000\n"),
        Some(Quota {
            quota_us: 50_000,
            period_us: 100_000
        })
    );
    assert_eq!(parse_cfs("x", "100000"), None);
}

#[test]
fn a_quota_rounds_up_to_whole_cpus() {
    let q = |quota_us, period_us| Quota {
        quota_us,
        period_us,
    };
    assert_eq!(q(50_000, 100_000).cpus(), 1);
    assert_eq!(q(100_000, 100_000).cpus(), 1);
    assert_eq!(q(150_000, 100_000).cpus(), 2);
    assert_eq!(q(200_000, 100_000).cpus(), 2);
    // The limit only where it is below the CPUs the process may use.
    assert_eq!(limit_for(Some(q(100_000, 100_000)), 2), Some(1));
    assert_eq!(limit_for(Some(q(200_000, 100_000)), 2), None);
    assert_eq!(limit_for(Some(q(150_000, 100_000)), 64), Some(2));
    assert_eq!(limit_for(None, 2), None);
    // The smaller of two, exactly: 3/4 < 1/1.
    assert_eq!(q(3, 4).min(q(100, 100)), q(3, 4));
    assert_eq!(q(300_000, 100_000).min(q(75, 100)), q(75, 100));
}

#[test]
fn mountinfo_names_the_cpu_hierarchies() {
    let info = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
40 31 0:37 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct
41 31 0:38 / /sys/fs/cgroup/un\\040ified rw,relatime - cgroup2 cgroup2 rw
";
    let m = cpu_mounts(info);
    assert_eq!(m.len(), 3);
    assert_eq!(m[0].version, Version::V1);
    assert_eq!(m[0].point, PathBuf::from("/sys/fs/cgroup/cpu"));
    assert_eq!(m[1].root, "/docker/abc");
    assert_eq!(m[2].version, Version::V2);
    assert_eq!(m[2].point, PathBuf::from("/sys/fs/cgroup/un ified"));
}

#[test]
fn proc_self_cgroup_names_the_paths() {
    let (v2, v1) = cgroup_paths("12:cpu,cpuacct:/a/b\n3:memory:/m\n0::/user.slice/x\n");
    assert_eq!(v2.as_deref(), Some("/user.slice/x"));
    assert_eq!(v1.as_deref(), Some("/a/b"));
}

/// A fake root: `/proc/self/{mountinfo,cgroup}` and a cgroup tree.
fn fake(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let root = std::env::temp_dir().join(format!("cmwq-cpu-limit-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    for (path, text) in files {
        let p = root.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    root
}

#[test]
fn the_smallest_quota_along_the_ancestors_is_the_limit_v2() {
    let root = fake(
        "v2",
        &[
            (
                "proc/self/mountinfo",
                "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            ),
            ("proc/self/cgroup", "0::/outer/inner\n"),
            ("sys/fs/cgroup/cpu.max", "max 100000\n"),
            ("sys/fs/cgroup/outer/cpu.max", "150000 100000\n"),
            ("sys/fs/cgroup/outer/inner/cpu.max", "max 100000\n"),
        ],
    );
    assert_eq!(
        read_quota(&root),
        Some(Quota {
            quota_us: 150_000,
            period_us: 100_000
        })
    );
    fs::write(
        root.join("sys/fs/cgroup/outer/inner/cpu.max"),
        "50000 100000\n",
    )
    .unwrap();
    assert_eq!(read_quota(&root).map(Quota::cpus), Some(1));
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn the_smallest_quota_along_the_ancestors_is_the_limit_v1_in_a_container() {
    // A container sees its own cgroup as the mount's root.
    let root = fake(
        "v1",
        &[
            (
                "proc/self/mountinfo",
                "40 31 0:37 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
            ),
            ("proc/self/cgroup", "4:cpu,cpuacct:/docker/abc/job\n"),
            ("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "200000\n"),
            ("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n"),
            ("sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_quota_us", "-1\n"),
            ("sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_period_us", "100000\n"),
        ],
    );
    assert_eq!(read_quota(&root).map(Quota::cpus), Some(2));
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn no_cgroup_files_no_quota() {
    let root = fake("none", &[("proc/self/cgroup", "0::/\n")]);
    assert_eq!(read_quota(&root), None);
    let _ = fs::remove_dir_all(&root);
}
