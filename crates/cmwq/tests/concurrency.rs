//! Concurrency management on bound pools: G15, G16 (in the process's
//! default detection mode; the workqueue.rst scenarios run in each mode in
//! the scenarios_* tests).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cmwq::{Work, Workqueue, WqFlags};
use common::*;

/// Records (start, end) of items relative to `t0`.
#[derive(Default)]
struct Times(Mutex<Vec<(usize, Duration, Duration)>>);

impl Times {
    fn get(&self, i: usize) -> (Duration, Duration) {
        let v = self.0.lock().unwrap();
        let e = v.iter().find(|e| e.0 == i).expect("item ran");
        (e.1, e.2)
    }
}

fn other_cpu_than(target: usize) -> Option<usize> {
    own_affinity().into_iter().find(|&c| c != target)
}

#[test]
fn g15_one_running_worker_while_items_are_cpu_bound() {
    let _s = serial();
    let wq = percpu_wq("g15_one");
    let target = own_affinity()[0];
    if let Some(c) = other_cpu_than(target) {
        pin_self(&[c]);
    }
    let conc = Concurrency::new();
    let items: Vec<Work> = (0..10)
        .map(|_| {
            let c = conc.clone();
            Work::new(move |_| {
                c.enter();
                burn_cpu(Duration::from_millis(3));
                c.exit();
            })
        })
        .collect();
    for w in &items {
        assert!(wq.queue_on(target, w));
    }
    wq.flush();
    assert_eq!(conc.total(), 10);
    assert_eq!(conc.max(), 1, "a second worker started while one ran");
}

fn block_then_next(hint: bool) -> (Duration, Duration) {
    let wq = percpu_wq(if hint { "g15_hint" } else { "g15_auto" });
    let target = own_affinity()[0];
    if let Some(c) = other_cpu_than(target) {
        pin_self(&[c]);
    }
    // Warm the pool: its spare worker exists.
    let warm = Work::new(|_| cmwq::blocking(|| std::thread::sleep(Duration::from_millis(1))));
    wq.queue_on(target, &warm);
    wq.flush();
    let t0 = Instant::now();
    let times = Arc::new(Times::default());
    let t1 = times.clone();
    let a = Work::new(move |_| {
        let s = t0.elapsed();
        burn_cpu(Duration::from_millis(2));
        let blocked_at = t0.elapsed();
        if hint {
            cmwq::blocking(|| std::thread::sleep(Duration::from_millis(60)));
        } else {
            std::thread::sleep(Duration::from_millis(60));
        }
        t1.0.lock().unwrap().push((0, s, blocked_at));
    });
    let t2 = times.clone();
    let b = Work::new(move |_| {
        let s = t0.elapsed();
        t2.0.lock().unwrap().push((1, s, t0.elapsed()));
    });
    assert!(wq.queue_on(target, &a));
    assert!(wq.queue_on(target, &b));
    wq.flush();
    let (_, a_blocked) = times.get(0);
    let (b_start, _) = times.get(1);
    (a_blocked, b_start)
}

#[test]
fn g15_hint_starts_the_next_item_at_once() {
    let _s = serial();
    let (blocked, next) = block_then_next(true);
    assert!(next >= blocked, "next started before the runner blocked");
    assert!(
        next - blocked < Duration::from_millis(15),
        "next item started {:?} after the hinted block",
        next - blocked
    );
}

#[test]
fn g15_automatic_detection_starts_the_next_item() {
    let _s = serial();
    if cmwq::detection() == cmwq::Detect::Hint {
        eprintln!("skipping: detection forced to hint");
        return;
    }
    let (blocked, next) = block_then_next(false);
    assert!(next >= blocked, "next started before the runner blocked");
    assert!(
        next - blocked < Duration::from_millis(30),
        "next item started {:?} after an unhinted block ({:?} mode)",
        next - blocked,
        cmwq::detection()
    );
}

#[test]
fn g16_cpu_intensive_items_do_not_count_toward_concurrency() {
    let _s = serial();
    let wq = Workqueue::builder("g16_intensive")
        .flags(WqFlags::PERCPU | WqFlags::CPU_INTENSIVE)
        .build()
        .unwrap();
    let target = own_affinity()[0];
    let conc = Concurrency::new();
    let items: Vec<Work> = (0..3)
        .map(|_| {
            let c = conc.clone();
            Work::new(move |_| {
                c.enter();
                spin_for(Duration::from_millis(30));
                c.exit();
            })
        })
        .collect();
    for w in &items {
        assert!(wq.queue_on(target, w));
    }
    wq.flush();
    assert_eq!(conc.max(), 3, "CPU_INTENSIVE items waited for each other");
    assert_eq!(wq.stats().cpu_hog, 0, "not hogs: they never counted");
}

#[test]
fn g16_a_cpu_hog_leaves_concurrency_management_and_is_counted() {
    let _s = serial();
    let wq = percpu_wq("g16_hog");
    let target = own_affinity()[0];
    if let Some(c) = other_cpu_than(target) {
        pin_self(&[c]);
    }
    let t0 = Instant::now();
    let times = Arc::new(Times::default());
    let t1 = times.clone();
    let hog = Work::new(move |_| {
        let s = t0.elapsed();
        burn_cpu(Duration::from_millis(80));
        t1.0.lock().unwrap().push((0, s, t0.elapsed()));
    });
    let t2 = times.clone();
    let next = Work::new(move |_| {
        let s = t0.elapsed();
        t2.0.lock().unwrap().push((1, s, t0.elapsed()));
    });
    assert!(wq.queue_on(target, &hog));
    assert!(wq.queue_on(target, &next));
    wq.flush();
    let (_, hog_end) = times.get(0);
    let (next_start, _) = times.get(1);
    assert!(
        next_start < hog_end,
        "the next item waited for the hog to finish ({next_start:?} vs {hog_end:?})"
    );
    assert_eq!(wq.stats().cpu_hog, 1);
}

#[test]
fn g16_short_items_are_not_hogs() {
    let _s = serial();
    let wq = percpu_wq("g16_short");
    let items: Vec<Work> = (0..20)
        .map(|_| Work::new(|_| burn_cpu(Duration::from_millis(2))))
        .collect();
    for w in &items {
        assert!(wq.queue_on(0, w));
    }
    wq.flush();
    assert_eq!(wq.stats().cpu_hog, 0);
}

#[test]
fn g16_a_hog_with_nothing_behind_it_is_counted_too() {
    let _s = serial();
    let wq = percpu_wq("g16_lone");
    let hog = Work::new(|_| burn_cpu(Duration::from_millis(40)));
    assert!(wq.queue_on(0, &hog));
    hog.flush();
    assert_eq!(wq.stats().cpu_hog, 1);
}
