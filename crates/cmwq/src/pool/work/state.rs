//! The state word of a work item.
//!
//! Every [`Work`](crate::Work) carries one 64-bit atomic word that says
//! where the item is in its life cycle. All transitions are single
//! compare-and-swap (or fetch-or) operations on this word, so the item's
//! owner is always unambiguous: whoever moves `PENDING` from 0 to 1 owns the
//! pending instance and must either put it somewhere (a pool's worklist, a
//! workqueue's inactive list, a timer) or give it back.
//!
//! ```text
//!  63                         32 31            16 15          6 5 4 3 2 1 0
//! +-----------------------------+----------------+-------------+-+-+-+-+-+-+
//! |        start count          | disable count  |  fork gen.  |W|T|R|C|Q|P|
//! +-----------------------------+----------------+-------------+-+-+-+-+-+-+
//! ```
//!
//! * `P` PENDING: the item has been queued (or armed) and its execution has
//!   not started yet. Set by a successful `queue*`; cleared when a worker
//!   starts the execution, or by a cancel that steals it. (The kernel's
//!   `WORK_STRUCT_PENDING`.)
//! * `Q` QUEUED: the item is linked on a list, either a pool's worklist or a
//!   pool-workqueue's inactive (throttled) list. Set and cleared only under
//!   the lock of that pool, whose id is kept beside the word so that a
//!   canceller can find it. Implies `P`.
//! * `C` COLLIDED: a worker dequeued the item while another worker was still
//!   running it. Instead of running it concurrently, the dequeuing worker
//!   hands it over: the running worker starts the pending execution as soon
//!   as the current one returns. Implies `P`, excludes `Q`. This is how G3
//!   (non-reentrancy across workqueues, not only within one) is kept, and it
//!   is what makes `FnMut` work functions sound.
//! * `R` RUNNING: an execution of the function is in progress. At most one
//!   thread holds it at a time; that thread alone may call the function.
//! * `T` TIMER: a timer is armed for the item (delayed work). Implies `P`.
//! * `W` WAITERS: some thread is parked until this word changes (a flush or
//!   a cancel-and-wait). Whoever clears `R`, `P` or `C` and sees `W` clears
//!   it and wakes the parked threads.
//! * fork generation (10 bits): the generation of the process in which
//!   the current PENDING bit was taken (0, then one more in each forked
//!   child, wrapping). After `fork()` an item that another thread was
//!   queueing, firing or cancelling (PENDING set, on no list: "in
//!   transit") has no owner in the child; its older generation marks it an
//!   orphan ([`Snapshot::orphan`]), which reads idle and is taken back by
//!   the next queue, cancel, disable or flush (G26).
//! * disable count (16 bits): while above zero every queue attempt fails
//!   (G11). `cancel_sync` is `disable_sync` followed by `enable`, as in the
//!   kernel, so concurrent cancellers compose.
//! * start count (32 bits, wrapping): incremented when an execution starts.
//!   Together with the separate "done" counter it lets `Work::flush` wait
//!   for exactly the execution that was pending or running when it was
//!   called. The counter wraps after 2^32 executions; a flusher compares
//!   with wrapping arithmetic and is woken on every completion, so a wrap
//!   can only be misread if 2^31 executions happen while one flusher is
//!   not scheduled at all.
//!
//! Memory ordering: the CAS that sets `P` is a release operation and the CAS
//! that starts an execution is an acquire operation, so stores made before a
//! successful `queue` are visible to the execution it causes (G2). The
//! transition that ends an execution releases, and the one that starts the
//! next acquires, so consecutive executions of an `FnMut` on different
//! threads are ordered.

use crate::loom::sync::atomic::{AtomicU64, Ordering::*};

pub(crate) const PENDING: u64 = 1 << 0;
pub(crate) const QUEUED: u64 = 1 << 1;
pub(crate) const COLLIDED: u64 = 1 << 2;
pub(crate) const RUNNING: u64 = 1 << 3;
pub(crate) const TIMER: u64 = 1 << 4;
pub(crate) const WAITERS: u64 = 1 << 5;

const GEN_SHIFT: u32 = 6;
const GEN_MASK: u64 = 0x3ff << GEN_SHIFT;

/// The fork generation of this process (see the module docs). Plain std
/// atomic: it changes only in a forked child's handler, alone.
static FORK_GEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The generation bits for a PENDING bit taken now.
#[inline]
fn gen_now() -> u64 {
    (FORK_GEN.load(std::sync::atomic::Ordering::Relaxed) << GEN_SHIFT) & GEN_MASK
}

/// In a forked child (its handler): items in transit in the parent become
/// orphans.
pub(crate) fn next_fork_generation() {
    FORK_GEN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

const DISABLE_SHIFT: u32 = 16;
const DISABLE_ONE: u64 = 1 << DISABLE_SHIFT;
const DISABLE_MASK: u64 = 0xffff << DISABLE_SHIFT;
/// The largest disable count; one more `disable` is a misuse.
pub(crate) const DISABLE_MAX: u32 = 0xffff;

const SEQ_SHIFT: u32 = 32;
const SEQ_ONE: u64 = 1 << SEQ_SHIFT;

/// A decoded copy of the state word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot(pub(crate) u64);

impl Snapshot {
    #[inline]
    pub(crate) fn pending(self) -> bool {
        self.0 & PENDING != 0
    }
    #[inline]
    pub(crate) fn queued(self) -> bool {
        self.0 & QUEUED != 0
    }
    #[inline]
    pub(crate) fn collided(self) -> bool {
        self.0 & COLLIDED != 0
    }
    #[inline]
    pub(crate) fn running(self) -> bool {
        self.0 & RUNNING != 0
    }
    #[inline]
    pub(crate) fn timer(self) -> bool {
        self.0 & TIMER != 0
    }
    #[inline]
    pub(crate) fn waiters(self) -> bool {
        self.0 & WAITERS != 0
    }
    #[inline]
    pub(crate) fn disable_count(self) -> u32 {
        ((self.0 & DISABLE_MASK) >> DISABLE_SHIFT) as u32
    }
    /// Number of executions started so far (wrapping).
    #[inline]
    pub(crate) fn seq(self) -> u32 {
        (self.0 >> SEQ_SHIFT) as u32
    }
    /// Neither pending nor running.
    #[inline]
    pub(crate) fn idle(self) -> bool {
        self.0 & (PENDING | RUNNING) == 0
    }
    /// Pending, on no list, and taken in an older fork generation: its
    /// owner was a thread of the parent process (see the module docs).
    #[inline]
    pub(crate) fn orphan(self) -> bool {
        self.0 & (PENDING | QUEUED | COLLIDED | TIMER) == PENDING && self.0 & GEN_MASK != gen_now()
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut flags = String::new();
        for (bit, c) in [
            (PENDING, 'P'),
            (QUEUED, 'Q'),
            (COLLIDED, 'C'),
            (RUNNING, 'R'),
            (TIMER, 'T'),
            (WAITERS, 'W'),
        ] {
            flags.push(if self.0 & bit != 0 { c } else { '-' });
        }
        write!(
            f,
            "{flags} disable={} seq={}",
            self.disable_count(),
            self.seq()
        )
    }
}

/// Why a queue attempt changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Already pending (G1).
    Pending,
    /// Disabled, or being cancelled with wait (G10, G11).
    Disabled,
}

/// What a worker must do with an item it took off a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dequeued {
    /// Run it now; this is execution number `seq`.
    Start { seq: u32 },
    /// It is running elsewhere; it was handed to that worker (G3).
    Collided,
}

/// What a worker must do after the function returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Finished {
    /// The item is idle (or pending somewhere else). `waiters`: wake them.
    Idle { waiters: bool },
    /// A collided execution was handed over: the caller now owns PENDING
    /// (COLLIDED is cleared, RUNNING kept), reads the item's slot and calls
    /// [`StateWord::start_handover`]. `waiters`: wake them (the execution
    /// they waited for is done).
    Handover { waiters: bool },
}

/// Result of [`StateWord::disable_if_not_pending`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DisableIdle {
    /// The count was raised.
    Done,
    /// The item is pending: steal that instance first.
    Pending,
    /// The count is at its maximum.
    Overflow,
}

/// Where a pending instance is held, for [`StateWord::steal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Held {
    /// Linked on a list (QUEUED).
    Queued,
    /// Handed to the worker running the item (COLLIDED).
    Collided,
    /// An armed timer (TIMER).
    Timer,
}

impl Held {
    /// The bit of the state word that says the instance is held here.
    #[inline]
    const fn bit(self) -> u64 {
        match self {
            Held::Queued => QUEUED,
            Held::Collided => COLLIDED,
            Held::Timer => TIMER,
        }
    }
}

/// Result of [`StateWord::enable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Enabled {
    /// The count was already zero: unbalanced `enable`.
    NotDisabled,
    /// Decremented, still above zero.
    StillDisabled,
    /// Reached zero: queueing works again.
    Zero,
}

/// The atomic state word (see the module docs for the layout).
pub(crate) struct StateWord(AtomicU64);

impl StateWord {
    pub(crate) fn new() -> StateWord {
        StateWord(AtomicU64::new(0))
    }

    #[inline]
    pub(crate) fn load(&self) -> Snapshot {
        Snapshot(self.0.load(Acquire))
    }

    /// In a child process after `fork()` (G26): the item was pending or
    /// running in the parent, whose threads do not exist here. It becomes
    /// idle (it never runs in the child); its disable count and start count
    /// stay. Returns the start count.
    pub(crate) fn reset_after_fork(&self) -> u32 {
        let keep = DISABLE_MASK | (u64::MAX << SEQ_SHIFT);
        let s = Snapshot(self.0.fetch_and(keep, AcqRel) & keep);
        s.seq()
    }

    /// In a child forked from inside this item's function, which goes on
    /// running there: RUNNING alone (whatever instance was queued, armed or
    /// handed over in the parent is dropped), so no second execution can
    /// start beside it (G3) and nothing of the parent's accounting is
    /// released twice.
    pub(crate) fn running_only_after_fork(&self) {
        let keep = DISABLE_MASK | (u64::MAX << SEQ_SHIFT);
        self.0
            .store((self.0.load(Acquire) & keep) | RUNNING, SeqCst);
    }

    /// One CAS loop: `f` maps the current word to the next one or to an
    /// early result.
    #[inline]
    fn update<T>(&self, mut f: impl FnMut(Snapshot) -> Result<u64, T>) -> Result<Snapshot, T> {
        // Acquire, also on failure: a decision that returns early (no CAS)
        // may read other state the transition that wrote `cur` published
        // (`set_waiters_if` reads `done`).
        let mut cur = self.0.load(Acquire);
        loop {
            let next = f(Snapshot(cur))?;
            match self.0.compare_exchange_weak(cur, next, AcqRel, Acquire) {
                Ok(_) => return Ok(Snapshot(cur)),
                Err(actual) => cur = actual,
            }
        }
    }

    /// [`update`](Self::update) for a transition that always applies
    /// (its caller owns the bit it moves): `f` maps the current word to
    /// the next. Returns the word it replaced.
    #[inline]
    fn transition(&self, mut f: impl FnMut(Snapshot) -> u64) -> Snapshot {
        match self.update::<std::convert::Infallible>(|s| Ok(f(s))) {
            Ok(prev) => prev,
            Err(never) => match never {},
        }
    }

    /// G1: set PENDING if the item is neither pending nor disabled. The
    /// caller then owns the pending instance.
    #[inline]
    pub(crate) fn try_grab_for_queue(&self) -> Result<Snapshot, Refused> {
        self.update(|s| {
            if s.disable_count() > 0 {
                Err(Refused::Disabled)
            } else if s.pending() && !s.orphan() {
                Err(Refused::Pending)
            } else {
                Ok((s.0 & !GEN_MASK) | PENDING | gen_now())
            }
        })
    }

    /// Give back the PENDING bit of an orphan (see the module docs).
    /// Returns whether WAITERS was set.
    #[cold]
    pub(crate) fn reclaim_orphan(&self) -> bool {
        self.update(|s| {
            if s.orphan() {
                Ok(s.0 & !(PENDING | WAITERS | GEN_MASK))
            } else {
                Err(())
            }
        })
        .is_ok_and(|s| s.waiters())
    }

    /// The owner of PENDING linked the item on a list (under that pool's
    /// lock).
    #[inline]
    pub(crate) fn set_queued(&self) {
        let prev = Snapshot(self.0.fetch_or(QUEUED, Release));
        debug_assert!(prev.pending() && !prev.queued(), "{prev:?}");
    }

    /// The owner of PENDING armed a timer for the item.
    pub(crate) fn set_timer(&self) {
        let prev = Snapshot(self.0.fetch_or(TIMER, Release));
        debug_assert!(prev.pending() && !prev.queued() && !prev.timer());
    }

    /// Called under the pool lock on an item just unlinked from a worklist:
    /// start it, or hand it to the worker that is running it.
    #[inline]
    pub(crate) fn dequeue(&self) -> Dequeued {
        let prev = self.transition(|s| {
            debug_assert!(s.pending() && s.queued(), "dequeue {s:?}");
            if s.running() {
                (s.0 & !QUEUED) | COLLIDED
            } else {
                ((s.0 & !(PENDING | QUEUED)) | RUNNING).wrapping_add(SEQ_ONE)
            }
        });
        if prev.running() {
            Dequeued::Collided
        } else {
            Dequeued::Start {
                seq: prev.seq().wrapping_add(1),
            }
        }
    }

    /// The function returned: end the execution, or take over the collided
    /// pending instance.
    #[inline]
    pub(crate) fn finish(&self) -> Finished {
        let prev = self.transition(|s| {
            debug_assert!(s.running(), "finish {s:?}");
            if s.collided() {
                s.0 & !(COLLIDED | WAITERS)
            } else {
                s.0 & !(RUNNING | WAITERS)
            }
        });
        if prev.collided() {
            Finished::Handover {
                waiters: prev.waiters(),
            }
        } else {
            Finished::Idle {
                waiters: prev.waiters(),
            }
        }
    }

    /// After [`Finished::Handover`]: start the handed-over execution (clear
    /// PENDING, keep RUNNING). Returns its number and whether waiters must
    /// be woken.
    #[inline]
    pub(crate) fn start_handover(&self) -> (u32, bool) {
        let prev = self.transition(|s| {
            debug_assert!(s.pending() && s.running() && !s.queued() && !s.collided());
            (s.0 & !(PENDING | WAITERS)).wrapping_add(SEQ_ONE)
        });
        (prev.seq().wrapping_add(1), prev.waiters())
    }

    /// Become the owner of PENDING by taking it from where it is held
    /// (cancel, disable, `mod_delayed`, a timer's expiry). The caller then
    /// unlinks, disarms or forgets the item, and either queues it again or
    /// gives PENDING back ([`release_pending`](Self::release_pending),
    /// [`release_pending_disabled`](Self::release_pending_disabled)).
    /// False if the item is not pending there any more.
    ///
    /// * [`Held::Queued`]: under the lock of the pool the item is queued
    ///   in; clears QUEUED, the caller unlinks the item.
    /// * [`Held::Collided`]: races with [`finish`](Self::finish) of the
    ///   running execution; exactly one of them wins.
    /// * [`Held::Timer`]: the caller has just disarmed the item's timer.
    #[inline]
    pub(crate) fn steal(&self, from: Held) -> bool {
        let bit = from.bit();
        self.update(|s| {
            if s.pending() && s.0 & bit != 0 {
                Ok(s.0 & !bit)
            } else {
                Err(())
            }
        })
        .is_ok()
    }

    /// The owner of PENDING gives it back without having queued the item
    /// (the queue was refused after the grab, or a timer was cancelled).
    /// Returns whether waiters must be woken.
    #[inline]
    pub(crate) fn release_pending(&self) -> bool {
        self.give_back(false).0
    }

    /// `disable` of an item that is not pending: raise the disable count in
    /// the same CAS that sees PENDING clear, so no queuer can own PENDING
    /// while it rises (a queuer grabs PENDING only with the count at zero,
    /// in one CAS too). `Pending` if the item is pending: the caller steals
    /// that instance and raises the count with
    /// [`release_pending_disabled`](Self::release_pending_disabled).
    #[inline]
    pub(crate) fn disable_if_not_pending(&self) -> DisableIdle {
        let r = self.update(|s| {
            if s.pending() {
                Err(DisableIdle::Pending)
            } else if s.disable_count() >= DISABLE_MAX {
                Err(DisableIdle::Overflow)
            } else {
                Ok(s.0 + DISABLE_ONE)
            }
        });
        match r {
            Ok(_) => DisableIdle::Done,
            Err(e) => e,
        }
    }

    /// `disable` of a pending item, last step: the owner of PENDING (it
    /// stole the pending instance) raises the disable count and gives
    /// PENDING back, in one CAS. So the count only ever rises while nobody
    /// else owns PENDING (the kernel's `disable_work` raises it between
    /// `work_grab_pending` and `set_work_pool_and_clear_pending`): a queuer
    /// that owns PENDING (`mod_delayed` after its steal) never sees it
    /// change under it, and exactly one of a racing disable and
    /// mod_delayed accounts for the instance. Returns whether waiters must
    /// be woken; `Err` (PENDING still released, count unchanged) if the
    /// count is at its maximum.
    #[inline]
    pub(crate) fn release_pending_disabled(&self) -> Result<bool, bool> {
        match self.give_back(true) {
            (waiters, true) => Ok(waiters),
            (waiters, false) => Err(waiters),
        }
    }

    /// Give PENDING back (the caller owns it), raising the disable count in
    /// the same CAS if `disable` and it is below its maximum. Returns
    /// whether waiters must be woken and whether the count rose.
    #[inline]
    fn give_back(&self, disable: bool) -> (bool, bool) {
        let mut raised = false;
        let prev = self.transition(|s| {
            debug_assert!(
                s.pending() && !s.queued() && !s.collided() && !s.timer(),
                "{s:?}"
            );
            raised = disable && s.disable_count() < DISABLE_MAX;
            let next = s.0 & !(PENDING | WAITERS);
            if raised {
                next + DISABLE_ONE
            } else {
                next
            }
        });
        (prev.waiters(), raised)
    }

    /// Decrement the disable count.
    pub(crate) fn enable(&self) -> Enabled {
        match self.update(|s| {
            if s.disable_count() == 0 {
                Err(())
            } else {
                Ok(s.0 - DISABLE_ONE)
            }
        }) {
            Err(()) => Enabled::NotDisabled,
            Ok(prev) if prev.disable_count() == 1 => Enabled::Zero,
            Ok(_) => Enabled::StillDisabled,
        }
    }

    /// Announce a parked waiter: set WAITERS if `must_wait` still holds for
    /// the current word. Returns false (and changes nothing) if it does not.
    pub(crate) fn set_waiters_if(&self, must_wait: impl Fn(Snapshot) -> bool) -> bool {
        self.update(|s| {
            if must_wait(s) {
                Ok(s.0 | WAITERS)
            } else {
                Err(())
            }
        })
        .is_ok()
    }
}

/// `a` is at or after `b` in wrapping sequence order.
#[inline]
pub(crate) fn seq_reached(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

#[cfg(all(test, not(loom)))]
mod tests;

/// Loom models of the transitions that race: run with
/// `RUSTFLAGS="--cfg loom" cargo test -p cmwq --lib --release loom`.
#[cfg(all(test, loom))]
mod loom_models {
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
}
