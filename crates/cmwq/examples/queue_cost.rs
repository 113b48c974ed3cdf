//! ns per queue + execute of an empty work item on `system_wq`, one
//! producer (the item runs on the producer's CPU, as in the kernel).
//!
//!     cargo run --release -p cmwq --example queue_cost
use std::time::Instant;

use cmwq::Work;

fn main() {
    let batch = 1024;
    let batches: usize = std::env::var("BATCHES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let items: Vec<Work> = (0..batch).map(|_| Work::new(|_| {})).collect();
    let wq = cmwq::system_wq();
    for w in &items {
        wq.queue(w);
    }
    wq.flush();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let mut n = 0u64;
        for _ in 0..batches {
            for w in &items {
                n += wq.queue(w) as u64;
            }
            wq.flush();
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        best = best.min(ns);
        println!("{n} queue+execute: {ns:.1} ns each");
    }
    println!(
        "best: {best:.1} ns per queue+execute ({:.1} M items/s)",
        1e3 / best
    );
}
