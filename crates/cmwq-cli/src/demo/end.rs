//! The end: the self-checks and the report.

use super::*;

impl Demo {
    /// Every item queued ran exactly once, and the library's statistics
    /// agree with what the items saw.
    pub(super) fn final_checks(&mut self) {
        let mut all = 0;
        for (name, seen) in &self.seen {
            let (queued, executed) = (seen.queued.load(SeqCst), seen.executed.load(SeqCst));
            all += executed;
            self.report.check(queued == executed, || {
                format!("{name}: {queued} executions queued but {executed} ran")
            });
        }
        for info in cmwq::dump::workqueues() {
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

    pub(super) fn print_report(&self) {
        outln!();
        outln!("== cmwq::dump::monitor_table() (the kernel's wq_monitor.py) ==");
        out!("{}", cmwq::dump::monitor_table());
        outln!();
        outln!("== cmwq::dump() (the kernel's wq_dump.py) ==");
        out!("{}", cmwq::dump());
        outln!();
        outln!("== peak concurrency per workqueue (items in their function at once) ==");
        outln!(
            "  {:<16} {:<8} {:>10} {:>9} {:>5}",
            "workqueue",
            "kind",
            "max_active",
            "executed",
            "peak"
        );
        for info in cmwq::dump::workqueues() {
            let Some(seen) = self.seen.get(info.name.as_str()) else {
                continue;
            };
            let kind = if info.ordered {
                "ordered"
            } else if info.spreading {
                "spread"
            } else if info.flags.contains(WqFlags::UNBOUND) {
                "unbound"
            } else {
                "percpu"
            };
            outln!(
                "  {:<16} {:<8} {:>10} {:>9} {:>5}",
                info.name,
                kind,
                info.max_active,
                seen.executed.load(SeqCst),
                seen.conc.peak()
            );
        }
        outln!();
        outln!("== summary ==");
        for (what, text) in &self.report.facts {
            outln!("  {what:<15} {text}");
        }
        for w in &self.report.warnings {
            outln!("  warning: {w}");
        }
        if self.report.failures.is_empty() {
            outln!("self-check: OK");
        } else {
            for f in &self.report.failures {
                outln!("  FAILED: {f}");
            }
            outln!(
                "self-check: FAILED ({} problems)",
                self.report.failures.len()
            );
        }
    }
}

/// `part` as a percentage of `whole`.
pub(super) fn percent(part: Duration, whole: Duration) -> f64 {
    100.0 * part.as_secs_f64() / whole.as_secs_f64().max(1e-9)
}
