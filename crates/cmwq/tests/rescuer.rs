//! Rescuers (G22): a `MEM_RECLAIM` workqueue owns a `kworker/R-NAME`
//! thread that runs its items on a pool that cannot get a new worker.
//!
//! The classic case: every worker of CPU 0's pool is held by items waiting
//! for an item B queued on a `MEM_RECLAIM` workqueue, and no thread can be
//! created. In-process, creation failures are injected
//! (`fail_next_spawns`); the child scenarios run this binary again as an
//! unprivileged user under a real `RLIMIT_NPROC` (they need root to switch
//! users and skip otherwise).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cmwq::{Work, Workqueue, WqFlags};
use common::*;

/// Environment variable that selects a child scenario.
const CHILD: &str = "CMWQ_RESCUER_CHILD";

fn is_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// Items on `holders` that wait (with the blocking hint) for `gate`.
fn holder(started: &Arc<AtomicUsize>, gate: &Arc<Gate>) -> Work {
    let (started, gate) = (started.clone(), gate.clone());
    Work::new(move |_| {
        started.fetch_add(1, SeqCst);
        cmwq::blocking(|| gate.wait());
    })
}

/// Fill CPU 0's pool with holders until one of them waits on the worklist
/// (every worker is held and none can be created). Returns the holders.
fn saturate_cpu0(holders: &Workqueue, started: &Arc<AtomicUsize>, gate: &Arc<Gate>) -> Vec<Work> {
    let mut items = Vec::new();
    for _ in 0..64 {
        let w = holder(started, gate);
        assert!(holders.queue_on(0, &w));
        items.push(w);
        // Room for it to start, and for a creation attempt to fail.
        std::thread::sleep(Duration::from_millis(30));
        if started.load(SeqCst) < items.len() {
            return items;
        }
    }
    panic!("CPU 0's pool never ran out of workers");
}

/// B: records when it started and opens the gate.
fn item_b(gate: &Arc<Gate>, at: &Arc<Mutex<Option<Instant>>>) -> Work {
    let (gate, at) = (gate.clone(), at.clone());
    Work::named("item_b", move |_| {
        at.lock().unwrap().get_or_insert_with(Instant::now);
        gate.open();
    })
}

/// A per-CPU `MEM_RECLAIM` workqueue (the holders below fill CPU 0's pool).
fn reclaim_wq(name: &str) -> Workqueue {
    Workqueue::builder(name)
        .flags(WqFlags::PERCPU | WqFlags::MEM_RECLAIM)
        .build()
        .unwrap()
}

/// Queue on `wq`, CPU 0, an item that records when it starts and opens
/// `gate` (if any); wait up to 5 s for it to start. Returns the time from
/// the queue to its start, or `None` if it did not start.
fn queue_timed(wq: &Workqueue, gate: Option<&Arc<Gate>>) -> Option<Duration> {
    let at = Arc::new(Mutex::new(None));
    let (a2, gate) = (at.clone(), gate.cloned());
    let w = Work::named("item_b", move |_| {
        a2.lock().unwrap().get_or_insert_with(Instant::now);
        if let Some(g) = &gate {
            g.open();
        }
    });
    let t = Instant::now();
    assert!(wq.queue_on(0, &w));
    wait_until(Duration::from_secs(5), || at.lock().unwrap().is_some())
        .then(|| at.lock().unwrap().unwrap() - t)
}

/// The classic case with injected creation failures: B runs within a few
/// mayday timeouts, on the rescuer, and the holders then finish.
#[test]
fn g22_rescuer_runs_the_item_everyone_waits_for() {
    if is_child() {
        return;
    }
    let _s = serial();
    setup_log();
    let reclaim = reclaim_wq("g22_reclaim");
    let holders = percpu_wq("g22_holders");
    let started = counter();
    let gate = Gate::new();
    cmwq::test_util::fail_next_spawns(u64::MAX);
    let items = saturate_cpu0(&holders, &started, &gate);
    let took = queue_timed(&reclaim, Some(&gate));
    let dump = cmwq::dump();
    if took.is_none() {
        cmwq::test_util::fail_next_spawns(0);
    }
    let took = took.unwrap_or_else(|| panic!("B never ran: no rescue\n{dump}"));
    // The mayday timeout is 10 ms; allow for a slow, noisy machine.
    assert!(
        took < Duration::from_millis(1500),
        "B started after {took:?}"
    );
    // More items the holders do not wait for, while the pool stays stuck:
    // each is rescued about one mayday timeout after it is queued.
    let mut lat = vec![took];
    for _ in 0..30 {
        lat.push(queue_timed(&reclaim, None).expect("not rescued"));
    }
    cmwq::test_util::fail_next_spawns(0);
    lat.sort();
    let (p50, p99) = (lat[lat.len() / 2], lat[lat.len() * 99 / 100]);
    println!(
        "queue -> rescued start over {} items: p50 {p50:?}, p99 {p99:?}",
        lat.len()
    );
    assert!(p50 < Duration::from_millis(500), "p50 {p50:?}");
    for w in &items {
        w.flush();
    }
    assert_eq!(started.load(SeqCst), items.len());
    let st = reclaim.stats();
    assert!(st.mayday >= 1, "{st:?}");
    assert!(st.rescued >= 31, "{st:?}");
    assert_eq!(st.total, 31);
    assert_eq!(holders.stats().rescued, 0, "no rescuer for holders");
    let dump = cmwq::dump();
    assert!(
        dump.lines().any(|l| l.starts_with("g22_reclaim")
            && l.contains("kworker/R-g22_r")
            && l.contains(&format!("rescued={}", st.rescued))),
        "{dump}"
    );
    assert!(
        cmwq::dump::monitor_table()
            .lines()
            .any(|l| l.trim_start().starts_with("g22_reclaim")),
        "{}",
        cmwq::dump::monitor_table()
    );
}

/// Creation that is slow rather than failing (each new thread takes 2 s):
/// the rescuer runs the item within a few mayday timeouts, long before a
/// worker could be had.
#[test]
fn g22_slow_creation_is_rescued() {
    if is_child() {
        return;
    }
    let _s = serial();
    setup_log();
    let reclaim = reclaim_wq("g22_slow");
    let holders = percpu_wq("g22_slow_h");
    let started = counter();
    let gate = Gate::new();
    // Hold every worker of CPU 0's pool, then make creation slow.
    cmwq::test_util::fail_next_spawns(u64::MAX);
    let items = saturate_cpu0(&holders, &started, &gate);
    cmwq::test_util::fail_next_spawns(0);
    cmwq::test_util::slow_spawns(Duration::from_secs(2));
    let took = queue_timed(&reclaim, Some(&gate));
    cmwq::test_util::slow_spawns(Duration::ZERO);
    let took = took.expect("B never ran");
    println!("slow creation: queue -> rescued start {took:?}");
    assert!(
        took < Duration::from_millis(1000),
        "B waited {took:?}: not rescued"
    );
    for w in &items {
        w.flush();
    }
    assert!(reclaim.stats().rescued >= 1, "{:?}", reclaim.stats());
}

/// Without `MEM_RECLAIM` the same item waits until a thread can be had:
/// what the rescuer is for.
#[test]
fn g22_without_mem_reclaim_the_item_waits_for_a_thread() {
    if is_child() {
        return;
    }
    let _s = serial();
    setup_log();
    let plain = percpu_wq("g22_plain");
    let holders = percpu_wq("g22_holders2");
    let started = counter();
    let gate = Gate::new();
    cmwq::test_util::fail_next_spawns(u64::MAX);
    let items = saturate_cpu0(&holders, &started, &gate);
    let at = Arc::new(Mutex::new(None));
    let b = item_b(&gate, &at);
    assert!(plain.queue_on(0, &b));
    std::thread::sleep(Duration::from_millis(300));
    let ran = at.lock().unwrap().is_some();
    cmwq::test_util::fail_next_spawns(0);
    assert!(!ran, "B ran without a thread and without a rescuer");
    b.flush();
    for w in &items {
        w.flush();
    }
    assert_eq!(plain.stats().mayday, 0);
    assert_eq!(plain.stats().rescued, 0);
}

/// Rescued items keep max_active and order (here an ordered workqueue),
/// and run one at a time.
#[test]
fn g22_g18_rescued_items_keep_order_and_max_active() {
    if is_child() {
        return;
    }
    let _s = serial();
    setup_log();
    let reclaim = Workqueue::ordered("g22_ordered", WqFlags::MEM_RECLAIM).unwrap();
    // Ordered workqueues are unbound: hold the unbound pool's workers.
    let holders = Workqueue::builder("g22_uholders")
        .flags(WqFlags::UNBOUND)
        .build()
        .unwrap();
    let started = counter();
    let gate = Gate::new();
    cmwq::test_util::fail_next_spawns(u64::MAX);
    let mut items = Vec::new();
    for _ in 0..64 {
        let w = holder(&started, &gate);
        assert!(holders.queue(&w));
        items.push(w);
        std::thread::sleep(Duration::from_millis(30));
        if started.load(SeqCst) < items.len() {
            break;
        }
    }
    let order = Arc::new(Mutex::new(Vec::new()));
    let conc = Concurrency::new();
    let seq: Vec<Work> = (0..5)
        .map(|i| {
            let (order, conc, gate) = (order.clone(), conc.clone(), gate.clone());
            Work::new(move |_| {
                conc.enter();
                order.lock().unwrap().push(i);
                std::thread::sleep(Duration::from_millis(2));
                conc.exit();
                if i == 4 {
                    gate.open();
                }
            })
        })
        .collect();
    for w in &seq {
        assert!(reclaim.queue(w));
    }
    let ok = wait_until(Duration::from_secs(10), || order.lock().unwrap().len() == 5);
    cmwq::test_util::fail_next_spawns(0);
    gate.open();
    for w in items.iter().chain(&seq) {
        w.flush();
    }
    assert!(ok, "ordered items not rescued: {:?}", order.lock().unwrap());
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    assert_eq!(conc.max(), 1);
    assert!(reclaim.stats().rescued >= 1);
}

/// The rescuer is a thread named `kworker/R-NAME` (15 bytes at most),
/// started with the workqueue, listed by `dump()`, gone with it; a
/// workqueue whose rescuer cannot start is not created.
#[test]
fn g22_rescuer_thread_lives_and_dies_with_its_workqueue() {
    if is_child() {
        return;
    }
    let _s = serial();
    setup_log();
    let wq = reclaim_wq("g22_lifecycle_long_name");
    let name = "kworker/R-g22_l";
    let has = |n: &str| thread_names().iter().any(|t| t == n);
    assert!(
        wait_until(Duration::from_secs(2), || has(name)),
        "{:?}",
        thread_names()
    );
    let dump = cmwq::dump();
    let line = dump
        .lines()
        .find(|l| l.starts_with("g22_lifecycle_long_name") && l.contains(name))
        .unwrap_or_else(|| panic!("dump lists no rescuer:\n{dump}"));
    assert!(line.contains("idle"), "{line}");
    drop(wq);
    assert!(
        wait_until(Duration::from_secs(2), || !has(name)),
        "rescuer outlived its workqueue"
    );
    cmwq::test_util::fail_next_spawns(1);
    let r = Workqueue::builder("g22_nothread")
        .flags(WqFlags::MEM_RECLAIM)
        .build();
    cmwq::test_util::fail_next_spawns(0);
    let e = r.expect_err("created without a rescuer");
    assert!(matches!(e, cmwq::Error::ThreadStart { .. }), "{e}");
    assert!(e.to_string().contains("rescuer kworker/R-g22_n"), "{e}");
    // The OS error is kept, as the error's source.
    let os = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .and_then(|io| io.raw_os_error());
    assert_eq!(os, Some(libc::EAGAIN), "{e:?}");
    // Ordered MEM_RECLAIM workqueues have one too.
    let o = Workqueue::ordered("g22_ord_r", WqFlags::MEM_RECLAIM).unwrap();
    assert!(wait_until(Duration::from_secs(2), || has(
        "kworker/R-g22_o"
    )));
    drop(o);
}

/// The child side: runs inside the test harness of the child process.
#[test]
fn rescuer_child_entry() {
    let Some(scenario) = std::env::var_os(CHILD) else {
        return;
    };
    setup_log();
    // SAFETY: no preconditions.
    assert_ne!(unsafe { libc::geteuid() }, 0, "the child runs unprivileged");
    match scenario.to_str().unwrap() {
        "classic" => child_classic(),
        s => panic!("unknown scenario {s}"),
    }
    println!("child scenario ok");
}

/// Room for two workers in all: CPU 0's pool takes both for holders, then
/// no thread can be had; B, on a MEM_RECLAIM workqueue, is rescued.
fn child_classic() {
    let reclaim = reclaim_wq("g22_child");
    let holders = percpu_wq("g22_child_h");
    set_nproc_soft(settled_threads() + 2);
    let started = counter();
    let gate = Gate::new();
    let items = saturate_cpu0(&holders, &started, &gate);
    assert!(events_matching("could not create a worker") >= 1);
    let took = queue_timed(&reclaim, Some(&gate))
        .unwrap_or_else(|| panic!("B never ran\n{}", cmwq::dump()));
    println!("mayday -> rescued item start: {took:?}");
    assert!(
        took < Duration::from_millis(1500),
        "B started after {took:?}"
    );
    for w in &items {
        w.flush();
    }
    let st = reclaim.stats();
    assert!(st.mayday >= 1 && st.rescued >= 1, "{st:?}");
}

#[test]
fn g22_rescuer_under_a_real_thread_limit_unprivileged() {
    if is_child() {
        return;
    }
    let _s = serial();
    let text = run_child("classic");
    for l in text.lines().filter(|l| l.contains("->")) {
        println!("{l}");
    }
}

/// Run scenario `scenario` of [`rescuer_child_entry`] as uid 65534.
fn run_child(scenario: &str) -> String {
    run_unprivileged_child("rescuer_child_entry", CHILD, scenario)
}
