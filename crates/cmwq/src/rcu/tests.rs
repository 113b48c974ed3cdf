//! Unit tests of `rcu` (in a file of their own, beside the code).

use super::*;
use std::sync::atomic::{AtomicBool, AtomicUsize as StdAtomicUsize};
use std::sync::Arc;

/// A value that records its own death, so a reader can check it never
/// sees a freed one.
struct Probe {
    alive: Arc<StdAtomicUsize>,
    dead: AtomicBool,
}
impl Drop for Probe {
    fn drop(&mut self) {
        self.dead.store(true, std::sync::atomic::Ordering::SeqCst);
        self.alive.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn unguarded_cell_keeps_replaced_values_until_dropped() {
    let alive = Arc::new(StdAtomicUsize::new(2));
    let mk = || Probe {
        alive: alive.clone(),
        dead: AtomicBool::new(false),
    };
    let cell = Rcu::new(mk(), 0);
    assert!(cell.replace(mk()).is_none());
    assert_eq!(cell.retired_len(), 1);
    cell.read(0, |p| {
        assert!(!p.dead.load(std::sync::atomic::Ordering::SeqCst))
    });
    drop(cell);
    assert_eq!(alive.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[test]
fn guarded_cell_frees_replaced_values_and_readers_never_see_them_dead() {
    let alive = Arc::new(StdAtomicUsize::new(0));
    let mk = |alive: &Arc<StdAtomicUsize>| {
        alive.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Probe {
            alive: alive.clone(),
            dead: AtomicBool::new(false),
        }
    };
    let cell = Arc::new(Rcu::new(mk(&alive), 4));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(StdAtomicUsize::new(0));
    let readers: Vec<_> = (0..3)
        .map(|i| {
            let (cell, stop, started) = (cell.clone(), stop.clone(), started.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if n == 1 {
                        started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    cell.read(i, |p| {
                        assert!(!p.dead.load(std::sync::atomic::Ordering::SeqCst));
                        std::hint::spin_loop();
                        assert!(!p.dead.load(std::sync::atomic::Ordering::SeqCst));
                    });
                    n += 1;
                }
                n
            })
        })
        .collect();
    while started.load(std::sync::atomic::Ordering::SeqCst) < 3 {
        std::thread::yield_now();
    }
    for _ in 0..2000 {
        let old = cell.replace(mk(&alive)).expect("guarded");
        drop(old);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    // Bounded memory: only the current value is alive.
    assert_eq!(alive.load(std::sync::atomic::Ordering::SeqCst), 1);
}
