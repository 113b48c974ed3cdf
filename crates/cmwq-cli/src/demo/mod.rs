//! `cmwq demo`: a mixed workload that shows concurrency management at work.
//!
//! Timeline (fractions of `--seconds`, 6 s by default):
//!
//! * throughout: a **CPU-bound load** of short hashing items on a custom
//!   bound workqueue (`demo_cpu`) and on `system_wq` (`events`), spread over
//!   the CPUs with `queue_on`. Each pool runs one of them at a time.
//! * a **blocking batch**: items that block in the kernel without any hint
//!   (pipe reads, `fsync`, TCP reads on loopback, `thread::sleep`) on
//!   `demo_io` and `system_long_wq`. Automatic block detection must start
//!   new workers for them while the CPU load keeps the CPUs busy; the batch
//!   finishes in about one delay instead of the serial sum.
//! * an **ordered** workqueue fed from several threads: items must run one
//!   at a time, in queueing order.
//! * a **throttled** workqueue (`max_active` 2), raised to 6 mid-run.
//! * an **unbound** workqueue and `system_unbound_wq` with a few items.
//!
//! One file per phase, as the benchmark crate has one per scenario:
//! `cpu.rs` (the CPU-bound load), `blocking.rs` (the blocking batch),
//! `queues.rs` (ordered, throttled, unbound), `end.rs` (self-checks and
//! report); this file holds the plan, the shared state and the timeline.
//!
//! A live status line is printed every 500 ms. At the end come the
//! `wq_monitor.py` table, the `wq_dump.py` report and a summary; the exit
//! status is non-zero when a self-check failed (ordering broken, an item
//! lost, a limit exceeded, statistics that disagree).

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::fmt::Display;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use cmwq::{Detect, Work, Workqueue, WqFlags};

use crate::io::{fsync_file, DelayedPeer};
use crate::util::{burn, calibrate, human, kworker_threads, Concurrency};
use crate::{out, outln};

mod blocking;
mod cpu;
mod end;
mod queues;

use end::percent;

/// The throttled workqueue's `max_active` at first, and after the raise.
const THROTTLE: (u32, u32) = (2, 6);

/// Names of the workqueues the demo uses (custom ones and system ones).
const CPU_CUSTOM: &str = "demo_cpu";
const CPU_SYSTEM: &str = "events";
const IO_CUSTOM: &str = "demo_io";
const IO_SYSTEM: &str = "events_long";
const ORDERED: &str = "demo_ordered";
const THROTTLED: &str = "demo_throttled";
const UNBOUND_CUSTOM: &str = "demo_unbound";
const UNBOUND_SYSTEM: &str = "events_unbound";

/// Run the demo for about `seconds`; the process exit status.
pub fn run(seconds: f64) -> ExitCode {
    // The control socket, so `cmwq monitor/dump/trace PID` can look in
    // from a second terminal, unless CMWQ_CONTROL says otherwise.
    if std::env::var_os("CMWQ_CONTROL").is_none() {
        let _ = cmwq::Config::default().control(true).apply();
    }
    match Demo::new(seconds).and_then(|demo| demo.run()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cmwq demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sizes and durations of the phases, scaled to the requested run time.
#[derive(Debug)]
struct Plan {
    total: Duration,
    /// CPU load alone before the first foreground phase.
    lead_in: Duration,
    /// Length of one CPU-bound item (well under the 10 ms CPU-hog threshold).
    cpu_item: Duration,
    /// How long each item of the blocking batch blocks.
    io_delay: Duration,
    /// Items of each of the four blocking kinds.
    io_per_kind: usize,
    ordered_producers: usize,
    ordered_per_producer: usize,
    throttle_items: usize,
    /// Items that must finish before `max_active` is raised.
    throttle_raise_after: usize,
    throttle_sleep: Duration,
    unbound_items: usize,
    unbound_sleep: Duration,
}

impl Plan {
    fn new(seconds: f64, ncpus: usize) -> Plan {
        // A fraction of the run time, but not less than `min_ms`.
        let part = |f: f64, min_ms: u64| {
            Duration::from_secs_f64(seconds * f).max(Duration::from_millis(min_ms))
        };
        Plan {
            total: Duration::from_secs_f64(seconds),
            lead_in: part(0.1, 100),
            cpu_item: Duration::from_millis(2),
            io_delay: part(0.08, 40),
            io_per_kind: (2 * ncpus).clamp(4, 16),
            ordered_producers: 4,
            ordered_per_producer: 50,
            throttle_items: 36,
            throttle_raise_after: 12,
            throttle_sleep: part(0.015, 10),
            unbound_items: 9,
            unbound_sleep: part(0.02, 10),
        }
    }
}

/// State shared with the work items and the live view.
struct Shared {
    start: Instant,
    /// Executions of demo items so far, all phases.
    done: AtomicU64,
    /// What the foreground is doing, for the live view.
    phase: Mutex<&'static str>,
}

impl Shared {
    fn stamp(&self) -> String {
        format!("[{:5.2}s]", self.start.elapsed().as_secs_f64())
    }

    /// Start a phase: `label` is shown by the live view.
    fn enter_phase(&self, label: &'static str, what: impl Display) {
        *self.phase.lock().unwrap() = label;
        outln!("{} == {label}: {what}", self.stamp());
    }

    fn say(&self, msg: impl Display) {
        outln!("{}    {msg}", self.stamp());
    }
}

/// What the demo saw of the items it queued on one workqueue.
#[derive(Debug, Default)]
struct Seen {
    /// Executions that finished.
    executed: AtomicU64,
    /// Executions queued (`queue*` returned true).
    queued: AtomicU64,
    conc: Concurrency,
}

impl Seen {
    /// Run one execution's body, counting it; `f` gets the number of this
    /// workqueue's items executing at once, this one included.
    fn run<R>(&self, shared: &Shared, f: impl FnOnce(usize) -> R) -> R {
        let r = {
            let running = self.conc.enter();
            f(running.now)
        };
        self.executed.fetch_add(1, SeqCst);
        shared.done.fetch_add(1, Relaxed);
        r
    }

    /// Count the result of a `queue*` call.
    fn queued(&self, was_queued: bool) -> bool {
        if was_queued {
            self.queued.fetch_add(1, SeqCst);
        }
        was_queued
    }
}

/// Self-check results and the facts for the summary.
#[derive(Default)]
struct Report {
    facts: Vec<(&'static str, String)>,
    failures: Vec<String>,
    warnings: Vec<String>,
}

impl Report {
    fn fact(&mut self, what: &'static str, text: String) {
        self.facts.push((what, text));
    }

    /// A self-check: a failure makes the exit status non-zero.
    fn check(&mut self, ok: bool, failure: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(failure());
        }
    }

    /// Something worth knowing that does not fail the demo.
    fn warn_unless(&mut self, ok: bool, warning: impl FnOnce() -> String) {
        if !ok {
            self.warnings.push(warning());
        }
    }
}

struct Demo {
    plan: Plan,
    ncpus: usize,
    detect: Detect,
    shared: Arc<Shared>,
    /// By workqueue name.
    seen: BTreeMap<&'static str, Arc<Seen>>,
    /// `burn` rounds for one CPU-bound item.
    cpu_rounds: u64,
    /// CPU-bound items of both workqueues at once.
    cpu_items: Arc<Concurrency>,
    /// Blocking-batch items of both workqueues at once.
    io_items: Arc<Concurrency>,
    cpu_wq: Arc<Workqueue>,
    io_wq: Workqueue,
    ordered_wq: Workqueue,
    throttled_wq: Workqueue,
    unbound_wq: Workqueue,
    report: Report,
}

impl Demo {
    fn new(seconds: f64) -> Result<Demo, Box<dyn Error>> {
        let ncpus = cmwq::nr_cpus();
        let plan = Plan::new(seconds, ncpus);
        let cpu_rounds = calibrate(plan.cpu_item);
        // Starts the pools (and their monitor) if they have not started.
        let detect = cmwq::detection();
        let seen = [
            CPU_CUSTOM,
            CPU_SYSTEM,
            IO_CUSTOM,
            IO_SYSTEM,
            ORDERED,
            THROTTLED,
            UNBOUND_CUSTOM,
            UNBOUND_SYSTEM,
        ]
        .into_iter()
        .map(|name| (name, Arc::default()))
        .collect();
        Ok(Demo {
            // Per-CPU, like system_wq: both feed the same CPU pools.
            cpu_wq: Arc::new(
                Workqueue::builder(CPU_CUSTOM)
                    .flags(WqFlags::PERCPU)
                    .build()?,
            ),
            // MEM_RECLAIM: a rescuer (`kworker/R-demo_`) runs its items
            // if new workers cannot be had (G22); the table shows its
            // mayday/rescued counts and the dump lists it.
            io_wq: Workqueue::builder(IO_CUSTOM)
                .flags(WqFlags::MEM_RECLAIM)
                .build()?,
            ordered_wq: Workqueue::ordered(ORDERED, WqFlags::empty())?,
            throttled_wq: Workqueue::builder(THROTTLED)
                .max_active(THROTTLE.0)
                .build()?,
            unbound_wq: Workqueue::builder(UNBOUND_CUSTOM)
                .flags(WqFlags::UNBOUND)
                .build()?,
            plan,
            ncpus,
            detect,
            shared: Arc::new(Shared {
                start: Instant::now(),
                done: AtomicU64::new(0),
                phase: Mutex::new("starting"),
            }),
            seen,
            cpu_rounds,
            cpu_items: Arc::default(),
            io_items: Arc::default(),
            report: Report::default(),
        })
    }

    fn seen(&self, wq: &str) -> Arc<Seen> {
        self.seen[wq].clone()
    }

    /// The whole demo; `Ok(false)` when a self-check failed.
    fn run(mut self) -> Result<bool, Box<dyn Error>> {
        let pid = std::process::id();
        outln!(
            "cmwq demo: pid {pid}, {} CPUs, block detection `{}`, about {:.1} s",
            self.ncpus,
            self.detect.name(),
            self.plan.total.as_secs_f64()
        );
        // The path of this binary, so the commands work as printed.
        let exe = std::env::current_exe()
            .ok()
            .and_then(|p| p.to_str().map(String::from))
            .unwrap_or_else(|| "cmwq".into());
        outln!("  look inside it from a second terminal meanwhile:");
        outln!("    {exe} top {pid}          live view of its pools and workers");
        outln!("    {exe} monitor {pid}      wq_monitor.py table every second");
        outln!("    {exe} dump {pid}         wq_dump.py report");
        outln!("    {exe} trace {pid} --seconds 2 -o demo.json --svg demo.svg");
        outln!("        a timeline: demo.json in ui.perfetto.dev, demo.svg in a browser");
        outln!("    ps -L -o comm -p {pid}   the kworker threads");
        match cmwq::control::socket_path() {
            Some(p) => outln!("  control socket: {}", p.display()),
            None => outln!("  control socket: not started (see the message above)"),
        }
        if self.detect == Detect::Hint {
            outln!(
                "  note: CMWQ_DETECT=hint: items that block without `cmwq::blocking` are not \
                 noticed, so the blocking batch runs about one item per CPU at a time"
            );
        }
        let live = LiveView::start(self.shared.clone());

        self.shared.enter_phase(
            "cpu load",
            "hashing items on demo_cpu and events, every CPU, throughout",
        );
        let load = self.start_cpu_load()?;
        thread::sleep(self.plan.lead_in);

        self.blocking_batch()?;
        self.ordered();
        self.throttled()?;
        self.unbound();

        self.shared
            .enter_phase("cpu load", "the CPU-bound load alone until the time is up");
        let end = self.shared.start + self.plan.total;
        thread::sleep(end.saturating_duration_since(Instant::now()));
        self.stop_cpu_load(load);
        live.stop();

        self.final_checks();
        self.print_report();
        Ok(self.report.failures.is_empty())
    }

    /// CPU time spent in the CPU-bound items so far (the library's own
    /// accounting, G29).
    fn cpu_load_time(&self) -> Duration {
        self.cpu_wq.stats().cpu_time + cmwq::system_wq().stats().cpu_time
    }
}

/// The live status line, printed every 500 ms by its own thread.
struct LiveView {
    /// Dropping it tells the thread to stop.
    stop: mpsc::Sender<()>,
    thread: thread::JoinHandle<()>,
}

impl LiveView {
    const PERIOD: Duration = Duration::from_millis(500);

    fn start(shared: Arc<Shared>) -> LiveView {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("demo-live".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(Self::PERIOD) {
                    outln!(
                        "{} .. live: {:6} items done | {:3} kworker threads | detection {} | {}",
                        shared.stamp(),
                        shared.done.load(Relaxed),
                        kworker_threads(),
                        cmwq::detection().name(),
                        shared.phase.lock().unwrap(),
                    );
                }
            })
            .expect("spawn the live view thread");
        LiveView { stop, thread }
    }

    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_scales_and_has_floors() {
        let short = Plan::new(0.1, 2);
        assert_eq!(short.io_delay, Duration::from_millis(40));
        let long = Plan::new(10.0, 2);
        assert_eq!(long.io_delay, Duration::from_millis(800));
        assert_eq!(long.io_per_kind, 4);
        assert_eq!(Plan::new(6.0, 64).io_per_kind, 16);
    }

    #[test]
    fn percent_of_durations() {
        let p = percent(Duration::from_millis(500), Duration::from_secs(2));
        assert!((p - 25.0).abs() < 1e-9);
    }
}
