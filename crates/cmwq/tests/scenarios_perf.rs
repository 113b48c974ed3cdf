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

/// Queue an empty item on `cpu` and return how long (us) it waited from
/// the queue to its first line.
fn wait_to_start(wq: &cmwq::Workqueue, cpu: usize) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::sync::Arc;
    use std::time::Instant;

    let t0 = Instant::now();
    let started_at = Arc::new(AtomicU64::new(0));
    let s = started_at.clone();
    let item = cmwq::Work::new(move |_| {
        s.store(t0.elapsed().as_micros() as u64 + 1, SeqCst);
    });
    assert!(wq.queue_on(cpu, &item));
    item.flush();
    started_at.load(SeqCst) - 1
}

/// A runner that blocked while its pool was not watched (its switch ring
/// switched off, so no record of the block exists) is still found once an
/// item queues up behind it: the ring is switched on and /proc says where
/// the runner stands.
#[test]
fn g15_block_from_before_the_pool_was_watched_is_found_perf() {
    use std::time::Duration;

    let _s = common::serial();
    if !ready() {
        return;
    }
    let wq = common::percpu_wq("g15_late_watch");
    let cpu = cmwq::nr_cpus() - 1;
    // Let the pool go unwatched after the previous tests (the monitor
    // unwatches a pool after 20 ms without pending items, noticed within
    // two of its passes).
    std::thread::sleep(Duration::from_millis(150));
    let blocker = cmwq::Work::new(|_| std::thread::sleep(Duration::from_millis(300)));
    assert!(wq.queue_on(cpu, &blocker));
    // The blocker is asleep, unwatched, long before anything waits for it.
    std::thread::sleep(Duration::from_millis(30));
    let waited_us = wait_to_start(&wq, cpu);
    assert!(
        waited_us < 100_000,
        "the next item waited {waited_us} us behind a runner blocked since before the pool was watched (its block ends at 300 ms)"
    );
    blocker.flush();
}

/// A runner that the monitor found blocked, that wakes and at once enters
/// `blocking()`, stays out of `nr_running` for the whole hinted block: the
/// hint takes over the monitor's mark, so the monitor seeing the wake-up
/// late (its ring is off inside the hint) does not count it as running.
#[test]
fn g15_a_hint_right_after_a_detected_block_keeps_the_worker_out_perf() {
    use std::time::Duration;

    let _s = common::serial();
    if !ready() {
        return;
    }
    let wq = common::percpu_wq("g15_hint_after_mark");
    let cpu = cmwq::nr_cpus() - 1;
    let a = cmwq::Work::new(|_| {
        std::thread::sleep(Duration::from_millis(5)); // found by the monitor
        cmwq::blocking(|| std::thread::sleep(Duration::from_millis(200)));
    });
    let b = cmwq::Work::new(|_| {});
    assert!(wq.queue_on(cpu, &a));
    assert!(wq.queue_on(cpu, &b)); // behind a: the pool is watched
    b.flush();
    // a is now inside its hinted block (it entered it at about 5 ms).
    std::thread::sleep(Duration::from_millis(40));
    let waited_us = wait_to_start(&wq, cpu);
    assert!(
        waited_us < 50_000,
        "an item waited {waited_us} us behind a worker inside blocking() (its hinted block ends at 205 ms)"
    );
    a.flush();
}

/// A CPU hog on a worker that the monitor itself woke (to take over from a
/// runner it found blocked) is flagged near the threshold, although that
/// worker's wake-up left no switch record (its ring is off while parked).
/// See `scenarios::check_hog_on_a_woken_worker`. (Without the monitor's
/// second look after it wakes a worker, the hog is first seen at the
/// monitor's 20 ms timeout and flagged after about 60 ms of CPU.)
#[test]
fn g16_a_hog_on_a_worker_woken_for_a_blocked_runner_is_flagged_in_time_perf() {
    let _s = common::serial();
    if ready() {
        scenarios::check_hog_on_a_woken_worker();
    }
}
