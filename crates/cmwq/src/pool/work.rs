//! Work items.

pub(crate) mod state;

use std::cell::UnsafeCell;
use std::fmt;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, Ordering::*};
use std::sync::{Arc, OnceLock};

use crate::event::Event;
use crate::list::{LinkCell, Linked, List};
use crate::pool::pwq::Pwq;
use crate::pool::WorkerPool;
use crate::util;
use state::StateWord;

/// The type-erased work function.
pub(crate) type DynFn = dyn WorkFn;

/// What an item runs. Called through a shared reference, so that other
/// parts of the same allocation may be read meanwhile (the result slot of
/// [`submit`](crate::Workqueue::submit)); an implementation keeps its
/// mutable state in cells and relies on the caller's exclusivity.
pub(crate) trait WorkFn: Send + 'static {
    /// Run one execution.
    ///
    /// # Safety
    ///
    /// The caller holds RUNNING for the current execution (no other thread
    /// is in `run` of the same item, G3), and `work` is a handle on the
    /// item that holds `self`.
    unsafe fn run(&self, work: &Work);
}

/// A user's `FnMut` closure as a [`WorkFn`].
struct FnCell<F>(UnsafeCell<F>);

impl<F: FnMut(&Work) + Send + 'static> WorkFn for FnCell<F> {
    #[inline]
    unsafe fn run(&self, work: &Work) {
        // SAFETY: RUNNING is exclusive (G3, the caller's contract), so this
        // is the only reference to the closure; consecutive executions are
        // ordered by the acquire/release transitions of the state word.
        let f = unsafe { &mut *self.0.get() };
        f(work)
    }
}

/// Where a pending instance is to be accounted: its pwq (a strong reference
/// taken with `Arc::into_raw`), flush colour, and whether it is active.
///
/// Exclusive access follows the state word, never a lock of its own:
/// * the owner of PENDING (a queuer before it links the item, a
///   canceller after a steal, a worker after a hand-over) reads and writes
///   it;
/// * while the item is QUEUED, the holder of that pool's lock does;
/// * while it is COLLIDED, nobody does (the hand-over or steal that clears
///   COLLIDED while keeping PENDING makes its author the owner).
struct Slot {
    pwq: *const Pwq,
    color: u8,
    active: bool,
}

/// The shared allocation behind a [`Work`] handle: header plus function in
/// one allocation (G1: none per queue). Annotations: `src/LOCKING.md`.
pub(crate) struct WorkInner<F: ?Sized = DynFn> {
    /// A: the state word (see [`state`]); every transition is one CAS.
    pub(crate) state: StateWord,
    /// A: number of the last finished execution (wrapping, see `state`);
    /// written by the holder of RUNNING, read by flushers.
    pub(crate) done: AtomicU32,
    /// A: bumped whenever a transition that saw WAITERS wakes them;
    /// waiters sleep on it (a futex word).
    pub(crate) wake: AtomicU32,
    /// A (written by the owner of PENDING, under that pool's lock): the
    /// pool whose lock guards the item while QUEUED. Pools live for the
    /// whole process, so a stale value is still a valid pool.
    pub(crate) pool: AtomicPtr<WorkerPool>,
    /// L (of `pool`): list linkage.
    pub(crate) link: LinkCell<WorkInner>,
    /// P: where the pending instance is accounted (see [`Slot`]).
    slot: UnsafeCell<Slot>,
    /// A (written under W): its timer wheel entry, allocated on the first
    /// arm ([`NO_TIMER_ENTRY`] until then).
    pub(crate) timer: AtomicU32,
    /// I: name shown by dump, stats and reports.
    pub(crate) name: Option<&'static str>,
    /// A (written under the pool lock by the queuer, while traced): when
    /// it was last queued, CLOCK_MONOTONIC ns (`trace`).
    pub(crate) queued_ns: AtomicU64,
    /// R: the work function (its own cells, see [`WorkFn`]).
    func: F,
}

/// [`WorkInner::timer`] of an item never armed.
pub(crate) const NO_TIMER_ENTRY: u32 = u32::MAX;

/// Frees a dropped item's timer wheel entry: set by the timer of delayed
/// work (a layer above) when it makes its wheel, before any entry exists.
static RELEASE_TIMER_ENTRY: OnceLock<fn(u32)> = OnceLock::new();

/// Install the hook that frees a dropped item's timer wheel entry.
pub(crate) fn on_drop_timer_entry(release: fn(u32)) {
    let _ = RELEASE_TIMER_ENTRY.set(release);
}

impl<F: ?Sized> Drop for WorkInner<F> {
    fn drop(&mut self) {
        let id = *self.timer.get_mut();
        if id != NO_TIMER_ENTRY {
            // Set: an entry is only allocated once the timer exists.
            if let Some(release) = RELEASE_TIMER_ENTRY.get() {
                release(id);
            }
        }
    }
}

// SAFETY: the function is only called by the holder of RUNNING (one thread
// at a time, G3), through `&self`, and a `WorkFn` keeps whatever it mutates
// in cells that only that call touches, so it only needs `Send`; the parts
// `with_fn`'s pointer lets others read meanwhile must be `Sync` (its
// contract); `slot` follows the exclusive-access
// protocol documented on `Slot`; everything else is atomic or immutable.
unsafe impl<F: ?Sized + Send> Sync for WorkInner<F> {}
// SAFETY: as above; the raw pointers are owned references to `Pwq`s, which
// are `Send + Sync`.
unsafe impl<F: ?Sized + Send> Send for WorkInner<F> {}

impl WorkInner {
    /// See [`Work::wake_waiters`].
    pub(crate) fn wake_waiters(&self) {
        self.wake.fetch_add(1, Release);
        crate::sync::wake_all(&self.wake);
    }

    /// Read the slot.
    ///
    /// # Safety
    ///
    /// The caller has exclusive access to the slot (see [`Slot`]).
    #[inline]
    pub(crate) unsafe fn slot_read(&self) -> (*const Pwq, u8, bool) {
        // SAFETY: guaranteed by the caller.
        let s = unsafe { &*self.slot.get() };
        (s.pwq, s.color, s.active)
    }

    /// Write the slot.
    ///
    /// # Safety
    ///
    /// The caller has exclusive access to the slot (see [`Slot`]).
    #[inline]
    pub(crate) unsafe fn slot_write(&self, pwq: *const Pwq, color: u8, active: bool) {
        // The owner of PENDING writes it while the item is on no list.
        debug_assert!({
            let s = self.state.load();
            s.pending() && !s.queued() && !s.collided()
        });
        // SAFETY: guaranteed by the caller.
        unsafe { *self.slot.get() = Slot { pwq, color, active } };
    }

    /// Mark a throttled item active.
    ///
    /// # Safety
    ///
    /// The caller has exclusive access to the slot (see [`Slot`]).
    #[inline]
    pub(crate) unsafe fn slot_set_active(&self, active: bool) {
        // SAFETY: guaranteed by the caller.
        unsafe { (*self.slot.get()).active = active };
    }

    /// Call the work function.
    ///
    /// # Safety
    ///
    /// The caller holds RUNNING for the current execution (so no other
    /// thread is in the function) and `work` is a handle on `self`.
    #[inline]
    pub(crate) unsafe fn call(&self, work: &Work) {
        // SAFETY: the caller's contract is `run`'s.
        unsafe { self.func.run(work) }
    }

    /// The pwq recorded in the slot (only meaningful to the slot's owner;
    /// used for identity comparisons under the pool lock).
    ///
    /// Reading it is only done while the item is QUEUED on a pool whose
    /// lock the caller holds.
    #[inline]
    pub(crate) fn queued_pwq_raw(&self) -> *const Pwq {
        debug_assert!(self.state.load().queued());
        // SAFETY: callers hold the lock of the pool the item is QUEUED on,
        // which gives them exclusive access to the slot.
        unsafe { (*self.slot.get()).pwq }
    }

    /// The pool the item is (or was last) queued on.
    #[inline]
    pub(crate) fn queued_pool(&self) -> Option<&'static WorkerPool> {
        let p = self.pool.load(Acquire);
        // SAFETY: pools are leaked at creation and never freed.
        (!p.is_null()).then(|| unsafe { &*p })
    }
}

/// A reusable work item: a cheap handle on a function (clones share one
/// item).
///
/// Queue it on a [`Workqueue`](crate::Workqueue) to have the function run
/// on a worker thread. While it is *pending* (queued and not yet started)
/// further queue attempts return `false` and change nothing (G1); it may be
/// queued again while it runs, and then runs exactly once more (G2). Its
/// function never runs concurrently with itself anywhere in the process,
/// even when queued on several workqueues (G3), which is why it may be
/// `FnMut`.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
///
/// let hits = Arc::new(AtomicUsize::new(0));
/// let h = hits.clone();
/// let work = cmwq::Work::named("counter", move |_| {
///     h.fetch_add(1, Ordering::SeqCst);
/// });
/// assert!(cmwq::schedule_work(&work));
/// work.flush();
/// assert_eq!(hits.load(Ordering::SeqCst), 1);
/// ```
#[derive(Clone)]
pub struct Work {
    inner: Arc<WorkInner>,
}

impl Work {
    /// A work item running `f`. The function receives the handle of the
    /// item being run.
    pub fn new<F>(f: F) -> Work
    where
        F: FnMut(&Work) + Send + 'static,
    {
        Self::build(None, f)
    }

    /// Like [`new`](Self::new), with a name shown by
    /// [`dump`](crate::dump()), stats and reports.
    pub fn named<F>(name: &'static str, f: F) -> Work
    where
        F: FnMut(&Work) + Send + 'static,
    {
        Self::build(Some(name), f)
    }

    fn build<F>(name: Option<&'static str>, f: F) -> Work
    where
        F: FnMut(&Work) + Send + 'static,
    {
        Self::with_fn(name, FnCell(UnsafeCell::new(f))).0
    }

    /// An item running `func`, and a pointer to `func` inside the item's
    /// one allocation, valid while any handle on the item lives. Other
    /// threads may read through it while `run` executes: only parts of `R`
    /// that are `Sync` and that `run` does not hold `&mut` to may be read.
    pub(crate) fn with_fn<R: WorkFn>(name: Option<&'static str>, func: R) -> (Work, NonNull<R>) {
        let inner: Arc<WorkInner<R>> = Arc::new(WorkInner {
            state: StateWord::new(),
            done: AtomicU32::new(0),
            wake: AtomicU32::new(0),
            pool: AtomicPtr::new(ptr::null_mut()),
            link: LinkCell::new(),
            slot: UnsafeCell::new(Slot {
                pwq: ptr::null(),
                color: 0,
                active: false,
            }),
            timer: AtomicU32::new(NO_TIMER_ENTRY),
            name,
            queued_ns: AtomicU64::new(0),
            func,
        });
        let func = NonNull::from(&inner.func);
        let inner: Arc<WorkInner> = inner;
        (Work { inner }, func)
    }

    /// The name given to [`named`](Self::named).
    pub fn name(&self) -> Option<&'static str> {
        self.inner.name
    }

    /// Queued, throttled, or timer armed.
    pub fn is_pending(&self) -> bool {
        let s = self.inner.state.load();
        s.pending() && !s.orphan()
    }

    /// An orphan after `fork()` (see `work/state.rs`): give its PENDING bit
    /// back. Cold: never true in a process that did not fork.
    #[inline]
    pub(crate) fn reclaim_if_orphan(&self) {
        if self.inner.state.load().orphan() && self.inner.state.reclaim_orphan() {
            self.wake_waiters();
        }
    }

    /// An execution is in progress.
    pub fn is_running(&self) -> bool {
        self.inner.state.load().running()
    }

    /// Whether two handles are the same item.
    pub fn ptr_eq(a: &Work, b: &Work) -> bool {
        Arc::ptr_eq(&a.inner, &b.inner)
    }

    /// After `fork()`, in the child: make an item that was pending or
    /// running in the parent idle, its last execution counted done (G26).
    pub(crate) fn reset_after_fork(&self) {
        let seq = self.inner.state.reset_after_fork();
        self.inner.done.store(seq, Release);
    }

    /// Wake the threads waiting for this item to change state (flush,
    /// cancel_sync): called by whoever cleared WAITERS.
    #[inline]
    pub(crate) fn wake_waiters(&self) {
        self.inner.wake_waiters();
    }

    #[inline]
    pub(crate) fn inner(&self) -> &WorkInner {
        &self.inner
    }

    #[inline]
    pub(crate) fn as_ptr(&self) -> NonNull<WorkInner> {
        // SAFETY: `Arc::as_ptr` never returns null.
        unsafe { NonNull::new_unchecked(Arc::as_ptr(&self.inner) as *mut WorkInner) }
    }

    /// Give up this handle's reference as a raw pointer.
    #[inline]
    pub(crate) fn into_raw(w: Work) -> NonNull<WorkInner> {
        // SAFETY: `Arc::into_raw` never returns null.
        unsafe { NonNull::new_unchecked(Arc::into_raw(w.inner) as *mut WorkInner) }
    }

    /// Take back a reference given up with [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    ///
    /// `p` came from `into_raw` and its reference was not taken back yet.
    #[inline]
    pub(crate) unsafe fn from_raw(p: NonNull<WorkInner>) -> Work {
        Work {
            // SAFETY: guaranteed by the caller.
            inner: unsafe { Arc::from_raw(p.as_ptr()) },
        }
    }

    #[cfg(all(test, not(loom)))]
    pub(crate) fn strong_count(w: &Work) -> usize {
        Arc::strong_count(&w.inner)
    }

    /// A handle on the item at `p`.
    ///
    /// # Safety
    ///
    /// `p` points to a live `WorkInner` (some handle keeps it alive).
    pub(crate) unsafe fn clone_from_ptr(p: NonNull<WorkInner>) -> Work {
        // SAFETY: the allocation is alive; we add a reference for the new
        // handle before making it.
        unsafe {
            Arc::increment_strong_count(p.as_ptr());
            Work::from_raw(p)
        }
    }
}

/// A list of work items: a pool's worklist, a pwq's inactive list.
pub(crate) type WorkList = List<Work>;

// SAFETY: `into_raw`/`from_raw` are `Arc`'s, `as_ptr` is the same pointer
// without giving up the reference, and `link` is the item's one link cell.
unsafe impl Linked for Work {
    type Node = WorkInner;

    #[inline]
    fn into_raw(self) -> NonNull<WorkInner> {
        Work::into_raw(self)
    }

    #[inline]
    unsafe fn from_raw(p: NonNull<WorkInner>) -> Work {
        // SAFETY: guaranteed by the caller (the trait's contract).
        unsafe { Work::from_raw(p) }
    }

    #[inline]
    fn as_ptr(&self) -> NonNull<WorkInner> {
        Work::as_ptr(self)
    }

    #[inline]
    fn link(node: &WorkInner) -> &LinkCell<WorkInner> {
        &node.link
    }
}

impl fmt::Debug for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Work")
            .field("name", &self.inner.name)
            .field("state", &self.inner.state.load())
            .finish()
    }
}

/// Drop a handle in a library thread (a worker, the timer thread). If it
/// is the last one, the closure's destructor runs here: a panic in it is
/// contained and reported (G4, G5) instead of unwinding through the thread,
/// which would leave its pool counting a worker that is gone.
pub(crate) fn drop_contained(work: Work) {
    // No early return on "not the last handle": another holder may drop
    // its handle between such a check and ours. `catch_unwind` costs
    // nothing unless the destructor panics.
    let name = work.name();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(work)));
    if let Err(payload) = r {
        crate::event::DROP_PANICS.report(Event::DropPanicked {
            work: name,
            message: &util::panic_message(&*payload),
        });
        // The payload may run user code when dropped; contain that too.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(payload)));
    }
}

/// Size of the allocation of a work item whose closure captures nothing
/// (B7), including the reference counts.
#[cfg(feature = "test-util")]
pub(crate) fn size_of_empty() -> usize {
    struct Counts {
        _strong: usize,
        _weak: usize,
    }
    fn size_for<F>(_: &F) -> usize {
        std::mem::size_of::<Counts>() + std::mem::size_of::<WorkInner<FnCell<F>>>()
    }
    size_for(&|_: &Work| {})
}
