//! B9, the cost of watching: every bound pool runs CPU-bound items (2 ms of
//! CPU each, re-queueing themselves, so more are always pending and the
//! pools are watched) for a while, per detection mode, each in a child
//! process. Figures: the monitor thread's CPU share of one CPU, its
//! wake-ups/s and (estimated) system calls/s, the workers' context
//! switches/s, the monitor's CPU per worker switch, items/s, and the
//! CPU-only items the monitor took for blocked (must be 0).
//!
//! And as a user measures it, for the default detection: the whole
//! process's CPU time minus the items' own (each item times itself on its
//! thread's CPU clock), per busy CPU, on a per-CPU and on a default
//! (spreading) workqueue, quiet and with `sh` busy loops on every CPU;
//! and the context switches of an idle process (pools made, nothing
//! queued) over a second.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cmwq::{Work, Workqueue, WqFlags};

use super::{child_rows, Ctx};
use crate::child::emit_row;
use crate::peers;
use crate::report::{Row, Table, Value};
use crate::util;

const TARGET: &str = "monitor and sentinels <= 0.05% of each busy CPU; everything but the items <= 0.1% of one CPU per busy CPU (process CPU minus the items' own), quiet and under other load; 0 hogs misclassified as blocked; an idle process makes no wake-ups";

const ITEM_CPU: Duration = Duration::from_millis(2);
/// Items per CPU, each re-queueing itself.
const PER_CPU: usize = 4;

pub fn run(ctx: &Ctx) -> Table {
    let secs = ctx.pick(0.5, 2.0);
    let mut t = Table::new(
        "B9",
        &format!("cost of watching: CPU-bound 2 ms items with more pending, {secs} s per mode"),
        TARGET,
    );
    let s = secs.to_string();
    for mode in ["hint", "sentinel", "perf", "proc", "progress"] {
        let mut reps = Vec::new();
        for _ in 0..ctx.reps {
            if let Some(out) = child_rows(
                &mut t,
                &["b9", &s],
                &[("CMWQ_DETECT", mode)],
                Duration::from_secs(60),
            ) {
                reps.extend(out.rows);
            }
        }
        if !reps.is_empty() {
            t.rows.push(crate::report::median_row(&reps));
        }
    }
    // As a user measures it: default detection, two kinds of workqueue,
    // quiet and with the CPUs kept busy by other processes.
    for (kind, load) in [
        ("percpu", "quiet"),
        ("default", "quiet"),
        ("percpu", "loaded"),
        ("default", "loaded"),
    ] {
        let mut reps = Vec::new();
        for _ in 0..ctx.reps {
            if let Some(out) = child_rows(
                &mut t,
                &["b9", &s, kind, load],
                &[],
                Duration::from_secs(60),
            ) {
                reps.extend(out.rows);
            }
        }
        if !reps.is_empty() {
            t.rows.push(crate::report::median_row(&reps));
        }
    }

    for mode in ["sentinel", "perf", "proc"] {
        let row = t.rows.iter().find(|r| {
            r.cells
                .iter()
                .any(|(k, v)| k == "mode" && *v == Value::Text(mode.into()))
        });
        let Some(row) = row.cloned() else {
            t.check(
                format!("{mode}: monitor and sentinels <= 0.05% of each busy CPU"),
                "mode not available here",
                false,
            );
            continue;
        };
        if let Some(c) = row.get("watch_pct_per_cpu") {
            t.check(
                format!("{mode}: monitor and sentinels <= 0.05% of each busy CPU"),
                format!("{c:.3}%"),
                c <= 0.05,
            );
        }
        if let Some(b) = row.get("marked_blocked") {
            t.check(
                format!("{mode}: 0 CPU-only items misclassified as blocked"),
                format!("{b}"),
                b == 0.0,
            );
        }
    }
    for r in t.rows.clone() {
        let (Some(o), Some(kind)) = (r.get("overhead_pct_per_cpu"), r.get_text("kind")) else {
            continue;
        };
        let load = r.get_text("load").unwrap_or_default();
        t.check(
            format!("{kind}, {load}: everything but the items <= 0.1% of one CPU per busy CPU"),
            format!("{o:.3}%"),
            o <= 0.1,
        );
        if let Some(b) = r.get("marked_blocked") {
            t.check(
                format!("{kind}, {load}: 0 CPU-only items taken for blocked"),
                format!("{b}"),
                b == 0.0,
            );
        }
        if load == "quiet" {
            if let Some(w) = r.get("idle_switches_per_s") {
                t.check(
                    format!("{kind}: an idle process (pools made, nothing queued, 1 s) makes no wake-ups"),
                    format!("{w:.1}/s"),
                    w == 0.0,
                );
            }
        }
    }
    t.note("kind/load rows (default detection): overhead_pct_per_cpu = (process CPU time - the items' own thread CPU time, each item timing itself) / (wall time x busy CPUs), what a user sees; loaded: an `sh` busy loop per CPU in other processes, so the items get about half of each CPU; idle_switches_per_s: context switches of every thread of the process over 1 s after the workqueue was made and used once, with nothing queued");
    t.note("every figure is a median over repetitions of a fresh process per mode; CMWQ_DETECT=hint is the baseline (nothing to detect, the monitor only watches for hogs)");
    t.note("watch_pct_per_cpu: CPU of the monitor and the sentinel threads (cmwq-sent/N) over the run, as a share of each busy CPU; picks_per_s: times the armed sentinels ran while the pools ran CPU-bound items");
    t.note("monitor CPU from /proc/self/task/<tid>/schedstat of the thread named cmwq-monitor; syscalls_per_s is an estimate: one ppoll per wake-up plus the read/write calls of /proc/self/task/<tid>/io");
    t.note("worker switches: voluntary + involuntary context switches of all kworker threads; monitor_ns_per_switch = monitor CPU time / worker switches");
    t.note("progress mode presumes a runner blocked when its pool completes no item for max(5 x stall window, 1 ms): items longer than that are misclassified by design");
    t.note("peers omitted: none of them watches its threads");
    t
}

/// A snapshot of the counters.
struct Snap {
    t: Instant,
    monitor_cpu: u64,
    sentinel_cpu: u64,
    picks: u64,
    monitor_rw: u64,
    wakeups: u64,
    blocked: u64,
    hogs: u64,
    switches: u64,
    done: u64,
}

fn snap(monitor: Option<i32>, done: &AtomicU64) -> Snap {
    let switches = util::tids(|n| n.starts_with(peers::CMWQ_THREADS))
        .into_iter()
        .filter_map(util::task_ctx_switches)
        .sum();
    Snap {
        t: Instant::now(),
        monitor_cpu: monitor.and_then(util::task_cpu_ns).unwrap_or(0),
        sentinel_cpu: util::tids(|n| n.starts_with("cmwq-sent"))
            .into_iter()
            .filter_map(util::task_cpu_ns)
            .sum(),
        picks: cmwq::__bench::sentinel_counts().0,
        monitor_rw: monitor.and_then(util::task_rw_syscalls).unwrap_or(0),
        wakeups: cmwq::__bench::monitor_wakeups(),
        blocked: cmwq::__bench::monitor_marked_blocked(),
        hogs: cmwq::__bench::monitor_marked_hog(),
        switches,
        done: done.load(Acquire),
    }
}

/// Child: `b9 SECONDS`, in the detection mode of `CMWQ_DETECT`.
pub fn child(args: &[String]) -> Result<(), String> {
    let secs: f64 = args
        .first()
        .and_then(|s| s.parse().ok())
        .ok_or("b9: how long?")?;
    if let (Some(kind), Some(load)) = (args.get(1), args.get(2)) {
        return as_user(secs, kind, load);
    }
    let ncpu = util::ncpu();
    let mode = cmwq::detection();
    let wq: &'static Workqueue = Box::leak(Box::new(
        Workqueue::builder("b9")
            .flags(WqFlags::PERCPU)
            .build()
            .map_err(|e| e.to_string())?,
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let _works = start_items(wq, &stop, &done, &Arc::new(AtomicU64::new(0)));
    // Warm up: workers started, pools watched.
    std::thread::sleep(Duration::from_millis(300));
    let monitor = util::tids(|n| n == "cmwq-monitor").first().copied();
    let a = snap(monitor, &done);
    std::thread::sleep(Duration::from_secs_f64(secs));
    let b = snap(monitor, &done);
    stop.store(true, Release);
    wq.flush();

    let dt = (b.t - a.t).as_secs_f64();
    let cpu = (b.monitor_cpu - a.monitor_cpu) as f64;
    let sentinel_cpu = (b.sentinel_cpu - a.sentinel_cpu) as f64;
    let wakeups = (b.wakeups - a.wakeups) as f64;
    let switches = (b.switches - a.switches) as f64;
    let rw = (b.monitor_rw - a.monitor_rw) as f64;
    emit_row(
        &Row::new(format!("cmwq {}", mode.name()))
            .text("mode", mode.name())
            .num("monitor_cpu_pct", 100.0 * cpu / (dt * 1e9))
            .num("sentinel_cpu_pct", 100.0 * sentinel_cpu / (dt * 1e9))
            .num(
                "watch_pct_per_cpu",
                100.0 * (cpu + sentinel_cpu) / (dt * 1e9 * ncpu as f64),
            )
            .num("picks_per_s", (b.picks - a.picks) as f64 / dt)
            .num("wakeups_per_s", wakeups / dt)
            .num("syscalls_per_s", (wakeups + rw) / dt)
            .num("worker_switches_per_s", switches / dt)
            .num("wakeups_per_switch", wakeups / switches.max(1.0))
            .num("monitor_ns_per_switch", cpu / switches.max(1.0))
            .num("items_per_s", (b.done - a.done) as f64 / dt)
            .num("marked_blocked", (b.blocked - a.blocked) as f64)
            .num("marked_hog", (b.hogs - a.hogs) as f64),
    );
    if monitor.is_none() {
        crate::child::emit_note("no thread named cmwq-monitor: monitor figures are 0");
    }
    Ok(())
}

/// Context switches of every thread of the process so far.
fn all_switches() -> u64 {
    util::tids(|_| true)
        .into_iter()
        .filter_map(util::task_ctx_switches)
        .sum()
}

/// Child: `b9 SECONDS KIND LOAD`: what watching costs as a user measures
/// it (process CPU minus the items' own), on a `percpu` or `default`
/// workqueue, `quiet` or `loaded` (a busy loop per CPU in other
/// processes); and the wake-ups of the idle process before.
fn as_user(secs: f64, kind: &str, load: &str) -> Result<(), String> {
    let ncpu = util::ncpu();
    let wq: &'static Workqueue = Box::leak(Box::new(
        match kind {
            "percpu" => Workqueue::builder("b9u").flags(WqFlags::PERCPU).build(),
            _ => Workqueue::new("b9u"),
        }
        .map_err(|e| e.to_string())?,
    ));
    // Idle: the workqueue made and used once (its pools have workers),
    // then nothing queued for a second.
    let warm: Vec<Work> = (0..ncpu).map(|_| Work::new(|_| {})).collect();
    for (i, w) in warm.iter().enumerate() {
        wq.queue_on(i, w);
    }
    wq.flush();
    std::thread::sleep(Duration::from_millis(300));
    let s0 = all_switches();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    // The sampling thread itself switched twice (sleep, wake) per sleep.
    let idle_switches = (all_switches() - s0).saturating_sub(2) as f64 / t0.elapsed().as_secs_f64();

    let _hogs = (load == "loaded").then(|| super::b8::Hogs::start(ncpu));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let items_cpu = Arc::new(AtomicU64::new(0));
    let _works = start_items(wq, &stop, &done, &items_cpu);
    std::thread::sleep(Duration::from_millis(300));
    let (p0, i0, b0, t0) = (
        util::process_cpu_ns(),
        items_cpu.load(Relaxed),
        cmwq::__bench::monitor_marked_blocked(),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (p1, i1, b1, dt) = (
        util::process_cpu_ns(),
        items_cpu.load(Relaxed),
        cmwq::__bench::monitor_marked_blocked(),
        t0.elapsed().as_secs_f64(),
    );
    stop.store(true, Release);
    wq.flush();
    let over = (p1 - p0).saturating_sub(i1 - i0) as f64;
    emit_row(
        &Row::new(format!(
            "cmwq {} {kind} wq, {load}",
            cmwq::detection().name()
        ))
        .text("kind", kind)
        .text("load", load)
        .num(
            "overhead_pct_per_cpu",
            100.0 * over / (dt * 1e9 * ncpu as f64),
        )
        .num(
            "items_cpu_pct",
            100.0 * (i1 - i0) as f64 / (dt * 1e9 * ncpu as f64),
        )
        .num("marked_blocked", (b1 - b0) as f64)
        .num("idle_switches_per_s", idle_switches),
    );
    Ok(())
}

/// Start `PER_CPU` items per CPU of `ITEM_CPU` of CPU each, each timing
/// itself into `items_cpu`, counting into `done` and re-queueing itself on
/// its CPU until `stop`.
fn start_items(
    wq: &'static Workqueue,
    stop: &Arc<AtomicBool>,
    done: &Arc<AtomicU64>,
    items_cpu: &Arc<AtomicU64>,
) -> Vec<Work> {
    let ncpu = util::ncpu();
    let works: Vec<Work> = (0..ncpu * PER_CPU)
        .map(|i| {
            let (stop, done, items_cpu) = (stop.clone(), done.clone(), items_cpu.clone());
            let cpu = i % ncpu;
            Work::new(move |w| {
                let c0 = util::thread_cpu_ns();
                util::burn_cpu(ITEM_CPU);
                items_cpu.fetch_add(util::thread_cpu_ns() - c0, Relaxed);
                done.fetch_add(1, Release);
                if !stop.load(Acquire) {
                    wq.queue_on(cpu, w);
                }
            })
        })
        .collect();
    for (i, w) in works.iter().enumerate() {
        wq.queue_on(i % ncpu, w);
    }
    works
}
