//! G24 freeze/thaw and G30 dump.

mod common;

use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cmwq::{Work, Workqueue, WqFlags};
use common::*;

#[test]
fn g24_freeze_stops_freezable_workqueues_and_waits_for_running_items() {
    let _s = serial();
    let fz = Workqueue::builder("g24_freezable")
        .flags(WqFlags::PERCPU | WqFlags::FREEZABLE)
        .build()
        .unwrap();
    let other = Workqueue::new("g24_other").unwrap();
    // A running item: freeze waits for it.
    let done = Arc::new(AtomicBool::new(false));
    let d2 = done.clone();
    let running = Work::new(move |_| {
        cmwq::blocking(|| std::thread::sleep(Duration::from_millis(50)));
        d2.store(true, SeqCst);
    });
    assert!(fz.queue(&running));
    assert!(wait_until(Duration::from_secs(5), || running.is_running()));
    let c = counter();
    let t = Instant::now();
    cmwq::freeze();
    assert!(
        done.load(SeqCst),
        "freeze returned before the running item ended"
    );
    assert!(t.elapsed() >= Duration::from_millis(20));
    // Frozen: queued items stay queued; other workqueues run.
    let items: Vec<Work> = (0..4).map(|_| counting_work(&c)).collect();
    for w in &items {
        assert!(fz.queue(w));
    }
    let oc = counter();
    let o = counting_work(&oc);
    assert!(other.queue(&o));
    other.flush();
    assert_eq!(oc.load(SeqCst), 1, "a non-freezable workqueue was stopped");
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(c.load(SeqCst), 0, "a frozen workqueue started an item");
    assert!(items.iter().all(|w| w.is_pending()));
    assert_eq!(fz.stats().in_flight, 4);
    cmwq::thaw();
    fz.flush();
    assert_eq!(c.load(SeqCst), 4, "thaw did not resume");
    // Items already on the worklist when freezing stay queued too. The
    // holder spins (a block would let the pool start the queued item at
    // once, G15) for less than the CPU-hog threshold (G16).
    let open = Arc::new(AtomicBool::new(false));
    let o2 = open.clone();
    let holder = Work::new(move |_| {
        while !o2.load(SeqCst) {
            std::hint::spin_loop();
        }
    });
    let c2 = counter();
    let queued = counting_work(&c2);
    assert!(fz.queue_on(0, &holder));
    assert!(wait_until(Duration::from_secs(5), || holder.is_running()));
    assert!(fz.queue_on(0, &queued)); // waits behind the holder, active
    let opener = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(5));
        open.store(true, SeqCst);
    });
    cmwq::freeze();
    opener.join().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(c2.load(SeqCst), 0, "a queued item started while frozen");
    cmwq::thaw();
    fz.flush();
    assert_eq!(c2.load(SeqCst), 1);
}

#[test]
fn g30_dump_reports_scopes_pools_workqueues_and_in_flight_items() {
    let _s = serial();
    let wq = Workqueue::builder("g30_dump")
        .flags(WqFlags::UNBOUND | WqFlags::MEM_RECLAIM)
        .build()
        .unwrap();
    let gate = Gate::new();
    let g2 = gate.clone();
    let w = Work::named("g30_item", move |_| cmwq::blocking(|| g2.wait()));
    assert!(wq.queue(&w));
    assert!(wait_until(Duration::from_secs(5), || w.is_running()));
    cmwq::system_wq(); // the system workqueues exist once used
    let d = cmwq::dump();
    gate.open(); // before asserting: a failed assertion must not hang the drop
    for needle in [
        "Affinity Scopes",
        "wq_unbound_cpumask=",
        "CPU\n  nr_pods",
        "CACHE (default)",
        "SYSTEM",
        "Worker Pools",
        "idle/workers=",
        "cpu=  0",
        "cpus=",
        "Workqueue CPU -> pool",
        "events ",
        "percpu",
        "g30_dump",
        "unbound",
        "Workqueue -> rescuer",
        "detect: ",
        "g30_item",
        "[g30_dump]",
    ] {
        assert!(d.contains(needle), "dump lacks {needle:?}:\n{d}");
    }
    wq.flush();
    assert!(!cmwq::dump().contains("g30_item"));
}
