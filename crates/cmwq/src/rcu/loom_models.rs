//! Loom model of the reader/writer protocol: run with
//! `RUSTFLAGS="--cfg loom" cargo test -p cmwq --lib --release loom_`.

use super::*;
use loom::sync::atomic::AtomicBool;
use loom::sync::Arc;
use loom::thread;

/// `freed` is set by the writer when it would free the value.
struct Probe {
    freed: AtomicBool,
}

/// A reader racing a writer that replaces the value the reader may
/// have loaded: once `replace` returns (when the writer would free the
/// old value) no reader is still using it. The old value is only
/// marked, not freed, so a failing model reports instead of reading
/// freed memory.
#[test]
fn loom_rcu_reader_never_sees_freed() {
    loom::model(|| {
        let mk = || Probe {
            freed: AtomicBool::new(false),
        };
        let cell = Arc::new(Rcu::new(mk(), 2));
        let c2 = cell.clone();
        let reader = thread::spawn(move || {
            c2.read(1, |p| {
                thread::yield_now();
                assert!(!p.freed.load(SeqCst), "used after the writer freed it");
            });
        });
        let old = cell.replace(mk()).unwrap();
        old.freed.store(true, SeqCst);
        reader.join().unwrap();
        drop(old);
    });
}

/// A pwq as the release protocol sees it (its pool lock's data).
#[derive(Default)]
struct PwqModel {
    released: bool,
    items: u32,
}
type PwqRef = Arc<loom::sync::Mutex<PwqModel>>;

/// pwq release vs lookup (`WqInner::insert_grabbed` against
/// `apply_attrs` and `busy`): a queuer loads the table, locks its
/// pwq's pool, retries if the pwq was released, else inserts. The
/// writer installs a table with a new pwq under the `all_pwqs` lock;
/// the releaser, under that lock, releases a pwq only if it is empty
/// and not in the current table. No item ever goes into a released
/// pwq, no queue is refused, and the current pwq is never released.
#[test]
fn loom_pwq_release_vs_lookup() {
    loom::model(|| {
        let p1: PwqRef = Arc::default();
        let p2: PwqRef = Arc::default();
        let cell = Arc::new(Rcu::new(p1.clone(), 1));
        let all = Arc::new(loom::sync::Mutex::new(vec![p1.clone()]));

        let (c, a, new) = (cell.clone(), all.clone(), p2.clone());
        let writer = thread::spawn(move || {
            let mut all = a.lock().unwrap();
            all.push(new.clone());
            drop(c.replace(new));
        });
        let (c, a) = (cell.clone(), all.clone());
        let releaser = thread::spawn(move || {
            let mut all = a.lock().unwrap();
            c.read(0, |cur| {
                all.retain(|p| {
                    let mut g = p.lock().unwrap();
                    if Arc::ptr_eq(p, cur) || g.items > 0 {
                        return true;
                    }
                    g.released = true;
                    false
                })
            });
        });
        // The queuer.
        let into = loop {
            let r = cell.read(0, |cur| {
                let mut g = cur.lock().unwrap();
                if g.released {
                    None
                } else {
                    g.items += 1;
                    Some(cur.clone())
                }
            });
            match r {
                Some(p) => break p,
                None => thread::yield_now(),
            }
        };
        writer.join().unwrap();
        releaser.join().unwrap();
        assert!(!into.lock().unwrap().released, "item in a released pwq");
        cell.read(0, |cur| {
            assert!(Arc::ptr_eq(cur, &p2));
            assert!(!cur.lock().unwrap().released, "current pwq released");
        });
    });
}
