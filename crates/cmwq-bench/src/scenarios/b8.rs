//! B8, block detection: one worker of a bound pool runs an item that
//! blocks, with no hint, while another item waits behind it; the figure is
//! the time from the block to the next item's first line. Blocks: sleep,
//! futex (a `std::sync::Mutex` held by another thread), pipe read; for
//! 10 us .. 1 s. Per detection mode, each in a child process
//! (`CMWQ_DETECT=perf|proc`), with the hint as the floor (the pool is told
//! at once). Also: 4 x nr_cpus items that all block at once, and the time
//! from queueing them to all of them running.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cmwq::{Work, Workqueue, WqFlags};

use super::{child_rows, Ctx};
use crate::child::{emit_note, emit_row};
use crate::report::{Row, Table, Value};
use crate::util::{self, now_ns};

const TARGET: &str = "default mode (and each forced mode): p50 <= 1x a bare cross-CPU wake of a parked thread, p99 <= 4x; ramp to 4 x nr_cpus running in <= 2 ms";

/// How the child runs: its label, environment, hint or not, 1 s blocks.
struct Mode {
    label: &'static str,
    env: &'static [(&'static str, &'static str)],
    hint: bool,
    long: bool,
    /// Other processes keep every CPU busy meanwhile.
    loaded: bool,
    /// The workqueue: `percpu`, `dfl` (`system_dfl_wq`) or `default`
    /// (`Workqueue::new`).
    wq: &'static str,
    /// Also the first block after 1 s (and 10 s) of CPU-bound items.
    phases: bool,
}

const MODES: &[Mode] = &[
    Mode {
        label: "sentinel",
        env: &[("CMWQ_DETECT", "sentinel")],
        hint: false,
        long: true,
        loaded: false,
        wq: "percpu",
        phases: true,
    },
    Mode {
        label: "perf",
        env: &[("CMWQ_DETECT", "perf")],
        hint: false,
        long: true,
        loaded: false,
        wq: "percpu",
        phases: true,
    },
    Mode {
        label: "proc",
        env: &[("CMWQ_DETECT", "proc")],
        hint: false,
        long: true,
        loaded: false,
        wq: "percpu",
        phases: true,
    },
    Mode {
        label: "sentinel, every CPU busy with other processes",
        env: &[("CMWQ_DETECT", "sentinel")],
        hint: false,
        long: false,
        loaded: true,
        wq: "percpu",
        phases: false,
    },
    Mode {
        label: "sentinel, stall window 20 us",
        env: &[("CMWQ_DETECT", "sentinel"), ("CMWQ_STALL_WINDOW_US", "20")],
        hint: false,
        long: false,
        loaded: false,
        wq: "percpu",
        phases: false,
    },
    Mode {
        label: "sentinel, stall window 50 us",
        env: &[("CMWQ_DETECT", "sentinel"), ("CMWQ_STALL_WINDOW_US", "50")],
        hint: false,
        long: false,
        loaded: false,
        wq: "percpu",
        phases: false,
    },
    Mode {
        label: "sentinel, stall window 200 us",
        env: &[("CMWQ_DETECT", "sentinel"), ("CMWQ_STALL_WINDOW_US", "200")],
        hint: false,
        long: false,
        loaded: false,
        wq: "percpu",
        phases: false,
    },
    Mode {
        label: "perf, stall window 50 us",
        env: &[("CMWQ_DETECT", "perf"), ("CMWQ_STALL_WINDOW_US", "50")],
        hint: false,
        long: false,
        loaded: false,
        wq: "percpu",
        phases: false,
    },
    Mode {
        label: "sentinel, system_dfl_wq (one lane)",
        env: &[("CMWQ_DETECT", "sentinel")],
        hint: false,
        long: false,
        loaded: false,
        wq: "dfl",
        phases: true,
    },
    Mode {
        label: "sentinel, Workqueue::new (one lane)",
        env: &[("CMWQ_DETECT", "sentinel")],
        hint: false,
        long: false,
        loaded: false,
        wq: "default",
        phases: true,
    },
    Mode {
        label: "hint (floor)",
        env: &[],
        hint: true,
        long: false,
        loaded: false,
        wq: "percpu",
        phases: false,
    },
];

/// Item run time before it blocks, so the next item is queued behind it.
const LEAD: Duration = Duration::from_micros(50);
/// Samples thrown away per configuration.
const WARMUP: usize = 3;

pub fn run(ctx: &Ctx) -> Table {
    let mut t = Table::new(
        "B8",
        "block detection: time from an unhinted block to the next item starting (us)",
        TARGET,
    );
    let mut in_use: Vec<(String, String)> = Vec::new();
    for m in MODES {
        let args = [
            "b8",
            if m.hint { "hint" } else { "detect" },
            if ctx.quick { "quick" } else { "full" },
            if m.long && !ctx.quick {
                "long"
            } else {
                "short"
            },
            m.label,
            m.wq,
            if m.phases { "phases" } else { "" },
        ];
        let hogs = m.loaded.then(|| Hogs::start(ctx.ncpu));
        let out = child_rows(&mut t, &args, m.env, Duration::from_secs(300));
        drop(hogs);
        let Some(out) = out else {
            continue;
        };
        for r in &out.rows {
            if let Some((_, Value::Text(u))) = r.cells.iter().find(|(k, _)| k == "mode") {
                if !in_use.iter().any(|(l, _)| l == m.label) {
                    in_use.push((m.label.to_owned(), u.clone()));
                }
            }
        }
        t.rows.extend(out.rows);
        t.notes.extend(out.notes);
    }

    // The floor: a bare cross-CPU wake of a parked thread, this run.
    let (floor50, floor99) = cross_cpu_wake_floor(if ctx.quick { 200 } else { 1000 });
    t.rows.push(
        Row::new("floor: bare cross-CPU wake")
            .group("unpark of a parked thread on the other CPU")
            .num("p50_us", floor50)
            .num("p99_us", floor99),
    );
    // Targets, on blocks of at least 1 ms, in the default mode (sentinel,
    // the default stall window) and each forced automatic mode.
    for label in ["sentinel", "perf", "proc"] {
        let used = in_use
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, u)| u.as_str());
        if used != Some(label) {
            t.check(
                format!("{label}: p50 <= 1x the bare wake"),
                format!(
                    "mode not available here (got {})",
                    used.unwrap_or("nothing")
                ),
                false,
            );
            continue;
        }
        let system = format!("cmwq {label}");
        let worst = |col: &str| {
            t.rows
                .iter()
                .filter(|r| r.system == system)
                .filter(|r| r.get("block_us").is_some_and(|b| b >= 1000.0))
                .filter_map(|r| r.get(col).map(|p| (p, r.group.clone().unwrap_or_default())))
                .fold((f64::NAN, String::new()), |a, b| {
                    if a.0.is_nan() || b.0 > a.0 {
                        b
                    } else {
                        a
                    }
                })
        };
        let (p50, g50) = worst("p50_us");
        let (p99, g99) = worst("p99_us");
        if !p50.is_nan() {
            t.check(
                format!("{label}: p50 <= 1x the bare cross-CPU wake ({floor50:.0} us), worst over blocks >= 1 ms"),
                format!("{p50:.0} us ({g50})"),
                p50 <= floor50,
            );
            t.check(
                format!("{label}: p99 <= 4x the bare wake ({:.0} us)", 4.0 * floor50),
                format!("{p99:.0} us ({g99})"),
                p99 <= 4.0 * floor50,
            );
        }
        if let Some(r) = t
            .rows
            .iter()
            .find(|r| r.system == system && r.get("ramp_ms").is_some())
        {
            let ramp = r.get("ramp_ms").unwrap_or(f64::NAN);
            t.check(
                format!("{label}: ramp to 4 x nr_cpus running <= 2 ms"),
                format!("{ramp:.2} ms"),
                ramp <= 2.0,
            );
        }
    }
    // The spreading workqueues (one lane each here), default detection.
    for label in [
        "sentinel, system_dfl_wq (one lane)",
        "sentinel, Workqueue::new (one lane)",
    ] {
        let system = format!("cmwq {label}");
        let worst = t
            .rows
            .iter()
            .filter(|r| r.system == system)
            .filter(|r| r.get("block_us").is_some_and(|b| b >= 1000.0))
            .filter_map(|r| {
                r.get("p50_us")
                    .map(|p| (p, r.group.clone().unwrap_or_default()))
            })
            .fold((f64::NAN, String::new()), |a, b| {
                if a.0.is_nan() || b.0 > a.0 {
                    b
                } else {
                    a
                }
            });
        if !worst.0.is_nan() {
            t.check(
                format!("{label}: p50 <= 1x the bare cross-CPU wake ({floor50:.0} us), worst over blocks >= 1 ms"),
                format!("{:.0} us ({})", worst.0, worst.1),
                worst.0 <= floor50,
            );
        }
    }
    // With other processes on every CPU the sentinels are starved: the
    // backstop's figure.
    let loaded = "cmwq sentinel, every CPU busy with other processes";
    let worst_loaded = t
        .rows
        .iter()
        .filter(|r| r.system == loaded)
        .filter(|r| r.get("block_us").is_some_and(|b| b >= 1000.0))
        .filter_map(|r| r.get("p50_us"))
        .fold(f64::NAN, f64::max);
    if !worst_loaded.is_nan() {
        t.check(
            "sentinel with every CPU kept busy by other processes: p50 <= 2 ms (worst over blocks >= 1 ms)",
            format!("{worst_loaded:.0} us"),
            worst_loaded <= 2000.0,
        );
    }
    let stall_us = cmwq::__bench::default_stall_window().as_secs_f64() * 1e6;
    t.note(format!("blocks shorter than the stall window ({stall_us:.0} us by default) start no new worker by design: their figure is the block itself; the targets are checked on blocks >= 1 ms"));
    t.note(format!("a block->next start figure includes the stall window the pool waits before it starts another worker ({stall_us:.0} us by default; 0 is the kernel's behaviour): the 'sentinel, stall window N us' rows show what a window costs, the table in crates/cmwq/src/monitor/README.md why the default is what it is"));
    t.note("'after 1 s / 10 s of CPU-bound items': 1 ms items re-queueing themselves on the pool for that long (the sentinel backs off while its picks find the runner runnable), then an item that sleeps 10 ms with one behind it: the first block of a busy period");
    t.note("'(one lane)': the child runs on one CPU, so the spreading workqueue's lane group is one lane and the next item waits for the block to be found; on more CPUs an idle lane takes it before the block (no detection needed)");
    t.note("floor: a bare std::thread unpark of a parked thread pinned to the other CPU, to its first line, measured in the parent in the same run");
    t.note(
        "monitor_wakeups: wake-ups of the monitor thread per sample (one block and one next item)",
    );
    t.note("actual_block_us: how long the blocking call really took (sleeps overshoot by the timer slack); the producer and the helper thread (futex holder, pipe writer) run on CPU 0, the pool on CPU 1");
    t.note("peers omitted: fixed pools and rayon do not detect blocking at all (a blocked item holds its thread); tokio's spawn_blocking needs no detection as every item has its own thread");
    t
}

/// How an item blocks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Sleep,
    Futex,
    Pipe,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sleep => "sleep",
            Kind::Futex => "futex",
            Kind::Pipe => "pipe read",
        }
    }
}

/// Timestamps of one sample.
#[derive(Default)]
struct Probe {
    t_block: AtomicU64,
    t_wake: AtomicU64,
    t_next: AtomicU64,
    /// The item is about to block: the helper may start timing.
    armed: AtomicBool,
}

/// A command for the helper thread: hold the mutex (or prepare to write
/// the pipe), wait for the item to block, release it after `d`.
enum Cmd {
    Release(Kind, Duration),
    Stop,
}

/// The helper thread that holds the futex and writes the pipe.
struct Helper {
    tx: mpsc::Sender<Cmd>,
    ready: mpsc::Receiver<()>,
    done: mpsc::Receiver<()>,
    handle: std::thread::JoinHandle<()>,
}

fn duration_name(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{} s", d.as_secs())
    } else if d >= Duration::from_millis(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} us", d.as_micros())
    }
}

/// Wrap a blocking call in the hint, or not.
fn block<R>(hint: bool, f: impl FnOnce() -> R) -> R {
    if hint {
        cmwq::blocking(f)
    } else {
        f()
    }
}

/// Child: `b8 hint|detect quick|full long|short LABEL percpu|dfl|default
/// [phases]`.
pub fn child(args: &[String]) -> Result<(), String> {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let hint = arg(0) == "hint";
    let quick = arg(1) == "quick";
    let long = arg(2) == "long";
    let label = arg(3).to_owned();
    let kind = arg(4);
    let phases = arg(5) == "phases";
    if kind != "percpu" {
        // A spreading workqueue on one CPU: its lane group is one lane, so
        // the next item waits for the block to be found (on two, an idle
        // lane would take it before the block).
        let last = *util::allowed_cpus().last().ok_or("b8: no CPU")?;
        util::restrict_to(&[last])?;
    }
    // Start cmwq (it reads the process's CPU mask) before pinning.
    let ncpu = cmwq::nr_cpus();
    let mode = cmwq::detection();
    let wq: &'static Workqueue = match kind {
        "dfl" => cmwq::system_dfl_wq(),
        "default" => Box::leak(Box::new(Workqueue::new("b8").map_err(|e| e.to_string())?)),
        _ => Box::leak(Box::new(
            Workqueue::builder("b8")
                .flags(WqFlags::PERCPU)
                .build()
                .map_err(|e| e.to_string())?,
        )),
    };
    let cpu = if kind != "percpu" {
        util::allowed_cpus()[0]
    } else if ncpu > 1 {
        1
    } else {
        0
    };
    if kind == "percpu" {
        util::pin_to_cpu(0);
    }
    if !hint && mode.name() != label.split(',').next().unwrap_or("") {
        emit_note(&format!(
            "asked for {label:?}, cmwq uses detection mode {}",
            mode.name()
        ));
    }

    let mut plan: Vec<(Duration, usize)> = if quick {
        vec![
            (Duration::from_micros(10), 40),
            (Duration::from_micros(100), 40),
            (Duration::from_millis(1), 40),
            (Duration::from_millis(10), 15),
        ]
    } else {
        vec![
            (Duration::from_micros(10), 300),
            (Duration::from_micros(100), 300),
            (Duration::from_millis(1), 200),
            (Duration::from_millis(10), 100),
        ]
    };
    if long {
        plan.push((Duration::from_secs(1), 3));
    }

    let mutex = Arc::new(Mutex::new(()));
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err("b8: pipe2 failed".into());
    }
    let (rfd, wfd) = (fds[0], fds[1]);
    let probe = Arc::new(Probe::default());
    let helper = start_helper(mutex.clone(), wfd, probe.clone());
    let system = if hint {
        "cmwq hint (floor)".to_owned()
    } else {
        format!("cmwq {label}")
    };

    for kind in [Kind::Sleep, Kind::Futex, Kind::Pipe] {
        for &(d, n) in &plan {
            let (p, m) = (probe.clone(), mutex.clone());
            let a = Work::new(move |_| {
                util::burn_cpu(LEAD);
                p.t_block.store(now_ns(), Release);
                match kind {
                    Kind::Sleep => block(hint, || std::thread::sleep(d)),
                    Kind::Futex => {
                        p.armed.store(true, Release);
                        let g = block(hint, || m.lock().unwrap_or_else(|e| e.into_inner()));
                        drop(g);
                    }
                    Kind::Pipe => {
                        p.armed.store(true, Release);
                        let mut b = 0u8;
                        // SAFETY: reads one byte into `b` from a pipe we own.
                        block(hint, || unsafe {
                            libc::read(rfd, (&mut b as *mut u8).cast(), 1)
                        });
                    }
                }
                p.t_wake.store(now_ns(), Release);
            });
            let p = probe.clone();
            let b = Work::new(move |_| p.t_next.store(now_ns(), Release));
            let (mut lat, mut actual) = (Vec::with_capacity(n), Vec::with_capacity(n));
            let mut wakeups = 0;
            for i in 0..n + WARMUP {
                let w0 = cmwq::__bench::monitor_wakeups();
                if kind != Kind::Sleep {
                    helper
                        .tx
                        .send(Cmd::Release(kind, d))
                        .map_err(|e| e.to_string())?;
                    helper.ready.recv().map_err(|e| e.to_string())?;
                }
                wq.queue_on(cpu, &a);
                wq.queue_on(cpu, &b);
                a.flush();
                b.flush();
                if kind != Kind::Sleep {
                    helper.done.recv().map_err(|e| e.to_string())?;
                }
                if i >= WARMUP {
                    wakeups += cmwq::__bench::monitor_wakeups() - w0;
                    let tb = probe.t_block.load(Acquire);
                    lat.push(probe.t_next.load(Acquire).saturating_sub(tb) as f64 / 1e3);
                    actual.push(probe.t_wake.load(Acquire).saturating_sub(tb) as f64 / 1e3);
                }
            }
            emit_row(
                &Row::new(&system)
                    .group(format!("{} {}", kind.name(), duration_name(d)))
                    .text("mode", mode.name())
                    .num("block_us", d.as_secs_f64() * 1e6)
                    .num("actual_block_us", util::median(&actual))
                    .num("samples", n as f64)
                    .num("p50_us", util::percentile(&lat, 50.0))
                    .num("p99_us", util::percentile(&lat, 99.0))
                    .num("max_us", util::max(&lat))
                    .num("monitor_wakeups", wakeups as f64 / n as f64),
            );
        }
    }
    let _ = helper.tx.send(Cmd::Stop);
    let _ = helper.handle.join();

    // The first block after a phase of CPU-bound items: the sentinel has
    // backed off meanwhile (its picks found the runner runnable).
    if !hint && phases {
        let phases: &[(Duration, usize)] = if quick {
            &[(Duration::from_secs(1), 2)]
        } else {
            &[(Duration::from_secs(1), 5), (Duration::from_secs(10), 2)]
        };
        for &(phase, n) in phases {
            let lat = after_cpu_phase(wq, cpu, phase, n, &probe);
            emit_row(
                &Row::new(&system)
                    .group(format!(
                        "sleep 10 ms after {} of CPU-bound items",
                        duration_name(phase)
                    ))
                    .text("mode", mode.name())
                    .num("block_us", 10_000.0)
                    .num("samples", n as f64)
                    .num("p50_us", util::percentile(&lat, 50.0))
                    .num("p99_us", util::percentile(&lat, 99.0))
                    .num("max_us", util::max(&lat)),
            );
        }
    }

    // Ramp: 4 x nr_cpus items that all block at once.
    let total = 4 * ncpu;
    let trials = if quick { 3 } else { 10 };
    let started = Arc::new(AtomicUsize::new(0));
    let t_all = Arc::new(AtomicU64::new(0));
    let works: Vec<Work> = (0..total)
        .map(|_| {
            let (s, t) = (started.clone(), t_all.clone());
            Work::new(move |_| {
                if s.fetch_add(1, AcqRel) + 1 == total {
                    t.store(now_ns(), Release);
                }
                block(hint, || std::thread::sleep(Duration::from_millis(50)));
            })
        })
        .collect();
    let mut ramps = Vec::new();
    for _ in 0..trials {
        started.store(0, Release);
        let t0 = now_ns();
        for (i, w) in works.iter().enumerate() {
            wq.queue_on(i % ncpu, w);
        }
        wq.flush();
        ramps.push(t_all.load(Acquire).saturating_sub(t0) as f64 / 1e6);
        std::thread::sleep(Duration::from_millis(30));
    }
    emit_row(
        &Row::new(&system)
            .group(format!("ramp: {total} items block at once"))
            .text("mode", mode.name())
            .num("samples", trials as f64)
            .num("ramp_ms", util::median(&ramps))
            .num("ramp_max_ms", util::max(&ramps)),
    );
    // SAFETY: closing the pipe's descriptors, which nothing uses any more.
    unsafe {
        libc::close(rfd);
        libc::close(wfd);
    }
    Ok(())
}

/// `n` samples of: items of 1 ms of CPU each run back to back on `cpu`'s
/// pool for `phase` (each re-queues itself, so one always waits), then
/// the last of them queues an item that blocks (10 ms sleep) with another
/// behind it. Block -> next item start, in us.
fn after_cpu_phase(
    wq: &'static Workqueue,
    cpu: usize,
    phase: Duration,
    n: usize,
    probe: &Arc<Probe>,
) -> Vec<f64> {
    let p = probe.clone();
    let a: &'static Work = Box::leak(Box::new(Work::new(move |_| {
        util::burn_cpu(LEAD);
        p.t_block.store(now_ns(), Release);
        std::thread::sleep(Duration::from_millis(10));
    })));
    let p = probe.clone();
    let b: &'static Work = Box::leak(Box::new(Work::new(move |_| {
        p.t_next.store(now_ns(), Release)
    })));
    let until = Arc::new(AtomicU64::new(0));
    let u = until.clone();
    let filler: &'static Work = Box::leak(Box::new(Work::new(move |w| {
        util::burn_cpu(Duration::from_millis(1));
        if now_ns() < u.load(Acquire) {
            wq.queue_on(cpu, w);
        } else {
            wq.queue_on(cpu, a);
            wq.queue_on(cpu, b);
        }
    })));
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        until.store(now_ns() + phase.as_nanos() as u64, Release);
        wq.queue_on(cpu, filler);
        // Whichever runs last: the filler queues the two items last.
        while now_ns() < until.load(Acquire) {
            std::thread::sleep(Duration::from_millis(5));
        }
        filler.flush();
        a.flush();
        b.flush();
        let tb = probe.t_block.load(Acquire);
        lat.push(probe.t_next.load(Acquire).saturating_sub(tb) as f64 / 1e3);
        std::thread::sleep(Duration::from_millis(20));
    }
    lat
}

fn start_helper(mutex: Arc<Mutex<()>>, wfd: i32, probe: Arc<Probe>) -> Helper {
    let (tx, rx) = mpsc::channel::<Cmd>();
    let (ready_tx, ready) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("b8-helper".into())
        .spawn(move || {
            while let Ok(Cmd::Release(kind, d)) = rx.recv() {
                let guard = (kind == Kind::Futex).then(|| mutex.lock().unwrap());
                let _ = ready_tx.send(());
                while !probe.armed.swap(false, AcqRel) {
                    std::thread::yield_now();
                }
                util::wait_for(d);
                drop(guard);
                if kind == Kind::Pipe {
                    let b = 1u8;
                    // SAFETY: writes one byte from `b` to a pipe we own.
                    unsafe { libc::write(wfd, (&b as *const u8).cast(), 1) };
                }
                let _ = done_tx.send(());
            }
        })
        .expect("spawn the helper");
    Helper {
        tx,
        ready,
        done,
        handle,
    }
}

/// p50 and p99 (us) of a bare cross-CPU wake: a thread pinned to CPU 1
/// parks; another, pinned to CPU 0, stamps the time and unparks it; the
/// woken thread reads the clock first thing. (Both are threads of their
/// own: the harness's main thread keeps its CPU mask for the children.)
fn cross_cpu_wake_floor(n: usize) -> (f64, f64) {
    std::thread::spawn(move || wake_floor_pinned(n))
        .join()
        .unwrap_or((f64::NAN, f64::NAN))
}

fn wake_floor_pinned(n: usize) -> (f64, f64) {
    let ncpu = cmwq::nr_cpus();
    let stamp = Arc::new(AtomicU64::new(0));
    let got = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let stop = Arc::new(AtomicBool::new(false));
    let (s2, g2, st2) = (stamp.clone(), got.clone(), stop.clone());
    let h = std::thread::spawn(move || {
        util::pin_to_cpu(if ncpu > 1 { 1 } else { 0 });
        while !st2.load(Acquire) {
            std::thread::park();
            let now = now_ns();
            let t = s2.swap(0, AcqRel);
            if t != 0 {
                g2.lock()
                    .unwrap()
                    .push((now.saturating_sub(t)) as f64 / 1e3);
            }
        }
    });
    util::pin_to_cpu(0);
    std::thread::sleep(Duration::from_millis(5));
    for _ in 0..n {
        stamp.store(now_ns(), Release);
        h.thread().unpark();
        std::thread::sleep(Duration::from_micros(500));
    }
    stop.store(true, Release);
    h.thread().unpark();
    let _ = h.join();
    let v = got.lock().unwrap().clone();
    (util::percentile(&v, 50.0), util::percentile(&v, 99.0))
}

/// Processes that keep every CPU busy (`sh` busy loops) until dropped.
pub(crate) struct Hogs(Vec<std::process::Child>);

impl Hogs {
    pub(crate) fn start(n: usize) -> Hogs {
        Hogs(
            (0..n)
                .filter_map(|_| {
                    std::process::Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .ok()
                })
                .collect(),
        )
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
