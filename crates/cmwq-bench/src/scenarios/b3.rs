//! B3, blocking mix: 256 items, each 0.5 ms CPU, a 10 ms sleep, 0.5 ms CPU,
//! on a bound workqueue (spread over the CPUs with `queue_on`), once with
//! `cmwq::blocking` around the sleep and once with no hint; against the
//! peers. Makespan, peak threads, CPU utilisation.
//!
//! Every measurement runs in a fresh child process, so that thread counts
//! are not inflated by idle threads of other systems or earlier runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cmwq::{Work, Workqueue, WqFlags};

use super::{child_rows, ratio_str, Ctx};
use crate::child::{emit_note, emit_row};
use crate::peers::{self, Kind, Peer};
use crate::report::{median_row, Row, Table};
use crate::util::{self, Latch, ThreadSampler};

const TARGET: &str = "makespan <= 1.15x ideal with the hint and without; peak threads <= 2x the minimum that keeps every CPU busy; >= 5x faster than the nr_cpus fixed pool; <= 1/5 the threads of spawn_blocking at <= 1.0x its makespan";

const ITEMS: usize = 256;
const CPU_PART: Duration = Duration::from_micros(500);
const SLEEP: Duration = Duration::from_millis(10);

/// The systems, as named on the child's command line, and the child's
/// extra environment.
const SYSTEMS: &[(&str, &[(&str, &str)])] = &[
    ("cmwq-hint", &[]),
    ("cmwq-nohint", &[]),
    // The hint with automatic detection off: what watching costs.
    ("cmwq-hint", &[("CMWQ_DETECT", "hint")]),
    ("tokio", &[]),
    ("pool-cpus", &[]),
    ("pool-big", &[]),
    ("rayon", &[]),
    ("thread", &[]),
];

pub fn run(ctx: &Ctx) -> Table {
    let mut t = Table::new(
        "B3",
        &format!(
            "blocking mix: {ITEMS} items of 0.5 ms CPU + 10 ms sleep + 0.5 ms CPU on {} CPUs",
            ctx.ncpu
        ),
        TARGET,
    );
    t.ratio_of = Some("makespan_ms".into());
    let mut samples: Vec<Vec<Row>> = SYSTEMS.iter().map(|_| Vec::new()).collect();
    let mut notes = Vec::new();
    for _ in 0..ctx.reps {
        for (i, (sys, env)) in SYSTEMS.iter().enumerate() {
            if let Some(out) = child_rows(&mut t, &["b3", sys], env, Duration::from_secs(60)) {
                samples[i].extend(out.rows);
                for n in out.notes {
                    if !notes.contains(&n) {
                        notes.push(n);
                    }
                }
            }
        }
    }
    t.rows = samples
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| median_row(s))
        .collect();

    // The floor: ideal makespan, and the fewest threads that keep every
    // CPU busy (nr_cpus x item wall time / item CPU time).
    let ncpu = ctx.ncpu as f64;
    let cpu_ms = 2.0 * CPU_PART.as_secs_f64() * 1e3;
    let wall_ms = cpu_ms + SLEEP.as_secs_f64() * 1e3;
    let ideal = (ITEMS as f64 * cpu_ms / ncpu).max(wall_ms);
    let min_threads = (ncpu * wall_ms / cpu_ms).ceil();
    t.rows.push(
        Row::new("floor: ideal")
            .num("makespan_ms", ideal)
            .num("peak_threads", min_threads)
            .num("cpu_util_pct", 100.0),
    );
    for n in notes {
        t.note(n);
    }

    let get = |t: &Table, p: &str, k: &str| t.row(p, None).and_then(|r| r.get(k));
    let pool = get(&t, "threadpool(", "makespan_ms");
    let tokio = (
        get(&t, "tokio", "makespan_ms"),
        get(&t, "tokio", "peak_threads"),
    );
    let cmwq_rows: Vec<(Row, f64)> = [("cmwq (hint)", 1.15), ("cmwq (no hint", 1.15)]
        .iter()
        .filter_map(|&(p, limit)| t.row(p, None).map(|r| (r.clone(), limit)))
        .collect();
    for (row, limit) in cmwq_rows {
        let label = row.system.clone();
        let (Some(m), Some(th)) = (row.get("makespan_ms"), row.get("peak_threads")) else {
            continue;
        };
        t.check(
            format!("{label}: makespan <= {limit}x ideal"),
            ratio_str(m / ideal),
            m <= limit * ideal,
        );
        t.check(
            format!(
                "{label}: peak threads <= 2x {min_threads} (the minimum that keeps every CPU busy)"
            ),
            format!("{th} threads = {}", ratio_str(th / min_threads)),
            th <= 2.0 * min_threads,
        );
        if let Some(p) = pool {
            t.check(
                format!("{label}: >= 5x faster than threadpool(nr_cpus)"),
                format!("{} faster", ratio_str(p / m)),
                p >= 5.0 * m,
            );
        }
        if let (Some(tm), Some(tth)) = tokio {
            t.check(
                format!("{label}: <= 1/5 the threads of spawn_blocking at <= 1.0x its makespan"),
                format!(
                    "threads {} of tokio's, makespan {} of tokio's",
                    ratio_str(th / tth),
                    ratio_str(m / tm)
                ),
                th * 5.0 <= tth && m <= tm,
            );
        }
    }
    t.note("each measurement runs in a fresh process; peak_threads counts the system's own threads (cmwq: kworker/*, tokio: runtime workers + blocking threads, pools: their threads), sampled every ms");
    t.note("cmwq (hint, CMWQ_DETECT=hint): the same items with automatic detection switched off, to show what watching the workers costs when the hint is given");
    t.note("cpu_util_pct = process CPU time (getrusage) / (makespan x nr_cpus)");
    t
}

/// One item: CPU, a sleep (told to cmwq or not), CPU.
fn item(hint: bool) {
    util::burn_cpu(CPU_PART);
    if hint {
        cmwq::blocking(|| std::thread::sleep(SLEEP));
    } else {
        std::thread::sleep(SLEEP);
    }
    util::burn_cpu(CPU_PART);
}

/// Child: run the scenario once on one system and report its row.
pub fn child(args: &[String]) -> Result<(), String> {
    let sys = args.first().ok_or("b3: which system?")?.as_str();
    let ncpu = util::ncpu();
    let latch = Arc::new(Latch::new(ITEMS));
    let cmwq_sys = sys.starts_with("cmwq");
    let hint = sys == "cmwq-hint";
    let peer = match sys {
        "cmwq-hint" | "cmwq-nohint" => None,
        "tokio" => Some(Peer::new(Kind::Tokio, ITEMS)),
        "pool-cpus" => Some(Peer::new(Kind::PoolCpus, ITEMS)),
        "pool-big" => Some(Peer::new(Kind::PoolBig, ITEMS)),
        "rayon" => Some(Peer::new(Kind::Rayon, ITEMS)),
        "thread" => Some(Peer::new(Kind::ThreadPerItem, ITEMS)),
        other => return Err(format!("b3: unknown system {other}")),
    };
    let wq = Workqueue::builder("b3")
        .flags(WqFlags::PERCPU)
        .build()
        .map_err(|e| e.to_string())?;
    let mode = cmwq::detection();
    let works: Vec<Work> = if cmwq_sys {
        (0..ITEMS)
            .map(|_| {
                let l = latch.clone();
                Work::new(move |_| {
                    item(hint);
                    l.count_down();
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let prefix = peer
        .as_ref()
        .map_or(peers::CMWQ_THREADS, |p| p.thread_prefix());
    let blocked0 = cmwq::__bench::monitor_marked_blocked();
    let wakeups0 = cmwq::__bench::monitor_wakeups();
    std::thread::sleep(Duration::from_millis(20));

    let sampler = ThreadSampler::start(Duration::from_millis(1), |n| n.starts_with(prefix));
    let cpu0 = util::process_cpu_ns();
    let t0 = Instant::now();
    match &peer {
        None => {
            for (i, w) in works.iter().enumerate() {
                wq.queue_on(i % ncpu, w);
            }
        }
        Some(p) => {
            for _ in 0..ITEMS {
                let l = latch.clone();
                p.spawn(move || {
                    item(false);
                    l.count_down();
                });
            }
        }
    }
    latch.wait();
    let wall = t0.elapsed();
    let cpu = util::process_cpu_ns() - cpu0;
    let peak = sampler.stop();

    let name = match &peer {
        Some(p) => p.name(),
        None if hint && mode == cmwq::Detect::Hint => "cmwq (hint, CMWQ_DETECT=hint)".into(),
        None if hint => "cmwq (hint)".into(),
        None => format!("cmwq (no hint, {})", mode.name()),
    };
    let mut row = Row::new(name)
        .num("makespan_ms", wall.as_secs_f64() * 1e3)
        .num("peak_threads", peak as f64)
        .num(
            "cpu_util_pct",
            100.0 * cpu as f64 / (wall.as_nanos() as f64 * ncpu as f64),
        );
    if cmwq_sys {
        row = row.num(
            "marked_blocked",
            (cmwq::__bench::monitor_marked_blocked() - blocked0) as f64,
        );
        row = row.num(
            "monitor_wakeups",
            (cmwq::__bench::monitor_wakeups() - wakeups0) as f64,
        );
        if !hint {
            emit_note(&format!(
                "cmwq without a hint: blocks found by detection mode {}",
                mode.name()
            ));
        }
    }
    emit_row(&row);
    if let Some(p) = peer {
        p.shutdown();
    }
    Ok(())
}
