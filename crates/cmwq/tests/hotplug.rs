//! G35: CPUs that come and go. A CPU taken offline and brought back, and
//! the process's affinity narrowed and widened from outside (as `taskset
//! -a -p` does: every thread's mask set in turn), while items run on every
//! kind of workqueue, lose no item, run none twice, and leave every
//! allowed CPU busy afterwards.
//!
//! Taking a CPU offline needs root and a writable
//! `/sys/devices/system/cpu/cpuN/online`; where it is not writable the
//! test says so and skips that part. Both disturbances are undone by a
//! `Drop` guard (and `.ci/run` brings every CPU back in a `trap`), so a
//! failing assertion leaves the machine as it was.

mod common;

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cmwq::{Work, Workqueue, WqFlags};
use common::*;

/// Brings a CPU back online when dropped.
struct Offline {
    path: String,
}

impl Offline {
    /// Take `cpu` offline; `None` (with the reason) where that cannot be
    /// done here.
    fn take(cpu: usize) -> Result<Offline, String> {
        let path = format!("/sys/devices/system/cpu/cpu{cpu}/online");
        match std::fs::write(&path, "0") {
            Ok(()) => Ok(Offline { path }),
            Err(e) => Err(format!("{path}: {e}")),
        }
    }
}

impl Drop for Offline {
    fn drop(&mut self) {
        // The write may race the kernel's own hotplug work: try a while.
        for _ in 0..100 {
            if std::fs::write(&self.path, "1").is_ok()
                || std::fs::read_to_string(&self.path).is_ok_and(|s| s.trim() == "1")
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("could not bring {} back online", self.path);
    }
}

/// The kinds of workqueue the tests disturb, with whether items queued
/// from one thread spread over the CPUs (else each CPU is named with
/// `queue_on`) and whether more than one item may run at once.
struct Kind {
    wq: &'static Workqueue,
    spreads: bool,
    parallel: bool,
}

fn kinds() -> Vec<Kind> {
    fn leak(wq: Workqueue) -> &'static Workqueue {
        Box::leak(Box::new(wq))
    }
    let spreads = |wq: &Workqueue| wq.flags().contains(WqFlags::UNBOUND);
    let mut v: Vec<Kind> = [
        cmwq::system_wq(),
        cmwq::system_highpri_wq(),
        cmwq::system_dfl_wq(),
        cmwq::system_unbound_wq(),
        leak(
            Workqueue::builder("g35_default")
                .max_active(4)
                .build()
                .unwrap(),
        ),
        leak(
            Workqueue::builder("g35_unbound_cpu_intensive")
                .flags(WqFlags::UNBOUND | WqFlags::CPU_INTENSIVE)
                .build()
                .unwrap(),
        ),
        leak(
            Workqueue::builder("g35_reclaim")
                .flags(WqFlags::MEM_RECLAIM)
                .build()
                .unwrap(),
        ),
    ]
    .into_iter()
    .map(|wq| Kind {
        wq,
        spreads: spreads(wq),
        parallel: true,
    })
    .collect();
    v.push(Kind {
        wq: leak(Workqueue::ordered("g35_ordered", WqFlags::empty()).unwrap()),
        spreads: true,
        parallel: false,
    });
    v
}

/// A ledger of items: how often each ran.
struct Ledger {
    runs: Vec<AtomicU32>,
    done: AtomicUsize,
}

impl Ledger {
    fn new(n: usize) -> Arc<Ledger> {
        Arc::new(Ledger {
            runs: (0..n).map(|_| AtomicU32::new(0)).collect(),
            done: AtomicUsize::new(0),
        })
    }
}

/// Queue `per_kind` items on every kind from two producer threads (every
/// fourth on a CPU named with `queue_on`), half burning 300 us of CPU and
/// half sleeping 1 ms, while `disturb` runs on this thread; then wait for
/// all and check each ran exactly once.
fn run_through(kinds: &[Kind], per_kind: usize, disturb: impl FnOnce()) {
    let cpus = cmwq::nr_cpus();
    let n = kinds.len() * per_kind;
    let ledger = Ledger::new(n);
    let items: Arc<Vec<(usize, Work)>> = Arc::new(
        (0..n)
            .map(|i| {
                let l = ledger.clone();
                let w = Work::new(move |_| {
                    if i % 2 == 0 {
                        burn_cpu(Duration::from_micros(300));
                    } else {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    l.runs[i].fetch_add(1, SeqCst);
                    l.done.fetch_add(1, SeqCst);
                });
                (i / per_kind, w)
            })
            .collect(),
    );
    let queue = |from: usize| {
        let items = items.clone();
        let wqs: Vec<&'static Workqueue> = kinds.iter().map(|k| k.wq).collect();
        std::thread::spawn(move || {
            for (i, (k, w)) in items.iter().enumerate().skip(from).step_by(2) {
                let wq = wqs[*k];
                let queued = if i % 4 == 1 && !wq.is_ordered() {
                    wq.queue_on(i % cpus, w)
                } else {
                    wq.queue(w)
                };
                assert!(queued, "item {i} was not queued");
                if i % 64 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };
    let producers = [queue(0), queue(1)];
    disturb();
    for p in producers {
        p.join().unwrap();
    }
    let all_ran = wait_until(Duration::from_secs(60), || ledger.done.load(SeqCst) >= n);
    for k in kinds {
        k.wq.flush();
    }
    let twice: Vec<usize> = (0..n)
        .filter(|&i| ledger.runs[i].load(SeqCst) != 1)
        .collect();
    assert!(
        all_ran && twice.is_empty(),
        "{} of {n} ran; items not run exactly once: {:?}\n{}",
        ledger.done.load(SeqCst),
        &twice[..twice.len().min(20)],
        cmwq::dump()
    );
}

/// Every allowed CPU is busy afterwards: on each kind that runs items in
/// parallel, `2 x cpus` CPU-bound items run with `cpus` of them at once,
/// on every CPU of the mask. Up to 5 attempts (a noisy machine may take a
/// CPU away for a while); a pool that lost a CPU misses every one.
fn every_cpu_busy(kinds: &[Kind], allowed: &[usize]) {
    let n = allowed.len();
    for k in kinds.iter().filter(|k| k.parallel) {
        let mut last = String::new();
        let ok = (0..5).any(|attempt| {
            if attempt > 0 {
                std::thread::sleep(Duration::from_secs(1));
            }
            let (max, cpus) = cpu_spread(2 * n, Duration::from_millis(15), |i, w| {
                if k.spreads {
                    k.wq.queue(w);
                } else {
                    k.wq.queue_on(allowed[i % n], w);
                }
            });
            last = format!("at most {max} at once, on CPUs {cpus:?}");
            max >= n && cpus == allowed
        });
        assert!(
            ok,
            "{}: every CPU of {allowed:?} not busy afterwards: {last}\n{}",
            k.wq.name(),
            cmwq::dump()
        );
    }
}

/// Whether `dump()`'s pool lines show `cpu`'s pools disassociated.
fn disassociated(dump: &str, cpu: usize) -> bool {
    let tag = format!("cpu={cpu:3}");
    let lines: Vec<&str> = dump
        .lines()
        .filter(|l| l.starts_with("pool[") && l.contains(&tag))
        .collect();
    !lines.is_empty() && lines.iter().all(|l| l.contains("disassociated"))
}

#[test]
fn g35_cpu_offline_and_back_loses_nothing_and_keeps_every_cpu_busy() {
    let _s = serial();
    let all = own_affinity();
    if all.len() < 2 {
        println!("skipped: needs two usable CPUs");
        return;
    }
    // CPU 0 often cannot go offline: take the last one.
    let victim = *all.last().unwrap();
    let kinds = kinds();
    let mut skipped = None;
    run_through(&kinds, 1500, || {
        std::thread::sleep(Duration::from_millis(30));
        match Offline::take(victim) {
            Ok(guard) => {
                std::thread::sleep(Duration::from_millis(400));
                // dump() shows the offline CPU's pools disassociated.
                let d = cmwq::dump();
                assert!(
                    disassociated(&d, victim),
                    "CPU {victim} offline, its pools not shown disassociated:\n{d}"
                );
                drop(guard);
            }
            Err(why) => skipped = Some(why),
        }
    });
    if let Some(why) = skipped {
        println!("skipped taking CPU {victim} offline: {why}");
        return;
    }
    // Wait for the CPU to be usable again before asking for it.
    assert!(
        wait_until(Duration::from_secs(10), || own_affinity() == all),
        "CPU {victim} did not come back into the mask"
    );
    every_cpu_busy(&kinds, &all);
}

#[test]
fn g35_affinity_narrowed_and_widened_from_outside_loses_nothing() {
    let _s = serial();
    let all = own_affinity();
    if all.len() < 2 {
        println!("skipped: needs two usable CPUs");
        return;
    }
    let kinds = kinds();
    let start = Instant::now();
    run_through(&kinds, 1500, || {
        std::thread::sleep(Duration::from_millis(30));
        let guard = Narrowed::to(&all[..1], &all);
        std::thread::sleep(Duration::from_millis(400));
        let d = cmwq::dump();
        assert!(
            disassociated(&d, all[1]),
            "CPU {} outside the mask, its pools not shown disassociated:\n{d}",
            all[1]
        );
        drop(guard);
    });
    assert!(
        !disassociated(&cmwq::dump(), all[1]),
        "the mask widened again: CPU {} is no longer disassociated",
        all[1]
    );
    println!("items ran in {:?}", start.elapsed());
    every_cpu_busy(&kinds, &all);

    // The widened mask gave every thread every CPU: the workers of the
    // per-CPU pools and of the lanes pin themselves to their CPU again
    // before their next item once the monitor re-reads the mask (at most
    // about a second of busy time), and the sentinels are pinned again.
    // Each item queued on CPU c reports its worker's mask; most run on
    // workers that existed before (idle ones are woken first).
    let t = Instant::now();
    let mut wrong = Vec::new();
    let pinned = wait_until(Duration::from_secs(10), || {
        let masks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut items = Vec::new();
        for wq in [cmwq::system_wq(), cmwq::system_dfl_wq()] {
            for &cpu in &all {
                let m = masks.clone();
                let name = wq.name().to_string();
                let w = Work::new(move |_| {
                    // Behind a short block: the pool stays watched, so the
                    // monitor makes passes.
                    std::thread::sleep(Duration::from_millis(5));
                    m.lock().unwrap().push((name.clone(), cpu, own_affinity()));
                });
                wq.queue_on(cpu, &w);
                items.push((wq, w));
            }
        }
        for (wq, _) in &items {
            wq.flush();
        }
        wrong = masks
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, cpu, mask)| mask != &vec![*cpu])
            .map(|(wq, cpu, mask)| format!("{wq} on CPU {cpu}: {mask:?}"))
            .collect();
        wrong.extend(unpinned_sentinels());
        wrong.is_empty()
    });
    println!("pinned threads pinned again after {:?}", t.elapsed());
    assert!(
        pinned,
        "threads pinned to one CPU not pinned again after the mask widened: {wrong:?}"
    );
}

/// Sentinels (`cmwq-sent/C`, pinned to C) whose mask is not C alone:
/// "name: mask".
fn unpinned_sentinels() -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let dir = e.path();
        let (Ok(name), Ok(status)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("status")),
        ) else {
            continue;
        };
        let name = name.trim();
        let Some(cpu) = name
            .strip_prefix("cmwq-sent/")
            .and_then(|c| c.parse::<usize>().ok())
        else {
            continue;
        };
        let mask = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(str::trim)
            .unwrap_or("");
        if mask != cpu.to_string() {
            out.push(format!("{name}: {mask}"));
        }
    }
    out
}
