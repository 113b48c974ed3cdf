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
mod loom_models;
