//! `cmwq monitor`: the kernel's `wq_monitor.py -i INTERVAL`, for this
//! process. A light background workload keeps a few workqueues busy while
//! the table is printed every interval.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cmwq::{Work, Workqueue};

use crate::json::{MonitorTable, WqRow, SCHEMA};
use crate::util::{burn, calibrate};
use crate::{out, outln};

/// Print `cmwq::dump::monitor_table()` every `interval` for `seconds` (forever
/// with `None`); with `json`, one object a line instead (the totals since
/// this process started, as the table shows).
pub fn run(interval: Duration, seconds: Option<f64>, json: bool) -> ExitCode {
    let load = match Load::start() {
        Ok(load) => load,
        Err(e) => {
            eprintln!("cmwq monitor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let start = Instant::now();
    let deadline = seconds.map(|s| start + Duration::from_secs_f64(s));
    let mut tick = 1u32;
    loop {
        let mut next = start + interval * tick;
        let last = deadline.is_some_and(|d| next >= d);
        if let Some(d) = deadline.filter(|_| last) {
            next = d;
        }
        thread::sleep(next.saturating_duration_since(Instant::now()));
        let t = start.elapsed().as_secs_f64();
        if json {
            out::json(&MonitorTable {
                schema: SCHEMA,
                pid: Some(std::process::id()),
                t_s: Some(t),
                interval_ms: Some(interval.as_millis() as u64),
                totals: true,
                detection: Some(cmwq::detection().name().to_string()),
                workqueues: cmwq::dump::workqueues().iter().map(WqRow::from).collect(),
            });
        } else {
            outln!(
                "--- t={t:.2}s  pid {}  detection {} ---",
                std::process::id(),
                cmwq::detection().name()
            );
            outln!("{}", cmwq::dump::monitor_table());
            out::flush();
        }
        if last {
            break;
        }
        tick += 1;
    }
    load.stop();
    ExitCode::SUCCESS
}

/// The background workload: self-rearming delayed items.
struct Load {
    stop: Arc<AtomicBool>,
    items: Vec<Work>,
    /// Kept alive (and listed by the table) while the monitor runs.
    _wq: Arc<Workqueue>,
}

impl Load {
    fn start() -> Result<Load, cmwq::Error> {
        let wq = Arc::new(Workqueue::new("monitor_load")?);
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = calibrate(Duration::from_micros(500));
        let mut items = Vec::new();

        // Per CPU: every 10 ms half a millisecond of hashing; every fifth
        // time also a 2 ms sleep, blocking without a hint.
        for cpu in 0..cmwq::nr_cpus() {
            let (wq2, stop2) = (wq.clone(), stop.clone());
            let mut n = 0u64;
            let w = Work::named("monitor_tick", move |me| {
                n += 1;
                burn(rounds, n);
                if n.is_multiple_of(5) {
                    thread::sleep(Duration::from_millis(2));
                }
                if !stop2.load(Relaxed) {
                    wq2.queue_delayed_on(cpu, me, Duration::from_millis(10));
                }
            });
            wq.queue_on(cpu, &w);
            items.push(w);
        }

        // On the system workqueues: a short sleep on events_unbound every
        // 50 ms, a little hashing on events every 100 ms.
        let stop2 = stop.clone();
        let w = Work::named("monitor_nap", move |me| {
            thread::sleep(Duration::from_millis(1));
            if !stop2.load(Relaxed) {
                cmwq::system_unbound_wq().queue_delayed(me, Duration::from_millis(50));
            }
        });
        cmwq::system_unbound_wq().queue(&w);
        items.push(w);

        let stop2 = stop.clone();
        let w = Work::named("monitor_hash", move |me| {
            burn(rounds, 0);
            if !stop2.load(Relaxed) {
                cmwq::schedule_delayed_work(me, Duration::from_millis(100));
            }
        });
        cmwq::schedule_work(&w);
        items.push(w);

        Ok(Load {
            stop,
            items,
            _wq: wq,
        })
    }

    /// Stop re-arming and cancel what is armed or queued, waiting for
    /// running executions (G10).
    fn stop(self) {
        self.stop.store(true, Relaxed);
        for w in &self.items {
            w.cancel_sync();
        }
    }
}
