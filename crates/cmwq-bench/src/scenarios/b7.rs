//! B7, memory.
//!
//! * RSS per idle worker: a fresh child process makes N workers (cmwq: N
//!   items on one bound pool that all block with the hint at once, so the
//!   pool starts a worker for each; then they are released and the workers
//!   go idle), and reports the RSS growth divided by the threads added;
//!   likewise std threads (default stack, blocked), tokio's blocking
//!   threads (idle after running N blocking tasks) and a threadpool of N.
//! * Bytes per item: cmwq's `Work` (its size, and what `Work::new` asks the
//!   allocator for) against what each peer allocates per spawn, measured
//!   on the spawning thread.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

use cmwq::{Work, Workqueue, WqFlags};

use super::{child_rows, Ctx};
use crate::alloc;
use crate::child::emit_row;
use crate::peers::{self, Kind, Peer};
use crate::report::{median_row, Row, Table};
use crate::util::{self, Gate};

const TARGET: &str = "report; a `Work` under 128 bytes";

const SYSTEMS: &[&str] = &["cmwq", "std", "tokio", "pool"];

pub fn run(ctx: &Ctx) -> Table {
    let n = ctx.pick(32, 128);
    let mut t = Table::new(
        "B7",
        &format!("memory: RSS per idle worker ({n} workers), bytes per item"),
        TARGET,
    );
    t.ratio_of = Some("rss_kib_per_thread,bytes_per_item".into());
    let ns = n.to_string();
    let group = format!("{n} idle threads");
    for sys in SYSTEMS {
        let mut reps = Vec::new();
        for _ in 0..ctx.reps {
            if let Some(out) = child_rows(&mut t, &["b7", sys, &ns], &[], Duration::from_secs(60)) {
                reps.extend(out.rows);
            }
        }
        if !reps.is_empty() {
            t.rows.push(median_row(&reps).group(&group));
        }
    }
    t.rows.extend(bytes_per_item());

    let size = cmwq::__bench::work_size() as f64;
    t.check(
        "a Work under 128 bytes (__bench::work_size)",
        format!("{size} bytes"),
        size < 128.0,
    );
    if let Some(b) = t
        .row("cmwq Work::new", None)
        .and_then(|r| r.get("bytes_per_item"))
    {
        t.check(
            "a Work under 128 bytes (allocated by Work::new(|_| {}))",
            format!("{b} bytes"),
            b < 128.0,
        );
    }
    t.note("RSS per thread = (RSS after - RSS before) / threads added, in a fresh process per system; cmwq's workers include whatever the detection mode maps per worker (perf: a ring buffer)");
    t.note("bytes per item: allocations made on the spawning thread per spawn, averaged over 1000 spawns (peers may allocate more on their worker threads)");
    t
}

/// Bytes (and allocations) per item, measured on this thread.
fn bytes_per_item() -> Vec<Row> {
    const K: usize = 1000;
    let g = "bytes per item";
    let mut rows = vec![Row::new("cmwq Work (__bench::work_size)")
        .group(g)
        .num("bytes_per_item", cmwq::__bench::work_size() as f64)];

    // One value made on this thread: its allocations, as a row. Counts are
    // read before the row is built (building it allocates).
    fn one<T>(name: &str, g: &str, make: impl FnOnce() -> T) -> Row {
        let a = alloc::Scope::new();
        let v = black_box(make());
        let (bytes, allocs) = (a.bytes(), a.allocs());
        drop(v);
        Row::new(name)
            .group(g)
            .num("bytes_per_item", bytes as f64)
            .num("allocs_per_item", allocs as f64)
    }
    let word = black_box(7usize);
    rows.push(one("cmwq Work::new(|_| {})", g, || Work::new(|_| {})));
    // The same function with one captured word, as the peers' closures.
    rows.push(one("cmwq Work (one captured word)", g, || {
        Work::new(move |_| {
            black_box(word);
        })
    }));
    rows.push(one("Box<dyn FnOnce> (one captured word)", g, || {
        let b: Box<dyn FnOnce() + Send> = Box::new(move || {
            black_box(word);
        });
        b
    }));

    for kind in [Kind::Rayon, Kind::Tokio, Kind::PoolCpus] {
        let peer = Peer::new(kind, 1);
        let done: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
        let a = alloc::Scope::new();
        for _ in 0..K {
            peer.spawn(move || {
                done.fetch_add(1, Relaxed);
            });
        }
        let (bytes, allocs) = (a.bytes(), a.allocs());
        util::wait_count(done, K as u64, Duration::from_secs(30));
        rows.push(
            Row::new(format!("{} (closure of one word)", peer.name()))
                .group(g)
                .num("bytes_per_item", bytes as f64 / K as f64)
                .num("allocs_per_item", allocs as f64 / K as f64),
        );
        peer.shutdown();
    }
    rows
}

/// Child: make `n` idle threads of one system and report RSS per thread.
pub fn child(args: &[String]) -> Result<(), String> {
    let sys = args.first().ok_or("b7: which system?")?.as_str();
    let n: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .ok_or("b7: how many?")?;
    let gate = Arc::new(Gate::default());
    let entered: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    let settle = || std::thread::sleep(Duration::from_millis(100));
    let timeout = Duration::from_secs(30);

    let (name, rss0, th0, rss1, th1) = match sys {
        "cmwq" => {
            let wq = Workqueue::builder("b7")
                .flags(WqFlags::PERCPU)
                .build()
                .map_err(|e| e.to_string())?;
            let mode = cmwq::detection();
            let works: Vec<Work> = (0..n)
                .map(|_| {
                    let g = gate.clone();
                    Work::new(move |_| {
                        entered.fetch_add(1, Release);
                        cmwq::blocking(|| g.wait());
                    })
                })
                .collect();
            settle();
            let (rss0, th0) = (util::rss_kib(), count(peers::CMWQ_THREADS));
            for w in &works {
                wq.queue_on(0, w);
            }
            if !util::wait_count(entered, n as u64, timeout) {
                return Err(format!(
                    "b7: only {} of {n} items started",
                    entered.load(Acquire)
                ));
            }
            gate.open();
            wq.flush();
            settle();
            (
                format!("cmwq idle worker ({})", mode.name()),
                rss0,
                th0,
                util::rss_kib(),
                count(peers::CMWQ_THREADS),
            )
        }
        "std" => {
            settle();
            let (rss0, th0) = (util::rss_kib(), count(peers::ITEM_THREADS));
            let hs: Vec<_> = (0..n)
                .map(|_| {
                    let g = gate.clone();
                    std::thread::Builder::new()
                        .name(peers::ITEM_THREADS.into())
                        .spawn(move || {
                            entered.fetch_add(1, Release);
                            g.wait();
                        })
                        .expect("spawn")
                })
                .collect();
            util::wait_count(entered, n as u64, timeout);
            settle();
            let r = (util::rss_kib(), count(peers::ITEM_THREADS));
            gate.open();
            for h in hs {
                let _ = h.join();
            }
            (
                "std::thread (default stack, blocked)".to_owned(),
                rss0,
                th0,
                r.0,
                r.1,
            )
        }
        "tokio" | "pool" => {
            let tokio = sys == "tokio";
            // tokio's runtime workers are not what is measured: start the
            // runtime first. A threadpool starts its threads at once:
            // measure before it.
            let rt = tokio.then(|| Peer::new(Kind::Tokio, n));
            let prefix = if tokio {
                peers::TOKIO_THREADS
            } else {
                peers::POOL_THREADS
            };
            settle();
            let (rss0, th0) = (util::rss_kib(), count(prefix));
            let peer = rt.unwrap_or_else(|| Peer::new(Kind::PoolBig, n));
            let done: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
            for _ in 0..n {
                let g = gate.clone();
                peer.spawn(move || {
                    entered.fetch_add(1, Release);
                    g.wait();
                    done.fetch_add(1, Release);
                });
            }
            util::wait_count(entered, n as u64, timeout);
            gate.open();
            util::wait_count(done, n as u64, timeout);
            settle();
            let (rss1, th1) = (util::rss_kib(), count(prefix));
            let name = if tokio {
                "tokio blocking thread (idle)".to_owned()
            } else {
                format!("{} (idle)", peer.name())
            };
            peer.shutdown();
            (name, rss0, th0, rss1, th1)
        }
        other => return Err(format!("b7: unknown system {other}")),
    };
    let added = th1.saturating_sub(th0).max(1);
    emit_row(
        &Row::new(name)
            .num(
                "rss_kib_per_thread",
                rss1.saturating_sub(rss0) as f64 / added as f64,
            )
            .num("threads_added", added as f64)
            .num("rss_delta_kib", rss1 as f64 - rss0 as f64),
    );
    Ok(())
}

fn count(prefix: &str) -> usize {
    util::count_threads(|n| n.starts_with(prefix))
}
