//! A short mixed workload touching every part of the library, meant to run
//! under valgrind's memcheck (`.ci/run` does): bound, unbound, ordered,
//! highpri, freezable and throttled workqueues; delayed work, re-arms,
//! cancels, disables, flushes, drains, `apply_attrs`, freeze/thaw,
//! panicking items and destructors, workqueues created and dropped. It
//! checks its own ledger and exits non-zero on a mismatch.
//!
//!     cargo run --release -p cmwq --example mixed_workload
//!     valgrind --error-exitcode=99 target/release/examples/mixed_workload
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use cmwq::{AffinityScope, Work, Workqueue, WqAttrs, WqFlags};

fn quiet(_: &cmwq::Event<'_>) {}

struct PanicOnDrop;
impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("destructor panics (contained)");
    }
}

fn main() {
    cmwq::Config::default()
        .log(quiet)
        .apply()
        .expect("before first use");
    std::panic::set_hook(Box::new(|_| {}));
    let rounds: u64 = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let runs = Arc::new(AtomicU64::new(0));
    let mk = |runs: &Arc<AtomicU64>| {
        let r = runs.clone();
        Work::new(move |_| {
            r.fetch_add(1, SeqCst);
        })
    };
    let items: Vec<Work> = (0..8).map(|_| mk(&runs)).collect();
    let unbound = Workqueue::builder("mixed_unbound")
        .flags(WqFlags::UNBOUND)
        .max_active(3)
        .build()
        .unwrap();
    let freezable = Workqueue::builder("mixed_freezable")
        .flags(WqFlags::FREEZABLE)
        .build()
        .unwrap();
    let mut expected = 0u64;
    let mut cancelled = 0u64;
    for round in 0..rounds {
        let bound = Workqueue::builder("mixed_bound")
            .flags(WqFlags::PERCPU)
            .max_active(1 + (round % 3) as u32)
            .build()
            .unwrap();
        let ordered = Workqueue::ordered("mixed_ordered", WqFlags::empty()).unwrap();
        let highpri = Workqueue::builder("mixed_highpri")
            .flags(WqFlags::HIGHPRI)
            .build()
            .unwrap();
        let wqs = [&bound, &ordered, &highpri, &unbound, &freezable];
        for (i, w) in items.iter().enumerate() {
            let wq = wqs[(i + round as usize) % wqs.len()];
            match (i + round as usize) % 4 {
                0 => expected += wq.queue(w) as u64,
                1 => expected += wq.queue_delayed(w, Duration::from_millis(1)) as u64,
                2 => expected += (!wq.mod_delayed(w, Duration::ZERO)) as u64,
                _ => {
                    expected += wq.queue(w) as u64;
                    cancelled += w.cancel() as u64;
                }
            }
        }
        if round % 5 == 0 {
            cmwq::freeze();
            cmwq::thaw();
        }
        if round % 7 == 0 {
            unbound
                .apply_attrs(&WqAttrs {
                    nice: (round % 3) as i32,
                    cpus: None,
                    affinity_scope: AffinityScope::System,
                    affinity_strict: round % 2 == 0,
                })
                .unwrap();
        }
        // A panicking item and a closure whose destructor panics.
        bound.spawn(|| panic!("item panics (contained)"));
        let bomb = PanicOnDrop;
        bound.spawn(move || {
            let _b = &bomb;
        });
        let x = &items[(round % 8) as usize];
        cancelled += x.disable_sync() as u64;
        x.enable();
        for w in &items {
            w.flush();
        }
        bound.drain();
        // `bound`, `ordered`, `highpri` are dropped here: destroyed.
    }
    for w in &items {
        w.flush();
    }
    unbound.flush();
    freezable.flush();
    let ran = runs.load(SeqCst);
    println!(
        "{rounds} rounds: {expected} pending instances, {ran} executions, {cancelled} cancelled"
    );
    if ran + cancelled != expected {
        eprintln!("ledger mismatch: {ran} + {cancelled} != {expected}");
        std::process::exit(1);
    }
}
