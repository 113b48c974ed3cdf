//! G19: unbound pools are concurrency managed over their pod;
//! `system_dfl_wq()` and `cmwq::spawn` use every CPU from one producer;
//! `CPU_INTENSIVE` unbound workqueues keep the kernel's unmanaged
//! behaviour. And G15 where users run: a block is found while other
//! processes keep every CPU busy.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cmwq::{Work, Workqueue, WqFlags};
use common::*;

/// Running items now and the most seen at once; CPUs they ran on.
#[derive(Default)]
struct Load {
    now: AtomicUsize,
    peak: AtomicUsize,
    cpus: Mutex<Vec<usize>>,
}

impl Load {
    fn enter(&self) {
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(n, SeqCst);
        self.cpus.lock().unwrap().push(current_cpu());
    }
    fn leave(&self) {
        self.now.fetch_sub(1, SeqCst);
    }
    fn distinct_cpus(&self) -> usize {
        let mut v = self.cpus.lock().unwrap().clone();
        v.sort_unstable();
        v.dedup();
        v.len()
    }
}

/// CPU-bound items (shorter than the hog threshold) spawned from one
/// thread run on every CPU, never more at once than there are CPUs.
#[test]
fn g19_spawn_from_one_thread_uses_every_cpu_with_one_runner_each() {
    let _s = serial();
    let n = own_affinity().len();
    let load = Arc::new(Load::default());
    let items: Vec<Work> = (0..8 * n)
        .map(|_| {
            let load = load.clone();
            cmwq::spawn(move || {
                load.enter();
                burn_cpu(Duration::from_millis(3));
                load.leave();
            })
        })
        .collect();
    for w in &items {
        w.flush();
    }
    let peak = load.peak.load(SeqCst);
    assert!(peak <= n, "{peak} CPU-bound items ran at once on {n} CPUs");
    if n >= 2 {
        assert_eq!(
            load.distinct_cpus(),
            n,
            "items queued from one thread used every CPU"
        );
    }
}

/// Items that block without a hint on a managed unbound pool: the pool
/// starts another worker when one blocks, so they overlap.
#[test]
fn g19_a_managed_unbound_pool_starts_another_worker_when_one_blocks() {
    let _s = serial();
    if cmwq::detection() == cmwq::Detect::Hint {
        eprintln!("skipping: detection forced to hint");
        return;
    }
    let n = own_affinity().len();
    let count = 4 * n;
    let block = Duration::from_millis(40);
    let t0 = Instant::now();
    let items: Vec<Work> = (0..count)
        .map(|_| cmwq::spawn(move || std::thread::sleep(block)))
        .collect();
    for w in &items {
        w.flush();
    }
    let took = t0.elapsed();
    // One after another per CPU would take count / n blocks (160 ms).
    assert!(
        took < block * 2 + Duration::from_millis(40),
        "{count} blocking items took {took:?} ({:?} mode)",
        cmwq::detection()
    );
}

/// G17 on a spreading workqueue: its pod is a lane per CPU, each with its
/// own pwq, and `max_active` is still per pod: producers on every CPU
/// together never run more than `max_active` items at once (the lanes
/// share one active count), and every item runs.
#[test]
fn g17_g19_max_active_is_shared_by_the_lanes_of_a_pod() {
    let _s = serial();
    let cpus = own_affinity();
    let wq = Arc::new(
        Workqueue::builder("g17_lanes")
            .max_active(3)
            .build()
            .unwrap(),
    );
    let conc = Concurrency::new();
    let per = 12;
    let producers: Vec<_> = cpus
        .iter()
        .map(|&cpu| {
            let (wq, conc) = (wq.clone(), conc.clone());
            std::thread::spawn(move || {
                pin_self(&[cpu]);
                (0..per)
                    .map(|_| {
                        let c = conc.clone();
                        wq.spawn(move || {
                            c.enter();
                            // Hinted: a managed pool would otherwise start
                            // the next item anyway, up to max_active.
                            cmwq::blocking(|| std::thread::sleep(Duration::from_millis(5)));
                            c.exit();
                        })
                    })
                    .collect::<Vec<Work>>()
            })
        })
        .collect();
    let items: Vec<Work> = producers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    for w in &items {
        w.flush();
    }
    wq.flush();
    assert_eq!(conc.total(), per * cpus.len());
    assert!(
        conc.max() <= 3,
        "{} ran at once with max_active 3 over {} lanes",
        conc.max(),
        cpus.len()
    );
    assert_eq!(wq.stats().in_flight, 0);
}

/// A throttled item of a lane group cancelled while it waits for a slot
/// leaves nothing waiting: the workqueue is not congested afterwards (its
/// pwq is off the group's waiting list), on any CPU.
#[test]
fn g9_g17_cancelling_a_throttled_item_of_a_lane_leaves_no_waiter() {
    let _s = serial();
    let cpus = own_affinity();
    if cpus.len() < 2 {
        eprintln!("skipping: needs two usable CPUs");
        return;
    }
    let wq = Arc::new(
        Workqueue::builder("g17_lane_cancel")
            .max_active(1)
            .build()
            .unwrap(),
    );
    let gate = Gate::new();
    let g2 = gate.clone();
    let holder = Work::new(move |_| cmwq::blocking(|| g2.wait()));
    assert!(wq.queue_on(cpus[0], &holder));
    assert!(wait_until(Duration::from_secs(5), || holder.is_running()));
    let throttled = Work::new(|_| {});
    assert!(wq.queue_on(cpus[1], &throttled));
    assert!(wq.is_congested(cpus[0]) && wq.is_congested(cpus[1]));
    let cancelled = throttled.cancel();
    let congested = wq.is_congested(cpus[0]) || wq.is_congested(cpus[1]);
    // Before asserting: a failing assertion must not leave the holder
    // blocked (dropping the workqueue drains it).
    gate.open();
    assert!(cancelled, "a throttled item is cancelled");
    assert!(!congested, "nothing waits for a slot any more");
    wq.flush();
    assert_eq!(wq.stats().in_flight, 0);
}

/// `UNBOUND | CPU_INTENSIVE`: not managed, every item starts as soon as a
/// worker can be had.
#[test]
fn g19_cpu_intensive_unbound_workqueues_are_not_managed() {
    let _s = serial();
    let n = own_affinity().len();
    let wq = Workqueue::builder("g19_intensive")
        .flags(WqFlags::UNBOUND | WqFlags::CPU_INTENSIVE)
        .build()
        .unwrap();
    let load = Arc::new(Load::default());
    let items: Vec<Work> = (0..3 * n)
        .map(|_| {
            let load = load.clone();
            wq.spawn(move || {
                load.enter();
                std::thread::sleep(Duration::from_millis(30));
                load.leave();
            })
        })
        .collect();
    for w in &items {
        w.flush();
    }
    assert!(
        load.peak.load(SeqCst) > n,
        "unmanaged: more than {n} ran at once (peak {})",
        load.peak.load(SeqCst)
    );
}

/// `CPU_INTENSIVE` on a spreading workqueue (no `UNBOUND`, no `PERCPU`):
/// the pools stay managed; up to as many of its items as there are CPUs
/// leave concurrency management at once, the rest take runners' slots. So
/// short CPU-bound items (below the hog threshold) run more than one per
/// CPU, never more than two.
#[test]
fn g16_g19_cpu_intensive_on_a_spreading_workqueue_stays_managed() {
    let _s = serial();
    let n = own_affinity().len();
    let wq = Workqueue::builder("g16_spreading_intensive")
        .flags(WqFlags::CPU_INTENSIVE)
        .build()
        .unwrap();
    let info = cmwq::dump::workqueues();
    let me = info
        .iter()
        .find(|w| w.name == "g16_spreading_intensive")
        .unwrap();
    assert!(me.spreading && !me.unmanaged, "{me:?}");
    let mut peaks = Vec::new();
    let ok = (0..5).any(|_| {
        let load = Arc::new(Load::default());
        let items: Vec<Work> = (0..8 * n)
            .map(|_| {
                let load = load.clone();
                wq.spawn(move || {
                    load.enter();
                    burn_cpu(Duration::from_millis(4));
                    load.leave();
                })
            })
            .collect();
        for w in &items {
            w.flush();
        }
        let peak = load.peak.load(SeqCst);
        assert!(peak <= 2 * n, "{peak} ran at once on {n} CPUs: unmanaged");
        peaks.push(peak);
        peak > n
    });
    assert!(
        ok,
        "CPU_INTENSIVE items never left management: peaks {peaks:?}"
    );
    assert_eq!(wq.stats().cpu_hog, 0, "not hogs: {:?}", wq.stats());
}

/// G16 on a managed unbound pool: CPU hogs are counted in `cpu_hog`, and
/// at most `concurrency` of them leave concurrency management, so CPU-bound
/// jobs spawned by the dozen run at most twice as many at once as the pod
/// has CPUs (before, every hog let the next item start: 15 ran at once on
/// 2 CPUs).
#[test]
fn g16_g19_cpu_hogs_on_a_managed_unbound_pool_are_counted_and_bounded() {
    let _s = serial();
    if cmwq::detection() == cmwq::Detect::Hint {
        eprintln!("skipping: detection forced to hint (no hog detection on unbound pools)");
        return;
    }
    let n = own_affinity().len();
    let wq = Workqueue::builder("g16_unbound_hogs")
        .flags(WqFlags::UNBOUND)
        .build()
        .unwrap();
    let load = Arc::new(Load::default());
    let items: Vec<Work> = (0..6 * n)
        .map(|_| {
            let load = load.clone();
            wq.spawn(move || {
                load.enter();
                burn_cpu(Duration::from_millis(40));
                load.leave();
            })
        })
        .collect();
    for w in &items {
        w.flush();
    }
    let peak = load.peak.load(SeqCst);
    assert!(peak <= 2 * n, "{peak} hogs ran at once on {n} CPUs");
    assert!(wq.stats().cpu_hog >= 1, "hogs counted: {:?}", wq.stats());
}

/// Child processes that keep every CPU busy until dropped.
struct Hogs(Vec<std::process::Child>);

impl Hogs {
    fn start(n: usize) -> Hogs {
        Hogs(
            (0..n)
                .map(|_| {
                    std::process::Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .expect("sh")
                })
                .collect(),
        )
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// G15 under load: with another process spinning on every CPU (the
/// sentinels are starved), an unhinted block on a bound pool still lets
/// the next item start well before the block ends (the backstop).
#[test]
fn g15_block_found_while_other_processes_keep_every_cpu_busy() {
    let _s = serial();
    if cmwq::detection() == cmwq::Detect::Hint {
        eprintln!("skipping: detection forced to hint");
        return;
    }
    let n = own_affinity().len();
    let cpu = own_affinity()[0];
    let wq = Workqueue::new("g15_loaded").unwrap();
    let _hogs = Hogs::start(n);
    std::thread::sleep(Duration::from_millis(50));
    let mut misses = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        let started = Arc::new(Mutex::new(None));
        let s2 = started.clone();
        let x = Work::new(move |_| {
            burn_cpu(Duration::from_millis(1));
            std::thread::sleep(Duration::from_millis(200));
        });
        let y = Work::new(move |_| *s2.lock().unwrap() = Some(t0.elapsed()));
        wq.queue_on(cpu, &x);
        wq.queue_on(cpu, &y);
        y.flush();
        let at = started.lock().unwrap().unwrap();
        x.flush();
        if at < Duration::from_millis(150) {
            return;
        }
        misses.push(at);
    }
    panic!(
        "under load the next item waited for the blocked one: {misses:?} ({:?} mode)\n{}",
        cmwq::detection(),
        cmwq::dump()
    );
}

/// Threads of the process named as unbound workers (`kworker/uN:M`).
fn unbound_workers() -> usize {
    thread_names()
        .iter()
        .filter(|n| n.starts_with("kworker/u"))
        .count()
}

/// Tiny items from one producer keep every lane of a spreading workqueue
/// busy without starting workers: nothing blocks, so concurrency
/// management has nothing to cover. Regression: a lane's worker that slept
/// on a sibling's pool lock (taking its items) was taken for blocked, and
/// the sentinel of an idle lane woke the same awakened spare again and
/// again while it was on its way; together they grew the lanes to dozens
/// of workers (49 and 109 on 2 CPUs) and woke them hundreds of thousands
/// of times a second.
#[test]
fn g15_g19_tiny_items_on_the_lanes_start_no_workers() {
    let _s = serial();
    let wq = Workqueue::new("g15_tiny").unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let works: Vec<Work> = (0..1024)
        .map(|_| {
            let runs = runs.clone();
            Work::new(move |_| {
                runs.fetch_add(1, SeqCst);
            })
        })
        .collect();
    // Warm-up: every lane has its worker.
    for (i, w) in works.iter().enumerate() {
        wq.queue_on(i % cmwq::nr_cpus(), w);
    }
    wq.flush();
    std::thread::sleep(Duration::from_millis(50));
    let before = unbound_workers();
    let cm_before = wq.stats().cm_wakeups;
    let until = Instant::now() + Duration::from_secs(2);
    let (mut i, mut misses, mut queued) = (0, 0, 0u64);
    while Instant::now() < until {
        for _ in 0..4096 {
            if wq.queue(&works[i]) {
                queued += 1;
                misses = 0;
            } else {
                misses += 1;
                if misses == works.len() {
                    works[(i + works.len() / 2) % works.len()].flush();
                    misses = 0;
                }
            }
            i = (i + 1) % works.len();
        }
    }
    wq.flush();
    let grown = unbound_workers().saturating_sub(before);
    let cm = wq.stats().cm_wakeups - cm_before;
    eprintln!("{queued} tiny items: {grown} unbound workers started, {cm} wake-ups for blocks");
    assert!(queued > 10_000, "the producer queued {queued} items");
    // Tolerance: a worker preempted for long by the rest of the machine
    // may once be taken for blocked.
    assert!(
        grown <= 2 * cmwq::nr_cpus(),
        "{grown} workers started for items that never block"
    );
    assert!(
        cm <= 20,
        "{cm} wake-ups for blocks of items that never block"
    );
}

/// `count` items that each burn `cpu` of CPU, counted in `load`.
fn cpu_items(load: &Arc<Load>, count: usize, cpu: Duration) -> Vec<Work> {
    (0..count)
        .map(|_| {
            let load = load.clone();
            Work::new(move |_| {
                load.enter();
                burn_cpu(cpu);
                load.leave();
            })
        })
        .collect()
}

/// Whether `dump()` shows a lane keeping a standby.
fn some_lane_has_a_standby() -> bool {
    cmwq::dump()
        .lines()
        .any(|l| l.contains(" lane=") && l.ends_with(" standby"))
}

/// A lane whose items block often keeps one runner more than its CPU (a
/// standby, so that the scheduler covers a block at once), and sheds it
/// once its items stop blocking: CPU-bound items then run one per CPU
/// again.
#[test]
fn g15_g19_a_lane_keeps_a_standby_while_its_items_block_often() {
    let _s = serial();
    let wq = Workqueue::new("g19_standby").unwrap();
    let n = own_affinity().len();
    // Items that block 1 ms after a little CPU: thousands of blocks a
    // second on every lane.
    let until = Instant::now() + Duration::from_millis(600);
    let mut seen = false;
    let blockers: Vec<Work> = (0..8 * n)
        .map(|_| {
            Work::new(|_| {
                spin_for(Duration::from_micros(50));
                std::thread::sleep(Duration::from_millis(1));
            })
        })
        .collect();
    while Instant::now() < until {
        for w in &blockers {
            wq.queue(w);
        }
        std::thread::sleep(Duration::from_millis(2));
        seen |= some_lane_has_a_standby();
    }
    wq.flush();
    assert!(seen, "a lane kept a standby while its items blocked often");
    if n >= 2 {
        // A standby never keeps a CPU idle: two CPU-bound items queued from
        // one CPU right after the blocking phase run on two CPUs, not both
        // on that CPU's lane (its extra runner runs only while every other
        // lane has a runner).
        let load = Arc::new(Load::default());
        let two = cpu_items(&load, 2, Duration::from_millis(30));
        let cpu0 = own_affinity()[0];
        std::thread::scope(|sc| {
            sc.spawn(|| {
                pin_self(&[cpu0]);
                for w in &two {
                    wq.queue(w);
                }
            });
        });
        wq.flush();
        assert_eq!(load.distinct_cpus(), 2, "two CPU-bound items on one CPU");
    }
    // Then CPU-bound items, longer than the judging window: the standby is
    // shed at an item boundary, and one item runs per CPU.
    let load = Arc::new(Load::default());
    let items = cpu_items(&load, 6 * n, Duration::from_millis(5));
    // Rounds of them outlast a judging window with no block: shed.
    for _ in 0..40 {
        for w in &items {
            wq.queue(w);
        }
        wq.flush();
    }
    assert!(!some_lane_has_a_standby(), "{}", cmwq::dump());
    load.peak.store(0, SeqCst);
    for w in &items {
        wq.queue(w);
    }
    wq.flush();
    let peak = load.peak.load(SeqCst);
    assert!(peak <= n, "{peak} CPU-bound items ran at once on {n} CPUs");
}
