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
        println!("{} == {label}: {what}", self.stamp());
    }

    fn say(&self, msg: impl Display) {
        println!("{}    {msg}", self.stamp());
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
            cpu_wq: Arc::new(Workqueue::new(CPU_CUSTOM)?),
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
        println!(
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
        println!("  look inside it from a second terminal meanwhile:");
        println!("    {exe} top {pid}          live view of its pools and workers");
        println!("    {exe} monitor {pid}      wq_monitor.py table every second");
        println!("    {exe} dump {pid}         wq_dump.py report");
        println!("    {exe} trace {pid} --seconds 2 -o demo.json --svg demo.svg");
        println!("        a timeline: demo.json in ui.perfetto.dev, demo.svg in a browser");
        println!("    ps -L -o comm -p {pid}   the kworker threads");
        match cmwq::control::socket_path() {
            Some(p) => println!("  control socket: {}", p.display()),
            None => println!("  control socket: not started (see the message above)"),
        }
        if self.detect == Detect::Hint {
            println!(
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

    // ---- CPU-bound load ------------------------------------------------

    /// Start the feeder thread: it owns two reusable work items per CPU and
    /// workqueue and queues each again as soon as it is no longer pending.
    /// A `queue_on` of a pending item is a no-op that returns false (G1),
    /// so each pool always has a short backlog and never a long one.
    fn start_cpu_load(&self) -> Result<CpuLoad, Box<dyn Error>> {
        let mut items = Vec::new();
        for cpu in 0..self.ncpus {
            for on_custom in [true, false] {
                for k in 0..2 {
                    let seen = self.seen(if on_custom { CPU_CUSTOM } else { CPU_SYSTEM });
                    let (shared, both) = (self.shared.clone(), self.cpu_items.clone());
                    let rounds = self.cpu_rounds;
                    let seed = (cpu * 4 + k) as u64;
                    let w = Work::named("hash", move |_| {
                        seen.run(&shared, |_| {
                            let _running = both.enter();
                            burn(rounds, seed)
                        });
                    });
                    items.push((on_custom, cpu, w));
                }
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let feeder = {
            let stop = stop.clone();
            let custom = self.cpu_wq.clone();
            let seen = [self.seen(CPU_CUSTOM), self.seen(CPU_SYSTEM)];
            thread::Builder::new()
                .name("demo-feeder".into())
                .spawn(move || {
                    let mut deduped = 0u64;
                    while !stop.load(Relaxed) {
                        for (on_custom, cpu, w) in &items {
                            let (wq, seen) = if *on_custom {
                                (&*custom, &seen[0])
                            } else {
                                (cmwq::system_wq(), &seen[1])
                            };
                            if !seen.queued(wq.queue_on(*cpu, w)) {
                                deduped += 1;
                            }
                        }
                        // Each pool holds up to 4 items (about 8 ms of
                        // work) per CPU: refilling every 2 ms keeps it busy.
                        thread::sleep(Duration::from_millis(2));
                    }
                    for (_, _, w) in &items {
                        w.flush();
                    }
                    // `Work::flush` returns when the function has returned;
                    // this also waits for the workqueues' bookkeeping.
                    custom.flush();
                    cmwq::system_wq().flush();
                    deduped
                })?
        };
        Ok(CpuLoad {
            stop,
            feeder,
            started: Instant::now(),
            cpu_time0: self.cpu_load_time(),
        })
    }

    fn stop_cpu_load(&mut self, load: CpuLoad) {
        load.stop.store(true, Relaxed);
        let deduped = load
            .feeder
            .join()
            .expect("the feeder thread does not panic");
        let elapsed = load.started.elapsed();
        let used = self.cpu_load_time().saturating_sub(load.cpu_time0);
        let items: u64 = [CPU_CUSTOM, CPU_SYSTEM]
            .iter()
            .map(|q| self.seen[q].executed.load(SeqCst))
            .sum();
        self.report.fact(
            "CPU-bound load",
            format!(
                "{items} items of ~{} over {}: {:.0}% of {} CPUs busy in work functions; \
                 {deduped} queue calls found the item still pending (a no-op, G1)",
                human(self.plan.cpu_item),
                human(elapsed),
                percent(used, elapsed * self.ncpus as u32),
                self.ncpus,
            ),
        );
        // G15: a bound pool keeps one running worker while it has work, so
        // CPU-bound items (which never block) run one per CPU at most.
        let peak = self.cpu_items.peak();
        self.report.fact(
            "one per CPU",
            format!(
                "at most {peak} CPU-bound items ran at once on {} CPUs, while up to {} \
                 blocked items were in flight beside them",
                self.ncpus,
                self.io_items.peak(),
            ),
        );
        self.report.warn_unless(peak <= self.ncpus, || {
            format!(
                "{peak} CPU-bound items ran at once on {} CPUs: block detection `{}` took \
                 a running item for a blocked one",
                self.ncpus,
                self.detect.name()
            )
        });
    }

    // ---- blocking batch ------------------------------------------------

    /// Items that block in the kernel without telling the library, queued
    /// on the same per-CPU pools as the CPU-bound load.
    fn blocking_batch(&mut self) -> Result<(), Box<dyn Error>> {
        let plan = &self.plan;
        let n = 4 * plan.io_per_kind;
        self.shared.enter_phase(
            "blocking",
            "items on demo_io and events_long block without a hint",
        );
        self.shared.say(format!(
            "{n} items: {k} pipe reads, {k} fsyncs, {k} TCP reads on loopback, {k} sleeps; \
             the peer answers after {}",
            human(plan.io_delay),
            k = plan.io_per_kind,
        ));
        let peer = Arc::new(DelayedPeer::start(plan.io_delay, plan.io_per_kind)?);
        let per_kind: Arc<[AtomicU64; 4]> = Arc::default();
        let longest = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let mut items = Vec::with_capacity(n);
        for i in 0..n {
            // Every (CPU, kind, workqueue) combination gets an item.
            let cpu = i % self.ncpus;
            let kind = Blocker::ALL[(i / self.ncpus) % 4];
            let on_custom = (i / (4 * self.ncpus)).is_multiple_of(2);
            let seen = self.seen(if on_custom { IO_CUSTOM } else { IO_SYSTEM });
            let (shared, both, peer, per_kind, longest, errors) = (
                self.shared.clone(),
                self.io_items.clone(),
                peer.clone(),
                per_kind.clone(),
                longest.clone(),
                errors.clone(),
            );
            let delay = plan.io_delay;
            let w = Work::named(kind.work_name(), move |_| {
                seen.run(&shared, |_| {
                    let _running = both.enter();
                    let t = Instant::now();
                    let result = match kind {
                        Blocker::Pipe => peer.pipe_roundtrip(),
                        Blocker::Tcp => peer.tcp_roundtrip(),
                        Blocker::Fsync => {
                            let name = format!("cmwq-demo-{}-{i}", std::process::id());
                            fsync_file(&std::env::temp_dir().join(name), 4)
                        }
                        Blocker::Sleep => {
                            thread::sleep(delay);
                            Ok(())
                        }
                    };
                    let took = t.elapsed().as_nanos() as u64;
                    per_kind[kind as usize].fetch_add(took, SeqCst);
                    longest.fetch_max(took, SeqCst);
                    if let Err(e) = result {
                        errors.lock().unwrap().push(format!("{}: {e}", kind.name()));
                    }
                })
            });
            items.push((on_custom, cpu, w));
        }

        let cpu_time0 = self.cpu_load_time();
        let t0 = Instant::now();
        for (on_custom, cpu, w) in &items {
            let (wq, seen) = if *on_custom {
                (&self.io_wq, &self.seen[IO_CUSTOM])
            } else {
                (cmwq::system_long_wq(), &self.seen[IO_SYSTEM])
            };
            let queued = seen.queued(wq.queue_on(*cpu, w));
            self.report
                .check(queued, || "a new item was not queued".to_owned());
        }
        self.io_wq.flush();
        cmwq::system_long_wq().flush();
        let makespan = t0.elapsed();
        let cpu_used = self.cpu_load_time().saturating_sub(cpu_time0);

        let per_kind: Vec<Duration> = per_kind
            .iter()
            .map(|ns| Duration::from_nanos(ns.load(SeqCst)))
            .collect();
        let serial: Duration = per_kind.iter().sum();
        let longest = Duration::from_nanos(longest.load(SeqCst));
        let k = self.plan.io_per_kind as u32;
        self.shared.say(format!(
            "average block: {}",
            Blocker::ALL
                .iter()
                .map(|b| format!("{} {}", b.name(), human(per_kind[*b as usize] / k)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let speedup = serial.as_secs_f64() / makespan.as_secs_f64();
        let summary = format!(
            "serial time {}, makespan {}: speed-up {speedup:.1}x \
             (the longest item alone: {}; a fixed pool of {} threads would need at least {})",
            human(serial),
            human(makespan),
            human(longest),
            self.ncpus,
            human(serial / self.ncpus as u32),
        );
        self.shared.say(&summary);
        let busy = format!(
            "meanwhile the CPU-bound items kept {:.0}% of the {} CPUs busy",
            percent(cpu_used, makespan * self.ncpus as u32),
            self.ncpus
        );
        self.shared.say(&busy);
        self.report
            .fact("blocking batch", format!("{n} items, {summary}; {busy}"));

        let errors = std::mem::take(&mut *errors.lock().unwrap());
        for e in errors {
            self.report
                .warnings
                .push(format!("blocking batch: I/O error: {e}"));
        }
        self.report.warn_unless(speedup > self.ncpus as f64, || {
            format!(
                "blocking batch: speed-up {speedup:.1}x is no better than {} fixed threads; \
                 is block detection working (mode `{}`)?",
                self.ncpus,
                self.detect.name()
            )
        });
        Ok(())
    }

    // ---- ordered -------------------------------------------------------

    /// Several threads queue on one ordered workqueue. Each queue call is
    /// made under a lock that hands out tickets, so the ticket order is the
    /// queueing order, which the items must follow (G18).
    fn ordered(&mut self) {
        let plan = &self.plan;
        let total = plan.ordered_producers * plan.ordered_per_producer;
        self.shared
            .enter_phase("ordered", "the ordered workqueue demo_ordered");
        self.shared.say(format!(
            "{} threads queue {} items each",
            plan.ordered_producers, plan.ordered_per_producer
        ));
        let seen = self.seen(ORDERED);
        let ran: Arc<Mutex<Vec<u64>>> = Arc::default();
        let ticket = Mutex::new(0u64);
        let rounds = self.cpu_rounds / 20; // about 100 us
        thread::scope(|s| {
            for _ in 0..plan.ordered_producers {
                s.spawn(|| {
                    for _ in 0..plan.ordered_per_producer {
                        let mut next = ticket.lock().unwrap();
                        let seq = *next;
                        *next += 1;
                        let (seen2, shared, ran) = (seen.clone(), self.shared.clone(), ran.clone());
                        let w = Work::named("ordered_step", move |_| {
                            seen2.run(&shared, |_| {
                                burn(rounds, seq);
                                ran.lock().unwrap().push(seq);
                            })
                        });
                        seen.queued(self.ordered_wq.queue(&w));
                        drop(next);
                        thread::yield_now();
                    }
                });
            }
        });
        self.ordered_wq.flush();

        let ran = ran.lock().unwrap();
        let in_order = ran.iter().copied().eq(0..total as u64);
        let peak = seen.conc.peak();
        let verdict = format!(
            "{} of {total} items ran, {}, at most {peak} at once",
            ran.len(),
            if in_order {
                "in queueing order"
            } else {
                "OUT OF ORDER"
            }
        );
        self.shared.say(&verdict);
        self.report.fact("ordered", verdict.clone());
        self.report
            .check(in_order, || format!("ordered: {verdict}"));
        self.report
            .check(peak <= 1, || format!("ordered: {peak} items ran at once"));
    }

    // ---- max_active ----------------------------------------------------

    /// Items that sleep (with the `blocking` hint, so concurrency management
    /// would start them all) on one CPU of a workqueue with max_active 2:
    /// only two run at once. Then max_active is raised mid-run (G17).
    fn throttled(&mut self) -> Result<(), Box<dyn Error>> {
        let (before, after) = THROTTLE;
        let n = self.plan.throttle_items;
        self.shared
            .enter_phase("max_active", "throttling on demo_throttled");
        self.shared.say(format!(
            "{n} items sleeping {} each, all on CPU 0 (max_active is per CPU), max_active {before}",
            human(self.plan.throttle_sleep)
        ));
        let seen = self.seen(THROTTLED);
        let raised = Arc::new(AtomicBool::new(false));
        let peaks: Arc<[AtomicUsize; 2]> = Arc::default();
        let finished = Arc::new(AtomicUsize::new(0));
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            let (seen2, shared) = (seen.clone(), self.shared.clone());
            let (raised, peaks, finished) = (raised.clone(), peaks.clone(), finished.clone());
            let nap = self.plan.throttle_sleep;
            items.push(Work::named("throttled_nap", move |_| {
                seen2.run(&shared, |now| {
                    // An item that sees `raised` false was activated before
                    // the raise, under the old limit.
                    peaks[raised.load(SeqCst) as usize].fetch_max(now, SeqCst);
                    cmwq::blocking(|| thread::sleep(nap));
                    finished.fetch_add(1, SeqCst);
                })
            }));
        }
        for w in &items {
            seen.queued(self.throttled_wq.queue_on(0, w));
        }
        let congested = self.throttled_wq.is_congested(0);

        // Raise the limit once some items have finished.
        let deadline = Instant::now() + Duration::from_secs(30);
        while finished.load(SeqCst) < self.plan.throttle_raise_after && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        raised.store(true, SeqCst);
        self.throttled_wq.set_max_active(after)?;
        self.shared.say(format!(
            "{} items done: set_max_active({after})",
            finished.load(SeqCst)
        ));
        self.throttled_wq.flush();

        let (peak_before, peak_after) = (peaks[0].load(SeqCst), peaks[1].load(SeqCst));
        let verdict = format!(
            "congested while queued: {congested}; peak {peak_before} at once with max_active \
             {before}, peak {peak_after} after set_max_active({after})"
        );
        self.shared.say(&verdict);
        self.report.fact("max_active", verdict);
        self.report.check(peak_before <= before as usize, || {
            format!("max_active: {peak_before} items ran at once with max_active {before}")
        });
        self.report.check(peak_after <= after as usize, || {
            format!("max_active: {peak_after} items ran at once with max_active {after}")
        });
        self.report.warn_unless(
            peak_before == before as usize && peak_after > before as usize,
            || "max_active: the limits were not reached".to_owned(),
        );
        Ok(())
    }

    // ---- unbound -------------------------------------------------------

    /// A few items on unbound workqueues: no concurrency management, they
    /// start as soon as a worker can be found or made (G19).
    fn unbound(&mut self) {
        let n = self.plan.unbound_items;
        self.shared
            .enter_phase("unbound", "items on demo_unbound and events_unbound");
        let workers: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let mut items = Vec::with_capacity(n);
        for i in 0..n {
            let seen = self.seen(if i % 3 == 2 {
                UNBOUND_SYSTEM
            } else {
                UNBOUND_CUSTOM
            });
            let (shared, workers) = (self.shared.clone(), workers.clone());
            let (rounds, nap) = (self.cpu_rounds / 2, self.plan.unbound_sleep);
            let w = Work::named("unbound_job", move |_| {
                seen.run(&shared, |_| {
                    burn(rounds, i as u64);
                    thread::sleep(nap);
                    let me = thread::current().name().unwrap_or("?").to_owned();
                    workers.lock().unwrap().insert(me);
                })
            });
            items.push((i % 3 == 2, w));
        }
        for (on_system, w) in &items {
            let (wq, seen) = if *on_system {
                (cmwq::system_unbound_wq(), &self.seen[UNBOUND_SYSTEM])
            } else {
                (&self.unbound_wq, &self.seen[UNBOUND_CUSTOM])
            };
            seen.queued(wq.queue(w));
        }
        self.unbound_wq.flush();
        cmwq::system_unbound_wq().flush();
        let workers = workers.lock().unwrap();
        let text = format!(
            "{n} items ran on {} workers: {}",
            workers.len(),
            workers.iter().cloned().collect::<Vec<_>>().join(" ")
        );
        self.shared.say(&text);
        self.report.fact("unbound", text);
    }

    // ---- the end -------------------------------------------------------

    /// Every item queued ran exactly once, and the library's statistics
    /// agree with what the items saw.
    fn final_checks(&mut self) {
        let mut all = 0;
        for (name, seen) in &self.seen {
            let (queued, executed) = (seen.queued.load(SeqCst), seen.executed.load(SeqCst));
            all += executed;
            self.report.check(queued == executed, || {
                format!("{name}: {queued} executions queued but {executed} ran")
            });
        }
        for info in cmwq::workqueues() {
            let Some(seen) = self.seen.get(info.name.as_str()) else {
                continue;
            };
            let executed = seen.executed.load(SeqCst);
            // A system workqueue may also run items of others.
            let agrees = if info.name.starts_with("demo_") {
                info.stats.total == executed
            } else {
                info.stats.total >= executed
            };
            self.report.check(agrees, || {
                format!(
                    "{}: stats().total is {} but the demo saw {executed} executions",
                    info.name, info.stats.total
                )
            });
            self.report.check(info.stats.in_flight == 0, || {
                format!(
                    "{}: {} items in flight after a flush",
                    info.name, info.stats.in_flight
                )
            });
        }
        self.report.fact(
            "items",
            format!("{all} executions, every queued item ran once"),
        );
        // demo_io is MEM_RECLAIM: its rescuer thread exists (ps -L shows
        // it) and the dump lists it (G22).
        // The name is cut to the 15 bytes a Linux thread name holds.
        let name = &format!("kworker/R-{IO_CUSTOM}")[..15];
        let rescuer = crate::util::thread_named(name);
        let listed = cmwq::dump()
            .lines()
            .any(|l| l.starts_with(IO_CUSTOM) && l.contains(name));
        self.report.check(rescuer && listed, || {
            format!("{IO_CUSTOM} is MEM_RECLAIM but its rescuer thread {name} is missing (thread: {rescuer}, in dump: {listed})")
        });
        let st = self.io_wq.stats();
        self.report.fact(
            "rescuer",
            format!(
                "{name} stands by for {IO_CUSTOM} (mayday {}, rescued {}: workers could always be created)",
                st.mayday, st.rescued
            ),
        );
    }

    fn print_report(&self) {
        println!();
        println!("== cmwq::monitor_table() (the kernel's wq_monitor.py) ==");
        print!("{}", cmwq::monitor_table());
        println!();
        println!("== cmwq::dump() (the kernel's wq_dump.py) ==");
        print!("{}", cmwq::dump());
        println!();
        println!("== peak concurrency per workqueue (items in their function at once) ==");
        println!(
            "  {:<16} {:<8} {:>10} {:>9} {:>5}",
            "workqueue", "kind", "max_active", "executed", "peak"
        );
        for info in cmwq::workqueues() {
            let Some(seen) = self.seen.get(info.name.as_str()) else {
                continue;
            };
            let kind = if info.ordered {
                "ordered"
            } else if info.flags.contains(WqFlags::UNBOUND) {
                "unbound"
            } else {
                "percpu"
            };
            println!(
                "  {:<16} {:<8} {:>10} {:>9} {:>5}",
                info.name,
                kind,
                info.max_active,
                seen.executed.load(SeqCst),
                seen.conc.peak()
            );
        }
        println!();
        println!("== summary ==");
        for (what, text) in &self.report.facts {
            println!("  {what:<15} {text}");
        }
        for w in &self.report.warnings {
            println!("  warning: {w}");
        }
        if self.report.failures.is_empty() {
            println!("self-check: OK");
        } else {
            for f in &self.report.failures {
                println!("  FAILED: {f}");
            }
            println!(
                "self-check: FAILED ({} problems)",
                self.report.failures.len()
            );
        }
    }
}

/// `part` as a percentage of `whole`.
fn percent(part: Duration, whole: Duration) -> f64 {
    100.0 * part.as_secs_f64() / whole.as_secs_f64().max(1e-9)
}

/// The CPU-bound load's feeder thread, while it runs.
struct CpuLoad {
    stop: Arc<AtomicBool>,
    /// Returns how many queue calls found the item still pending.
    feeder: thread::JoinHandle<u64>,
    started: Instant,
    cpu_time0: Duration,
}

/// The ways a blocking-batch item blocks.
#[derive(Clone, Copy, Debug)]
enum Blocker {
    Pipe,
    Fsync,
    Tcp,
    Sleep,
}

impl Blocker {
    const ALL: [Blocker; 4] = [Blocker::Pipe, Blocker::Fsync, Blocker::Tcp, Blocker::Sleep];

    fn name(self) -> &'static str {
        match self {
            Blocker::Pipe => "pipe read",
            Blocker::Fsync => "fsync",
            Blocker::Tcp => "TCP read",
            Blocker::Sleep => "sleep",
        }
    }

    /// The work item's name, shown by `dump()`.
    fn work_name(self) -> &'static str {
        match self {
            Blocker::Pipe => "pipe_read",
            Blocker::Fsync => "fsync",
            Blocker::Tcp => "tcp_read",
            Blocker::Sleep => "sleep",
        }
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
                    println!(
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
