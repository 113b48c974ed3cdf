//! G1 / B1: queueing a reused work item allocates nothing.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::*};

use cmwq::{Work, Workqueue, WqFlags};

struct Counting;

static TOTAL: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static MINE: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counters neither allocate
// nor unwind.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        TOTAL.fetch_add(1, Relaxed);
        let _ = MINE.try_with(|m| m.set(m.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        TOTAL.fetch_add(1, Relaxed);
        let _ = MINE.try_with(|m| m.set(m.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn mine() -> u64 {
    MINE.with(|m| m.get())
}

/// Rounds of 64 queues measured per workqueue. Enough that a queue which
/// creates a worker in a rare state of the lanes is caught: a queuer that
/// woke a searcher in a lane whose workers were all stealing created one
/// (8 allocations) about once in 3,000 rounds.
const ROUNDS: u64 = 4000;

#[test]
fn g1_queueing_a_reused_work_item_does_not_allocate() {
    let _s = common::serial();
    for wq in [
        common::percpu_wq("alloc_bound"),
        Workqueue::builder("alloc_unbound")
            .flags(WqFlags::UNBOUND)
            .build()
            .unwrap(),
        Workqueue::builder("alloc_throttled")
            .max_active(1)
            .build()
            .unwrap(),
    ] {
        let items: Vec<Work> = (0..64).map(|_| Work::new(|_| {})).collect();
        // Warm up: workers of every pool, thread-local parking state. The
        // first use of a pool creates its workers (allocations), so the
        // measured phase runs from one CPU.
        common::pin_self(&[common::own_affinity()[0]]);
        for _ in 0..3 {
            for cpu in 0..cmwq::nr_cpus() {
                for w in &items {
                    wq.queue_on(cpu, w);
                }
                wq.flush();
            }
            for w in &items {
                wq.queue(w);
            }
            wq.flush();
        }
        let before_total = TOTAL.load(Relaxed);
        let mut queued = 0u64;
        let mut in_queue = 0u64;
        for _ in 0..ROUNDS {
            let before = mine();
            for w in &items {
                if wq.queue(w) {
                    queued += 1;
                }
            }
            in_queue += mine() - before;
            wq.flush();
        }
        let total = TOTAL.load(Relaxed) - before_total;
        assert_eq!(in_queue, 0, "{}: queue() allocated", wq.name());
        assert!(queued >= 64 * ROUNDS / 2);
        // Whole process, queue + execute + flush: nothing per item either
        // (a few allocations overall are tolerated: first-time thread
        // locals of a new worker, the monitor's first pass).
        assert!(
            total < queued / 100,
            "{}: {total} allocations for {queued} queue+execute",
            wq.name()
        );
    }
}

#[test]
fn b7_a_work_item_is_one_small_allocation() {
    let _s = common::serial();
    let before = mine();
    let w = Work::new(|_| {});
    assert_eq!(mine() - before, 1, "Work::new is one allocation");
    drop(w);
}

#[test]
fn g33_submit_is_one_allocation() {
    let _s = common::serial();
    let wq = cmwq::system_dfl_wq();
    // Warm up the pools the items land on.
    for _ in 0..3 {
        let hs: Vec<_> = (0..64).map(|i| wq.submit(move || i)).collect();
        for h in hs {
            h.join().unwrap();
        }
    }
    let mut most = 0;
    let mut total = 0;
    let mut handles = Vec::with_capacity(1000);
    for i in 0..1000u64 {
        let before = mine();
        let h = wq.submit(move || i * 2);
        let n = mine() - before;
        most = most.max(n);
        total += n;
        handles.push(h);
    }
    let mut sum = 0;
    for h in handles {
        sum += h.join().unwrap();
    }
    assert_eq!(sum, 999 * 1000);
    assert_eq!(most, 1, "a submit allocated {most} times");
    assert_eq!(total, 1000, "{total} allocations for 1000 submits");
}
