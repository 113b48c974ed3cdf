//! B6, timers.
//!
//! * Re-arming (debounce): `mod_delayed` over and over on 10k armed items,
//!   against tokio's `Sleep::reset` on 10k registered `Sleep`s in a
//!   current-thread runtime; the floor is reading the clock and storing a
//!   deadline. ns per operation.
//! * Firing: items whose deadlines are spread uniformly over a span; the
//!   lateness of the item's start against its deadline, against tokio
//!   sleeps firing the same way, and against the floor: one thread
//!   sleeping until each deadline in turn.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use cmwq::Work;

use super::{interleaved, ratio_str, Ctx};
use crate::alloc;
use crate::report::{Row, Table};
use crate::util::{self, now_ns, Latch};

const TARGET: &str = "ns/op <= tokio's `Sleep::reset`; lateness p99 <= 2 ms";

/// Items (or `Sleep`s) re-armed in turn.
const ARMED: usize = 10_000;
/// A delay that never expires during the run.
const FAR: Duration = Duration::from_secs(600);

#[derive(Clone, Copy)]
enum Rearm {
    Cmwq,
    Tokio,
    Floor,
}

#[derive(Clone, Copy)]
enum Fire {
    Cmwq,
    Tokio,
    Floor,
}

pub fn run(ctx: &Ctx) -> Table {
    let ops = ctx.pick(100_000, 1_000_000);
    let (n, span) = ctx.pick(
        (2_000, Duration::from_millis(200)),
        (10_000, Duration::from_secs(1)),
    );
    let mut t = Table::new(
        "B6",
        &format!(
            "timers: {ops} re-arms on {ARMED} items; {n} items firing over {} ms",
            span.as_millis()
        ),
        TARGET,
    );
    t.ratio_of = Some("ns_per_op,late_p50_us".into());
    let g1 = format!("re-arm x{ops}");
    let rows = interleaved(ctx.reps, &[Rearm::Cmwq, Rearm::Tokio, Rearm::Floor], |s| {
        rearm(*s, ops).group(&g1)
    });
    t.rows.extend(rows);
    let g2 = format!("fire {n} over {} ms", span.as_millis());
    let rows = interleaved(ctx.reps, &[Fire::Cmwq, Fire::Tokio, Fire::Floor], |s| {
        fire(*s, n, span).group(&g2)
    });
    t.rows.extend(rows);

    let get = |p: &str, g: &str, k: &str| t.row(p, Some(g)).and_then(|r| r.get(k));
    let rearm_ns = (
        get("cmwq", &g1, "ns_per_op"),
        get("tokio", &g1, "ns_per_op"),
    );
    let late_p99 = get("cmwq", &g2, "late_p99_us");
    if let (Some(c), Some(k)) = rearm_ns {
        t.check(
            "mod_delayed ns/op <= tokio Sleep::reset",
            format!("{c:.0} ns vs {k:.0} ns = {}", ratio_str(c / k)),
            c <= k,
        );
    }
    if let Some(p99) = late_p99 {
        t.check(
            "firing lateness p99 <= 2 ms",
            format!("{p99:.0} us"),
            p99 <= 2000.0,
        );
    }
    t.note("re-arm: every item is armed first (not timed), then re-armed in turn with a 600 s delay, so none fires; allocs_per_op counted on the calling thread");
    t.note("cmwq: mod_delayed on system_wq; tokio: Sleep::reset(Instant::now() + 600 s) on pinned, polled-once Sleeps in a current-thread runtime with time enabled");
    t.note("fire: cmwq items are armed with queue_delayed on system_wq; tokio tasks sleep_until their deadline on a current-thread runtime (tokio's wheel has 1 ms resolution); lateness = first line of the item - deadline");
    t.note("peers without timers (rayon, threadpool, spawn_blocking, threads) omitted");
    t
}

/// ns per re-arm.
fn rearm(sys: Rearm, ops: usize) -> Row {
    match sys {
        Rearm::Cmwq => {
            let wq = cmwq::system_wq();
            let works: Vec<Work> = (0..ARMED).map(|_| Work::new(|_| {})).collect();
            for w in &works {
                wq.mod_delayed(w, FAR);
            }
            let a = alloc::Scope::new();
            let t0 = Instant::now();
            for i in 0..ops {
                wq.mod_delayed(&works[i % ARMED], FAR);
            }
            let e = t0.elapsed();
            let allocs = a.allocs();
            for w in &works {
                w.cancel();
            }
            Row::new("cmwq mod_delayed")
                .num("ns_per_op", e.as_nanos() as f64 / ops as f64)
                .num("allocs_per_op", allocs as f64 / ops as f64)
        }
        Rearm::Tokio => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("tokio runtime");
            let (e, allocs) = rt.block_on(async {
                let mut sleeps: Vec<Pin<Box<tokio::time::Sleep>>> = (0..ARMED)
                    .map(|_| Box::pin(tokio::time::sleep(FAR)))
                    .collect();
                // Poll each once so it is registered with the timer.
                std::future::poll_fn(|cx| {
                    for s in sleeps.iter_mut() {
                        let _ = s.as_mut().poll(cx);
                    }
                    Poll::Ready(())
                })
                .await;
                let a = alloc::Scope::new();
                let t0 = Instant::now();
                for i in 0..ops {
                    let dl = tokio::time::Instant::now() + FAR;
                    sleeps[i % ARMED].as_mut().reset(dl);
                }
                (t0.elapsed(), a.allocs())
            });
            Row::new("tokio Sleep::reset")
                .num("ns_per_op", e.as_nanos() as f64 / ops as f64)
                .num("allocs_per_op", allocs as f64 / ops as f64)
        }
        Rearm::Floor => {
            let mut deadlines = vec![Instant::now(); ARMED];
            let t0 = Instant::now();
            for i in 0..ops {
                deadlines[i % ARMED] = Instant::now() + FAR;
                std::hint::black_box(&deadlines);
            }
            let e = t0.elapsed();
            Row::new("floor: clock read + store")
                .num("ns_per_op", e.as_nanos() as f64 / ops as f64)
                .num("allocs_per_op", 0.0)
        }
    }
}

/// Lateness of `n` items firing uniformly over `span`.
fn fire(sys: Fire, n: usize, span: Duration) -> Row {
    let delay = |i: usize| span.mul_f64(i as f64 / n as f64);
    let late_ns: Vec<u64> = match sys {
        Fire::Cmwq => {
            let wq = cmwq::system_wq();
            let deadline: Arc<Vec<AtomicU64>> =
                Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
            let late: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
            let latch = Arc::new(Latch::new(n));
            let works: Vec<Work> = (0..n)
                .map(|i| {
                    let (d, l, latch) = (deadline.clone(), late.clone(), latch.clone());
                    Work::new(move |_| {
                        l[i].store(now_ns().saturating_sub(d[i].load(Acquire)), Release);
                        latch.count_down();
                    })
                })
                .collect();
            for (i, w) in works.iter().enumerate() {
                let d = delay(i);
                deadline[i].store(now_ns() + d.as_nanos() as u64, Release);
                wq.queue_delayed(w, d);
            }
            latch.wait();
            late.iter().map(|a| a.load(Acquire)).collect()
        }
        Fire::Tokio => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("tokio runtime");
            rt.block_on(async {
                let handles: Vec<_> = (0..n)
                    .map(|i| {
                        let d = delay(i);
                        let dl = tokio::time::Instant::now() + d;
                        let dl_ns = now_ns() + d.as_nanos() as u64;
                        tokio::spawn(async move {
                            tokio::time::sleep_until(dl).await;
                            now_ns().saturating_sub(dl_ns)
                        })
                    })
                    .collect();
                let mut v = Vec::with_capacity(n);
                for h in handles {
                    v.push(h.await.expect("tokio task"));
                }
                v
            })
        }
        Fire::Floor => {
            let base = now_ns();
            (0..n)
                .map(|i| {
                    let dl = base + delay(i).as_nanos() as u64;
                    let now = now_ns();
                    if dl > now {
                        std::thread::sleep(Duration::from_nanos(dl - now));
                    }
                    now_ns().saturating_sub(dl)
                })
                .collect()
        }
    };
    let us: Vec<f64> = late_ns.iter().map(|&v| v as f64 / 1000.0).collect();
    let name = match sys {
        Fire::Cmwq => "cmwq queue_delayed",
        Fire::Tokio => "tokio sleep_until",
        Fire::Floor => "floor: thread::sleep to each deadline",
    };
    Row::new(name)
        .num("late_p50_us", util::percentile(&us, 50.0))
        .num("late_p99_us", util::percentile(&us, 99.0))
        .num("late_max_us", util::max(&us))
}
