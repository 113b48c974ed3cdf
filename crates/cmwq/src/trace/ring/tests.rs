//! Unit tests of `trace::ring` (in a file of their own, beside the code).

use super::*;

fn rec(n: u64) -> Record {
    Record {
        start_ns: n,
        end_ns: n + 1,
        ..Record::default()
    }
}

#[test]
fn push_drain_in_order_and_full_ring_counts_losses() {
    let r = Ring::new(4);
    let mut out = Vec::new();
    let push = |rec: Record| {
        // SAFETY: this test is the ring's only producer.
        unsafe { r.push(rec) }
    };
    let drain = |out: &mut Vec<Record>| {
        // SAFETY: this test is the ring's only consumer.
        unsafe { r.drain(out) }
    };
    for n in 0..6 {
        let kept = push(rec(n));
        assert_eq!(kept, n < 4);
    }
    assert_eq!(r.lost(), 2);
    assert_eq!(r.len(), 4);
    assert_eq!(drain(&mut out), 4);
    assert_eq!(
        out.iter().map(|r| r.start_ns).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    // Wraps around.
    out.clear();
    for n in 10..13 {
        assert!(push(rec(n)));
    }
    assert_eq!(drain(&mut out), 3);
    assert_eq!(
        out.iter().map(|r| r.start_ns).collect::<Vec<_>>(),
        [10, 11, 12]
    );
    assert_eq!(r.len(), 0);
}

#[test]
fn concurrent_producer_and_consumer_lose_only_what_they_count() {
    let r = std::sync::Arc::new(Ring::new(64));
    let p = r.clone();
    const N: u64 = 200_000;
    let producer = std::thread::spawn(move || {
        for n in 0..N {
            // SAFETY: the only producer.
            unsafe { p.push(rec(n)) };
        }
    });
    let mut got = Vec::new();
    while !producer.is_finished() || r.len() > 0 {
        // SAFETY: the only consumer.
        unsafe { r.drain(&mut got) };
    }
    producer.join().unwrap();
    // SAFETY: the only consumer.
    unsafe { r.drain(&mut got) };
    assert_eq!(got.len() as u64 + r.lost(), N);
    // In order, no duplicates, every record intact.
    assert!(got.windows(2).all(|w| w[0].start_ns < w[1].start_ns));
    assert!(got.iter().all(|r| r.end_ns == r.start_ns + 1));
}
