//! Worker thread creation failure neither panics nor loses work: the pool
//! retries after a cooldown (issue requirement; the rescuer of G22 comes
//! later).

mod common;

use std::time::{Duration, Instant};

use cmwq::{Work, Workqueue};
use common::*;

#[test]
fn worker_creation_failure_is_retried_and_loses_nothing() {
    setup_log();
    // Start the pools (and the monitor, which retries failed creations;
    // `thread_limits.rs` covers a monitor that could not start).
    cmwq::detection();
    // The first creations fail: the pool has no worker at all at first.
    cmwq::test_util::fail_next_spawns(3);
    let wq = Workqueue::new("spawnfail").unwrap();
    let c = counter();
    let items: Vec<Work> = (0..20).map(|_| counting_work(&c)).collect();
    let t = Instant::now();
    for w in &items {
        assert!(wq.queue_on(0, w));
    }
    assert!(
        wait_until(Duration::from_secs(10), || c
            .load(std::sync::atomic::Ordering::SeqCst)
            == 20),
        "items lost or never run"
    );
    let took = t.elapsed();
    let failures = events_matching("could not create a worker");
    assert!(failures >= 1, "failure reported");
    assert!(
        took >= Duration::from_millis(50),
        "retried after a cooldown"
    );
    wq.flush();
    // Later failures while growing (a blocked worker needs a spare) do not
    // lose work either.
    cmwq::test_util::fail_next_spawns(2);
    let (gate, _blockers) = blocked_burst(&wq, 0, 4, Duration::from_secs(10));
    gate.open();
    wq.flush();
}
