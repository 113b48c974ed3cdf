//! `--json`: a snapshot as one JSON object, the data of the `--once` text
//! (see `cmwq help top`).

use serde::Serialize;

use super::model::Snapshot;

/// The snapshot object.
#[derive(Debug, Serialize)]
pub(super) struct TopJson {
    /// [`crate::json::SCHEMA`].
    schema: u32,
    pid: u32,
    /// The process's name.
    name: String,
    /// Seconds between the two samples the CPU figures are over.
    interval_s: f64,
    /// The whole process's CPU use, in percent of one CPU.
    cpu_pct: Option<f64>,
    /// Why some states cannot be told apart, or where they came from.
    note: Option<String>,
    /// The pools table.
    pools: Vec<PoolJson>,
    /// The threads, by group.
    threads: Vec<ThreadJson>,
    /// The process's CPU limit (G34).
    cpu_limit: crate::json::CpuLimitJson,
}

/// A row of the pools table.
#[derive(Debug, Serialize)]
struct PoolJson {
    /// `cpu0`, `cpu0 H`, `unbound u3`, `rescuers`, `library`, `started by
    /// items`.
    pool: String,
    threads: usize,
    running: usize,
    blocked: usize,
    idle: usize,
    sleeping: usize,
    cpu_pct: Option<f64>,
}

/// A row of the threads table.
#[derive(Debug, Serialize)]
struct ThreadJson {
    /// Its group (the pools table's `pool`).
    pool: String,
    tid: u32,
    name: String,
    /// As the STATE column shows it: `running`, `idle`, `blocked (read)`,
    /// `sleeping`, ...
    state: String,
    cpu_pct: Option<f64>,
    /// The CPU it last ran on.
    last_cpu: Option<u32>,
    /// `workqueue:item` it runs (`-` for none), known only from the
    /// process's control socket; `null` without one.
    item: Option<String>,
}

impl From<&Snapshot> for TopJson {
    fn from(s: &Snapshot) -> TopJson {
        TopJson {
            schema: crate::json::SCHEMA,
            pid: s.pid,
            name: s.name.clone(),
            interval_s: s.interval.as_secs_f64(),
            cpu_pct: s.total_cpu,
            note: s.note.clone(),
            cpu_limit: crate::json::CpuLimitJson::from(s.cpu_limit),
            pools: s
                .groups
                .iter()
                .map(|g| PoolJson {
                    pool: g.group.label(),
                    threads: g.threads,
                    running: g.running,
                    blocked: g.blocked,
                    idle: g.idle,
                    sleeping: g.sleeping,
                    cpu_pct: g.cpu_pct,
                })
                .collect(),
            threads: s
                .threads
                .iter()
                .map(|t| ThreadJson {
                    pool: t.group.label(),
                    tid: t.tid,
                    name: t.name.clone(),
                    state: t.state.label(t.group.is_pool()),
                    cpu_pct: t.cpu_pct,
                    last_cpu: t.last_cpu,
                    item: t.item.clone(),
                })
                .collect(),
        }
    }
}
