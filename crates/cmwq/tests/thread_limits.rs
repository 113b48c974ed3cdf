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
        "budget2" => child_budget(2),
        "budget3" => child_budget(3),
        "budget4" => child_budget(4),
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

/// Workers first at a thread budget: the process may have `n` threads in
/// all (its own one and `n - 1` for the library). Every kind of workqueue
/// gets 10 items that block on a gate; the gate opens after 1 s; every
/// workqueue that could be created runs all its items. The library gives
/// its sentinels, then its monitor, to the workers; idle workers of one
/// pool give way to another. From 3 threads on nothing but the library
/// itself retries (the items are waited for without calling into it); at
/// 2 the monitor retires too, and waiters (`flush`) retry, as G4 says.
fn child_budget(n: u64) {
    use cmwq::{Workqueue, WqFlags};
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::sync::Arc;
    set_nproc_soft(own_threads() + n - 1);
    let gate = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let item = |gate: &Arc<AtomicBool>, done: &Arc<AtomicUsize>| {
        let (gate, done) = (gate.clone(), done.clone());
        move || {
            while !gate.load(SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            done.fetch_add(1, SeqCst);
        }
    };
    let mut wqs: Vec<Workqueue> = Vec::new();
    let mut refused = Vec::new();
    for (name, b) in [
        (
            "b-percpu",
            Workqueue::builder("b-percpu").flags(WqFlags::PERCPU),
        ),
        ("b-spread", Workqueue::builder("b-spread")),
        ("b-max2", Workqueue::builder("b-max2").max_active(2)),
        (
            "b-reclaim",
            Workqueue::builder("b-reclaim").flags(WqFlags::MEM_RECLAIM),
        ),
    ] {
        match b.build() {
            Ok(wq) => wqs.push(wq),
            // A rescuer's thread at a budget too small for it, as the
            // kernel's alloc_workqueue fails.
            Err(e) => {
                assert!(matches!(e, cmwq::Error::ThreadStart { .. }), "{name}: {e}");
                refused.push(name);
            }
        }
    }
    match Workqueue::ordered("b-ordered", WqFlags::empty()) {
        Ok(wq) => wqs.push(wq),
        Err(e) => panic!("an ordered workqueue needs no thread of its own: {e}"),
    }
    let per = 10;
    for wq in &wqs {
        for _ in 0..per {
            wq.spawn(item(&gate, &done));
        }
    }
    for _ in 0..per {
        cmwq::spawn(item(&gate, &done));
    }
    let total = per * (wqs.len() + 1);
    std::thread::sleep(Duration::from_secs(1));
    gate.store(true, SeqCst);
    let t = Instant::now();
    if n >= 3 {
        // Nothing calls into the library: it must retry by itself.
        assert!(
            wait_until(Duration::from_secs(30), || done.load(SeqCst) == total),
            "budget {n}: {} of {total} items ran; threads {}:\n{}",
            done.load(SeqCst),
            own_threads(),
            cmwq::dump()
        );
    } else {
        for wq in &wqs {
            wq.flush();
        }
        cmwq::system_dfl_wq().flush();
        assert_eq!(done.load(SeqCst), total, "budget {n}");
    }
    let d = cmwq::dump();
    println!(
        "budget {n}: {total} items in {:?} after the gate, {} threads, refused {refused:?}; {}",
        t.elapsed(),
        own_threads(),
        d.lines()
            .filter(|l| l.contains("retired") || l.contains("not running"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    if n <= 3 {
        // What the library gave up shows in dump().
        assert!(d.contains("retired") || d.contains("not running"), "{d}");
    }
}

/// Run the budget scenario of `n` threads in a child, and print its
/// summary line.
fn budget(n: u64) {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let _s = serial();
    let out = run_child(&format!("budget{n}"));
    for line in out.lines().filter(|l| l.contains("items in")) {
        println!("{line}");
    }
}

#[test]
fn g4_workers_first_at_a_budget_of_2_threads() {
    budget(2);
}

#[test]
fn g4_workers_first_at_a_budget_of_3_threads() {
    budget(3);
}

#[test]
fn g4_workers_first_at_a_budget_of_4_threads() {
    budget(4);
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
