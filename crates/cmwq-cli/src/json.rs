//! The `--json` output of `ps`, `dump` and `monitor`: one JSON object per
//! line, each with `"schema": 2` ([`SCHEMA`]), keys in snake_case. A
//! change that removes or retypes a key raises the schema version; new
//! keys may be added within a version.
//!
//! (`top --once --json`'s object is built in `top/json.rs`.)

use serde::Serialize;

/// The version of every object's shape. 2: `dump` and `top` objects carry
/// `cpu_limit`.
pub const SCHEMA: u32 = 2;

/// A process's CPU limit (G34): its cgroup's CPU quota, and how many
/// workers of the spreading pools may run at once (`null`: no limit beyond
/// the CPUs the process may use).
#[derive(Debug, Serialize, PartialEq)]
pub struct CpuLimitJson {
    /// CPU time allowed per period (us); `null` without a quota.
    pub quota_us: Option<u64>,
    /// The quota's period (us).
    pub period_us: Option<u64>,
    /// Running workers of the spreading pools at most.
    pub limit: Option<u32>,
}

impl From<cmwq::dump::CpuLimit> for CpuLimitJson {
    fn from(l: cmwq::dump::CpuLimit) -> CpuLimitJson {
        CpuLimitJson {
            quota_us: l.quota_us,
            period_us: l.period_us,
            limit: l.limit,
        }
    }
}

/// The limit in force as a `dump()` report's `cpu_limit=` line says it
/// (`cpu_limit=N running=R (cgroup quota Q/P us ...)` or `cpu_limit=none
/// (cgroup quota none)`).
pub fn parse_cpu_limit(report: &str) -> Option<CpuLimitJson> {
    let line = report.lines().find(|l| l.starts_with("cpu_limit="))?;
    let limit = line
        .strip_prefix("cpu_limit=")?
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok());
    let quota = line.split("cgroup quota ").nth(1).and_then(|q| {
        let (q, rest) = q.split_once('/')?;
        let p = rest.split_whitespace().next()?;
        Some((q.parse().ok()?, p.parse().ok()?))
    });
    Some(CpuLimitJson {
        quota_us: quota.map(|(q, _)| q),
        period_us: quota.map(|(_, p)| p),
        limit,
    })
}

/// One workqueue's row of the `wq_monitor.py` table, as `monitor` and
/// `dump` print it: counts over an interval or since the process started
/// (the enclosing object's `totals` says which). A column the text table
/// shows as `-` (it does not apply to the workqueue's kind) is `null`.
#[derive(Debug, Serialize, PartialEq)]
pub struct WqRow {
    /// The workqueue's name.
    pub name: String,
    /// Its `WqFlags` names (`UNBOUND`, `PERCPU`, `MEM_RECLAIM`, ...).
    pub flags: Vec<String>,
    /// An ordered workqueue.
    pub ordered: bool,
    /// Its current `max_active`.
    pub max_active: u32,
    /// Executions started (`total`).
    pub total: u64,
    /// Items queued or running now (`infl`; always a current value).
    pub in_flight: u64,
    /// CPU seconds its work functions used (`CPUtime`).
    pub cpu_time_s: f64,
    /// Executions that became CPU hogs (`CPUitsv`); `null` when the
    /// workqueue is not concurrency managed.
    pub cpu_hog: Option<u64>,
    /// Concurrency-management wake-ups (`CMW/RPR`); `null` when not
    /// concurrency managed.
    pub cm_wakeups: Option<u64>,
    /// Rescuer calls (`mayday`); `null` without `MEM_RECLAIM`.
    pub mayday: Option<u64>,
    /// Items the rescuer ran (`rescued`); `null` without `MEM_RECLAIM`.
    pub rescued: Option<u64>,
    /// Executions that panicked (`panics`).
    pub panics: u64,
}

impl From<&cmwq::dump::WqInfo> for WqRow {
    fn from(wq: &cmwq::dump::WqInfo) -> WqRow {
        let s = &wq.stats;
        let managed = !wq.unmanaged;
        let reclaim = wq.flags.contains(cmwq::WqFlags::MEM_RECLAIM);
        WqRow {
            name: wq.name.clone(),
            flags: wq.flags.iter_names().map(|(n, _)| n.to_string()).collect(),
            ordered: wq.ordered,
            max_active: wq.max_active,
            total: s.total,
            in_flight: s.in_flight,
            cpu_time_s: s.cpu_time.as_secs_f64(),
            cpu_hog: managed.then_some(s.cpu_hog),
            cm_wakeups: managed.then_some(s.cm_wakeups),
            mayday: reclaim.then_some(s.mayday),
            rescued: reclaim.then_some(s.rescued),
            panics: s.panics,
        }
    }
}

/// What `monitor --json` prints per table: one object a line.
#[derive(Debug, Serialize)]
pub struct MonitorTable {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The process watched.
    pub pid: Option<u32>,
    /// Seconds since the monitor started (`null` for `--once`).
    pub t_s: Option<f64>,
    /// The sampling interval in milliseconds (`null` for `--once`).
    pub interval_ms: Option<u64>,
    /// `true`: the counts are totals since the process started; `false`:
    /// over the last interval.
    pub totals: bool,
    /// The block-detection mode, where known (`monitor` without a PID).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detection: Option<String>,
    /// One row per live workqueue.
    pub workqueues: Vec<WqRow>,
}

/// One process of `ps --json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct PsProcess {
    /// Its PID.
    pub pid: u32,
    /// Its control socket.
    pub socket: String,
    /// Its name (`null` when it did not answer).
    pub name: Option<String>,
    /// Live workqueues.
    pub workqueues: Option<u64>,
    /// Worker pools.
    pub pools: Option<u64>,
    /// Worker threads.
    pub workers: Option<u64>,
    /// Its block-detection mode.
    pub detect: Option<String>,
    /// Why it did not answer, when it did not.
    pub error: Option<String>,
}

/// `ps --json`: one object for the whole list.
#[derive(Debug, Serialize)]
pub struct Ps {
    /// [`SCHEMA`].
    pub schema: u32,
    /// This user's processes with a control socket.
    pub processes: Vec<PsProcess>,
}

/// `dump --json`: the `wq_dump.py` report, split up.
#[derive(Debug, Serialize)]
pub struct Dump {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The process reported on.
    pub pid: Option<u32>,
    /// The worker pools (the report's `Worker Pools` lines, parsed).
    pub pools: Vec<DumpPool>,
    /// The live workqueues and their counters since the process started.
    pub workqueues: Vec<WqRow>,
    /// Every section of the report as its title and its lines, as the
    /// text shows them (the `Worker Pools` section included).
    pub sections: Vec<Section>,
    /// The CPU limit in force (G34), from the report; `null` from a
    /// process whose report has no `cpu_limit=` line.
    pub cpu_limit: Option<CpuLimitJson>,
}

/// One titled section of the report.
#[derive(Debug, Serialize, PartialEq)]
pub struct Section {
    /// Its title (`Affinity Scopes`, `Worker Pools`, `Busy pools`, ...).
    pub title: String,
    /// Its lines, without the title and its underline; blank lines kept
    /// out at both ends.
    pub lines: Vec<String>,
}

/// One line of the report's `Worker Pools` section:
/// `pool[ID] ref=N nice=N idle/workers=I/W cpu=C` (bound) or `... cpus=MASK
/// pod_cpus=MASK [strict] [lane=I of cpus=MASK] [standby]` (unbound).
#[derive(Debug, Serialize, PartialEq, Default)]
pub struct DumpPool {
    /// The pool's id.
    pub id: u32,
    /// Workqueues using it (`ref`).
    pub refs: u32,
    /// Its workers' nice value.
    pub nice: i32,
    /// Idle workers.
    pub idle: u32,
    /// Workers.
    pub workers: u32,
    /// Its CPU (a bound pool).
    pub cpu: Option<u32>,
    /// Its CPU mask in hex (an unbound pool).
    pub cpus: Option<String>,
    /// Its pod's CPU mask in hex (an unbound pool).
    pub pod_cpus: Option<String>,
    /// The line as printed.
    pub line: String,
}

/// Split a `dump()` report into its sections: a title line followed by a
/// line of `=`.
pub fn sections(report: &str) -> Vec<Section> {
    let lines: Vec<&str> = report.lines().collect();
    let mut out: Vec<Section> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let is_title = lines
            .get(i + 1)
            .is_some_and(|u| !u.is_empty() && u.chars().all(|c| c == '=') && !lines[i].is_empty());
        if is_title {
            out.push(Section {
                title: lines[i].to_string(),
                lines: Vec::new(),
            });
            i += 2;
            continue;
        }
        match out.last_mut() {
            Some(s) => s.lines.push(lines[i].to_string()),
            None => out.push(Section {
                title: String::new(),
                lines: vec![lines[i].to_string()],
            }),
        }
        i += 1;
    }
    for s in &mut out {
        while s.lines.last().is_some_and(|l| l.trim().is_empty()) {
            s.lines.pop();
        }
        while s.lines.first().is_some_and(|l| l.trim().is_empty()) {
            s.lines.remove(0);
        }
    }
    out
}

/// Parse one `pool[...]` line of the `Worker Pools` section.
pub fn parse_pool(line: &str) -> Option<DumpPool> {
    let rest = line.strip_prefix("pool[")?;
    let (id, rest) = rest.split_once(']')?;
    let mut p = DumpPool {
        id: id.trim().parse().ok()?,
        line: line.to_string(),
        ..DumpPool::default()
    };
    // `key= value` (numbers are right-aligned after the `=`): join each
    // `key=` with the token after it.
    let mut tokens = rest.split_whitespace().peekable();
    while let Some(tok) = tokens.next() {
        let Some((key, value)) = tok.split_once('=') else {
            continue;
        };
        let value = if value.is_empty() {
            tokens.next().unwrap_or_default()
        } else {
            value
        };
        match key {
            "ref" => p.refs = value.parse().ok()?,
            "nice" => p.nice = value.parse().ok()?,
            "idle/workers" => {
                // `I/W`, or `I/` then `W` when W is padded.
                let (i, w) = value.split_once('/')?;
                let w = if w.is_empty() {
                    tokens.next().unwrap_or_default()
                } else {
                    w
                };
                p.idle = i.parse().ok()?;
                p.workers = w.parse().ok()?;
            }
            "cpu" => p.cpu = value.parse().ok(),
            "cpus" if p.cpus.is_none() => p.cpus = Some(value.to_string()),
            "pod_cpus" => p.pod_cpus = Some(value.to_string()),
            _ => {}
        }
    }
    Some(p)
}

/// The `--json` object of a `dump()` report and the process's workqueues.
pub fn dump(pid: Option<u32>, report: &str, wqs: &[cmwq::dump::WqInfo]) -> Dump {
    let sections = sections(report);
    let pools = sections
        .iter()
        .filter(|s| s.title == "Worker Pools")
        .flat_map(|s| s.lines.iter())
        .filter_map(|l| parse_pool(l))
        .collect();
    Dump {
        schema: SCHEMA,
        pid,
        pools,
        workqueues: wqs.iter().map(WqRow::from).collect(),
        cpu_limit: parse_cpu_limit(report),
        sections,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_limit_line_parses() {
        let l = parse_cpu_limit(
            "cpu_online=3\ncpu_limit=1 running=0 (cgroup quota 100000/100000 us (1 CPUs): spreading pools run at most 1 workers at once)\n",
        )
        .unwrap();
        assert_eq!(
            (l.limit, l.quota_us, l.period_us),
            (Some(1), Some(100_000), Some(100_000))
        );
        let l = parse_cpu_limit("cpu_limit=none (cgroup quota none)").unwrap();
        assert_eq!((l.limit, l.quota_us, l.period_us), (None, None, None));
        let l = parse_cpu_limit("cpu_limit=none (cgroup quota 300000/100000 us (3 CPUs))").unwrap();
        assert_eq!((l.limit, l.quota_us), (None, Some(300_000)));
        assert!(parse_cpu_limit("no such line").is_none());
    }

    #[test]
    fn pool_lines_parse() {
        let p = parse_pool("pool[2] ref= 1 nice=  0 idle/workers=  2/  2 cpu=  1").unwrap();
        assert_eq!(
            (p.id, p.refs, p.nice, p.idle, p.workers, p.cpu),
            (2, 1, 0, 2, 2, Some(1))
        );
        let p = parse_pool(
            "pool[07] ref=12 nice=-20 idle/workers= 10/123 cpus=00000003 pod_cpus=00000003 \
             lane=1 of cpus=00000003 standby",
        )
        .unwrap();
        assert_eq!(
            (p.id, p.refs, p.nice, p.idle, p.workers),
            (7, 12, -20, 10, 123)
        );
        assert_eq!(p.cpu, None);
        assert_eq!(p.cpus.as_deref(), Some("00000003"));
        assert_eq!(p.pod_cpus.as_deref(), Some("00000003"));
        assert!(parse_pool("not a pool").is_none());
    }

    #[test]
    fn reports_split_into_sections() {
        let r = "Affinity Scopes\n===============\nx=1\n\nCPU\n  nr_pods 2\n\n\
                 Worker Pools\n============\npool[0] ref= 1 nice=  0 idle/workers=  0/  0 cpu=  0\n\n";
        let s = sections(r);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].title, "Affinity Scopes");
        assert_eq!(s[0].lines, ["x=1", "", "CPU", "  nr_pods 2"]);
        let d = dump(Some(5), r, &[]);
        assert_eq!(d.pools.len(), 1);
        assert_eq!(d.pools[0].cpu, Some(0));
    }
}
