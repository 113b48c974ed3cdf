//! B1, tiny items: executions of an empty function, from 1 producer and
//! from nr_cpus producers, on `system_wq`, `system_unbound_wq`,
//! `system_dfl_wq` and a default `Workqueue::new` (and with
//! `cmwq::spawn`), against
//! the peers and two floors (a plain call loop; a single-threaded queue of
//! boxed closures). Items/s, ns/item, heap allocations per queue on the
//! producer thread.
//!
//! cmwq reuses its items, as kernel code does: each producer owns 1024
//! `Work`s and re-queues whichever is not pending. The peers allocate per
//! spawn, which the allocation column shows.

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use cmwq::{Work, Workqueue};

use super::{interleaved, ratio_str, Ctx};
use crate::alloc;
use crate::peers::{Kind, Peer};
use crate::report::{Row, Table};
use crate::util;

const TARGET: &str = ">= 2x rayon::spawn items/s; 0 allocations per queue of a reused `Work`";

/// Work items each producer owns and re-queues.
const OWNED: usize = 1024;

/// The system workqueues B1 queues reused items on.
#[derive(Clone, Copy)]
enum Wq {
    System,
    Unbound,
    Dfl,
    /// A workqueue of the benchmark's own, as `Workqueue::new` makes it.
    Default,
}

/// The default `Workqueue::new` of the `Default` rows.
fn default_wq() -> &'static Workqueue {
    static WQ: std::sync::OnceLock<Workqueue> = std::sync::OnceLock::new();
    WQ.get_or_init(|| Workqueue::new("b1_default").expect("a default workqueue"))
}

#[derive(Clone, Copy)]
enum Sys {
    /// A reused `Work` per queue on a system workqueue.
    Cmwq(Wq),
    Peer(Kind),
    FloorCall,
    FloorDeque,
}

pub fn run(ctx: &Ctx) -> Table {
    let total = ctx.pick(100_000, 1_000_000);
    let mut t = Table::new(
        "B1",
        &format!("tiny items: {total} executions of an empty function"),
        TARGET,
    );
    t.ratio_of = Some("items_per_s".into());
    let systems = [
        Sys::Cmwq(Wq::System),
        Sys::Cmwq(Wq::Unbound),
        Sys::Cmwq(Wq::Dfl),
        Sys::Cmwq(Wq::Default),
        Sys::Peer(Kind::CmwqSpawn),
        Sys::Peer(Kind::Rayon),
        Sys::Peer(Kind::Tokio),
        Sys::Peer(Kind::PoolCpus),
        Sys::FloorCall,
        Sys::FloorDeque,
    ];
    let mut producers = vec![1];
    if ctx.ncpu > 1 {
        producers.push(ctx.ncpu);
    }
    for &p in &producers {
        let group = format!("{p} producer{}", if p == 1 { "" } else { "s" });
        let rows = interleaved(ctx.reps, &systems, |s| measure(*s, p, total).group(&group));
        t.rows.extend(rows);
    }

    for &p in &producers {
        let group = format!("{p} producer{}", if p == 1 { "" } else { "s" });
        let rayon = t
            .row("rayon", Some(&group))
            .and_then(|r| r.get("items_per_s"));
        for wq in [
            "cmwq system_wq",
            "cmwq system_unbound_wq",
            "cmwq system_dfl_wq",
            "cmwq Workqueue::new",
        ] {
            let c = t.row(wq, Some(&group)).and_then(|r| r.get("items_per_s"));
            if let (Some(c), Some(r)) = (c, rayon) {
                t.check(
                    format!("{wq}, {group}: items/s >= 2x rayon::spawn"),
                    ratio_str(c / r),
                    c >= 2.0 * r,
                );
            }
        }
    }
    let worst_allocs = t
        .rows
        .iter()
        .filter(|r| r.is_cmwq() && !r.system.starts_with("cmwq::spawn"))
        .filter_map(|r| r.get("allocs_per_queue"))
        .fold(0.0, f64::max);
    t.check(
        "0 allocations per queue of a reused Work (worst cmwq row)",
        format!("{worst_allocs}"),
        worst_allocs == 0.0,
    );
    t.note(format!(
        "every item bumps one shared counter. cmwq: each producer re-queues {OWNED} reused Work items (a producer that finds all of them pending waits with Work::flush until half of them ran); completion is Workqueue::flush. Peers: a closure per item, whose counter the main thread polls for completion. Every system gets a warm-up burst of {OWNED} items per producer before the clock starts"
    ));
    t.note("1 producer on system_wq (per-CPU): the producer and the worker running its items share the producer's CPU (G14), so the figure swings with where the scheduler puts the producer. Workqueue::new makes a spreading workqueue (unbound, managed over every CPU, as system_dfl_wq), which uses every CPU from one producer");
    t.note("cmwq::spawn makes a Work per call (one allocation for the item and its closure): it is cmwq's call for one-off closures, reported beside the peers' and not held to 0 allocations");
    t.note("allocations are counted on the producer threads only, across all their queue/spawn calls, divided by the items queued");
    t.note("items_per_cpu_s: items per second of CPU time used by the whole process (getrusage) over the timed region: what each item costs whatever the number of CPUs kept busy. A per-CPU workqueue (system_wq) runs a producer's items on the producer's CPU (G14), so one producer keeps about one CPU busy where the peers spread over all of them");
    t.note(format!(
        "omitted: thread per item and the big fixed pool ({total} threads); the floors run the same loop on the same number of threads"
    ));
    t
}

/// What one run of one system gave.
struct Run {
    /// Wall time of the timed region.
    elapsed: Duration,
    /// Heap allocations (count, bytes) made by the producers.
    allocs: u64,
    bytes: u64,
    /// CPU time of the whole process over the timed region.
    cpu_ns: u64,
}

/// One measurement: the row for `sys` with `p` producers.
fn measure(sys: Sys, p: usize, total: usize) -> Row {
    let quota = total / p;
    let n = (quota * p) as f64;
    let (name, run) = match sys {
        Sys::Cmwq(which) => {
            let (wq, name) = match which {
                Wq::System => (cmwq::system_wq(), "cmwq system_wq"),
                Wq::Unbound => (cmwq::system_unbound_wq(), "cmwq system_unbound_wq"),
                Wq::Dfl => (cmwq::system_dfl_wq(), "cmwq system_dfl_wq"),
                Wq::Default => (default_wq(), "cmwq Workqueue::new"),
            };
            (name.to_owned(), cmwq_run(wq, p, quota))
        }
        Sys::Peer(kind) => {
            let peer = Peer::new(kind, total);
            let name = peer.name();
            let run = peer_run(&peer, p, quota);
            peer.shutdown();
            (name, run)
        }
        Sys::FloorCall => {
            let run = on_producers(p, |_| {
                let f: fn() = black_box(empty);
                for _ in 0..quota {
                    black_box(f)();
                }
            });
            ("floor: fn call loop".to_owned(), run)
        }
        Sys::FloorDeque => (
            "floor: VecDeque<Box<dyn FnOnce>>".to_owned(),
            on_producers(p, |_| deque_loop(quota)),
        ),
    };
    let secs = run.elapsed.as_secs_f64();
    Row::new(name)
        .num("items_per_s", n / secs)
        .num("items_per_cpu_s", n / (run.cpu_ns as f64 / 1e9))
        .num("ns_per_item", secs * 1e9 / n)
        .num("allocs_per_queue", run.allocs as f64 / n)
        .num("bytes_per_queue", run.bytes as f64 / n)
}

fn empty() {}

/// Single-threaded floor: boxed closures through a queue, 1024 at a time.
fn deque_loop(quota: usize) {
    let mut q: VecDeque<Box<dyn FnOnce() + Send>> = VecDeque::with_capacity(OWNED);
    let mut left = quota;
    while left > 0 {
        let batch = left.min(OWNED);
        for i in 0..batch {
            // Captures a word, as the peers' closures do, so it allocates.
            q.push_back(Box::new(move || {
                black_box(i);
            }));
        }
        while let Some(f) = q.pop_front() {
            f();
        }
        left -= batch;
    }
}

/// Run `body` on `p` producer threads started together; returns the
/// longest time a thread spent in `body` (timed inside the threads: the
/// floors are too fast for thread start and join to be noise), their
/// allocations, and the process's CPU time from before the threads start
/// to after they are joined.
fn on_producers(p: usize, body: impl Fn(usize) + Sync) -> Run {
    let barrier = Barrier::new(p);
    let cpu0 = util::process_cpu_ns();
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..p)
            .map(|i| {
                let (barrier, body) = (&barrier, &body);
                sc.spawn(move || {
                    barrier.wait();
                    let a = alloc::Scope::new();
                    let t0 = Instant::now();
                    body(i);
                    (t0.elapsed(), a.allocs(), a.bytes())
                })
            })
            .collect();
        let (mut longest, mut allocs, mut bytes) = (Duration::ZERO, 0, 0);
        for h in hs {
            let (e, a, b) = h.join().expect("producer");
            longest = longest.max(e);
            allocs += a;
            bytes += b;
        }
        Run {
            elapsed: longest,
            allocs,
            bytes,
            cpu_ns: util::process_cpu_ns() - cpu0,
        }
    })
}

/// cmwq: producers re-queue their own items; done when `flush` returns.
fn cmwq_run(wq: &'static Workqueue, p: usize, quota: usize) -> Run {
    // Each execution bumps one shared counter, as the peers' items do (the
    // same cache line moves between the CPUs that run items).
    let runs: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    // Items are made before the clock starts and dropped after it stops.
    let sets: Vec<Vec<Work>> = (0..p)
        .map(|_| {
            (0..OWNED)
                .map(|_| {
                    Work::new(move |_| {
                        runs.fetch_add(1, Relaxed);
                    })
                })
                .collect()
        })
        .collect();
    // Warm-up, not measured: every pool this run may use has made the
    // workers it needs (a queue on a pool without any creates one).
    for works in &sets {
        for (i, w) in works.iter().enumerate() {
            wq.queue_on(i % cmwq::nr_cpus(), w);
        }
    }
    wq.flush();
    let barrier = Barrier::new(p + 1);
    std::thread::scope(|sc| {
        let hs: Vec<_> = sets
            .iter()
            .map(|works| {
                let barrier = &barrier;
                sc.spawn(move || {
                    // This thread's own warm-up: its first wait sets up
                    // per-thread state (parking_lot's thread data, which may
                    // grow a global table as the process's threads grow), so
                    // make sure it waits once, on an item that takes a while.
                    for w in works {
                        wq.queue(w);
                    }
                    let slow = Work::new(|_| std::thread::sleep(Duration::from_millis(1)));
                    wq.queue(&slow);
                    slow.flush();
                    wq.flush();
                    barrier.wait();
                    let a = alloc::Scope::new();
                    let (mut done, mut i, mut misses) = (0, 0, 0);
                    while done < quota {
                        if wq.queue(&works[i]) {
                            done += 1;
                            misses = 0;
                        } else {
                            misses += 1;
                            if misses == OWNED {
                                // All pending: sleep until half of them ran,
                                // so a worker sharing this CPU gets it for a
                                // batch, not item by item.
                                works[(i + OWNED / 2) % OWNED].flush();
                                misses = 0;
                            }
                        }
                        i = (i + 1) % OWNED;
                    }
                    (a.allocs(), a.bytes())
                })
            })
            .collect();
        barrier.wait();
        let (t0, cpu0) = (Instant::now(), util::process_cpu_ns());
        let (allocs, bytes) = join_producers(hs);
        wq.flush();
        Run {
            elapsed: t0.elapsed(),
            allocs,
            bytes,
            cpu_ns: util::process_cpu_ns() - cpu0,
        }
    })
}

/// Join the producer threads; their allocations (count, bytes) summed.
fn join_producers(hs: Vec<std::thread::ScopedJoinHandle<'_, (u64, u64)>>) -> (u64, u64) {
    hs.into_iter()
        .map(|h| h.join().expect("producer"))
        .fold((0, 0), |(a, b), (x, y)| (a + x, b + y))
}

/// A peer: one spawn per item; done when every item bumped the counter.
fn peer_run(peer: &Peer, p: usize, quota: usize) -> Run {
    // 'static, so the closures capture a plain reference (one word).
    let done: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    // Warm-up, not measured, as for cmwq: the peer starts the threads a
    // burst of items makes it start.
    for _ in 0..OWNED * p {
        peer.spawn(move || {
            done.fetch_add(1, Relaxed);
        });
    }
    let warm = (OWNED * p) as u64;
    let ok = util::wait_count(done, warm, Duration::from_secs(60));
    assert!(ok, "{}: warm-up items lost or stuck", peer.name());
    let barrier = Barrier::new(p + 1);
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..p)
            .map(|_| {
                let barrier = &barrier;
                sc.spawn(move || {
                    barrier.wait();
                    let a = alloc::Scope::new();
                    for _ in 0..quota {
                        peer.spawn(move || {
                            done.fetch_add(1, Relaxed);
                        });
                    }
                    (a.allocs(), a.bytes())
                })
            })
            .collect();
        barrier.wait();
        let (t0, cpu0) = (Instant::now(), util::process_cpu_ns());
        let (allocs, bytes) = join_producers(hs);
        let all = util::wait_count(done, warm + (quota * p) as u64, Duration::from_secs(300));
        assert!(all, "{}: items lost or stuck", peer.name());
        Run {
            elapsed: t0.elapsed(),
            allocs,
            bytes,
            cpu_ns: util::process_cpu_ns() - cpu0,
        }
    })
}
