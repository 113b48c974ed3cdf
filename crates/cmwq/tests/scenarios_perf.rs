//! G15, G16: the four "Example Execution Scenarios" of workqueue.rst and
//! the stall window, with block detection forced to `perf`: plain sleeps,
//! no hint; the library finds the blocks from its workers' perf
//! context-switch records. See `scenarios/mod.rs`.

mod common;
mod scenarios;

use cmwq::Detect;
use scenarios::Kind;

const MODE: Detect = Detect::Perf;

/// Apply this binary's Config (once, before first use); false: skip.
fn ready() -> bool {
    scenarios::setup(MODE)
}

#[test]
fn g15_scenario_a_original_wq_perf() {
    let _s = common::serial();
    if ready() {
        scenarios::check_scenario(Kind::A, MODE);
    }
}

#[test]
fn g15_scenario_b_max_active_3_perf() {
    let _s = common::serial();
    if ready() {
        scenarios::check_scenario(Kind::B, MODE);
    }
}

#[test]
fn g15_scenario_c_max_active_2_perf() {
    let _s = common::serial();
    if ready() {
        scenarios::check_scenario(Kind::C, MODE);
    }
}

#[test]
fn g16_scenario_d_cpu_intensive_perf() {
    let _s = common::serial();
    if ready() {
        scenarios::check_scenario(Kind::D, MODE);
    }
}

#[test]
fn g15_short_blocks_do_not_start_a_worker_perf() {
    let _s = common::serial();
    if ready() {
        scenarios::check_short_blocks(MODE);
    }
}

/// A runner that blocked while its pool was not watched (its switch ring
/// switched off, so no record of the block exists) is still found once an
/// item queues up behind it: the ring is switched on and /proc says where
/// the runner stands.
#[test]
fn g15_block_from_before_the_pool_was_watched_is_found_perf() {
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let _s = common::serial();
    if !ready() {
        return;
    }
    let wq = cmwq::Workqueue::new("g15_late_watch").unwrap();
    let cpu = cmwq::nr_cpus() - 1;
    // Let the pool go unwatched after the previous tests (20 ms hysteresis).
    std::thread::sleep(Duration::from_millis(60));
    let t0 = Instant::now();
    let blocker = cmwq::Work::new(|_| std::thread::sleep(Duration::from_millis(300)));
    assert!(wq.queue_on(cpu, &blocker));
    // The blocker is asleep, unwatched, long before anything waits for it.
    std::thread::sleep(Duration::from_millis(30));
    let started_at = Arc::new(AtomicU64::new(0));
    let s = started_at.clone();
    let next = cmwq::Work::new(move |_| {
        s.store(t0.elapsed().as_micros() as u64, SeqCst);
    });
    let queued_at = t0.elapsed().as_micros() as u64;
    assert!(wq.queue_on(cpu, &next));
    next.flush();
    let waited_us = started_at.load(SeqCst) - queued_at;
    assert!(
        waited_us < 100_000,
        "the next item waited {waited_us} us behind a runner blocked since before the pool was watched (its block ends at 300 ms)"
    );
    blocker.flush();
}
