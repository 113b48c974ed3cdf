//! The CPU-bound load: short hashing items kept queued on every CPU.

use super::*;

impl Demo {
    /// Start the feeder thread: it owns two reusable work items per CPU and
    /// workqueue and queues each again as soon as it is no longer pending.
    /// A `queue_on` of a pending item is a no-op that returns false (G1),
    /// so each pool always has a short backlog and never a long one.
    pub(super) fn start_cpu_load(&self) -> Result<CpuLoad, Box<dyn Error>> {
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

    pub(super) fn stop_cpu_load(&mut self, load: CpuLoad) {
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
}

/// The CPU-bound load's feeder thread, while it runs.
pub(super) struct CpuLoad {
    stop: Arc<AtomicBool>,
    /// Returns how many queue calls found the item still pending.
    feeder: thread::JoinHandle<u64>,
    started: Instant,
    cpu_time0: Duration,
}
