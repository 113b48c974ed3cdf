//! B13, scale: B1, B4, B10 and B12 with the process restricted to 1, 2,
//! 4, ... of its CPUs and to all of them, peers restricted the same way.
//! Each CPU count is a run of this binary of its own (`--cpus LIST`, which
//! restricts the process with `sched_setaffinity` before cmwq or any peer
//! starts, so every pool, runtime and child process sees only those CPUs);
//! its tables are printed as it goes, and this table puts each scenario's
//! headline figure (its ratio column's) side by side per CPU count, with
//! every target check of every count. Not part of `all`: `cmwq-bench
//! scale` (or `b13`).

use std::process::{Command, Stdio};

use crate::report::{Row, Table, Value};
use crate::util;

use super::Ctx;

/// The scenarios B13 repeats.
const SCENARIOS: &str = "b1,b4,b10,b12";

/// The CPU counts measured out of `n` usable: 1, 2, 4, ... below `n`, and
/// `n`.
pub fn counts(n: usize) -> Vec<usize> {
    let mut v = Vec::new();
    let mut k = 1;
    while k < n {
        v.push(k);
        k *= 2;
    }
    v.push(n.max(1));
    v
}

pub fn run(ctx: &Ctx) -> Table {
    let allowed = util::allowed_cpus();
    let mut t = Table::new(
        "B13",
        &format!(
            "scale: {} at 1..{} CPUs (the process restricted with --cpus)",
            SCENARIOS.to_uppercase().replace(',', ", "),
            allowed.len()
        ),
        "at every CPU count, the targets of B1, B4, B10 and B12",
    );
    let mut rows: Vec<Row> = Vec::new();
    for k in counts(allowed.len()) {
        let cpus = util::cpulist(&allowed[..k]);
        let col = format!("{k}_cpu{}", if k == 1 { "" } else { "s" });
        let json = std::env::temp_dir().join(format!("cmwq-b13-{}-{k}.json", std::process::id()));
        let mut cmd = Command::new(std::env::current_exe().expect("this binary"));
        cmd.args([SCENARIOS, "--cpus", &cpus, "--reps", &ctx.reps.to_string()])
            .arg("--json")
            .arg(&json)
            .stdin(Stdio::null());
        if ctx.quick {
            cmd.arg("--quick");
        }
        eprintln!("cmwq-bench: B13 at {k} CPU(s) ({cpus}) ...");
        let tables = match cmd.status() {
            Ok(s) if s.success() => std::fs::read_to_string(&json)
                .map_err(|e| e.to_string())
                .and_then(|j| {
                    serde_json::from_str::<serde_json::Value>(&j).map_err(|e| e.to_string())
                }),
            Ok(s) => Err(format!("exited with {s}")),
            Err(e) => Err(e.to_string()),
        };
        let _ = std::fs::remove_file(&json);
        let tables = match tables {
            Ok(serde_json::Value::Array(a)) => a,
            Ok(_) => {
                t.note(format!("FAILED at {k} CPUs: not a list of tables"));
                continue;
            }
            Err(e) => {
                t.note(format!("FAILED at {k} CPUs: {e}"));
                continue;
            }
        };
        for table in &tables {
            let id = table["scenario"].as_str().unwrap_or("?");
            let Some(key) = table["ratio_of"].as_str() else {
                continue;
            };
            // A table's ratio column may name several figures; the first
            // is its headline.
            let key = key.split(',').next().unwrap_or(key).trim();
            for r in table["rows"].as_array().into_iter().flatten() {
                let system = r["system"].as_str().unwrap_or("?");
                let group = match r["group"].as_str() {
                    Some(g) => format!("{id} {key}, {g}"),
                    None => format!("{id} {key}"),
                };
                let Some(v) = r[key].as_f64() else {
                    continue;
                };
                let i = match rows
                    .iter()
                    .position(|x| x.system == system && x.group.as_deref() == Some(&group))
                {
                    Some(i) => i,
                    None => {
                        rows.push(Row::new(system).group(&group));
                        rows.len() - 1
                    }
                };
                let text = if r["harness"].as_str() == Some("bound") {
                    Value::Text(format!("{v:.4} (harness-bound)"))
                } else {
                    Value::Num(v)
                };
                rows[i].set(&col, text);
            }
            for c in table["targets"].as_array().into_iter().flatten() {
                t.check(
                    format!("{k} CPUs: {id} {}", c["check"].as_str().unwrap_or("?")),
                    c["measured"].as_str().unwrap_or("?"),
                    c["met"].as_bool() == Some(true),
                );
            }
        }
    }
    t.rows = rows;
    t.note(format!(
        "each column is one run of `cmwq-bench {SCENARIOS} --cpus LIST` on the first K of this process's CPUs ({}); the figure is each scenario's ratio column (B1 items/s, B4 and B12 makespan in ms, B10 requests/s); its own tables are printed above",
        util::cpulist(&allowed)
    ));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_double_up_to_every_cpu() {
        assert_eq!(counts(1), vec![1]);
        assert_eq!(counts(2), vec![1, 2]);
        assert_eq!(counts(6), vec![1, 2, 4, 6]);
        assert_eq!(counts(8), vec![1, 2, 4, 8]);
    }
}
