//! Fork (G26): a child forked from a process whose pools are busy can use
//! cmwq at once; items pending, armed or running in the parent never run
//! in the child, and run exactly once in the parent.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cmwq::{Work, Workqueue, WqFlags};

/// Wait for `pid` for at most `timeout`; kill it if it is still running.
/// Returns its exit status, or `None` if it hung.
fn wait_child(pid: libc::pid_t, timeout: Duration) -> Option<i32> {
    assert!(pid > 0, "wait_child({pid})");
    let end = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: plain system call with a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return Some(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            });
        }
        if Instant::now() > end {
            // Say where it hung: each thread's name, kernel wait channel
            // and system call.
            if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
                for t in tasks.flatten() {
                    let rd = |f: &str| {
                        std::fs::read_to_string(t.path().join(f))
                            .unwrap_or_default()
                            .trim()
                            .to_string()
                    };
                    eprintln!(
                        "hung child {pid} thread {:?}: {} wchan={} syscall={}",
                        t.file_name(),
                        rd("comm"),
                        rd("wchan"),
                        rd("syscall")
                    );
                }
            }
            // CMWQ_FORK_GDB=1: each thread's stack too.
            if std::env::var_os("CMWQ_FORK_GDB").is_some() {
                let _ = std::process::Command::new("gdb")
                    .args([
                        "-p",
                        &pid.to_string(),
                        "-batch",
                        "-ex",
                        "thread apply all bt",
                    ])
                    .status();
            }
            // SAFETY: plain system calls on our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Run `f` in a forked child; the child exits with `f`'s code. Returns the
/// child's pid.
fn fork_child(f: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: fork has no memory-safety preconditions; the child runs `f`
    // and leaves with `_exit`, never returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(99);
        // SAFETY: ends the child without running the parent's exit path.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// The child's checks: the parent's items do not run here; every kind of
/// workqueue works; returns 0 or a distinct failure code.
fn child_checks(ledger: &[AtomicUsize], wqs: &[&Workqueue], first_item: &AtomicU64) -> i32 {
    let before: Vec<usize> = ledger.iter().map(|c| c.load(SeqCst)).collect();
    let t = Instant::now();
    let ran = Arc::new(AtomicUsize::new(0));
    let r2 = ran.clone();
    let w = Work::new(move |_| {
        r2.fetch_add(1, SeqCst);
    });
    if !cmwq::system_wq().queue(&w) {
        return 10;
    }
    w.flush();
    first_item.store(t.elapsed().as_nanos() as u64, SeqCst);
    if ran.load(SeqCst) != 1 {
        return 11;
    }
    for (i, wq) in wqs.iter().enumerate() {
        let r = ran.clone();
        let w = Work::new(move |_| {
            r.fetch_add(1, SeqCst);
        });
        if !wq.queue(&w) {
            return 20 + i as i32;
        }
        wq.flush(); // no colour of the parent's flushers is left waiting
        if w.is_running() || w.is_pending() {
            return 30 + i as i32;
        }
    }
    // A timer armed in the child fires no sooner than asked (the wheel's
    // time was not disturbed by disarming the parent's timers).
    let r = ran.clone();
    let armed = Instant::now();
    let early = Arc::new(AtomicBool::new(false));
    let e2 = early.clone();
    let d = Work::new(move |_| {
        e2.store(armed.elapsed() < Duration::from_millis(30), SeqCst);
        r.fetch_add(1, SeqCst);
    });
    cmwq::system_wq().queue_delayed(&d, Duration::from_millis(30));
    while d.is_pending() || d.is_running() {
        std::thread::sleep(Duration::from_millis(1));
    }
    if ran.load(SeqCst) != 2 + wqs.len() {
        return 40;
    }
    if early.load(SeqCst) {
        return 41;
    }
    for wq in wqs {
        wq.drain();
    }
    // Give anything of the parent's a chance to (wrongly) run here.
    std::thread::sleep(Duration::from_millis(100));
    let after: Vec<usize> = ledger.iter().map(|c| c.load(SeqCst)).collect();
    if before != after {
        return 50;
    }
    // The parent's rescuer runs again here, and sleeps while idle (its
    // parker was left PARKED by the parent's thread: a busy loop).
    std::thread::sleep(Duration::from_millis(300));
    if let Some(ticks) = thread_cpu_ticks("kworker/R-g26_r") {
        if ticks > 10 {
            eprintln!("the child's rescuer used {ticks} ticks of CPU in 300 ms");
            return 55;
        }
    }
    // A workqueue made in the child, with a rescuer.
    match Workqueue::builder("g26_child_reclaim")
        .flags(WqFlags::MEM_RECLAIM)
        .build()
    {
        Ok(q) => {
            let r = ran.clone();
            let w = Work::new(move |_| {
                r.fetch_add(1, SeqCst);
            });
            q.queue(&w);
            q.flush();
            if !cmwq::dump().contains("kworker/R-g26_c") {
                return 61;
            }
        }
        Err(_) => return 60,
    }
    0
}

#[test]
fn g26_fork_from_a_busy_process() {
    let _s = common::serial();
    let bound = Arc::new(common::percpu_wq("g26_bound"));
    let unbound = Arc::new(
        Workqueue::builder("g26_unbound")
            .flags(WqFlags::UNBOUND)
            .build()
            .unwrap(),
    );
    let ordered = Arc::new(Workqueue::ordered("g26_ordered", WqFlags::empty()).unwrap());
    let reclaim = Arc::new(
        Workqueue::builder("g26_reclaim")
            .flags(WqFlags::MEM_RECLAIM)
            .build()
            .unwrap(),
    );
    let all: Vec<Arc<Workqueue>> = vec![bound.clone(), unbound.clone(), ordered, reclaim];
    // The ledger: one counter per item, each item queued exactly once.
    const N: usize = 20_000;
    let ledger: Arc<Vec<AtomicUsize>> = Arc::new((0..N).map(|_| AtomicUsize::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let mut feeders = Vec::new();
    for t in 0..2 {
        let (ledger, stop, next, all) = (ledger.clone(), stop.clone(), next.clone(), all.clone());
        feeders.push(std::thread::spawn(move || {
            let mut items = Vec::new();
            while !stop.load(SeqCst) {
                let i = next.fetch_add(1, SeqCst);
                if i >= N {
                    break;
                }
                let l = ledger.clone();
                let w = Work::new(move |_| {
                    l[i].fetch_add(1, SeqCst);
                    if i % 7 == 0 {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                });
                let wq = &all[(i + t) % all.len()];
                let ok = if i % 5 == 0 {
                    wq.queue_delayed(&w, Duration::from_millis((i % 20) as u64))
                } else {
                    wq.queue(&w)
                };
                assert!(ok);
                items.push(w);
                if i % 64 == 0 {
                    std::thread::sleep(Duration::from_micros(300));
                }
            }
            items
        }));
    }
    // Threads of the parent blocked in cmwq at the instant of the fork:
    // flushers of items and of workqueues, and cancel_sync callers.
    let mut waiters = Vec::new();
    for k in 0..2 {
        let (stop, all) = (stop.clone(), all.clone());
        waiters.push(std::thread::spawn(move || {
            let w = Work::new(|_| std::thread::sleep(Duration::from_micros(500)));
            while !stop.load(SeqCst) {
                let wq = &all[k % all.len()];
                wq.queue(&w);
                if k == 0 {
                    w.flush();
                } else {
                    w.cancel_sync();
                }
                wq.flush();
            }
        }));
    }
    let mut firsts = Vec::new();
    let mut failures = Vec::new();
    for round in 0..12 {
        std::thread::sleep(Duration::from_millis(15));
        let first = Arc::new(AtomicU64::new(0));
        let (l, f) = (ledger.clone(), first.clone());
        let wqs: Vec<Arc<Workqueue>> = all.clone();
        // Shared memory for the child's figure would need mmap; the child
        // prints it instead, and the parent only checks the exit code.
        let pid = fork_child(move || {
            let refs: Vec<&Workqueue> = wqs.iter().map(|w| &**w).collect();
            let code = child_checks(&l, &refs, &f);
            eprintln!(
                "fork round {round}: child first item after {:?}",
                Duration::from_nanos(f.load(SeqCst))
            );
            code
        });
        match wait_child(pid, Duration::from_secs(10)) {
            Some(0) => {}
            Some(c) => failures.push(format!("round {round}: child exited {c}")),
            None => failures.push(format!("round {round}: child hung")),
        }
        firsts.push(first);
    }
    stop.store(true, SeqCst);
    for h in waiters {
        h.join().unwrap();
    }
    let items: Vec<Work> = feeders
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    for w in &items {
        w.flush();
    }
    for wq in &all {
        wq.flush();
    }
    assert!(failures.is_empty(), "{failures:?}");
    let queued = items.len();
    let ran_once = ledger
        .iter()
        .take(queued)
        .filter(|c| c.load(SeqCst) == 1)
        .count();
    assert_eq!(
        ran_once, queued,
        "every item ran exactly once in the parent"
    );
    assert!(ledger.iter().all(|c| c.load(SeqCst) <= 1));
}

/// A fork from inside a work item: the child can use cmwq; if the item
/// then returns in the child, the child exits cleanly instead of running
/// a worker that no longer exists there.
#[test]
fn g26_fork_from_inside_a_work_item() {
    let _s = common::serial();
    let status = Arc::new(std::sync::Mutex::new(Vec::new()));
    for returns in [false, true] {
        let st = status.clone();
        let w = Work::new(move |_| {
            let pid = fork_child_in_item(returns);
            if pid == 0 {
                return; // the child, returning from the item
            }
            st.lock()
                .unwrap()
                .push(wait_child(pid, Duration::from_secs(20)));
        });
        cmwq::system_wq().queue(&w);
        w.flush();
    }
    assert_eq!(*status.lock().unwrap(), vec![Some(0), Some(0)]);
}

/// Fork inside an item. The child queues and flushes an item; then either
/// exits, or returns from the item (`returns`).
fn fork_child_in_item(returns: bool) -> libc::pid_t {
    // SAFETY: see `fork_child`; in the second case the child deliberately
    // returns into the worker, which must end the process.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let w = Work::new(move |_| {
            r.fetch_add(1, SeqCst);
        });
        cmwq::system_wq().queue(&w);
        w.flush();
        // Still inside the item: current_work() is that item.
        let ok = ran.load(SeqCst) == 1 && cmwq::current_work().is_some();
        if !ok {
            // SAFETY: leaves the child.
            unsafe { libc::_exit(3) };
        }
        if !returns {
            // SAFETY: leaves the child.
            unsafe { libc::_exit(0) };
        }
        return 0; // back into the worker, in the child
    }
    pid
}

/// CPU time (clock ticks) of this process's thread named `name`.
fn thread_cpu_ticks(name: &str) -> Option<u64> {
    for t in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // Fields 14 and 15 of stat (utime, stime): 12 and 13 after ")".
        return Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?);
    }
    None
}

/// A fork from inside an item that queues that item again in the child:
/// no second execution starts beside the one still running there.
#[test]
fn g26_g3_the_forking_item_does_not_run_twice_in_the_child() {
    let _s = common::serial();
    let entered = Arc::new(AtomicUsize::new(0));
    let status = Arc::new(std::sync::Mutex::new(None));
    let (e, st) = (entered.clone(), status.clone());
    let w = Work::new(move |me| {
        if e.fetch_add(1, SeqCst) > 0 {
            return; // a second execution (must not happen in the child)
        }
        // SAFETY: see `fork_child`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            cmwq::system_wq().queue(me);
            std::thread::sleep(Duration::from_millis(200));
            let code = if e.load(SeqCst) > 1 { 5 } else { 0 };
            // SAFETY: leaves the child.
            unsafe { libc::_exit(code) };
        }
        *st.lock().unwrap() = Some(wait_child(pid, Duration::from_secs(20)));
    });
    cmwq::system_wq().queue(&w);
    w.flush();
    assert_eq!(
        *status.lock().unwrap(),
        Some(Some(0)),
        "5: a second execution ran"
    );
}

/// Items other threads are queueing at the instant of the fork (they own
/// the PENDING bit and wait for a pool lock the fork holds) read idle in
/// the child: cancel_sync returns, and they can be queued and run there.
#[test]
fn g26_items_being_queued_at_the_fork_are_usable_in_the_child() {
    let _s = common::serial();
    let items: Arc<Vec<Work>> = Arc::new((0..64).map(|_| Work::new(|_| {})).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let feeders: Vec<_> = (0..4)
        .map(|t| {
            let (items, stop) = (items.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(SeqCst) {
                    cmwq::system_wq().queue(&items[i % items.len()]);
                    i += 1;
                }
            })
        })
        .collect();
    let mut failures = Vec::new();
    for round in 0..10 {
        std::thread::sleep(Duration::from_millis(10));
        let items = items.clone();
        let pid = fork_child(move || {
            for w in items.iter() {
                w.cancel_sync();
                if w.is_pending() {
                    return 1;
                }
            }
            let ran = Arc::new(AtomicUsize::new(0));
            for w in items.iter() {
                if !cmwq::system_wq().queue(w) {
                    return 2;
                }
            }
            for w in items.iter() {
                w.flush();
            }
            ran.store(1, SeqCst);
            0
        });
        match wait_child(pid, Duration::from_secs(10)) {
            Some(0) => {}
            c => failures.push(format!("round {round}: {c:?}")),
        }
    }
    stop.store(true, SeqCst);
    for f in feeders {
        f.join().unwrap();
    }
    for w in items.iter() {
        w.flush();
    }
    assert!(failures.is_empty(), "{failures:?}");
}

/// The forking item in every state it can be in at the fork (queued again
/// and throttled, armed, handed over to by another CPU's worker): in the
/// child it never runs a second time, cancelling it releases nothing twice
/// (workqueue flushes still return), and its own flush and cancel_sync do
/// not wait for itself.
#[test]
fn g26_g3_the_forking_item_in_any_state() {
    let _s = common::serial();
    let throttled = Arc::new(
        Workqueue::builder("g26_throttled")
            .max_active(1)
            .build()
            .unwrap(),
    );
    for variant in ["queued", "armed", "collided"] {
        let entered = Arc::new(AtomicUsize::new(0));
        let status = Arc::new(std::sync::Mutex::new(None));
        let (e, st, q) = (entered.clone(), status.clone(), throttled.clone());
        let w = Work::new(move |me| {
            if e.fetch_add(1, SeqCst) > 0 {
                return;
            }
            match variant {
                // Pending behind itself on a max_active 1 workqueue.
                "queued" => assert!(q.queue(me)),
                "armed" => assert!(q.queue_delayed(me, Duration::from_millis(50))),
                // Another CPU's worker dequeues it while it runs.
                _ => {
                    let other = (common::current_cpu() + 1) % cmwq::nr_cpus();
                    assert!(cmwq::system_wq().queue_on(other, me));
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            // SAFETY: see `fork_child`.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    me.cancel();
                    if me.flush() {
                        return 3; // waited for itself
                    }
                    me.cancel_sync();
                    // Nothing of the parent's accounting is released twice:
                    // flushes return.
                    cmwq::system_wq().flush();
                    cmwq::system_unbound_wq().flush();
                    // Queued again here, it never starts beside this
                    // execution (and is cancelled before leaving).
                    cmwq::system_wq().queue(me);
                    std::thread::sleep(Duration::from_millis(150));
                    me.cancel();
                    if e.load(SeqCst) > 1 {
                        return 5; // a second execution ran beside this one
                    }
                    0
                }))
                .unwrap_or(99);
                // SAFETY: leaves the child.
                unsafe { libc::_exit(code) };
            }
            *st.lock().unwrap() = Some(wait_child(pid, Duration::from_secs(20)));
        });
        throttled.queue(&w);
        w.flush();
        throttled.flush();
        w.cancel_sync();
        assert_eq!(
            *status.lock().unwrap(),
            Some(Some(0)),
            "{variant}: 3 = waited for itself, 5 = ran twice, None = hung"
        );
    }
}

/// G26, G15: a child forked while a pool had work pending behind a running
/// worker (its sentinels armed) arms its own sentinels again: an unhinted
/// block in the child is found by a sentinel, not left to the backstop.
/// Before the fix the pool's "sentinels armed" flag survived the fork
/// while no sentinel was armed in the child, so its sentinels never ran.
#[test]
fn g26_g15_sentinels_arm_again_in_a_forked_child() {
    let _s = common::serial();
    if cmwq::detection() != cmwq::Detect::Sentinel {
        eprintln!("skipping: detection is {:?}", cmwq::detection());
        return;
    }
    let cpu = common::own_affinity()[0];
    let wq = common::percpu_wq("g26_sentinel");
    // In the parent: a runner with an item pending behind it.
    let x = Work::new(|_| common::burn_cpu(Duration::from_millis(40)));
    let y = Work::new(|_| {});
    wq.queue_on(cpu, &x);
    wq.queue_on(cpu, &y);
    std::thread::sleep(Duration::from_millis(10));
    let wq2 = &wq;
    let pid = fork_child(move || {
        let picks0 = cmwq::__bench::sentinel_counts().0;
        let mut late = 0;
        for _ in 0..3 {
            let t0 = Instant::now();
            let blocked_at = Arc::new(AtomicU64::new(0));
            let started_at = Arc::new(AtomicU64::new(0));
            let (b1, s1) = (blocked_at.clone(), started_at.clone());
            let a = Work::new(move |_| {
                common::burn_cpu(Duration::from_millis(1));
                b1.store(t0.elapsed().as_micros() as u64, SeqCst);
                std::thread::sleep(Duration::from_millis(60));
            });
            let b = Work::new(move |_| s1.store(t0.elapsed().as_micros() as u64, SeqCst));
            wq2.queue_on(cpu, &a);
            wq2.queue_on(cpu, &b);
            b.flush();
            a.flush();
            let gap = started_at
                .load(SeqCst)
                .saturating_sub(blocked_at.load(SeqCst));
            if gap > 10_000 {
                late += 1;
            }
        }
        let picks = cmwq::__bench::sentinel_counts().0 - picks0;
        if picks == 0 {
            eprintln!("child: no sentinel ran");
            return 1;
        }
        if late == 3 {
            eprintln!("child: every round waited > 10 ms for the backstop");
            return 2;
        }
        0
    });
    assert_eq!(wait_child(pid, Duration::from_secs(20)), Some(0));
    x.flush();
    y.flush();
}
