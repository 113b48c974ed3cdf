//! Time from a worker blocking (no hint) to the next item starting on its
//! CPU, in the detection mode of the process (`CMWQ_DETECT=perf|proc|...`).
//!
//!     CMWQ_DETECT=perf cargo run --release -p cmwq --example block_latency
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cmwq::{Work, Workqueue};

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let wq = Workqueue::builder("block_latency")
        .flags(cmwq::WqFlags::PERCPU)
        .build()
        .unwrap();
    let cpu = 0;
    let t0 = Instant::now();
    let blocked_at = Arc::new(AtomicU64::new(0));
    let started_at = Arc::new(AtomicU64::new(0));
    let (b2, s2) = (blocked_at.clone(), started_at.clone());
    let a = Work::new(move |_| {
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(100) {}
        b2.store(t0.elapsed().as_nanos() as u64, SeqCst);
        std::thread::sleep(Duration::from_millis(5));
    });
    let b = Work::new(move |_| s2.store(t0.elapsed().as_nanos() as u64, SeqCst));
    let mut lat = Vec::with_capacity(rounds);
    for i in 0..rounds + 10 {
        assert!(wq.queue_on(cpu, &a));
        assert!(wq.queue_on(cpu, &b));
        wq.flush();
        if i >= 10 {
            let d = started_at.load(SeqCst) as i64 - blocked_at.load(SeqCst) as i64;
            lat.push(d.max(0) as u64);
        }
    }
    lat.sort_unstable();
    let q = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0;
    println!(
        "detect={:?} rounds={rounds} block->next start: p50 {:.0} us, p90 {:.0} us, p99 {:.0} us, max {:.0} us",
        cmwq::detection(),
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
}
