//! Samples and snapshots: what one look at the process found (`Sample`,
//! with the control socket's `Exact` view of its workers when it has one),
//! and what a screen shows of the latest look (`Snapshot`, made by `build`:
//! the threads by group, their states, CPU% over the interval since the
//! look before, when there was one).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::proc::{classify, classify_name, cpu_percent, Count, Group, Stat, State, SyscallInfo};

/// One thread of one sample.
#[derive(Debug, Clone)]
pub(super) struct TaskSample {
    pub(super) tid: u32,
    pub(super) stat: Stat,
    pub(super) syscall: SyscallInfo,
}

/// One look at the process.
#[derive(Debug, Clone)]
pub(super) struct Sample {
    /// When it was taken.
    pub(super) at: Instant,
    /// `/proc/PID/stat`: the process's name and the CPU time of all its
    /// threads, live and gone.
    pub(super) process: Stat,
    /// The cmwq threads.
    pub(super) tasks: Vec<TaskSample>,
    /// From the process's control socket, when it has one: each worker's
    /// state as the library knows it and its current item, by TID.
    pub(super) exact: Option<HashMap<u32, Exact>>,
    /// The process's CPU limit, from its cgroup and affinity (G34).
    pub(super) cpu_limit: cmwq::dump::CpuLimit,
}

/// A worker as its process's control socket describes it (`workers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Exact {
    /// `idle`, `running`, `blocked`, `cpu-intensive` or `prep`.
    pub(super) state: String,
    /// `workqueue:item` of the execution in progress, if any.
    pub(super) item: Option<String>,
}

/// Parse a `workers` reply body: `worker` lines by TID.
pub(super) fn parse_workers(body: &str) -> HashMap<u32, Exact> {
    body.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() != 8 || f[0] != "worker" {
                return None;
            }
            let tid = f[2].parse().ok()?;
            let item = (f[6] != "-").then(|| {
                format!(
                    "{}:{}",
                    cmwq::control::unescape(f[6]),
                    cmwq::control::unescape(f[7])
                )
            });
            Some((
                tid,
                Exact {
                    state: f[4].to_string(),
                    item,
                },
            ))
        })
        .collect()
}

/// One row of the threads table.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ThreadRow {
    pub(super) group: Group,
    /// The worker id, for sorting.
    pub(super) id: Option<u32>,
    pub(super) tid: u32,
    pub(super) name: String,
    pub(super) state: State,
    pub(super) cpu_pct: Option<f64>,
    pub(super) last_cpu: Option<u32>,
    /// The item it runs (`workqueue:item`), known from the control socket;
    /// `None` without one.
    pub(super) item: Option<String>,
}

/// One row of the pools table.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct GroupRow {
    pub(super) group: Group,
    pub(super) threads: usize,
    pub(super) running: usize,
    pub(super) blocked: usize,
    pub(super) idle: usize,
    pub(super) sleeping: usize,
    pub(super) cpu_pct: Option<f64>,
}

/// Everything one screen (or `--once`) shows.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Snapshot {
    pub(super) pid: u32,
    /// The process's name.
    pub(super) name: String,
    /// The length of the interval the CPU figures are over (zero before
    /// the second sample).
    pub(super) interval: Duration,
    /// The whole process's CPU use.
    pub(super) total_cpu: Option<f64>,
    /// By group, in display order.
    pub(super) groups: Vec<GroupRow>,
    /// By group, then worker id, name and TID.
    pub(super) threads: Vec<ThreadRow>,
    /// Why idle and blocked cannot be told apart, if they cannot.
    pub(super) note: Option<String>,
    /// The process's CPU limit (G34).
    pub(super) cpu_limit: cmwq::dump::CpuLimit,
    /// The process has exited (the live view's last screen).
    pub(super) exited: bool,
}

/// The note shown when `/proc/TID/syscall` cannot be read.
fn syscall_note(denied: bool) -> String {
    let why = if denied {
        "/proc/TID/syscall is not readable here (ptrace restrictions)"
    } else {
        "/proc/TID/syscall is not available here"
    };
    format!(
        "{why}, so idle and blocked workers cannot be told apart (shown as \"sleeping\"); \
         CMWQ_CONTROL=1 in the watched process gives exact states (cmwq monitor/dump PID)"
    )
}

/// The snapshot of `cur`, with CPU figures over the interval since `prev`
/// (none without one).
pub(super) fn build(pid: u32, prev: Option<&Sample>, cur: &Sample, clk_tck: u64) -> Snapshot {
    let wall = prev.map_or(Duration::ZERO, |p| cur.at.saturating_duration_since(p.at));
    let before: HashMap<(u32, u64), u64> = prev
        .map(|p| {
            p.tasks
                .iter()
                .map(|t| ((t.tid, t.stat.start), t.stat.ticks))
                .collect()
        })
        .unwrap_or_default();
    // A thread not in `prev` started during the interval: all its time is
    // in it.
    let delta = |t: &TaskSample| {
        let b = before.get(&(t.tid, t.stat.start)).copied().unwrap_or(0);
        t.stat.ticks.saturating_sub(b)
    };
    let pct = |ticks: u64| prev.and(cpu_percent(ticks, clk_tck, wall));

    let mut threads = Vec::new();
    let mut groups: BTreeMap<Group, (GroupRow, u64)> = BTreeMap::new();
    let mut denied = false;
    let mut unavailable = false;
    // A thread that left between its stat and its syscall file is not
    // worth a note: only a process where no syscall file could be read.
    let any_known = cur
        .tasks
        .iter()
        .any(|t| matches!(t.syscall, SyscallInfo::Known(_)));
    for t in &cur.tasks {
        let Some((mut group, mut id)) = classify_name(&t.stat.comm) else {
            continue;
        };
        let exact = cur.exact.as_ref().and_then(|m| m.get(&t.tid));
        if group.is_pool() && cur.exact.is_some() && exact.is_none() {
            // Not in the library's list of workers: a thread an item
            // started, named after the worker that started it.
            (group, id) = (Group::NotWorkers, None);
        }
        let mut state = classify(t.stat.state, &t.syscall);
        if let (Some(e), State::Sleeping) = (exact, &state) {
            // /proc could not tell (no syscall file): the library's view,
            // taken a moment later, says which.
            match e.state.as_str() {
                "idle" => state = State::Idle,
                "blocked" => state = State::Blocked(None),
                _ => {}
            }
        }
        // The socket's item, unless /proc saw the worker parked (the two
        // looks are a moment apart).
        let item = cur.exact.as_ref().map(|_| match exact {
            Some(Exact { item: Some(i), .. }) if state != State::Idle => i.clone(),
            _ => "-".into(),
        });
        if state == State::Sleeping {
            match t.syscall {
                SyscallInfo::Denied => denied = true,
                _ => unavailable = true,
            }
        }
        let d = delta(t);
        let (row, ticks) = groups.entry(group).or_insert_with(|| {
            (
                GroupRow {
                    group,
                    threads: 0,
                    running: 0,
                    blocked: 0,
                    idle: 0,
                    sleeping: 0,
                    cpu_pct: None,
                },
                0,
            )
        });
        row.threads += 1;
        *ticks += d;
        match state.count(group.is_pool()) {
            Count::Running => row.running += 1,
            Count::Blocked => row.blocked += 1,
            Count::Idle => row.idle += 1,
            Count::Sleeping => row.sleeping += 1,
        }
        threads.push(ThreadRow {
            group,
            id,
            tid: t.tid,
            name: t.stat.comm.clone(),
            state,
            cpu_pct: pct(d),
            last_cpu: t.stat.cpu,
            item,
        });
    }
    threads.sort_by(|a, b| (a.group, a.id, &a.name, a.tid).cmp(&(b.group, b.id, &b.name, b.tid)));
    let groups = groups
        .into_values()
        .map(|(mut row, ticks)| {
            row.cpu_pct = pct(ticks);
            row
        })
        .collect();
    let total = prev.map_or(0, |p| cur.process.ticks.saturating_sub(p.process.ticks));
    Snapshot {
        pid,
        cpu_limit: cur.cpu_limit,
        name: cur.process.comm.clone(),
        interval: wall,
        total_cpu: pct(total),
        groups,
        threads,
        note: if cur.exact.is_some() {
            Some(
                "states and items from the process's control socket, where /proc cannot tell"
                    .into(),
            )
        } else {
            (denied || (unavailable && !any_known)).then(|| syscall_note(denied))
        },
        exited: false,
    }
}
