//! Flush means done (G5, G6, G7, G8): when a flush or drain returns, every
//! item it waited for reads idle. Each test loops thousands of rounds: the
//! window they guard is a few instructions wide.

mod common;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

use cmwq::{Work, Workqueue, WqFlags};

const ROUNDS: usize = 3000;

/// Queue an empty item, flush the workqueue, and check that it reads idle.
fn wq_flush_rounds(wq: &Workqueue, mk: impl Fn() -> Work) {
    let mut running = 0;
    let mut pending = 0;
    for _ in 0..ROUNDS {
        let w = mk();
        assert!(wq.queue(&w));
        wq.flush();
        running += w.is_running() as usize;
        pending += w.is_pending() as usize;
    }
    assert_eq!(
        (running, pending),
        (0, 0),
        "{}: after flush returned, items still read running / pending",
        wq.name()
    );
}

#[test]
fn g7_workqueue_flush_returns_only_once_items_read_idle() {
    let _s = common::serial();
    let bound = common::percpu_wq("g7_done_bound");
    wq_flush_rounds(&bound, || Work::new(|_| {}));
    let unbound = Workqueue::builder("g7_done_unbound")
        .flags(WqFlags::UNBOUND)
        .build()
        .unwrap();
    wq_flush_rounds(&unbound, || Work::new(|_| {}));
    let ordered = Workqueue::ordered("g7_done_ordered", WqFlags::empty()).unwrap();
    wq_flush_rounds(&ordered, || Work::new(|_| {}));
    // One item reused: the same word goes round and round.
    let w = Work::new(|_| {});
    wq_flush_rounds(&bound, || w.clone());
}

#[test]
fn g5_g7_flush_after_a_panicking_item_sees_it_idle() {
    let _s = common::serial();
    cmwq::Config::default().log(|_| {}).apply().ok();
    let wq = Workqueue::new("g5_done_panic").unwrap();
    let w = Work::new(|_| panic!("g5_done_panic"));
    wq_flush_rounds(&wq, || w.clone());
    assert_eq!(wq.stats().panics, ROUNDS as u64);
}

#[test]
fn g6_work_flush_returns_only_once_the_item_reads_idle() {
    let _s = common::serial();
    let wq = Workqueue::new("g6_done").unwrap();
    let w = Work::new(|_| {});
    let mut bad = 0;
    for _ in 0..ROUNDS * 3 {
        assert!(wq.queue(&w));
        w.flush();
        bad += w.is_running() as usize + w.is_pending() as usize;
    }
    assert_eq!(bad, 0, "Work::flush returned while the item still ran");
}

#[test]
fn g8_drain_returns_only_once_every_item_reads_idle() {
    let _s = common::serial();
    let wq = Workqueue::new("g8_done").unwrap();
    let mut bad = 0;
    for _ in 0..ROUNDS {
        let items: Vec<Work> = (0..4).map(|_| Work::new(|_| {})).collect();
        for (i, w) in items.iter().enumerate() {
            wq.queue_on(i % cmwq::nr_cpus(), w);
        }
        wq.drain();
        bad += items
            .iter()
            .filter(|w| w.is_running() || w.is_pending())
            .count();
    }
    assert_eq!(bad, 0, "drain returned while items still ran");
}

#[test]
fn g7_flush_sees_self_requeueing_items_queued_again_not_running_old() {
    // An item that queues itself once: after flush, the first execution is
    // over; the second may be pending or running, never the first.
    let _s = common::serial();
    let wq = Arc::new(Workqueue::new("g7_done_requeue").unwrap());
    let again = Arc::new(AtomicBool::new(false));
    let (wq2, again2) = (wq.clone(), again.clone());
    let w = Work::new(move |w| {
        if again2.swap(false, SeqCst) {
            wq2.queue(w);
        }
    });
    for _ in 0..ROUNDS {
        again.store(true, SeqCst);
        wq.queue(&w);
        wq.flush();
        w.flush();
        assert!(!w.is_running() && !w.is_pending());
    }
}
