//! Loom models of the transitions that race: run with
//! `RUSTFLAGS="--cfg loom" cargo test -p cmwq --lib --release loom`.

use super::*;
use loom::sync::atomic::AtomicUsize;
use loom::sync::Arc;
use loom::thread;

/// One execution: checks it never overlaps another, counts it.
fn run(running: &AtomicUsize, executions: &AtomicUsize) {
    assert_eq!(running.fetch_add(1, SeqCst), 0, "overlapping executions");
    executions.fetch_add(1, SeqCst);
    running.fetch_sub(1, SeqCst);
}

/// Ends an execution the way a worker does, running handed-over ones.
fn finish_all(w: &StateWord, running: &AtomicUsize, executions: &AtomicUsize) {
    while let Finished::Handover { .. } = w.finish() {
        w.start_handover();
        run(running, executions);
    }
}

/// A running item is queued again and dequeued by a second worker while
/// the first finishes: exactly one more execution follows, and it never
/// overlaps the first (G2, G3).
#[test]
fn loom_requeue_while_running_runs_once_more() {
    loom::model(|| {
        let w = Arc::new(StateWord::new());
        w.try_grab_for_queue().unwrap();
        w.set_queued();
        assert_eq!(w.dequeue(), Dequeued::Start { seq: 1 });
        let running = Arc::new(AtomicUsize::new(1));
        let executions = Arc::new(AtomicUsize::new(1));

        let (w2, r2, e2) = (w.clone(), running.clone(), executions.clone());
        let other = thread::spawn(move || {
            // Queue while running, then a second worker dequeues it.
            w2.try_grab_for_queue().unwrap();
            w2.set_queued();
            if let Dequeued::Start { .. } = w2.dequeue() {
                run(&r2, &e2);
                finish_all(&w2, &r2, &e2);
            }
        });
        // The first execution ends (possibly running the collided one).
        running.fetch_sub(1, SeqCst);
        finish_all(&w, &running, &executions);
        other.join().unwrap();
        assert_eq!(executions.load(SeqCst), 2);
        assert!(w.load().idle());
        assert_eq!(w.load().seq(), 2);
    });
}

/// A cancel races with the end of the execution that a collided item was
/// handed to: either the cancel wins (no second execution, cancel
/// returns true) or the handover wins (second execution, cancel false).
#[test]
fn loom_cancel_collided_vs_finish() {
    loom::model(|| {
        let w = Arc::new(StateWord::new());
        w.try_grab_for_queue().unwrap();
        w.set_queued();
        w.dequeue();
        w.try_grab_for_queue().unwrap();
        w.set_queued();
        assert_eq!(w.dequeue(), Dequeued::Collided);

        let w2 = w.clone();
        let canceller = thread::spawn(move || loop {
            let s = w2.load();
            if !s.pending() {
                return false;
            }
            if s.collided() && w2.steal(Held::Collided) {
                w2.release_pending();
                return true;
            }
            loom::thread::yield_now();
        });
        let again = match w.finish() {
            Finished::Handover { .. } => {
                w.start_handover();
                assert_eq!(w.finish(), Finished::Idle { waiters: false });
                true
            }
            Finished::Idle { .. } => false,
        };
        let cancelled = canceller.join().unwrap();
        assert!(cancelled != again, "cancelled={cancelled} again={again}");
        assert!(w.load().idle());
    });
}

/// A waiter that announces itself is always told to wake by the
/// finishing worker, or sees the item already finished.
#[test]
fn loom_waiter_is_never_missed() {
    loom::model(|| {
        let w = Arc::new(StateWord::new());
        w.try_grab_for_queue().unwrap();
        w.set_queued();
        w.dequeue();
        let woken = Arc::new(AtomicUsize::new(0));
        let (w2, k2) = (w.clone(), woken.clone());
        let finisher = thread::spawn(move || {
            if let Finished::Idle { waiters: true } = w2.finish() {
                k2.store(1, SeqCst);
            }
        });
        let must_park = w.set_waiters_if(|s| s.running());
        finisher.join().unwrap();
        if must_park {
            assert_eq!(woken.load(SeqCst), 1, "parked waiter was not woken");
        }
        assert!(!w.load().running());
    });
}

/// Once `disable` returned, no queue attempt can succeed; a queue that
/// won the race before it was stolen by it (disable returns true).
#[test]
fn loom_disable_excludes_queue() {
    loom::model(|| {
        let w = Arc::new(StateWord::new());
        let w2 = w.clone();
        let q = thread::spawn(move || {
            let ok = w2.try_grab_for_queue().is_ok();
            if ok {
                let _pool = POOL.lock().unwrap();
                w2.set_queued();
            }
            ok
        });
        let stolen = disable_protocol(&w);
        let after = w.try_grab_for_queue();
        assert_eq!(after.unwrap_err(), Refused::Disabled);
        let queued = q.join().unwrap();
        assert!(!w.load().pending());
        // The queue either lost (refused) or its instance was stolen.
        assert!(!queued || stolen, "queued={queued} stolen={stolen}");
    });
}

/// `Work::disable` on the state word: raise the count in the CAS that
/// sees the item not pending, or steal the pending instance and raise
/// it in the CAS that gives PENDING back. Returns whether it stole an
/// instance.
fn disable_protocol(w: &StateWord) -> bool {
    loop {
        let s = w.load();
        if s.pending() {
            if s.queued() && steal_queued_locked(w) {
                break w.release_pending_disabled().map(|_| true).unwrap();
            }
            // In transit (being queued by its owner): wait.
            loom::thread::yield_now();
            continue;
        }
        if w.disable_if_not_pending() == DisableIdle::Done {
            break false;
        }
    }
}

/// `disable` racing `mod_delayed(.., 0)` on a queued item (the race
/// that lost items when disable raised its count before owning
/// PENDING): mod_delayed steals the instance and, owning PENDING, sees
/// a zero disable count and queues it again, or finds the item
/// disabled. Either way disable steals the one instance: it returns
/// true and the item ends idle and disabled.
#[test]
fn loom_disable_vs_mod_delayed_steal() {
    loom::model(|| {
        let w = Arc::new(StateWord::new());
        w.try_grab_for_queue().unwrap();
        {
            let _pool = POOL.lock().unwrap();
            w.set_queued();
        }
        let w2 = w.clone();
        let modder = thread::spawn(move || {
            // mod_delayed: steal the pending instance or grab an idle
            // item, then (owning PENDING) queue it again.
            let owned = loop {
                let s = w2.load();
                if s.pending() {
                    if s.queued() && steal_queued_locked(&w2) {
                        break true;
                    }
                    loom::thread::yield_now();
                    continue;
                }
                match w2.try_grab_for_queue() {
                    Ok(_) => break true,
                    Err(Refused::Disabled) => break false,
                    Err(Refused::Pending) => loom::thread::yield_now(),
                }
            };
            if owned {
                assert_eq!(w2.load().disable_count(), 0, "count rose under PENDING");
                let _pool = POOL.lock().unwrap();
                w2.set_queued();
            }
            owned
        });
        let stolen = disable_protocol(&w);
        let requeued = modder.join().unwrap();
        assert!(
            stolen,
            "disable must account for the one instance (requeued={requeued})"
        );
        let s = w.load();
        assert!(!s.pending() && s.disable_count() == 1, "{s:?}");
    });
}

/// A queue racing with a cancel of the previous instance: the item ends
/// up pending exactly when the queue succeeded after the steal.
#[test]
fn loom_steal_queued_vs_queue() {
    loom::model(|| {
        let w = Arc::new(StateWord::new());
        w.try_grab_for_queue().unwrap();
        w.set_queued();
        let w2 = w.clone();
        let q = thread::spawn(move || w2.try_grab_for_queue().is_ok());
        assert!(w.steal(Held::Queued));
        w.release_pending();
        let requeued = q.join().unwrap();
        assert_eq!(requeued, w.load().pending());
    });
}

/// Timer transitions (delayed work): an armed item races its expiry
/// (the timer thread takes it off the wheel and queues it), a cancel,
/// and a `mod_delayed` re-arm. The wheel is a mutex-protected "linked"
/// flag, as in `timer/mod.rs`, where TIMER changes only under the wheel
/// lock. Exactly one of {execution, successful cancel} ends the armed
/// instance, and the item ends idle.
#[test]
fn loom_timer_expiry_vs_cancel_vs_rearm() {
    use loom::sync::Mutex;
    loom::model(|| {
        let w = Arc::new(StateWord::new());
        let wheel = Arc::new(Mutex::new(false));
        // Arm.
        w.try_grab_for_queue().unwrap();
        {
            let mut linked = wheel.lock().unwrap();
            *linked = true;
            w.set_timer();
        }
        let executions = Arc::new(AtomicUsize::new(0));

        // The timer thread: expire, queue, and (as the worker) run.
        let (w1, wh1, e1) = (w.clone(), wheel.clone(), executions.clone());
        let expirer = thread::spawn(move || {
            let fired = {
                let mut linked = wh1.lock().unwrap();
                if *linked {
                    *linked = false;
                    assert!(w1.steal(Held::Timer));
                    true
                } else {
                    false
                }
            };
            if fired {
                // Queue (a pool lock would guard this; QUEUED marks it).
                w1.set_queued();
                // A worker dequeues it, unless a cancel stole it first.
                if w1.load().queued() {
                    if let Ok(()) = dequeue_if_queued(&w1) {
                        e1.fetch_add(1, SeqCst);
                        assert_eq!(w1.finish(), Finished::Idle { waiters: false });
                    }
                }
            }
        });

        // mod_delayed: re-arm in place if still armed.
        let (w2, wh2) = (w.clone(), wheel.clone());
        let rearmer = thread::spawn(move || {
            let linked = wh2.lock().unwrap();
            if *linked {
                assert!(w2.load().timer());
            }
            drop(linked);
        });

        // cancel: steal from the wheel or from the queue.
        let cancelled = loop {
            let s = w.load();
            if !s.pending() {
                break false;
            }
            if s.timer() {
                let mut linked = wheel.lock().unwrap();
                if *linked {
                    *linked = false;
                    assert!(w.steal(Held::Timer));
                    drop(linked);
                    w.release_pending();
                    break true;
                }
                drop(linked);
            } else if s.queued() && steal_queued_locked(&w) {
                w.release_pending();
                break true;
            }
            loom::thread::yield_now();
        };
        expirer.join().unwrap();
        rearmer.join().unwrap();
        let ran = executions.load(SeqCst);
        assert_eq!(
            ran + cancelled as usize,
            1,
            "ran={ran} cancelled={cancelled}"
        );
        assert!(w.load().idle());
    });
}

/// Dequeue under the (modelled) pool lock: only if still QUEUED.
fn dequeue_if_queued(w: &StateWord) -> Result<(), ()> {
    let _pool = POOL.lock().unwrap();
    if w.load().queued() {
        assert_eq!(w.dequeue(), Dequeued::Start { seq: 1 });
        Ok(())
    } else {
        Err(())
    }
}

/// Steal a queued item under the (modelled) pool lock.
fn steal_queued_locked(w: &StateWord) -> bool {
    let _pool = POOL.lock().unwrap();
    w.steal(Held::Queued)
}

loom::lazy_static! {
    static ref POOL: loom::sync::Mutex<()> = loom::sync::Mutex::new(());
}
