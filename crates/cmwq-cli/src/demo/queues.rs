//! The ordered, throttled (`max_active`) and unbound workqueues.

use super::*;

impl Demo {
    /// Several threads queue on one ordered workqueue. Each queue call is
    /// made under a lock that hands out tickets, so the ticket order is the
    /// queueing order, which the items must follow (G18).
    pub(super) fn ordered(&mut self) {
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

    /// Items that sleep (with the `blocking` hint, so concurrency management
    /// would start them all) on one CPU of a workqueue with max_active 2:
    /// only two run at once. Then max_active is raised mid-run (G17).
    pub(super) fn throttled(&mut self) -> Result<(), Box<dyn Error>> {
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

    /// A few items on unbound workqueues: no concurrency management, they
    /// start as soon as a worker can be found or made (G19).
    pub(super) fn unbound(&mut self) {
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
}
