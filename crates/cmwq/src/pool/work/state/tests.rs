//! Unit tests of `state` (in a file of their own, beside the code).

use super::*;

#[test]
fn queue_start_finish_cycle() {
    let w = StateWord::new();
    assert!(w.try_grab_for_queue().is_ok());
    assert_eq!(w.try_grab_for_queue(), Err(Refused::Pending));
    w.set_queued();
    assert_eq!(w.dequeue(), Dequeued::Start { seq: 1 });
    let s = w.load();
    assert!(s.running() && !s.pending() && !s.queued());
    // G2: queue while running succeeds.
    assert!(w.try_grab_for_queue().is_ok());
    w.set_queued();
    // Another worker dequeues it while it still runs: collision.
    assert_eq!(w.dequeue(), Dequeued::Collided);
    assert_eq!(w.finish(), Finished::Handover { waiters: false });
    let s = w.load();
    assert!(s.pending() && s.running() && !s.collided());
    assert_eq!(w.start_handover(), (2, false));
    assert_eq!(w.finish(), Finished::Idle { waiters: false });
    assert!(w.load().idle());
    assert_eq!(w.load().seq(), 2);
}

#[test]
fn steal_and_release() {
    let w = StateWord::new();
    w.try_grab_for_queue().unwrap();
    assert!(!w.steal(Held::Queued), "not linked yet");
    w.set_queued();
    assert!(w.steal(Held::Queued));
    assert!(w.load().pending() && !w.load().queued());
    assert!(!w.release_pending());
    assert!(w.load().idle());
    w.try_grab_for_queue().unwrap();
    w.set_timer();
    assert!(w.steal(Held::Timer));
    assert!(!w.release_pending());
    assert!(w.load().idle());
}

#[test]
fn collided_steal_excludes_finish() {
    let w = StateWord::new();
    w.try_grab_for_queue().unwrap();
    w.set_queued();
    w.dequeue();
    w.try_grab_for_queue().unwrap();
    w.set_queued();
    assert_eq!(w.dequeue(), Dequeued::Collided);
    assert!(w.steal(Held::Collided));
    assert!(!w.release_pending());
    assert_eq!(w.finish(), Finished::Idle { waiters: false });
    assert!(!w.steal(Held::Collided));
}

/// The disable protocol on an idle item.
fn disable(w: &StateWord) -> Result<(), ()> {
    match w.disable_if_not_pending() {
        DisableIdle::Done => Ok(()),
        DisableIdle::Overflow => Err(()),
        DisableIdle::Pending => unreachable!(),
    }
}

#[test]
fn disable_counts() {
    let w = StateWord::new();
    disable(&w).unwrap();
    disable(&w).unwrap();
    assert_eq!(w.try_grab_for_queue(), Err(Refused::Disabled));
    assert_eq!(w.enable(), Enabled::StillDisabled);
    assert_eq!(w.enable(), Enabled::Zero);
    assert_eq!(w.enable(), Enabled::NotDisabled);
    assert!(w.try_grab_for_queue().is_ok());
}

#[test]
fn disable_overflow_is_refused() {
    let w = StateWord::new();
    for _ in 0..DISABLE_MAX {
        disable(&w).unwrap();
    }
    assert!(disable(&w).is_err());
    assert_eq!(w.load().disable_count(), DISABLE_MAX);
    // The stolen-instance path gives PENDING back on overflow.
    w.0.fetch_or(PENDING, SeqCst);
    assert!(w.release_pending_disabled().is_err());
    assert!(!w.load().pending());
    assert_eq!(w.load().disable_count(), DISABLE_MAX);
}

#[test]
fn waiters_flag_is_reported_and_cleared() {
    let w = StateWord::new();
    w.try_grab_for_queue().unwrap();
    w.set_queued();
    w.dequeue();
    assert!(w.set_waiters_if(|s| s.running()));
    assert_eq!(w.finish(), Finished::Idle { waiters: true });
    assert!(!w.load().waiters());
    assert!(!w.set_waiters_if(|s| s.running()));
}

#[test]
fn seq_wraps() {
    assert!(seq_reached(5, 5));
    assert!(seq_reached(6, 5));
    assert!(!seq_reached(4, 5));
    assert!(seq_reached(1, u32::MAX));
    assert!(!seq_reached(u32::MAX, 1));
}
