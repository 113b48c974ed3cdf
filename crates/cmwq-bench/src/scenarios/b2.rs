//! B2, wake latency: the pool is idle; one item is queued every 1 ms; the
//! figure is the time from the queue call to the first line of the item's
//! function. The floor is a bare `Thread::unpark` of a parked thread, on
//! the other CPU (an idle CPU) and on the producer's own CPU (where a bound
//! pool's worker runs).
//!
//! The producer is pinned to CPU 0 for every system, so "the CPU that
//! queued" is the same for all of them.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

use cmwq::Work;

use super::{interleaved, ratio_str, Ctx};
use crate::peers::{Kind, Peer};
use crate::report::Row;
use crate::report::Table;
use crate::util::{self, now_ns};

const TARGET: &str = "p50 <= 1.5x the floor: a bare `Thread::unpark` -> wake-up on an idle thread";

/// Samples thrown away before measuring.
const WARMUP: usize = 20;
const PERIOD: Duration = Duration::from_millis(1);

#[derive(Clone, Copy)]
enum Sys {
    Cmwq {
        unbound: bool,
    },
    Peer(Kind),
    /// Unpark of a parked thread pinned to this CPU.
    Floor {
        cpu: usize,
    },
}

pub fn run(ctx: &Ctx) -> Table {
    let n = ctx.pick(150, 1000);
    let mut t = Table::new(
        "B2",
        &format!("wake latency: one item every 1 ms on an idle pool, {n} samples"),
        TARGET,
    );
    t.ratio_of = Some("p50_us".into());
    let mut systems = vec![
        Sys::Cmwq { unbound: false },
        Sys::Cmwq { unbound: true },
        Sys::Peer(Kind::Rayon),
        Sys::Peer(Kind::Tokio),
        Sys::Peer(Kind::PoolCpus),
        Sys::Peer(Kind::ThreadPerItem),
        Sys::Floor { cpu: 0 },
    ];
    if ctx.ncpu > 1 {
        systems.push(Sys::Floor { cpu: 1 });
    }
    t.rows = interleaved(ctx.reps, &systems, |s| measure(*s, n));

    let p50 = |prefix: &str| t.row(prefix, None).and_then(|r| r.get("p50_us"));
    let same = p50("floor: unpark, same CPU");
    // The faster of the two floors: where the unbound worker wakes is the
    // scheduler's choice, and waking on the producer's CPU is cheaper.
    let other = p50("floor: unpark, other CPU").or(same);
    let fastest = match (same, other) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let bound = p50("cmwq system_wq");
    let unbound = p50("cmwq system_unbound_wq");
    if let (Some(c), Some(f)) = (bound, same) {
        t.check(
            "cmwq system_wq p50 <= 1.5x the floor on the same CPU (a bound item runs on the queueing CPU)",
            ratio_str(c / f),
            c <= 1.5 * f,
        );
    }
    if let (Some(c), Some(f)) = (unbound, fastest) {
        t.check(
            "cmwq system_unbound_wq p50 <= 1.5x the faster floor (same or other CPU)",
            ratio_str(c / f),
            c <= 1.5 * f,
        );
    }
    if let (Some(c), Some(f)) = (bound, other) {
        t.note(format!(
            "for reference, cmwq system_wq p50 is {} the idle-CPU floor",
            ratio_str(c / f)
        ));
    }
    t.note("the producer is pinned to CPU 0 and sleeps 1 ms between items; the floors' parked thread is pinned to CPU 0 (same CPU) or CPU 1 (other CPU)");
    t.note("omitted: the big fixed pool (one item at a time: more threads change nothing)");
    t
}

/// Shared between the producer and the items.
struct Probe {
    queued_at: AtomicU64,
    index: AtomicUsize,
    lat: Vec<AtomicU64>,
}

impl Probe {
    fn new(n: usize) -> Arc<Probe> {
        Arc::new(Probe {
            queued_at: AtomicU64::new(0),
            index: AtomicUsize::new(0),
            lat: (0..n).map(|_| AtomicU64::new(u64::MAX)).collect(),
        })
    }

    /// Called on the item's first line.
    #[inline]
    fn hit(&self) {
        let t = now_ns();
        let i = self.index.load(Acquire);
        let q = self.queued_at.load(Acquire);
        self.lat[i].store(t.saturating_sub(q), Release);
    }

    /// Mark the start of sample `i`.
    #[inline]
    fn start(&self, i: usize) {
        self.index.store(i, Release);
        self.queued_at.store(now_ns(), Release);
    }

    /// Latencies in us, warm-up excluded, lost samples skipped.
    fn samples_us(&self) -> Vec<f64> {
        self.lat[WARMUP..]
            .iter()
            .map(|a| a.load(Acquire))
            .filter(|&v| v != u64::MAX)
            .map(|v| v as f64 / 1000.0)
            .collect()
    }
}

fn measure(sys: Sys, n: usize) -> Row {
    let total = n + WARMUP;
    let probe = Probe::new(total);
    let p2 = probe.clone();
    let wakeups0 = cmwq::__bench::monitor_wakeups();
    // Peers are started here, not on the pinned producer: threads inherit
    // the affinity of the thread that creates them.
    let peer = match sys {
        Sys::Peer(kind) => Some(Peer::new(kind, 1)),
        _ => None,
    };
    // The producer runs on a thread of its own, pinned to CPU 0.
    let name = std::thread::scope(|sc| {
        let peer = peer.as_ref();
        sc.spawn(move || {
            util::pin_to_cpu(0);
            produce(sys, peer, total, &p2)
        })
        .join()
        .expect("producer")
    });
    if let Some(p) = peer {
        p.shutdown();
    }
    let v = probe.samples_us();
    let mut row = Row::new(name)
        .num("samples", v.len() as f64)
        .num("p50_us", util::percentile(&v, 50.0))
        .num("p99_us", util::percentile(&v, 99.0));
    if let Sys::Cmwq { .. } = sys {
        let wakeups = cmwq::__bench::monitor_wakeups() - wakeups0;
        row = row.num("monitor_wakeups_per_item", wakeups as f64 / total as f64);
    }
    row
}

/// Queue `total` items one every millisecond; returns the system's name.
fn produce(sys: Sys, peer: Option<&Peer>, total: usize, probe: &Arc<Probe>) -> String {
    match sys {
        Sys::Cmwq { unbound } => {
            let (wq, name) = if unbound {
                (cmwq::system_unbound_wq(), "cmwq system_unbound_wq")
            } else {
                (cmwq::system_wq(), "cmwq system_wq")
            };
            let p = probe.clone();
            let w = Work::new(move |_| p.hit());
            for i in 0..total {
                probe.start(i);
                wq.queue(&w);
                std::thread::sleep(PERIOD);
                w.flush();
            }
            name.into()
        }
        Sys::Peer(_) => {
            let peer = peer.expect("peer started by the caller");
            for i in 0..total {
                probe.start(i);
                let p = probe.clone();
                peer.spawn(move || p.hit());
                std::thread::sleep(PERIOD);
            }
            // Let a straggler finish before the next system starts.
            std::thread::sleep(Duration::from_millis(20));
            peer.name()
        }
        Sys::Floor { cpu } => {
            let stop = Arc::new(AtomicBool::new(false));
            let seq = Arc::new(AtomicUsize::new(0));
            let (p, s2, st2) = (probe.clone(), seq.clone(), stop.clone());
            // Spawned from the pinned producer, then pinned where wanted.
            let h = std::thread::spawn(move || {
                util::pin_to_cpu(cpu);
                let mut seen = 0;
                loop {
                    std::thread::park();
                    let s = s2.load(Acquire);
                    if s != seen {
                        p.hit();
                        seen = s;
                    }
                    if st2.load(Acquire) {
                        return;
                    }
                }
            });
            std::thread::sleep(PERIOD);
            for i in 0..total {
                probe.start(i);
                seq.store(i + 1, Release);
                h.thread().unpark();
                std::thread::sleep(PERIOD);
            }
            stop.store(true, Release);
            h.thread().unpark();
            h.join().expect("floor thread");
            if cpu == 0 {
                "floor: unpark, same CPU".into()
            } else {
                "floor: unpark, other CPU".into()
            }
        }
    }
}
