use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};
fn main() {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    let w = cmwq::Work::new(move |_| { n2.fetch_add(1, SeqCst); });
    assert!(cmwq::schedule_work(&w));
    assert!(w.flush());
    println!("ran {}", n.load(SeqCst));
    let t = Instant::now();
    let iters = 1_000_000;
    let works: Vec<_> = (0..4096).map(|_| { let n2 = n.clone(); cmwq::Work::new(move |_| { n2.fetch_add(1, SeqCst); }) }).collect();
    let mut q = 0;
    for i in 0..iters { if cmwq::system_wq().queue(&works[i % 4096]) { q += 1; } }
    cmwq::system_wq().flush();
    println!("queued {q}");
    let el = t.elapsed();
    println!("ran {} in {:?}: {:.1} ns/item", n.load(SeqCst), el, el.as_nanos() as f64 / iters as f64);
    // requeue from itself
    let c = Arc::new(AtomicUsize::new(0));
    let c2 = c.clone();
    let wq = cmwq::Workqueue::new("t").unwrap();
    let wq = Arc::new(wq);
    let wq2 = wq.clone();
    let w = cmwq::Work::new(move |w| { if c2.fetch_add(1, SeqCst) < 9 { assert!(wq2.queue(w)); } });
    wq.queue(&w);
    std::thread::sleep(Duration::from_millis(50));
    wq.flush();
    println!("self requeue count {}", c.load(SeqCst));
    let s = wq.stats();
    println!("{:?}", s);
    // blocking items on cpu 0
    let t = Instant::now();
    let ws: Vec<_> = (0..8).map(|_| cmwq::Work::new(|_| std::thread::sleep(Duration::from_millis(20)))).collect();
    for w in &ws { wq.queue_on(0, w); }
    wq.flush();
    println!("8 x 20ms sleep on cpu0 (auto detect): {:?}", t.elapsed());
    let ws: Vec<_> = (0..8).map(|_| cmwq::Work::new(|_| cmwq::blocking(|| std::thread::sleep(Duration::from_millis(20))))).collect();
    let t = Instant::now();
    for w in &ws { wq.queue_on(0, w); }
    wq.flush();
    println!("8 x 20ms sleep on cpu0 (hint): {:?}", t.elapsed());
    println!("{:?}", wq.stats());
    let ws: Vec<_> = (0..4).map(|_| cmwq::Work::named("sleeper", |_| std::thread::sleep(Duration::from_millis(200)))).collect();
    for w in &ws { wq.queue_on(0, w); }
    std::thread::sleep(Duration::from_millis(50));
    print!("{}", cmwq::dump());
    drop(wq);
    println!("done");
}
