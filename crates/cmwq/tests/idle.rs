//! G21: idle workers are kept for reuse and reaped by the kernel's rule
//! after the idle timeout (shortened for this test process).

mod common;

use std::time::Duration;

use common::*;

fn pool_workers(cpu: usize) -> usize {
    let prefix = format!("kworker/{cpu}:");
    thread_names()
        .iter()
        .filter(|n| n.starts_with(&prefix) && !n.ends_with('H'))
        .count()
}

#[test]
fn g21_idle_workers_are_kept_then_reaped_down_to_two() {
    cmwq::Config::default()
        .idle_timeout(Duration::from_millis(400))
        .apply()
        .unwrap();
    let wq = percpu_wq("g21");
    // Eight items that block at once: the pool grows to nine workers or
    // more (one per blocked item plus a spare).
    let (gate, _items) = blocked_burst(&wq, 0, 8, Duration::from_secs(5));
    let grown = pool_workers(0);
    assert!(grown >= 9, "pool grew to {grown}");
    gate.open();
    wq.flush();
    // Kept for reuse before the timeout...
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(pool_workers(0), grown, "idle workers reaped too early");
    // ...and reused: running the burst again creates no thread.
    let (gate2, _again) = blocked_burst(&wq, 0, 8, Duration::from_secs(5));
    gate2.open();
    wq.flush();
    assert_eq!(pool_workers(0), grown, "idle workers were not reused");
    // After the timeout, more than 2 idle with none busy is too many:
    // reaped down to 2.
    assert!(
        wait_until(Duration::from_secs(5), || pool_workers(0) == 2),
        "left {} workers",
        pool_workers(0)
    );
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(pool_workers(0), 2, "never below the kernel's 2 idle");
    assert!(cmwq::dump().contains("idle/workers=  2/  2 cpu=  0"));
}
