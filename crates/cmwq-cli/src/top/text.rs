//! A snapshot as text: the title line and the table cells that both views
//! show (the live view lays them out in ratatui tables), and `--once`:
//! two samples, printed as plain text (or JSON, `json.rs`).

use std::fmt::Write as _;
use std::time::Duration;

use super::json::TopJson;
use super::model::{build, GroupRow, Snapshot, ThreadRow};
use super::target::{clk_tck, first_sample, sample};
use super::TopError;

/// The gap between the two samples of `--once`.
const ONCE_GAP: Duration = Duration::from_millis(500);

/// A CPU figure for a table: `12.3`, or `-` when there is none yet.
fn fmt_pct(p: Option<f64>) -> String {
    p.map_or_else(|| "-".into(), |p| format!("{p:.1}"))
}

/// The last-CPU column.
fn fmt_cpu(c: Option<u32>) -> String {
    c.map_or_else(|| "-".into(), |c| c.to_string())
}

impl Snapshot {
    /// The CPU limit line (G34), where the process has a CPU quota.
    pub(super) fn cpu_limit_line(&self) -> Option<String> {
        let l = self.cpu_limit;
        let (q, p) = (l.quota_us?, l.period_us?);
        let cpus = q as f64 / p.max(1) as f64;
        Some(match l.limit {
            Some(n) => format!(
                "cpu limit: {n} running workers in the spreading pools (cgroup quota {q}/{p} us = {cpus:.2} CPUs)"
            ),
            None => format!(
                "cpu limit: none beyond the CPUs (cgroup quota {q}/{p} us = {cpus:.2} CPUs)"
            ),
        })
    }

    /// The number of cmwq threads.
    pub(super) fn cmwq_threads(&self) -> usize {
        self.threads.len()
    }

    /// The header line: name, PID, thread count, total CPU.
    pub(super) fn title(&self) -> String {
        let cpu = match self.total_cpu {
            Some(p) => format!(
                "CPU {p:.1}% over the last {:.2} s (100% = one CPU)",
                self.interval.as_secs_f64()
            ),
            None => "CPU -".into(),
        };
        format!(
            "{} (pid {}): {} cmwq threads, {cpu}",
            self.name,
            self.pid,
            self.cmwq_threads()
        )
    }
}

/// The headings of the pools table.
pub(super) const POOL_HEADINGS: [&str; 7] = [
    "POOL", "THREADS", "RUNNING", "BLOCKED", "IDLE", "SLEEPING", "CPU%",
];
/// The headings of the threads table.
const THREAD_HEADINGS: [&str; 6] = ["TID", "NAME", "STATE", "CPU%", "LAST CPU", "ITEM"];

impl GroupRow {
    /// The cells of its pools-table row.
    pub(super) fn cells(&self) -> [String; 7] {
        [
            self.group.label(),
            self.threads.to_string(),
            self.running.to_string(),
            self.blocked.to_string(),
            self.idle.to_string(),
            self.sleeping.to_string(),
            fmt_pct(self.cpu_pct),
        ]
    }
}

impl ThreadRow {
    /// The cells of its threads-table row.
    pub(super) fn cells(&self) -> [String; 6] {
        [
            self.tid.to_string(),
            self.name.clone(),
            self.state.label(self.group.is_pool()),
            fmt_pct(self.cpu_pct),
            fmt_cpu(self.last_cpu),
            self.item.clone().unwrap_or_default(),
        ]
    }
}

/// The `--once` text: header, pools table, then the threads grouped by
/// pool, rescuers and library threads last.
pub(super) fn render_text(s: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", s.title());
    if let Some(limit) = s.cpu_limit_line() {
        let _ = writeln!(out, "{limit}");
    }
    if let Some(note) = &s.note {
        let _ = writeln!(out, "note: {note}");
    }
    out.push('\n');
    let pool_row = |out: &mut String, c: &[&str]| {
        let _ = writeln!(
            out,
            "{:<16} {:>7} {:>7} {:>7} {:>5} {:>8} {:>7}",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6]
        );
    };
    pool_row(&mut out, &POOL_HEADINGS);
    for g in &s.groups {
        let c = g.cells();
        pool_row(&mut out, &c.each_ref().map(String::as_str));
    }
    let thread_row = |out: &mut String, c: &[&str]| {
        let _ = writeln!(
            out,
            "  {:>8}  {:<15}  {:<25} {:>6} {:>8}  {}",
            c[0], c[1], c[2], c[3], c[4], c[5]
        );
    };
    let mut current = None;
    for t in &s.threads {
        if current != Some(t.group) {
            current = Some(t.group);
            let n = s.threads.iter().filter(|u| u.group == t.group).count();
            let what = match (t.group.is_pool(), n) {
                (true, 1) => "worker",
                (true, _) => "workers",
                (false, 1) => "thread",
                (false, _) => "threads",
            };
            let _ = writeln!(out, "\n{} ({n} {what})", t.group.label());
            thread_row(&mut out, &THREAD_HEADINGS);
        }
        let c = t.cells();
        thread_row(&mut out, &c.each_ref().map(String::as_str));
    }
    out
}

/// `--once`: two samples `ONCE_GAP` apart, printed as text (as one JSON
/// object with `json`).
pub(super) fn run_once(pid: u32, json: bool) -> Result<(), TopError> {
    let (target, first) = first_sample(pid)?;
    std::thread::sleep(ONCE_GAP);
    let second = sample(target)?;
    let snap = build(pid, Some(&first), &second, clk_tck());
    if json {
        crate::out::json(&TopJson::from(&snap));
    } else {
        // A closed pipe (`| head`) ends the process quietly.
        crate::out!("{}", render_text(&snap));
    }
    Ok(())
}
