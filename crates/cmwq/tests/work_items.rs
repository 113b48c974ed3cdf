//! Work item guarantees: G1-G6, G9-G11.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cmwq::{Work, Workqueue, WqFlags};
use common::*;

fn setup() {
    setup_log();
}

/// An ordered workqueue whose single slot is held by a blocker until the
/// returned gate opens, so items queued behind it stay pending.
fn blocked_ordered(name: &str) -> (Workqueue, Arc<Gate>, Work) {
    let wq = Workqueue::ordered(name, WqFlags::empty()).unwrap();
    let gate = Gate::new();
    let started = Arc::new(AtomicBool::new(false));
    let (g, s) = (gate.clone(), started.clone());
    let blocker = Work::named("blocker", move |_| {
        s.store(true, SeqCst);
        g.wait();
    });
    assert!(wq.queue(&blocker));
    assert!(wait_until(Duration::from_secs(5), || started.load(SeqCst)));
    (wq, gate, blocker)
}

#[test]
fn g1_queue_true_only_on_transition_to_pending() {
    setup();
    let (wq, gate, _b) = blocked_ordered("g1_dedup");
    let c = counter();
    let w = counting_work(&c);
    assert!(!w.is_pending());
    assert!(wq.queue(&w), "idle -> pending");
    assert!(w.is_pending());
    for _ in 0..10 {
        assert!(!wq.queue(&w), "already pending");
        assert!(
            !cmwq::system_wq().queue(&w),
            "pending: other workqueues too"
        );
    }
    gate.open();
    wq.flush();
    assert_eq!(c.load(SeqCst), 1, "one execution for one successful queue");
    assert!(!w.is_pending());
    assert!(wq.queue(&w));
    wq.flush();
    assert_eq!(c.load(SeqCst), 2);
}

#[test]
fn g1_concurrent_queues_of_a_pending_item_succeed_once() {
    setup();
    let (wq, gate, _b) = blocked_ordered("g1_race");
    let wq = Arc::new(wq);
    let c = counter();
    let w = counting_work(&c);
    let wins = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (wq, w, wins) = (wq.clone(), w.clone(), wins.clone());
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    if wq.queue(&w) {
                        wins.fetch_add(1, SeqCst);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(wins.load(SeqCst), 1);
    gate.open();
    wq.flush();
    assert_eq!(c.load(SeqCst), 1);
}

#[test]
fn g2_requeue_from_own_function_runs_exactly_once_more() {
    setup();
    let wq = Arc::new(Workqueue::new("g2_self").unwrap());
    let c = counter();
    let (wq2, c2) = (wq.clone(), c.clone());
    let requeued = Arc::new(AtomicBool::new(false));
    let r2 = requeued.clone();
    let w = Work::new(move |w| {
        if c2.fetch_add(1, SeqCst) == 0 {
            r2.store(wq2.queue(w), SeqCst);
            // A second attempt while the requeue is pending changes nothing.
            assert!(!wq2.queue(w));
        }
    });
    assert!(wq.queue(&w));
    assert!(wait_until(Duration::from_secs(5), || c.load(SeqCst) == 2));
    wq.flush();
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        requeued.load(SeqCst),
        "queue from own function returns true"
    );
    assert_eq!(c.load(SeqCst), 2);
}

#[test]
fn g2_requeue_while_running_from_another_thread() {
    setup();
    let _s = serial();
    let wq = Workqueue::new("g2_other").unwrap();
    let c = Concurrency::new();
    let gate = Gate::new();
    let first = Arc::new(AtomicBool::new(true));
    let (c2, g2, f2) = (c.clone(), gate.clone(), first.clone());
    let w = Work::new(move |_| {
        c2.enter();
        if f2.swap(false, SeqCst) {
            cmwq::blocking(|| g2.wait());
        }
        c2.exit();
    });
    assert!(wq.queue(&w));
    assert!(wait_until(Duration::from_secs(5), || w.is_running()));
    assert!(wq.queue(&w), "queue while running returns true");
    assert!(!wq.queue(&w));
    // Queue it on other workqueues and CPUs too: still one pending instance.
    assert!(!cmwq::system_unbound_wq().queue(&w));
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(c.total(), 1, "the requeue waits for the running execution");
    gate.open();
    assert!(wait_until(Duration::from_secs(5), || c.total() == 2));
    wq.flush();
    assert_eq!(c.total(), 2);
    assert_eq!(c.max(), 1, "never concurrent with itself");
}

#[test]
fn g2_stores_before_queue_are_visible_to_the_execution() {
    setup();
    let wq = Workqueue::builder("g2_visibility")
        .flags(WqFlags::UNBOUND)
        .build()
        .unwrap();
    let data = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(AtomicU64::new(0));
    let (d2, s2) = (data.clone(), seen.clone());
    let w = Work::new(move |_| {
        // Relaxed: only the queue -> execution ordering makes it fresh.
        s2.store(d2.load(Relaxed), Relaxed);
    });
    for i in 1..=3000u64 {
        data.store(i, Relaxed);
        assert!(wq.queue(&w));
        w.flush(); // false if it already ran: idle is also "finished"
        assert_eq!(seen.load(Relaxed), i, "the execution saw a stale value");
    }
}

#[test]
fn g3_never_reentrant_across_workqueues() {
    setup();
    let _s = serial();
    let bound = Arc::new(percpu_wq("g3_bound"));
    let unbound = Arc::new(
        Workqueue::builder("g3_unbound")
            .flags(WqFlags::UNBOUND)
            .build()
            .unwrap(),
    );
    let conc = Concurrency::new();
    // FnMut state mutated without synchronisation: sound only because the
    // function never runs concurrently with itself.
    let mut log: Vec<u64> = Vec::new();
    let c2 = conc.clone();
    let runs = Arc::new(AtomicUsize::new(0));
    let r2 = runs.clone();
    let w = Work::new(move |_| {
        c2.enter();
        log.push(log.len() as u64);
        assert_eq!(log.last().copied(), Some(log.len() as u64 - 1));
        spin_for(Duration::from_micros(50));
        r2.fetch_add(1, SeqCst);
        c2.exit();
    });
    let queued = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (b, u, w, q) = (bound.clone(), unbound.clone(), w.clone(), queued.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_millis(400);
                let mut i = 0usize;
                while Instant::now() < deadline {
                    let ok = match (t + i) % 4 {
                        0 => b.queue(&w),
                        1 => u.queue(&w),
                        2 => cmwq::system_wq().queue_on(i % cmwq::nr_cpus(), &w),
                        _ => cmwq::system_highpri_wq().queue(&w),
                    };
                    if ok {
                        q.fetch_add(1, SeqCst);
                    }
                    i += 1;
                    std::thread::yield_now();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    bound.flush();
    unbound.flush();
    cmwq::system_wq().flush();
    cmwq::system_highpri_wq().flush();
    w.flush();
    assert_eq!(conc.max(), 1, "ran concurrently with itself");
    assert!(queued.load(SeqCst) > 10);
    // G4: every successful queue ran exactly once.
    assert_eq!(runs.load(SeqCst), queued.load(SeqCst));
}

#[test]
fn g4_every_successful_queue_runs_exactly_once() {
    setup();
    let _s = serial();
    let wqs: Vec<Arc<Workqueue>> = vec![
        Arc::new(Workqueue::builder("g4_a").max_active(2).build().unwrap()),
        Arc::new(
            Workqueue::builder("g4_b")
                .flags(WqFlags::UNBOUND)
                .max_active(3)
                .build()
                .unwrap(),
        ),
        Arc::new(Workqueue::ordered("g4_c", WqFlags::empty()).unwrap()),
    ];
    let items: Vec<(Work, Arc<AtomicUsize>)> = (0..64)
        .map(|i| {
            let c = counter();
            let c2 = c.clone();
            let w = Work::new(move |_| {
                c2.fetch_add(1, SeqCst);
                if i % 7 == 0 {
                    cmwq::blocking(|| std::thread::sleep(Duration::from_micros(200)));
                }
                if i % 13 == 0 {
                    panic!("g4 test panic {i}");
                }
            });
            (w, c)
        })
        .collect();
    let items = Arc::new(items);
    let ok: Vec<Arc<AtomicUsize>> = (0..64).map(|_| counter()).collect();
    let ok = Arc::new(ok);
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let (wqs, items, ok) = (wqs.clone(), items.clone(), ok.clone());
            std::thread::spawn(move || {
                for r in 0..2000usize {
                    let i = (r * 7 + t * 13) % 64;
                    if wqs[(r + t) % 3].queue(&items[i].0) {
                        ok[i].fetch_add(1, SeqCst);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for wq in &wqs {
        wq.drain();
    }
    for (i, (w, c)) in items.iter().enumerate() {
        w.flush();
        assert_eq!(c.load(SeqCst), ok[i].load(SeqCst), "item {i}");
    }
}

#[test]
fn g5_panic_is_contained_counted_and_reported() {
    setup();
    let wq = Workqueue::new("g5_panics").unwrap();
    let runs = counter();
    let r2 = runs.clone();
    let w = Work::named("g5_panicker", move |_| {
        if r2.fetch_add(1, SeqCst) == 0 {
            panic!("g5 boom");
        }
    });
    let before = events_matching("g5 boom");
    assert!(wq.queue(&w));
    assert!(w.flush(), "flushers are released");
    assert!(!w.is_pending() && !w.is_running(), "the item is idle again");
    // The pool survives: other items and the same item run.
    let c = counter();
    let others: Vec<Work> = (0..16).map(|_| counting_work(&c)).collect();
    for o in &others {
        assert!(wq.queue(o));
    }
    assert!(wq.queue(&w), "can be queued again");
    wq.flush();
    assert_eq!(c.load(SeqCst), 16);
    assert_eq!(runs.load(SeqCst), 2);
    assert_eq!(wq.stats().panics, 1);
    assert_eq!(events_matching("g5 boom"), before + 1);
    assert!(events_matching("g5_panicker") >= 1, "report names the item");
}

#[test]
fn g6_flush_waits_for_the_pending_or_running_execution() {
    setup();
    let wq = Workqueue::new("g6_flush").unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let d2 = done.clone();
    let w = Work::new(move |_| {
        cmwq::blocking(|| std::thread::sleep(Duration::from_millis(50)));
        d2.store(true, SeqCst);
    });
    assert!(!w.flush(), "idle: nothing to wait for");
    assert!(wq.queue(&w));
    assert!(w.flush(), "waited");
    assert!(done.load(SeqCst), "the execution had finished");
    let s = wq.stats();
    assert_eq!((s.total, s.in_flight), (1, 0), "its bookkeeping too");
    done.store(false, SeqCst);
    assert!(wq.queue(&w));
    assert!(wait_until(Duration::from_secs(5), || w.is_running()));
    assert!(w.flush());
    assert!(done.load(SeqCst));
}

#[test]
fn g6_flush_of_a_self_requeueing_item_returns() {
    setup();
    let wq = Arc::new(Workqueue::new("g6_forever").unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let runs = counter();
    let (wq2, s2, r2) = (wq.clone(), stop.clone(), runs.clone());
    let w = Work::new(move |w| {
        r2.fetch_add(1, SeqCst);
        cmwq::blocking(|| std::thread::sleep(Duration::from_millis(1)));
        if !s2.load(SeqCst) {
            wq2.queue(w);
        }
    });
    assert!(wq.queue(&w));
    assert!(wait_until(Duration::from_secs(5), || runs.load(SeqCst) >= 3));
    let t = Instant::now();
    assert!(w.flush());
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "flush waited for later executions"
    );
    stop.store(true, SeqCst);
    w.cancel_sync();
}

#[test]
fn g6_flush_from_own_function_does_not_wait_for_itself() {
    setup();
    let wq = Arc::new(Workqueue::new("g6_own").unwrap());
    let res = Arc::new(Mutex::new(None));
    let (r2, wq2) = (res.clone(), wq.clone());
    let first = Arc::new(AtomicBool::new(true));
    let w = Work::new(move |w| {
        if first.swap(false, SeqCst) {
            wq2.queue(w); // pending requeue: cannot run before we return
            *r2.lock().unwrap() = Some(w.flush());
        }
    });
    assert!(wq.queue(&w));
    assert!(wait_until(Duration::from_secs(5), || res
        .lock()
        .unwrap()
        .is_some()));
    assert_eq!(*res.lock().unwrap(), Some(false));
    wq.flush();
}

#[test]
fn g9_cancel_removes_a_pending_item() {
    setup();
    let (wq, gate, _b) = blocked_ordered("g9_cancel");
    let c = counter();
    let w = counting_work(&c);
    assert!(!w.cancel(), "not pending");
    assert!(wq.queue(&w));
    assert!(w.cancel(), "pending -> cancelled");
    assert!(!w.is_pending());
    assert!(!w.cancel());
    assert!(wq.queue(&w), "can be queued again after a cancel");
    assert!(w.cancel());
    gate.open();
    wq.flush();
    assert_eq!(c.load(SeqCst), 0, "a cancelled item does not run");
    assert_eq!(wq.stats().in_flight, 0, "accounting released");
}

#[test]
fn g9_cancel_removes_a_throttled_item_and_keeps_fifo() {
    setup();
    let _s = serial();
    let wq = Workqueue::builder("g9_throttled")
        .max_active(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let g2 = gate.clone();
    let blocker = Work::new(move |_| cmwq::blocking(|| g2.wait()));
    let order = Arc::new(Mutex::new(Vec::new()));
    let items: Vec<Work> = (0..5)
        .map(|i| {
            let o = order.clone();
            Work::new(move |_| o.lock().unwrap().push(i))
        })
        .collect();
    assert!(wq.queue_on(0, &blocker));
    assert!(wait_until(Duration::from_secs(5), || blocker.is_running()));
    for w in &items {
        assert!(wq.queue_on(0, w));
    }
    assert!(wq.is_congested(0));
    assert!(items[2].cancel());
    assert!(items[0].cancel());
    gate.open();
    wq.flush();
    assert_eq!(*order.lock().unwrap(), vec![1, 3, 4]);
}

#[test]
fn g9_cancel_does_not_wait_for_a_running_execution() {
    setup();
    let wq = Workqueue::new("g9_running").unwrap();
    let gate = Gate::new();
    let g2 = gate.clone();
    let w = Work::new(move |_| cmwq::blocking(|| g2.wait()));
    assert!(wq.queue(&w));
    assert!(wait_until(Duration::from_secs(5), || w.is_running()));
    let t = Instant::now();
    assert!(!w.cancel(), "running, not pending");
    assert!(t.elapsed() < Duration::from_millis(500));
    assert!(w.is_running());
    gate.open();
    wq.flush();
}

#[test]
fn g10_cancel_sync_waits_for_the_running_execution() {
    setup();
    let wq = Workqueue::new("g10_wait").unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let d2 = done.clone();
    let w = Work::new(move |_| {
        cmwq::blocking(|| std::thread::sleep(Duration::from_millis(60)));
        d2.store(true, SeqCst);
    });
    assert!(wq.queue(&w));
    assert!(wait_until(Duration::from_secs(5), || w.is_running()));
    assert!(wq.queue(&w), "requeue while running");
    assert!(w.cancel_sync(), "the pending requeue was cancelled");
    assert!(done.load(SeqCst), "returned only after the execution ended");
    assert!(!w.is_pending() && !w.is_running());
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(wq.stats().total, 1, "the requeue never ran");
}

#[test]
fn g10_queue_attempts_during_cancel_sync_fail() {
    setup();
    let wq = Arc::new(Workqueue::new("g10_refuse").unwrap());
    let gate = Gate::new();
    let g2 = gate.clone();
    let w = Work::new(move |_| cmwq::blocking(|| g2.wait()));
    assert!(wq.queue(&w));
    assert!(wait_until(Duration::from_secs(5), || w.is_running()));
    let w2 = w.clone();
    let canceller = std::thread::spawn(move || w2.cancel_sync());
    std::thread::sleep(Duration::from_millis(30));
    assert!(!wq.queue(&w), "refused while cancel_sync waits");
    assert!(!w.is_pending());
    gate.open();
    assert!(!canceller.join().unwrap());
    assert!(wq.queue(&w), "queueable again afterwards");
    wq.flush();
}

#[test]
fn g10_concurrent_cancel_sync_is_safe() {
    setup();
    let _s = serial();
    let wq = Arc::new(
        Workqueue::builder("g10_concurrent")
            .flags(WqFlags::UNBOUND)
            .build()
            .unwrap(),
    );
    let conc = Concurrency::new();
    let c2 = conc.clone();
    let w = Work::new(move |_| {
        c2.enter();
        spin_for(Duration::from_micros(100));
        c2.exit();
    });
    let stop = Arc::new(AtomicBool::new(false));
    let q = {
        let (wq, w, stop) = (wq.clone(), w.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(SeqCst) {
                wq.queue(&w);
                std::thread::yield_now();
            }
        })
    };
    let cancellers: Vec<_> = (0..3)
        .map(|_| {
            let w = w.clone();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    w.cancel_sync();
                    std::thread::sleep(Duration::from_micros(300));
                }
            })
        })
        .collect();
    for c in cancellers {
        c.join().unwrap();
    }
    stop.store(true, SeqCst);
    q.join().unwrap();
    w.cancel_sync();
    assert!(!w.is_pending() && !w.is_running());
    assert!(conc.total() > 0, "the item ran between cancels");
    assert_eq!(conc.max(), 1);
}

#[test]
fn g10_cancel_sync_from_own_function_cancels_the_requeue() {
    setup();
    let wq = Arc::new(Workqueue::new("g10_own").unwrap());
    let runs = counter();
    let res = Arc::new(Mutex::new(None));
    let (wq2, r2, res2) = (wq.clone(), runs.clone(), res.clone());
    let w = Work::new(move |w| {
        r2.fetch_add(1, SeqCst);
        assert!(wq2.queue(w));
        *res2.lock().unwrap() = Some(w.cancel_sync());
    });
    assert!(wq.queue(&w));
    wq.flush();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(*res.lock().unwrap(), Some(true));
    assert_eq!(runs.load(SeqCst), 1);
    assert!(wq.queue(&w), "enabled again after cancel_sync");
    wq.flush();
}

#[test]
fn g11_disable_counts_and_enable_reports_zero() {
    setup();
    let wq = Workqueue::new("g11_count").unwrap();
    let c = counter();
    let w = counting_work(&c);
    assert!(!w.disable(), "was not pending");
    assert!(!wq.queue(&w));
    assert!(!w.disable());
    assert!(!w.enable(), "count 2 -> 1");
    assert!(!wq.queue(&w), "still disabled");
    assert!(w.enable(), "count 1 -> 0");
    assert!(wq.queue(&w));
    wq.flush();
    assert_eq!(c.load(SeqCst), 1);
}

#[test]
fn g11_disable_cancels_a_pending_item() {
    setup();
    let (wq, gate, _b) = blocked_ordered("g11_pending");
    let c = counter();
    let w = counting_work(&c);
    assert!(wq.queue(&w));
    assert!(w.disable(), "was pending");
    assert!(!w.is_pending());
    gate.open();
    wq.flush();
    assert_eq!(c.load(SeqCst), 0);
    assert!(w.enable());
}

#[test]
fn g11_disable_sync_waits_and_unbalanced_enable_is_reported() {
    setup();
    let wq = Workqueue::new("g11_sync").unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let d2 = done.clone();
    let w = Work::named("g11_item", move |_| {
        cmwq::blocking(|| std::thread::sleep(Duration::from_millis(40)));
        d2.store(true, SeqCst);
    });
    assert!(wq.queue(&w));
    assert!(wait_until(Duration::from_secs(5), || w.is_running()));
    assert!(!w.disable_sync());
    assert!(done.load(SeqCst));
    assert!(w.enable());
    let before = events_matching("g11_item");
    assert!(!w.enable(), "not disabled");
    assert_eq!(events_matching("g11_item"), before + 1);
}

/// 10^4 panicking items do not write 10^4 reports: a burst, then the rest
/// are counted (and announced as suppressed when the next interval
/// begins); the stats still count every panic.
#[test]
fn g5_panic_reports_are_rate_limited() {
    setup();
    let _s = common::serial();
    let wq = cmwq::Workqueue::new("g5_ratelimit").unwrap();
    let before = common::events_matching("g5_ratelimit");
    let (s0, _) = cmwq::__bench::reports_suppressed();
    let w = cmwq::Work::new(|_| panic!("g5_ratelimit boom"));
    for _ in 0..10_000 {
        wq.queue(&w);
        w.flush();
    }
    wq.flush();
    let reported = common::events_matching("g5_ratelimit") - before;
    let (s1, _) = cmwq::__bench::reports_suppressed();
    assert_eq!(wq.stats().panics, 10_000);
    assert!(
        reported <= 2 * cmwq::event::RATELIMIT_BURST as usize,
        "{reported} reports for 10^4 panics"
    );
    // (Other tests' panics share the limit and may be counted meanwhile,
    // or have used this interval's burst already: hence >=, and no lower
    // bound on `reported`.)
    assert!(
        reported as u64 + (s1 - s0) >= 10_000,
        "each one reported or counted"
    );
}
