//! The blocking batch: items that block in the kernel without a hint.

use super::*;

impl Demo {
    /// Items that block in the kernel without telling the library, queued
    /// on the same per-CPU pools as the CPU-bound load.
    pub(super) fn blocking_batch(&mut self) -> Result<(), Box<dyn Error>> {
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
}

/// The ways a blocking-batch item blocks.
#[derive(Clone, Copy, Debug)]
pub(super) enum Blocker {
    Pipe,
    Fsync,
    Tcp,
    Sleep,
}

impl Blocker {
    const ALL: [Blocker; 4] = [Blocker::Pipe, Blocker::Fsync, Blocker::Tcp, Blocker::Sleep];

    pub(super) fn name(self) -> &'static str {
        match self {
            Blocker::Pipe => "pipe read",
            Blocker::Fsync => "fsync",
            Blocker::Tcp => "TCP read",
            Blocker::Sleep => "sleep",
        }
    }

    /// The work item's name, shown by `dump()`.
    pub(super) fn work_name(self) -> &'static str {
        match self {
            Blocker::Pipe => "pipe_read",
            Blocker::Fsync => "fsync",
            Blocker::Tcp => "tcp_read",
            Blocker::Sleep => "sleep",
        }
    }
}
