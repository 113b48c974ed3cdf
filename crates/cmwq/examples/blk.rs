use std::sync::Arc;
use std::time::{Duration, Instant};
use parking_lot::Mutex;
fn main() {
    let wq = cmwq::Workqueue::new("t").unwrap();
    for round in 0..3 {
        let t0 = Instant::now();
        let log = Arc::new(Mutex::new(Vec::new()));
        let ws: Vec<_> = (0..8).map(|i| { let log = log.clone(); cmwq::Work::new(move |_| {
            log.lock().push((i, t0.elapsed().as_micros(), 's'));
            std::thread::sleep(Duration::from_millis(20));
            log.lock().push((i, t0.elapsed().as_micros(), 'e'));
        })}).collect();
        for w in &ws { wq.queue_on(0, w); }
        wq.flush();
        println!("round {round}: {:?} {:?}", t0.elapsed(), log.lock());
    }
}
