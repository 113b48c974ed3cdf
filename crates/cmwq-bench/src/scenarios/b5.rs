//! B5: the four "Example Execution Scenarios" of the kernel's
//! `Documentation/core-api/workqueue.rst`, at 4x the doc's timings.
//!
//! w0 burns 20 ms of CPU, sleeps 40 ms, burns 20 ms; w1 and w2 burn 20 ms
//! and sleep 40 ms; all three are queued on the same CPU of a bound
//! workqueue. A: max_active 1 (the doc's "original wq"); B: max_active 3;
//! C: max_active 2; D: w1 and w2 on a second workqueue with
//! `CPU_INTENSIVE`. Each run is a child process with
//! `CMWQ_CPU_INTENSIVE_THRESH_US=40000`, so the 20 ms burns are not taken
//! for CPU hogs (the default threshold is 10 ms), once with the
//! `cmwq::blocking` hint around the sleeps and once without (automatic
//! detection).

use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cmwq::{Work, Workqueue, WqFlags};

use super::{child_rows, Ctx};
use crate::child::emit_row;
use crate::report::{median_row, Row, Table, Value};
use crate::util::{self, now_ns};

const TARGET: &str = "finish times within 10% of the doc's (scaled)";

/// The doc's timings are multiplied by this.
const SCALE: f64 = 4.0;
const BURN: Duration = Duration::from_millis(20);
const SLEEP: Duration = Duration::from_millis(40);

/// Events of w0 and of w1/w2, in the doc's words.
const W0_EVENTS: [&str; 4] = [
    "starts and burns CPU",
    "sleeps",
    "wakes up and burns CPU",
    "finishes",
];
const W12_EVENTS: [&str; 3] = ["starts and burns CPU", "sleeps", "wakes up and finishes"];

/// One of the doc's scenarios: its event times (ms, unscaled) for w0
/// (4 events), w1 and w2 (3 events each).
struct DocScenario {
    id: &'static str,
    label: &'static str,
    w0: [f64; 4],
    w1: [f64; 3],
    w2: [f64; 3],
}

const SCENARIOS: [DocScenario; 4] = [
    DocScenario {
        id: "A",
        label: "A: max_active 1 (original wq)",
        w0: [0.0, 5.0, 15.0, 20.0],
        w1: [20.0, 25.0, 35.0],
        w2: [35.0, 40.0, 50.0],
    },
    DocScenario {
        id: "B",
        label: "B: max_active 3",
        w0: [0.0, 5.0, 15.0, 20.0],
        w1: [5.0, 10.0, 20.0],
        w2: [10.0, 15.0, 25.0],
    },
    DocScenario {
        id: "C",
        label: "C: max_active 2",
        w0: [0.0, 5.0, 15.0, 20.0],
        w1: [5.0, 10.0, 20.0],
        w2: [20.0, 25.0, 35.0],
    },
    DocScenario {
        id: "D",
        label: "D: w1, w2 on a CPU_INTENSIVE wq",
        w0: [0.0, 5.0, 15.0, 20.0],
        w1: [5.0, 10.0, 20.0],
        w2: [5.0, 15.0, 25.0],
    },
];

impl DocScenario {
    /// The doc's (scaled) time of event `e` of item `w`.
    fn doc(&self, w: usize, e: usize) -> f64 {
        SCALE
            * match w {
                0 => self.w0[e],
                1 => self.w1[e],
                _ => self.w2[e],
            }
    }
}

fn events_of(w: usize) -> &'static [&'static str] {
    if w == 0 {
        &W0_EVENTS
    } else {
        &W12_EVENTS
    }
}

pub fn run(ctx: &Ctx) -> Table {
    let mut t = Table::new(
        "B5",
        "workqueue.rst's example execution scenarios at 4x (finish times, ms)",
        TARGET,
    );
    let env = [("CMWQ_CPU_INTENSIVE_THRESH_US", "40000")];
    for sc in &SCENARIOS {
        for mode in ["hint", "auto"] {
            let mut reps: Vec<Row> = Vec::new();
            let mut first: Option<Row> = None;
            for _ in 0..ctx.reps {
                let Some(out) =
                    child_rows(&mut t, &["b5", sc.id, mode], &env, Duration::from_secs(30))
                else {
                    continue;
                };
                if let Some(r) = out.rows.into_iter().next() {
                    first.get_or_insert_with(|| r.clone());
                    reps.push(r);
                }
            }
            if reps.is_empty() {
                continue;
            }
            let m = median_row(&reps);
            let system = match m.cells.iter().find(|(k, _)| k == "mode") {
                Some((_, Value::Text(d))) if mode == "auto" => {
                    format!("cmwq, no hint ({d})")
                }
                _ => "cmwq, hint".to_owned(),
            };
            // Finish times against the doc's, and the check.
            let mut worst = (0.0f64, 0usize);
            for w in 0..3 {
                let last = events_of(w).len() - 1;
                let (Some(got), doc) = (m.get(&key(w, last)), sc.doc(w, last)) else {
                    continue;
                };
                let dev = 100.0 * (got - doc) / doc;
                if dev.abs() > worst.0.abs() {
                    worst = (dev, w);
                }
                t.rows.push(
                    Row::new(&system)
                        .group(format!("{} w{w}", sc.label))
                        .num("finish_ms", got)
                        .num("doc_ms", doc)
                        .num("dev_pct", dev),
                );
            }
            t.check(
                format!(
                    "{} ({system}): every finish time within 10% of the doc's",
                    sc.label
                ),
                format!("worst {:+.1}% (w{})", worst.0, worst.1),
                worst.0.abs() <= 10.0,
            );
            if let Some(r) = first {
                timeline(&mut t, sc, &system, &r);
            }
        }
    }
    t.note("all three items are queued with queue_on on the last CPU; burns are of thread CPU time; each run is a fresh process with CMWQ_CPU_INTENSIVE_THRESH_US=40000");
    t.note("the doc assumes FIFO scheduling: under Linux's fair scheduler two items burning at once share the CPU, so in D w1 and w2 burn side by side (each at half speed) and w1 finishes with w2 rather than at the doc's time; the deviation above is that, not hidden");
    t.note("peers omitted: the scenarios are about the concurrency management of one bound pool, which no peer has");
    t
}

/// The cell name of event `e` of item `w`.
fn key(w: usize, e: usize) -> String {
    format!("w{w}_e{e}")
}

/// Append the timeline of one run, measured beside the doc's.
fn timeline(t: &mut Table, sc: &DocScenario, system: &str, r: &Row) {
    let mut ev: Vec<(f64, f64, String)> = Vec::new();
    for w in 0..3 {
        for (e, text) in events_of(w).iter().enumerate() {
            if let Some(got) = r.get(&key(w, e)) {
                ev.push((got, sc.doc(w, e), format!("w{w} {text}")));
            }
        }
    }
    ev.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    t.lines
        .push(format!("{} - {system} (first repetition)", sc.label));
    t.lines.push(format!("{:>8} {:>7}  event", "ms", "doc x4"));
    for (got, doc, text) in ev {
        t.lines.push(format!("{got:>8.1} {doc:>7.0}  {text}"));
    }
    t.lines.push(String::new());
}

/// Child: run one scenario (`A`..`D`) with the hint (`hint`) or without
/// (`auto`) and report every event's time.
pub fn child(args: &[String]) -> Result<(), String> {
    let id = args.first().ok_or("b5: which scenario?")?.clone();
    let hint = args.get(1).map(String::as_str) == Some("hint");
    let max_active = match id.as_str() {
        "A" => 1,
        "B" => 3,
        "C" => 2,
        "D" => cmwq::WQ_DFL_ACTIVE,
        other => return Err(format!("b5: unknown scenario {other}")),
    };
    let q0 = Workqueue::builder("b5_q0")
        .flags(WqFlags::PERCPU)
        .max_active(max_active)
        .build()
        .map_err(|e| e.to_string())?;
    let q1 = Workqueue::builder("b5_q1")
        .flags(WqFlags::PERCPU | WqFlags::CPU_INTENSIVE)
        .build()
        .map_err(|e| e.to_string())?;
    let mode = cmwq::detection();
    let cpu = cmwq::nr_cpus() - 1;

    let start = Arc::new(AtomicU64::new(0));
    let times = Arc::new(Mutex::new(vec![vec![f64::NAN; 4]; 3]));
    let rec = {
        let (start, times) = (start.clone(), times.clone());
        move |w: usize, e: usize| {
            let ms = (now_ns() - start.load(Acquire)) as f64 / 1e6;
            times.lock().unwrap()[w][e] = ms;
        }
    };
    let sleep = move || {
        if hint {
            cmwq::blocking(|| std::thread::sleep(SLEEP));
        } else {
            std::thread::sleep(SLEEP);
        }
    };
    let r = rec.clone();
    let w0 = Work::named("w0", move |_| {
        r(0, 0);
        util::burn_cpu(BURN);
        r(0, 1);
        sleep();
        r(0, 2);
        util::burn_cpu(BURN);
        r(0, 3);
    });
    let w12: Vec<Work> = (1..3)
        .map(|i| {
            let r = rec.clone();
            Work::new(move |_| {
                r(i, 0);
                util::burn_cpu(BURN);
                r(i, 1);
                sleep();
                r(i, 2);
            })
        })
        .collect();
    let q12 = if id == "D" { &q1 } else { &q0 };
    // Let the pools and the monitor settle.
    std::thread::sleep(Duration::from_millis(20));
    start.store(now_ns(), Release);
    q0.queue_on(cpu, &w0);
    for w in &w12 {
        q12.queue_on(cpu, w);
    }
    q0.flush();
    q1.flush();

    let times = times.lock().unwrap();
    let mut row = Row::new(format!("b5 {id}")).text("mode", mode.name());
    for (w, ev) in times.iter().enumerate() {
        for (e, v) in ev.iter().take(events_of(w).len()).enumerate() {
            row = row.num(&key(w, e), *v);
        }
    }
    emit_row(&row);
    Ok(())
}
