//! The CPU limit in force (G34): how many workers of the spreading
//! (managed unbound) pools may run at once, process-wide.
//!
//! The pools keep one runner per CPU the process may use (its affinity
//! mask, which a cgroup's cpuset narrows). A container's CPU *quota* is
//! another limit: a cgroup allowed 150 ms of CPU every 100 ms gets at most
//! 1.5 CPUs' worth of time, however many CPUs it may run on, and a process
//! that runs more threads than that burns its quota early in each period
//! and is throttled (every thread of it, async runtime included) for the
//! rest. So, as std's `available_parallelism`, Go's `GOMAXPROCS` (since
//! 1.25), .NET and the JVM do, the quota is read: the smallest
//! `quota / period` along the process's cgroup and its ancestors, cgroup v2
//! (`cpu.max`) or v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us`), rounded
//! up. Where it is below the CPUs the process may use it is the limit:
//! [`LIMIT`].
//!
//! How the pools keep it (`pool::running_target`, `pool::keep_working`): a
//! pool under the limit (`PoolState::cpu_limited`) counts each of its
//! workers that runs an item and is not blocked in [`RUNNING`], CPU hogs
//! included (they burn quota like anyone); it starts a runner only while
//! [`free`] says a slot is left, and a runner that finds the count over the
//! limit (a worker back from a block while every slot was taken) stops at
//! its next item boundary. A slot given back wakes a limited pool with
//! items waiting (`pool::wake_limited`). Blocked workers do not count, as
//! in G15. Per-CPU pools are not limited: they keep the kernel's semantics
//! (one runner per CPU with pending work).
//!
//! The files are read when the pools start and again by the monitor at
//! most every [`REREAD_NS`] while pools are busy: writes to cgroup files
//! raise no inotify event. Annotations: `src/LOCKING.md`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};

use crate::topology;

/// A: how many workers of limited pools may run at once; `u32::MAX`: no
/// limit in force (no quota, or a quota at or above the CPUs the process
/// may use).
pub(crate) static LIMIT: AtomicU32 = AtomicU32::new(u32::MAX);

/// A: workers of limited pools that run an item and are not blocked
/// (changed by `pool::update_worker` under the worker's pool lock, and by
/// a pool that comes under or leaves the limit).
pub(crate) static RUNNING: AtomicU32 = AtomicU32::new(0);

/// A: the quota last read (`quota_us << 32 | period_us`, each clamped to
/// 32 bits; 0: none), for `dump()`.
static QUOTA: AtomicU64 = AtomicU64::new(0);

/// The monitor re-reads the quota at most this often while pools are
/// busy.
pub(crate) const REREAD_NS: u64 = 1_000_000_000;

/// Read the quota and the CPUs the process may use now: the limit they
/// make (what `pool::apply_cpu_limit` takes).
pub(crate) fn read_limit() -> Option<u32> {
    read_limit_for(
        topology::affinity_mask().map_or(topology::topology().allowed.count(), |m| m.count()),
    )
}

/// [`read_limit`] for a process that may use `usable` CPUs (the monitor
/// passes the mask it had before it followed the limited runners: its own
/// mask is then narrower than the process's).
pub(crate) fn read_limit_for(usable: usize) -> Option<u32> {
    let quota = read_quota(Path::new("/"));
    QUOTA.store(
        quota.map_or(0, |q| {
            (q.quota_us.min(u32::MAX as u64) << 32) | q.period_us.min(u32::MAX as u64)
        }),
        Relaxed,
    );
    limit_for(quota, usable)
}

/// The quota last read, if any.
pub(crate) fn quota() -> Option<Quota> {
    let q = QUOTA.load(Relaxed);
    (q != 0).then_some(Quota {
        quota_us: q >> 32,
        period_us: q & u64::from(u32::MAX),
    })
}

/// The limit in force, if any.
#[inline]
pub(crate) fn limit() -> Option<u32> {
    let l = LIMIT.load(Relaxed);
    (l != u32::MAX).then_some(l)
}

/// Slots left under the limit (0 when it is reached or passed).
#[inline]
pub(crate) fn free() -> u32 {
    LIMIT.load(Relaxed).saturating_sub(RUNNING.load(Relaxed))
}

/// More workers of limited pools run than the limit allows (one came back
/// from a block, or the limit was lowered): a runner stops at its next
/// item boundary.
#[inline]
pub(crate) fn over() -> bool {
    RUNNING.load(Relaxed) > LIMIT.load(Relaxed)
}

/// A CPU quota: `quota_us` of CPU time every `period_us`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Quota {
    /// CPU time allowed per period (us).
    pub(crate) quota_us: u64,
    /// The period (us).
    pub(crate) period_us: u64,
}

impl Quota {
    /// CPUs' worth of time, rounded up (at least 1).
    pub(crate) fn cpus(self) -> u32 {
        (self.quota_us.div_ceil(self.period_us.max(1))).clamp(1, u32::MAX as u64) as u32
    }

    /// The smaller of two quotas (by CPUs' worth, exactly).
    fn min(self, other: Quota) -> Quota {
        // a/b <= c/d  <=>  a*d <= c*b
        if (self.quota_us as u128) * (other.period_us as u128)
            <= (other.quota_us as u128) * (self.period_us as u128)
        {
            self
        } else {
            other
        }
    }
}

/// The limit for a quota and the number of CPUs the process may use: the
/// quota's CPUs if fewer, else none.
pub(crate) fn limit_for(quota: Option<Quota>, usable_cpus: usize) -> Option<u32> {
    let q = quota?.cpus();
    ((q as usize) < usable_cpus).then_some(q)
}

/// v2 `cpu.max`: `max PERIOD` (no quota) or `QUOTA PERIOD`.
pub(crate) fn parse_cpu_max(s: &str) -> Option<Quota> {
    let mut it = s.split_whitespace();
    let quota = it.next()?;
    let period = it.next().map_or(Some(100_000), |p| p.parse().ok())?;
    if quota == "max" || period == 0 {
        return None;
    }
    Some(Quota {
        quota_us: quota.parse().ok()?,
        period_us: period,
    })
}

/// v1 `cpu.cfs_quota_us` (-1: none) and `cpu.cfs_period_us`.
pub(crate) fn parse_cfs(quota: &str, period: &str) -> Option<Quota> {
    let q: i64 = quota.trim().parse().ok()?;
    let p: u64 = period.trim().parse().ok()?;
    (q > 0 && p > 0).then_some(Quota {
        quota_us: q as u64,
        period_us: p,
    })
}

/// Which cgroup version a mount is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// A cgroup mount that may hold the process's CPU quota: where it is
/// mounted and which path of its hierarchy the mount shows as its root.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mount {
    version: Version,
    root: String,
    point: PathBuf,
}

/// The mounts of `/proc/self/mountinfo` that may hold a CPU quota: cgroup2,
/// and cgroup v1 with the `cpu` controller.
fn cpu_mounts(mountinfo: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        // ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.is_empty() {
            continue;
        }
        let version = match r[0] {
            "cgroup2" => Version::V2,
            "cgroup" if r.get(2).is_some_and(|o| o.split(',').any(|c| c == "cpu")) => Version::V1,
            _ => continue,
        };
        out.push(Mount {
            version,
            root: unescape(l[3]),
            point: PathBuf::from(unescape(l[4])),
        });
    }
    out
}

/// mountinfo escapes spaces and the like as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = |c: &u8| (b'0'..=b'7').contains(c);
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(octal) {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The process's cgroup path in the v2 hierarchy and in the v1 one that
/// has the `cpu` controller, from `/proc/self/cgroup`.
fn cgroup_paths(cgroup: &str) -> (Option<String>, Option<String>) {
    let (mut v2, mut v1) = (None, None);
    for line in cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(id), Some(ctrl), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if id == "0" && ctrl.is_empty() {
            v2 = Some(path.to_owned());
        } else if ctrl.split(',').any(|c| c == "cpu") {
            v1 = Some(path.to_owned());
        }
    }
    (v2, v1)
}

/// The smallest quota along the process's cgroup and its ancestors, read
/// under `root` (`/` in use; a fake tree in tests): `/proc/self/cgroup`
/// and `/proc/self/mountinfo` say where the cgroup is.
pub(crate) fn read_quota(root: &Path) -> Option<Quota> {
    read_quota_of(root, "self")
}

/// [`read_quota`] for the process `/proc/<proc_dir>` (`self`, or a pid).
pub(crate) fn read_quota_of(root: &Path, proc_dir: &str) -> Option<Quota> {
    let proc = root.join("proc").join(proc_dir);
    let mountinfo = fs::read_to_string(proc.join("mountinfo")).ok()?;
    let cgroup = fs::read_to_string(proc.join("cgroup")).ok()?;
    let (v2, v1) = cgroup_paths(&cgroup);
    let mut best: Option<Quota> = None;
    for m in cpu_mounts(&mountinfo) {
        let Some(path) = (match m.version {
            Version::V2 => v2.as_deref(),
            Version::V1 => v1.as_deref(),
        }) else {
            continue;
        };
        // The cgroup's path as seen under this mount (a container sees its
        // own cgroup as the mount's root).
        let Some(rel) = path.strip_prefix(m.root.trim_end_matches('/')) else {
            continue;
        };
        let point = root.join(m.point.strip_prefix("/").unwrap_or(&m.point));
        let mut dir = point.join(rel.trim_start_matches('/'));
        loop {
            let q = match m.version {
                Version::V2 => fs::read_to_string(dir.join("cpu.max"))
                    .ok()
                    .and_then(|s| parse_cpu_max(&s)),
                Version::V1 => {
                    match (
                        fs::read_to_string(dir.join("cpu.cfs_quota_us")),
                        fs::read_to_string(dir.join("cpu.cfs_period_us")),
                    ) {
                        (Ok(q), Ok(p)) => parse_cfs(&q, &p),
                        _ => None,
                    }
                }
            };
            if let Some(q) = q {
                best = Some(best.map_or(q, |b| b.min(q)));
            }
            if dir == point || !dir.pop() || !dir.starts_with(&point) {
                break;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests;
