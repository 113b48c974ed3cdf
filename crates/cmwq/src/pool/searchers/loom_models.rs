//! Loom models of the queuer/searcher handshake: run with
//! `RUSTFLAGS="--cfg loom" cargo test -p cmwq --lib --release loom`.

use super::*;
use loom::sync::atomic::AtomicU32;
use loom::sync::Arc;
use loom::thread;

/// A searcher finishes looking while a queuer publishes items behind a
/// busy runner: either the queuer wakes a new searcher or the finishing
/// one sees the items. Never neither (a lane idling beside waiting items).
#[test]
fn loom_a_queuer_and_a_finishing_searcher_never_both_miss() {
    loom::model(|| {
        let s = Arc::new(Searchers::new());
        assert!(s.claim()); // a searcher is out
        let queued = Arc::new(AtomicU32::new(0));
        let (s2, q2) = (s.clone(), queued.clone());
        let queuer = thread::spawn(move || {
            q2.store(1, Relaxed); // the lane's length, published
            s2.claim()
        });
        s.done();
        let seen = queued.load(Relaxed) > 0;
        let woke = queuer.join().unwrap();
        assert!(woke || seen, "items left behind a busy runner, a lane idle");
    });
}

/// Two queuers at once: exactly one wakes a searcher, and the count it
/// took comes back.
#[test]
fn loom_one_searcher_at_a_time() {
    loom::model(|| {
        let s = Arc::new(Searchers::new());
        let s2 = s.clone();
        let t = thread::spawn(move || s2.claim());
        let a = s.claim();
        let b = t.join().unwrap();
        assert!(a ^ b, "one claim wins");
        s.done();
        assert!(s.claim(), "the count came back");
    });
}
