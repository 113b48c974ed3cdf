//! Stress of the lock-free state word and the intrusive lists behind it:
//! many threads queue, cancel, flush and disable a few items on several
//! kinds of workqueue at once. Invariants: an item never runs concurrently
//! with itself (G3), every successful queue runs exactly once unless a
//! cancel removed it (G4), and nothing deadlocks.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cmwq::{Work, Workqueue, WqFlags};
use common::*;

struct Item {
    work: Work,
    runs: Arc<AtomicUsize>,
    queued: AtomicUsize,
    cancelled: AtomicUsize,
    conc: Arc<Concurrency>,
}

/// xorshift, to stay dependency-free.
fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn g3_g4_stress_queue_cancel_flush_disable() {
    let _s = serial();
    let wqs: Arc<Vec<Workqueue>> = Arc::new(vec![
        percpu_wq("stress_bound"),
        Workqueue::builder("stress_throttled")
            .max_active(2)
            .build()
            .unwrap(),
        Workqueue::builder("stress_unbound")
            .flags(WqFlags::UNBOUND)
            .max_active(3)
            .build()
            .unwrap(),
        Workqueue::ordered("stress_ordered", WqFlags::empty()).unwrap(),
    ]);
    let items: Arc<Vec<Item>> = Arc::new(
        (0..12)
            .map(|i| {
                let runs = counter();
                let conc = Concurrency::new();
                let (r2, c2) = (runs.clone(), conc.clone());
                let work = Work::new(move |_| {
                    c2.enter();
                    r2.fetch_add(1, SeqCst);
                    match i % 3 {
                        0 => {}
                        1 => spin_for(Duration::from_micros(30)),
                        _ => cmwq::blocking(|| std::thread::sleep(Duration::from_micros(50))),
                    }
                    c2.exit();
                });
                Item {
                    work,
                    runs,
                    queued: AtomicUsize::new(0),
                    cancelled: AtomicUsize::new(0),
                    conc,
                }
            })
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let (wqs, items, stop) = (wqs.clone(), items.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (t as u64 + 1);
                let mut ops = 0u64;
                while !stop.load(Relaxed) {
                    let it = &items[(rng(&mut seed) % items.len() as u64) as usize];
                    let wq = &wqs[(rng(&mut seed) % wqs.len() as u64) as usize];
                    match rng(&mut seed) % 100 {
                        0..=59 => {
                            let cpu = (rng(&mut seed) % cmwq::nr_cpus() as u64) as usize;
                            let ok = if rng(&mut seed) % 2 == 0 {
                                wq.queue(&it.work)
                            } else {
                                wq.queue_on(cpu, &it.work)
                            };
                            if ok {
                                it.queued.fetch_add(1, SeqCst);
                            }
                        }
                        60..=74 => {
                            if it.work.cancel() {
                                it.cancelled.fetch_add(1, SeqCst);
                            }
                        }
                        75..=82 => {
                            it.work.flush();
                        }
                        83..=85 => {
                            // Other threads may queue it again at once, so
                            // nothing can be asserted about its state here.
                            if it.work.cancel_sync() {
                                it.cancelled.fetch_add(1, SeqCst);
                            }
                        }
                        86..=88 => {
                            // G10/G11: while this thread's disable holds,
                            // nobody can queue it, so on return it is
                            // neither pending nor running.
                            if it.work.disable_sync() {
                                it.cancelled.fetch_add(1, SeqCst);
                            }
                            assert!(!it.work.is_running(), "running after disable_sync");
                            assert!(!it.work.is_pending(), "pending after disable_sync");
                            it.work.enable();
                        }
                        89..=93 => {
                            if it.work.disable() {
                                it.cancelled.fetch_add(1, SeqCst);
                            }
                            std::thread::yield_now();
                            it.work.enable();
                        }
                        94..=96 => wq.flush(),
                        _ => {
                            let max = 1 + (rng(&mut seed) % 4) as u32;
                            if !wq.is_ordered() {
                                wq.set_max_active(max).unwrap();
                            }
                        }
                    }
                    ops += 1;
                }
                ops
            })
        })
        .collect();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, SeqCst);
    let ops: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    for wq in wqs.iter() {
        wq.drain();
    }
    for (i, it) in items.iter().enumerate() {
        it.work.flush();
        assert!(!it.work.is_pending() && !it.work.is_running(), "item {i}");
        assert_eq!(it.conc.max(), 1, "item {i} ran concurrently with itself");
        assert_eq!(
            it.runs.load(SeqCst),
            it.queued.load(SeqCst) - it.cancelled.load(SeqCst),
            "item {i}: runs != successful queues - successful cancels"
        );
    }
    for wq in wqs.iter() {
        assert_eq!(wq.stats().in_flight, 0, "{}", wq.name());
    }
    eprintln!("{ops} operations in {:?}", t0.elapsed());
    assert!(ops > 10_000);
}
