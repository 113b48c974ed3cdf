//! Loom model of the ring's head/tail hand-over: run with
//! `RUSTFLAGS="--cfg loom" cargo test -p cmwq --lib --release loom_`.

use super::*;
use loom::sync::Arc;

/// The head/tail hand-over: with a ring of 2 and 3 pushes racing 2
/// drains, every drained record is intact and in order, and drained +
/// lost + left = pushed.
#[test]
fn loom_trace_ring_hands_slots_over() {
    loom::model(|| {
        let r = Arc::new(Ring::new(2));
        let p = r.clone();
        let producer = loom::thread::spawn(move || {
            for n in 1..=3u64 {
                // SAFETY: the only producer.
                unsafe {
                    p.push(Record {
                        start_ns: n,
                        end_ns: n * 10,
                        ..Record::default()
                    })
                };
            }
        });
        let mut got = Vec::new();
        for _ in 0..2 {
            // SAFETY: the only consumer.
            unsafe { r.drain(&mut got) };
        }
        producer.join().unwrap();
        let left = r.len();
        assert!(got.iter().all(|x| x.end_ns == x.start_ns * 10));
        assert!(got.windows(2).all(|w| w[0].start_ns < w[1].start_ns));
        assert_eq!(got.len() + left + r.lost() as usize, 3);
    });
}
