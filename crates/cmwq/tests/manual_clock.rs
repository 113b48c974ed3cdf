//! G31: the manual clock. This process opts in before first use.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cmwq::{clock, Work, Workqueue, WqFlags};

#[test]
fn g31_manual_clock_fires_only_on_advance_in_deadline_order() {
    clock::use_manual().expect("before first use");
    assert_eq!(clock::now(), Duration::ZERO);
    // Execution order on an ordered workqueue is queueing order.
    let wq = Workqueue::ordered("g31", WqFlags::empty()).unwrap();
    assert!(
        clock::use_manual().is_err(),
        "too late once a workqueue exists"
    );
    let order = Arc::new(Mutex::new(Vec::new()));
    let items: Vec<(u64, Work)> = [50u64, 10, 30, 20, 30, 1]
        .iter()
        .enumerate()
        .map(|(i, &ms)| {
            let o = order.clone();
            (ms, Work::new(move |_| o.lock().unwrap().push((ms, i))))
        })
        .collect();
    for (ms, w) in &items {
        assert!(wq.queue_delayed(w, Duration::from_millis(*ms)));
    }
    std::thread::sleep(Duration::from_millis(30));
    wq.flush();
    assert!(
        order.lock().unwrap().is_empty(),
        "real time passing fired a timer"
    );
    clock::advance(Duration::from_micros(999));
    wq.flush();
    assert!(order.lock().unwrap().is_empty());
    clock::advance(Duration::from_micros(1));
    wq.flush();
    assert_eq!(
        *order.lock().unwrap(),
        vec![(1, 5)],
        "exactly at its deadline"
    );
    clock::advance(Duration::from_millis(29)); // now 30 ms
    wq.flush();
    assert_eq!(
        *order.lock().unwrap(),
        vec![(1, 5), (10, 1), (20, 3), (30, 2), (30, 4)],
        "deadline order, ties in arming order"
    );
    assert!(items[0].1.is_pending());
    clock::advance(Duration::from_millis(20));
    wq.flush();
    assert_eq!(order.lock().unwrap().len(), 6);
    assert_eq!(clock::now(), Duration::from_millis(50));
    // mod_delayed under the manual clock: pushed back by exactly the delay.
    let hits = Arc::new(Mutex::new(0));
    let h2 = hits.clone();
    let d = Work::new(move |_| *h2.lock().unwrap() += 1);
    for _ in 0..100 {
        wq.mod_delayed(&d, Duration::from_millis(10));
        clock::advance(Duration::from_millis(9));
    }
    wq.flush();
    assert_eq!(*hits.lock().unwrap(), 0);
    clock::advance(Duration::from_millis(1));
    wq.flush();
    assert_eq!(*hits.lock().unwrap(), 1);
}
