//! Looking inside: the live workqueues with their counters
//! ([`workqueues`], G29) and `wq_monitor.py`'s table of them
//! ([`monitor_table`]), the kernel's `tools/workqueue` scripts. The other
//! one, `wq_dump.py`'s report of pools, pods and in-flight items (G30), is
//! [`cmwq::dump()`](crate::dump()) at the crate root.
//!
//! ```
//! let wq = cmwq::Workqueue::new("dump_doc").unwrap();
//! wq.spawn(|| {}).flush();
//! let info = cmwq::dump::workqueues();
//! let me = info.iter().find(|i| i.name == "dump_doc").unwrap();
//! assert_eq!(me.stats.total, 1);
//! print!("{}", cmwq::dump::monitor_table());
//! ```

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use crate::cpumask::CpuMask;
use crate::pool::{pools, WORKER_RESCUER};
use crate::topology::{topology, Scope};
use crate::workqueue::{all_workqueues, WqInner};
use crate::WqFlags;

const NAME_LEN: usize = 24;

/// A process's CPU limit (G34): its cgroup's CPU quota (the smallest
/// `quota / period` along the cgroup and its ancestors, v2 `cpu.max` or v1
/// CFS quota) and what it makes of the spreading pools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CpuLimit {
    /// CPU time allowed per period (us), if a quota is set.
    pub quota_us: Option<u64>,
    /// The quota's period (us), if a quota is set.
    pub period_us: Option<u64>,
    /// How many workers of the spreading pools may run at once: the quota
    /// rounded up, where it is below the CPUs the process may use; `None`:
    /// no limit beyond the CPUs.
    pub limit: Option<u32>,
}

/// This process's CPU limit in force: the quota as last read (at start,
/// and about once a second while pools are busy) and the limit the pools
/// keep.
pub fn cpu_limit() -> CpuLimit {
    let q = crate::cpu_limit::quota();
    CpuLimit {
        quota_us: q.map(|q| q.quota_us),
        period_us: q.map(|q| q.period_us),
        limit: crate::cpu_limit::limit(),
    }
}

/// The CPU limit the library would keep in process `pid` now, read from
/// `/proc/PID` (its cgroup and its `Cpus_allowed_list`): what `cmwq top`
/// shows of a process it only sees from outside.
pub fn cpu_limit_of(pid: u32) -> CpuLimit {
    let q = crate::cpu_limit::read_quota_of(std::path::Path::new("/"), &pid.to_string());
    let usable = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .and_then(|l| CpuMask::parse_list(l.trim()))
        })
        .map_or(topology().allowed.count(), |m| m.count());
    CpuLimit {
        quota_us: q.map(|q| q.quota_us),
        period_us: q.map(|q| q.period_us),
        limit: crate::cpu_limit::limit_for(q, usable),
    }
}

fn wq_type(wq: &WqInner) -> &'static str {
    if wq.shared.ordered {
        "ordered"
    } else if wq.shared.flags.contains(WqFlags::UNBOUND) {
        // wq_dump.py's "unbound"; a spreading one (made without PERCPU,
        // G14) says so, and an unmanaged one (UNBOUND | CPU_INTENSIVE).
        let strict = wq.attrs.lock().as_ref().is_some_and(|a| a.affinity_strict);
        match (wq.shared.spreading, wq.shared.unmanaged, strict) {
            (true, _, false) => "spreading",
            (true, _, true) => "spreading,S",
            (false, true, false) => "unbound,U",
            (false, true, true) => "unbound,U,S",
            (false, false, false) => "unbound",
            (false, false, true) => "unbound,S",
        }
    } else {
        "percpu"
    }
}

pub(crate) fn dump() -> String {
    let pools = pools();
    let topo = topology();
    let mut o = String::new();
    let dfl_scope = crate::config::settings().affinity_scope;

    let _ = writeln!(o, "Affinity Scopes");
    let _ = writeln!(o, "===============");
    let _ = writeln!(o, "wq_unbound_cpumask={}", topo.allowed.to_hex());
    let _ = writeln!(o, "cpu_online={}", topo.online.to_hex());
    // G34: the CPU limit in force over the spreading pools.
    let quota = crate::cpu_limit::quota().map_or("none".to_owned(), |q| {
        format!("{}/{} us ({} CPUs)", q.quota_us, q.period_us, q.cpus())
    });
    let _ = match crate::cpu_limit::limit() {
        Some(l) => writeln!(
            o,
            "cpu_limit={l} running={} (cgroup quota {quota}: spreading pools run at most {l} workers at once)",
            crate::cpu_limit::RUNNING.load(std::sync::atomic::Ordering::Relaxed)
        ),
        None => writeln!(o, "cpu_limit=none (cgroup quota {quota})"),
    };
    let _ = write!(o, "cpu_node ");
    for c in topo.possible.iter() {
        let _ = write!(o, " [{c}]={}", topo.cpu_node[c]);
    }
    let _ = writeln!(o);
    for scope in Scope::ALL {
        let pt = topo.pod_type(scope);
        let _ = writeln!(o);
        let dfl = if scope == dfl_scope { " (default)" } else { "" };
        let _ = writeln!(o, "{}{dfl}", scope.name().to_uppercase());
        let _ = writeln!(o, "  nr_pods  {}", pt.nr_pods());
        let _ = write!(o, "  pod_cpus");
        for (i, m) in pt.pod_cpus.iter().enumerate() {
            let _ = write!(o, " [{i}]={}", m.to_hex());
        }
        let _ = writeln!(o);
        let _ = write!(o, "  pod_node");
        for (i, n) in pt.pod_node.iter().enumerate() {
            let _ = write!(o, " [{i}]={n}");
        }
        let _ = writeln!(o);
        let _ = write!(o, "  cpu_pod ");
        for c in topo.possible.iter() {
            let _ = write!(o, " [{c}]={}", pt.cpu_pod[c]);
        }
        let _ = writeln!(o);
    }

    let all = pools.all();
    let id_len = all.len().saturating_sub(1).to_string().len();
    let _ = writeln!(o);
    let _ = writeln!(o, "Worker Pools");
    let _ = writeln!(o, "============");
    // G35: CPUs the process cannot use now (offline, or outside its
    // affinity mask as it is now), whose pools run unpinned, as the
    // kernel's wq_dump.py shows a pool it flags POOL_DISASSOCIATED.
    let online_now = crate::topology::online_now();
    let mask_now = crate::topology::affinity_mask();
    for p in &all {
        let (idle, workers, pwqs, standby) = {
            let g = p.lock();
            (g.nr_idle, g.nr_workers, g.pwqs.len(), g.standby.on)
        };
        let _ = write!(
            o,
            "pool[{:0id_len$}] ref={:2} nice={:3} idle/workers={idle:3}/{workers:3} ",
            p.id,
            pwqs,
            p.nice_actual.load(Relaxed),
        );
        match p.cpu {
            Some(c) => {
                let _ = write!(o, "cpu={c:3}");
                if online_now.as_ref().is_some_and(|m| !m.contains(c)) {
                    let _ = write!(o, " disassociated (offline)");
                } else if !topo.allowed.contains(c)
                    || mask_now.as_ref().is_some_and(|m| !m.contains(c))
                {
                    let _ = write!(o, " disassociated (outside the affinity mask)");
                }
            }
            None => {
                let _ = write!(
                    o,
                    "cpus={} pod_cpus={}",
                    p.attrs.cpus.to_hex(),
                    p.attrs.pod_cpus.to_hex()
                );
                if p.attrs.strict {
                    let _ = write!(o, " strict");
                }
                if let Some((l, i)) = p.lane {
                    // A lane of a managed unbound pod (`pool/README.md`).
                    let _ = write!(o, " lane={i} of cpus={}", l.cpus.to_hex());
                    if standby {
                        // Its items block often: one runner more.
                        let _ = write!(o, " standby");
                    }
                }
            }
        }
        if p.highpri && p.nice_actual.load(Relaxed) != p.attrs.nice {
            let _ = write!(o, " (asked nice={}, not permitted)", p.attrs.nice);
        }
        let _ = writeln!(o);
    }

    let wqs = all_workqueues();
    let _ = writeln!(o);
    let _ = writeln!(o, "Workqueue CPU -> pool");
    let _ = writeln!(o, "=====================");
    let _ = write!(
        o,
        "[{:^w$}\\ {:9}",
        "workqueue",
        "type   CPU",
        w = NAME_LEN - 2
    );
    for c in topo.possible.iter() {
        let _ = write!(o, " {c:id_len$}");
    }
    let _ = writeln!(o, " dfl]");
    for wq in &wqs {
        let _ = write!(o, "{:NAME_LEN$} {:10}", wq.shared.name, wq_type(wq));
        wq.table.read(0, |t| {
            for c in topo.possible.iter() {
                let w = c.to_string().len().max(id_len);
                match t.per_cpu.get(c) {
                    Some(p) => {
                        let _ = write!(o, " {:w$}", p.pool.id);
                    }
                    None => {
                        let _ = write!(o, " {:>w$}", "-");
                    }
                }
            }
            if let Some(d) = &t.dfl {
                let _ = write!(o, " {:id_len$}", d.pool.id);
            }
        });
        let _ = writeln!(o);
    }

    let _ = writeln!(o);
    let _ = writeln!(o, "Workqueue -> rescuer");
    let _ = writeln!(o, "====================");
    let cpus_len = topo.allowed.to_hex().len().max("unbound_cpus".len());
    let _ = writeln!(
        o,
        "[{:^w$}\\ {:cpus_len$}    pid rescuer         state]",
        "workqueue",
        "unbound_cpus",
        w = NAME_LEN - 2
    );
    for wq in wqs.iter().filter(|w| w.mem_reclaim) {
        let cpus = wq
            .attrs
            .lock()
            .as_ref()
            .map(|a| match &a.cpus {
                Some(l) => CpuMask::from_cpus(l.iter().copied()).to_hex(),
                None => topo.allowed.to_hex(),
            })
            .unwrap_or_default();
        let (tid, name, state) = match &wq.shared.rescuer {
            Some(r) => (r.tid.load(Relaxed).to_string(), r.name.as_str(), r.state()),
            None => ("-".into(), "-", "stopped".into()),
        };
        let st = wq.stats();
        let _ = writeln!(
            o,
            "{:NAME_LEN$} {cpus:cpus_len$} {tid:>6} {name:15} {state}; mayday={} rescued={}",
            wq.shared.name, st.mayday, st.rescued
        );
    }

    let _ = writeln!(o);
    let _ = writeln!(o, "Busy pools");
    let _ = writeln!(o, "==========");
    let _ = writeln!(o, "{}", crate::monitor::describe());
    let _ = writeln!(
        o,
        "lanes: {} batches stolen",
        crate::pool::STOLEN.load(Relaxed)
    );
    let _ = writeln!(
        o,
        "timers: {} armed, clock: {} at {:?}",
        crate::timer::armed(),
        if crate::clock::is_manual() {
            "manual"
        } else {
            "monotonic"
        },
        crate::clock::now()
    );
    for p in &all {
        let g = p.lock();
        let pending =
            g.worklist.len() + g.pwqs.iter().map(|(_, s)| s.inactive.len()).sum::<usize>();
        let running: Vec<String> = g
            .workers
            .iter()
            .filter_map(|(_, ws)| {
                let c = ws.current?;
                // SAFETY: `current` is valid while recorded and we hold the
                // pool lock (see `pool::Current`).
                let (work, pwq) = unsafe { (c.work.as_ref(), &*c.pwq) };
                let state = ws.busy_state();
                let name = if ws.flags & WORKER_RESCUER != 0 {
                    pwq.wq
                        .rescuer
                        .as_ref()
                        .map_or_else(String::new, |r| r.name.clone())
                } else {
                    p.worker_name(ws.worker.id)
                };
                Some(format!(
                    "{}:{}({}) [{}] {state}",
                    ws.worker.tid.load(Relaxed),
                    name,
                    work.name.unwrap_or("work"),
                    pwq.wq.name,
                ))
            })
            .collect();
        if running.is_empty() && pending == 0 {
            continue;
        }
        let _ = writeln!(
            o,
            "pool {}: {} nr_running={} workers={} idle={} pending={pending}",
            p.id,
            p.describe(),
            g.nr_running,
            g.nr_workers,
            g.nr_idle
        );
        if !running.is_empty() {
            let _ = writeln!(o, "  in-flight: {}", running.join(", "));
        }
    }
    o
}

/// A workqueue as listed by [`workqueues`]: what
/// `wq_monitor.py` shows for it. More fields may come (`non_exhaustive`:
/// start from `WqInfo::default()` to make one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WqInfo {
    /// Its name.
    pub name: String,
    /// Its flags: exactly one of `PERCPU` and `UNBOUND` (a spreading
    /// workqueue, made without `PERCPU`, reports `UNBOUND`).
    pub flags: crate::WqFlags,
    /// Ordered workqueue.
    pub ordered: bool,
    /// Unbound because `PERCPU` was not asked for (G14).
    pub spreading: bool,
    /// Not concurrency managed: an explicit `UNBOUND | CPU_INTENSIVE`
    /// workqueue (G19).
    pub unmanaged: bool,
    /// Current max_active.
    pub max_active: u32,
    /// Its counters.
    pub stats: crate::WqStats,
}

impl WqInfo {
    /// Its row in [`monitor_table`].
    pub fn row(&self) -> String {
        // CPUitsv and CMW apply where concurrency management does: bound
        // and managed unbound pools (G19), not UNBOUND|CPU_INTENSIVE.
        self.stats.row(
            &self.name,
            self.unmanaged,
            self.flags.contains(crate::WqFlags::MEM_RECLAIM),
        )
    }
}

/// Every live workqueue, oldest first.
pub fn workqueues() -> Vec<WqInfo> {
    crate::workqueue::all_workqueues()
        .into_iter()
        .map(|wq| WqInfo {
            name: wq.shared.name.clone(),
            flags: wq.shared.flags,
            ordered: wq.shared.ordered,
            spreading: wq.shared.spreading,
            unmanaged: wq.shared.unmanaged,
            max_active: wq
                .shared
                .max_active
                .load(std::sync::atomic::Ordering::Relaxed),
            stats: wq.stats(),
        })
        .collect()
}

/// `wq_monitor.py`'s table: a header and one row per live workqueue.
pub fn monitor_table() -> String {
    let mut s = crate::WqStats::header();
    s.push('\n');
    for info in workqueues() {
        s.push_str(&info.row());
        s.push('\n');
    }
    s
}
