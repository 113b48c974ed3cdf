//! Thread limits: items queued while no thread can be created run once
//! one can (G4), even when the monitor thread could not start at first
//! use; an idle worker of a pool with nothing pending gives its thread to
//! a pool that cannot create one.
//!
//! The in-process test injects creation failures (`fail_next_spawns`); the
//! others run this test binary again as a child process, as an
//! unprivileged user (uid/gid 65534) under a real `RLIMIT_NPROC` (root
//! ignores that limit), so they need root to switch users and skip
//! otherwise.

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use cmwq::Work;
use common::*;

/// First use while every thread creation fails (the monitor's included):
/// a waiter (`flush`) retries the creation after each cooldown, so the
/// items run as soon as threads can be had, and the monitor starts then
/// too. Before the fix creation was retried only by the monitor, which had
/// not started: the items never ran.
#[test]
fn g4_first_use_at_the_thread_limit_then_lifted() {
    if std::env::var_os(CHILD).is_some() {
        return; // this binary runs as a child of the tests below
    }
    let _s = serial();
    setup_log();
    // The monitor's start and the first worker creations fail.
    cmwq::test_util::fail_next_spawns(4);
    let c = counter();
    let items: Vec<Work> = (0..5).map(|_| counting_work(&c)).collect();
    let t = Instant::now();
    for w in &items {
        assert!(cmwq::schedule_work_on(0, w));
    }
    assert!(cmwq::dump().contains("monitor thread not running"));
    items.last().unwrap().flush();
    assert!(wait_until(Duration::from_secs(5), || c.load(SeqCst) == 5));
    let took = t.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(events_matching("could not create a worker") >= 1);
    assert!(events_matching("could not start the monitor thread") == 1);
    assert!(
        wait_until(Duration::from_secs(3), || !cmwq::dump()
            .contains("monitor thread not running")),
        "the monitor starts once threads can be had"
    );
}

/// Environment variable that selects a child scenario.
const CHILD: &str = "CMWQ_THREAD_LIMIT_CHILD";

/// The soft limit on this user's threads.
fn nproc_soft() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut r) }, 0);
    r.rlim_cur
}

/// Lift the soft limit to the hard one.
fn lift_nproc() {
    set_nproc_soft(u64::MAX);
}

/// The child side: runs inside the test harness of the child process.
#[test]
fn thread_limit_child_entry() {
    let Some(scenario) = std::env::var_os(CHILD) else {
        return;
    };
    setup_log();
    // SAFETY: no preconditions.
    assert_ne!(unsafe { libc::geteuid() }, 0, "the child runs unprivileged");
    match scenario.to_str().unwrap() {
        "first_use" => child_first_use(),
        "give_way" => child_give_way(),
        s => panic!("unknown scenario {s}"),
    }
    println!("child scenario ok");
}

/// At the limit from the start: nothing can run; once lifted, the next
/// queue (after the cooldown) creates a worker and both items run, without
/// any waiting call into the library.
fn child_first_use() {
    set_nproc_soft(own_threads());
    let c = counter();
    let a = counting_work(&c);
    assert!(cmwq::schedule_work_on(0, &a));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.load(SeqCst), 0, "no thread could be created");
    assert!(events_matching("could not create a worker") >= 1);
    lift_nproc();
    std::thread::sleep(Duration::from_millis(150)); // past the cooldown
    let b = counting_work(&c);
    assert!(cmwq::schedule_work_on(0, &b));
    assert!(
        wait_until(Duration::from_secs(3), || c.load(SeqCst) == 2),
        "items did not start after the limit was lifted"
    );
}

/// Room for the monitor and one worker: CPU 0's pool takes the worker,
/// then CPU 1's pool cannot create one; CPU 0's idle worker gives way.
fn child_give_way() {
    if cmwq::nr_cpus() < 2 {
        println!("one CPU: nothing to give way to");
        return;
    }
    cmwq::detection(); // the monitor
                       // The monitor thread starts sentinels too, and `detection()` may return
                       // while it is still spawning one: count the threads once they settle,
                       // or that sentinel takes the one thread left for a worker.
    set_nproc_soft(settled_threads() + 1);
    let c = counter();
    let a = counting_work(&c);
    assert!(cmwq::schedule_work_on(0, &a));
    assert!(
        wait_until(Duration::from_secs(10), || c.load(SeqCst) == 1),
        "CPU 0's item did not run; threads {} (limit {}):\n{}",
        own_threads(),
        nproc_soft(),
        cmwq::dump()
    );
    let t = Instant::now();
    let b = counting_work(&c);
    assert!(cmwq::schedule_work_on(1, &b));
    assert!(
        wait_until(Duration::from_secs(10), || c.load(SeqCst) == 2),
        "CPU 1's item did not run; threads {} (limit {}), gave way {}:\n{}",
        own_threads(),
        nproc_soft(),
        cmwq::__bench::workers_gave_way(),
        cmwq::dump()
    );
    let took = t.elapsed();
    assert!(
        events_matching("could not create a worker") >= 1,
        "at the limit"
    );
    assert!(
        cmwq::__bench::workers_gave_way() >= 1,
        "CPU 0's idle worker gave its thread way"
    );
    assert!(
        took < Duration::from_secs(2),
        "CPU 1's item waited {took:?} behind CPU 0's idle worker"
    );
}

#[test]
fn g4_thread_limit_unprivileged_first_use_then_lifted() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let _s = serial();
    run_child("first_use");
}

#[test]
fn g4_thread_limit_unprivileged_idle_worker_gives_way() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let _s = serial();
    run_child("give_way");
}

/// Run scenario `scenario` of [`thread_limit_child_entry`] as uid 65534.
fn run_child(scenario: &str) -> String {
    run_unprivileged_child("thread_limit_child_entry", CHILD, scenario)
}
