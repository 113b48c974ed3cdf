//! G33: results (`submit`, `Handle`), scopes and `unblock`.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use cmwq::{JoinError, Workqueue, WqFlags};

mod common;

/// A minimal executor: poll, park until woken.
fn block_on<F: Future>(f: F) -> F::Output {
    struct T(std::thread::Thread);
    impl Wake for T {
        fn wake(self: Arc<Self>) {
            self.0.unpark()
        }
    }
    let w = Waker::from(Arc::new(T(std::thread::current())));
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&w)) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn g33_submit_returns_the_value_and_a_panic_as_an_error() {
    let wq = Workqueue::new("results_basic").unwrap();
    assert_eq!(wq.submit(|| 40 + 2).join().unwrap(), 42);
    let v: Vec<_> = (0..100).map(|i| wq.submit(move || i * 2)).collect();
    let sum: i32 = v.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(sum, 9900);
    let e = wq
        .submit(|| -> u8 { panic!("boom {}", 7) })
        .join()
        .unwrap_err();
    assert!(matches!(e, JoinError::Panicked(_)));
    assert_eq!(e.panic_message(), Some("boom 7"));
    assert!(e.to_string().contains("boom 7"));
    // The workqueue is fine after it.
    assert_eq!(wq.submit(|| "ok").join().unwrap(), "ok");
}

#[test]
fn g33_try_join_is_finished_and_detach() {
    let wq = Workqueue::new("results_try").unwrap();
    let gate = Arc::new(AtomicBool::new(false));
    let g = gate.clone();
    let mut h = wq.submit(move || {
        while !g.load(Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        5
    });
    assert!(h.try_join().is_none());
    assert!(!h.is_finished());
    gate.store(true, Release);
    assert!(common::wait_until(Duration::from_secs(10), || h.is_finished()));
    assert_eq!(h.try_join().unwrap().unwrap(), 5);
    // Dropping a handle detaches: the closure still runs.
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    drop(wq.submit(move || r.store(true, Release)));
    wq.flush();
    assert!(ran.load(Acquire));
    assert!(format!("{h:?}").contains("done"));
}

#[test]
fn g33_cancel_before_start_and_not_after() {
    // One item at a time: the second waits behind the first.
    let wq = Workqueue::builder("results_cancel")
        .max_active(1)
        .build()
        .unwrap();
    let started = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(AtomicBool::new(false));
    let (s, g) = (started.clone(), gate.clone());
    let first = wq.submit(move || {
        s.store(true, Release);
        while !g.load(Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        1
    });
    assert!(common::wait_until(Duration::from_secs(10), || started.load(Acquire)));
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let second = wq.submit(move || r.store(true, Release));
    assert!(second.cancel(), "queued behind the first: cancellable");
    assert!(!second.cancel(), "only once");
    assert!(!first.cancel(), "already running");
    gate.store(true, Release);
    assert_eq!(first.join().unwrap(), 1);
    assert!(matches!(second.join(), Err(JoinError::Cancelled)));
    wq.flush();
    assert!(!ran.load(Acquire), "a cancelled closure never runs");
}

#[test]
fn g33_submit_on_a_draining_workqueue_resolves_to_refused() {
    let wq = Arc::new(Workqueue::new("results_refused").unwrap());
    let gate = Arc::new(AtomicBool::new(false));
    let g = gate.clone();
    // Keep the workqueue busy, and drain it from another thread.
    let busy = wq.submit(move || {
        while !g.load(Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let w = wq.clone();
    let drainer = std::thread::spawn(move || w.drain());
    std::thread::sleep(Duration::from_millis(100));
    let h = wq.submit(|| 1);
    assert!(h.is_finished());
    assert!(matches!(h.join(), Err(JoinError::Refused)));
    gate.store(true, Release);
    drainer.join().unwrap();
    busy.join().unwrap();
}

#[test]
fn g33_join_from_inside_its_own_item_is_reported_not_a_deadlock() {
    let wq = Workqueue::new("results_self").unwrap();
    // The item is sent its own handle and joins it: the mistake is
    // reported with a panic naming it, instead of waiting forever.
    let slot: Arc<Mutex<Option<cmwq::Handle<()>>>> = Arc::default();
    let said: Arc<Mutex<String>> = Arc::default();
    let (s, out) = (slot.clone(), said.clone());
    let gate = Arc::new(AtomicBool::new(false));
    let g = gate.clone();
    let h = wq.submit(move || {
        while !g.load(Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let me = s.lock().unwrap().take().unwrap();
        let p = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| me.join()));
        let p = p.unwrap_err();
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        *out.lock().unwrap() = msg;
    });
    *slot.lock().unwrap() = Some(h);
    gate.store(true, Release);
    assert!(common::wait_until(Duration::from_secs(10), || {
        !said.lock().unwrap().is_empty()
    }));
    assert!(
        said.lock()
            .unwrap()
            .contains("inside the submitted closure"),
        "{}",
        said.lock().unwrap()
    );
    wq.flush();
}

#[test]
fn g33_handles_are_futures_under_a_minimal_executor() {
    let wq = Workqueue::new("results_async").unwrap();
    let h = wq.submit(|| {
        std::thread::sleep(Duration::from_millis(20));
        "late"
    });
    assert_eq!(block_on(h).unwrap(), "late");
    // unblock starts at once: two futures made together overlap.
    let t = Instant::now();
    let a = cmwq::unblock(|| std::thread::sleep(Duration::from_millis(200)));
    let b = cmwq::unblock(|| std::thread::sleep(Duration::from_millis(200)));
    block_on(a);
    block_on(b);
    assert!(
        t.elapsed() < Duration::from_millis(380),
        "not overlapped: {:?}",
        t.elapsed()
    );
    // A panic in the closure is raised where the future is polled.
    let p = std::panic::catch_unwind(|| block_on(cmwq::unblock(|| panic!("in unblock"))));
    let msg = p.unwrap_err();
    assert_eq!(msg.downcast_ref::<&str>(), Some(&"in unblock"));
}

#[test]
fn g33_scope_borrows_and_returns_after_every_closure() {
    let mut data = vec![0u64; 1000];
    let base = 7u64; // borrowed by every closure
    let done = AtomicUsize::new(0);
    let r = cmwq::scope(|s| {
        for (i, chunk) in data.chunks_mut(10).enumerate() {
            let done = &done;
            s.spawn(move || {
                for (j, x) in chunk.iter_mut().enumerate() {
                    *x = base + (i * 10 + j) as u64;
                }
                std::thread::sleep(Duration::from_millis(1));
                done.fetch_add(1, Relaxed);
            });
        }
        "value"
    });
    assert_eq!(r, "value");
    assert_eq!(
        done.load(Relaxed),
        100,
        "returned before every closure finished"
    );
    assert!(data.iter().enumerate().all(|(i, &x)| x == base + i as u64));
}

#[test]
fn g33_scope_reraises_a_panic_after_every_closure_finished() {
    let finished = AtomicUsize::new(0);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cmwq::scope(|s| {
            s.spawn(|| panic!("one of them"));
            for _ in 0..8 {
                s.spawn(|| {
                    std::thread::sleep(Duration::from_millis(50));
                    finished.fetch_add(1, Relaxed);
                });
            }
        })
    }));
    assert_eq!(
        finished.load(Relaxed),
        8,
        "re-raised before the others finished"
    );
    let p = r.unwrap_err();
    assert_eq!(p.downcast_ref::<&str>(), Some(&"one of them"));
    // A panic of the scope's own closure waits for the spawned ones too.
    let finished = AtomicUsize::new(0);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cmwq::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                finished.fetch_add(1, Relaxed);
            });
            panic!("the scope's closure");
        })
    }));
    assert!(r.is_err());
    assert_eq!(finished.load(Relaxed), 1);
}

#[test]
fn g33_scope_on_a_bound_workqueue_and_blocking_closures() {
    let _s = common::serial();
    let wq = Workqueue::ordered("results_scope_ordered", WqFlags::empty()).unwrap();
    let order = Mutex::new(Vec::new());
    cmwq::scope_on(&wq, |s| {
        for i in 0..20 {
            let order = &order;
            s.spawn(move || order.lock().unwrap().push(i));
        }
    });
    assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    // 64 closures that each block 20 ms without a hint, on system_dfl_wq:
    // the pool keeps starting workers, far faster than one at a time.
    let t = Instant::now();
    cmwq::scope(|s| {
        for _ in 0..64 {
            s.spawn(|| std::thread::sleep(Duration::from_millis(20)));
        }
    });
    assert!(
        t.elapsed() < Duration::from_millis(64 * 20 / 4),
        "blocking closures did not overlap: {:?}",
        t.elapsed()
    );
}

#[test]
fn g33_scopes_and_joins_inside_a_workqueue_do_not_wait_on_themselves() {
    // A scope inside an item of an ordered workqueue, spawning on that
    // same workqueue: its closures are queued behind the waiting item, so
    // the waiter runs them itself.
    let wq: &'static Workqueue = Box::leak(Box::new(
        Workqueue::ordered("results_nested", WqFlags::empty()).unwrap(),
    ));
    let h = wq.submit(move || {
        let mut v = [0; 16];
        cmwq::scope_on(wq, |s| {
            for (i, x) in v.iter_mut().enumerate() {
                s.spawn(move || *x = i);
            }
        });
        v.iter().sum::<usize>()
    });
    assert_eq!(h.join().unwrap(), 120);
    // Recursive fork-join through nested scopes on system_dfl_wq.
    fn sum(v: &[u64]) -> u64 {
        if v.len() <= 64 {
            return v.iter().sum();
        }
        let (a, b) = v.split_at(v.len() / 2);
        let (mut x, mut y) = (0, 0);
        cmwq::scope(|s| {
            s.spawn(|| x = sum(a));
            s.spawn(|| y = sum(b));
        });
        x + y
    }
    let v: Vec<u64> = (0..20_000).collect();
    assert_eq!(
        cmwq::system_dfl_wq()
            .submit(move || sum(&v))
            .join()
            .unwrap(),
        (0..20_000u64).sum::<u64>()
    );
    // A join on an ordered workqueue from one of its own items, of an item
    // behind it: reported, not a hang.
    let h = wq.submit(move || {
        let inner = wq.submit(|| 1);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.join())).is_err()
    });
    assert!(h.join().unwrap(), "the ordered self-wait was not reported");
}

#[test]
fn g33_handles_and_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send + 'static>(_: &T) {}
    send_sync::<cmwq::Handle<Vec<u8>>>();
    send_sync::<cmwq::Handle<std::cell::Cell<u8>>>(); // T: Send is enough
    let f = cmwq::unblock(|| 1);
    send(&f);
    // A spawned closure may spawn more in the same scope.
    let n = AtomicUsize::new(0);
    cmwq::scope(|s| {
        s.spawn(|| {
            for _ in 0..4 {
                s.spawn(|| {
                    n.fetch_add(1, Relaxed);
                });
            }
        });
    });
    assert_eq!(n.load(Relaxed), 4);
}
