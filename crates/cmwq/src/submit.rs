//! Results (G33): [`Workqueue::submit`](crate::Workqueue::submit) runs a
//! closure as a work item and returns a [`Handle`] to its result, which
//! can be joined (blocking), polled (`try_join`), awaited (`Handle` is a
//! `Future` under any executor), or cancelled before it starts.
//! [`unblock`] is the async entry point on `system_dfl_wq`.
//!
//! The handle and the item share one small state block, which lives in
//! the item's own allocation beside the closure (one allocation per
//! submit):
//!
//! ```text
//!  state (A)   QUEUED --run--> RUNNING --result--> DONE
//!                 \--cancel--> CANCELLED        (REFUSED: never queued)
//!  result (M)  the closure's value or error, taken once by the handle
//!  waker  (M)  the last poller's waker, woken when the result is set
//!  word   (A)  futex word bumped when the result is set (blocking join)
//! ```
//!
//! Only the transition out of QUEUED is contended (the item starting vs
//! `cancel`), and it is one compare-exchange; whoever wins owns the result
//! slot's single write.

use std::any::Any;
use std::cell::UnsafeCell;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering::*};
use std::task::{Context, Poll, Waker};

use crate::pool::work::WorkFn;
use crate::sync::Mutex;
use crate::{Work, Workqueue};

/// Why a [`Handle`] has no value.
#[non_exhaustive]
pub enum JoinError {
    /// The closure panicked; the payload is the panic's.
    Panicked(Box<dyn Any + Send + 'static>),
    /// [`Handle::cancel`] took it off the queue before it started.
    Cancelled,
    /// The workqueue refused it (draining or being destroyed, G8, G25).
    Refused,
}

impl JoinError {
    /// The panic message, when the closure panicked with a string.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            JoinError::Panicked(p) => p
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| p.downcast_ref::<String>().map(String::as_str)),
            _ => None,
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(_) => match self.panic_message() {
                Some(m) => write!(f, "Panicked({m:?})"),
                None => f.write_str("Panicked(..)"),
            },
            JoinError::Cancelled => f.write_str("Cancelled"),
            JoinError::Refused => f.write_str("Refused"),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(_) => match self.panic_message() {
                Some(m) => write!(f, "the submitted closure panicked: {m}"),
                None => f.write_str("the submitted closure panicked"),
            },
            JoinError::Cancelled => f.write_str("the submitted closure was cancelled"),
            JoinError::Refused => f.write_str(
                "the workqueue refused the submitted closure (draining or being destroyed)",
            ),
        }
    }
}

impl std::error::Error for JoinError {}

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
const CANCELLED: u8 = 3;
const REFUSED: u8 = 4;

/// What the handle and the item share (see the module docs).
struct Shared<T> {
    /// A: QUEUED, RUNNING, DONE, CANCELLED or REFUSED.
    state: AtomicU8,
    /// A: futex word, bumped after `result` is set.
    word: AtomicU32,
    /// M: set once (by the item, or by `cancel`/refusal), taken once.
    result: Mutex<Option<Result<T, JoinError>>>,
    /// M: the last poller's waker.
    waker: Mutex<Option<Waker>>,
}

impl<T> Shared<T> {
    /// Publish the result and wake whoever waits for it.
    fn complete(&self, state: u8, r: Result<T, JoinError>) {
        *self.result.lock() = Some(r);
        self.state.store(state, Release);
        self.word.fetch_add(1, Release);
        crate::sync::wake_all(&self.word);
        // Woken after the lock is released: a waker may poll at once.
        let w = self.waker.lock().take();
        if let Some(w) = w {
            w.wake();
        }
    }

    fn finished(&self) -> bool {
        self.state.load(Acquire) >= DONE
    }
}

/// The result of a closure given to
/// [`Workqueue::submit`](crate::Workqueue::submit): join it, poll it, await
/// it, or cancel it. Dropping a handle detaches: the closure still runs and
/// its result is dropped.
///
/// ```
/// let wq = cmwq::system_dfl_wq();
/// let h = wq.submit(|| 6 * 7);
/// assert_eq!(h.join().unwrap(), 42);
///
/// let h = wq.submit(|| -> u32 { panic!("boom") });
/// let e = h.join().unwrap_err();
/// assert_eq!(e.panic_message(), Some("boom"));
/// ```
pub struct Handle<T> {
    /// Into `work`'s allocation (the `SubmitFn`), which `work` keeps alive.
    shared: NonNull<Shared<T>>,
    work: Work,
    /// I: the workqueue's id, and whether it is ordered (a join from one
    /// of its own items on an item behind it would wait forever).
    wq: (u64, bool),
}

// SAFETY: the handle only reads `Shared<T>` through a shared reference
// into the allocation its `work` keeps alive; `Shared<T>` is atomics and
// mutexes over `T` and a waker, `Send + Sync` when `T: Send`, like the
// `Arc<Shared<T>>` it stands for.
unsafe impl<T: Send> Send for Handle<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Handle<T> {}

impl<T> Handle<T> {
    #[inline]
    fn shared(&self) -> &Shared<T> {
        // SAFETY: `shared` points into the allocation `self.work` holds.
        unsafe { self.shared.as_ref() }
    }
}

impl<T> fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.shared().state.load(Acquire) {
            QUEUED => "queued",
            RUNNING => "running",
            DONE => "done",
            CANCELLED => "cancelled",
            _ => "refused",
        };
        f.debug_struct("Handle").field("state", &state).finish()
    }
}

/// The function of a submitted item: the shared state first, then the
/// closure, in the item's own allocation (one allocation per submit).
struct SubmitFn<T, F> {
    shared: Shared<T>,
    /// Taken once, by whoever moved `state` from QUEUED to RUNNING.
    f: UnsafeCell<Option<F>>,
}

// `SubmitFn` is `Send` (as `WorkFn` needs) because `T` and `F` are.
impl<T, F> WorkFn for SubmitFn<T, F>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    unsafe fn run(&self, _work: &Work) {
        let s = &self.shared;
        // Against `cancel`: whoever leaves QUEUED owns the closure and the
        // result. The item runs at most once more after a cancel, and then
        // finds CANCELLED.
        if s.state
            .compare_exchange(QUEUED, RUNNING, AcqRel, Acquire)
            .is_err()
        {
            return;
        }
        // SAFETY: only the one winner of the compare-exchange above ever
        // reaches this line, so nothing else touches the cell.
        let Some(f) = (unsafe { &mut *self.f.get() }).take() else {
            return;
        };
        let r = catch_unwind(AssertUnwindSafe(f)).map_err(JoinError::Panicked);
        s.complete(DONE, r);
    }
}

impl Workqueue {
    /// Run `f` as a work item of this workqueue and return a [`Handle`]
    /// to its result (G33). A panic in `f` is contained and comes back as
    /// [`JoinError::Panicked`]; a workqueue that is draining or being
    /// destroyed refuses it ([`JoinError::Refused`]). Queued like
    /// [`queue`](Self::queue): on a bound workqueue it runs on the
    /// caller's CPU; use [`system_dfl_wq`](crate::system_dfl_wq) to spread.
    ///
    /// One allocation: the item, with the closure and the result slot in
    /// it.
    pub fn submit<T, F>(&self, f: F) -> Handle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let func = SubmitFn {
            shared: Shared {
                state: AtomicU8::new(QUEUED),
                word: AtomicU32::new(0),
                result: Mutex::new(None),
                waker: Mutex::new(None),
            },
            f: UnsafeCell::new(Some(f)),
        };
        let (work, func) = Work::with_fn(Some("submit"), func);
        let shared = NonNull::from(
            // SAFETY: `func` points into the allocation `work` keeps alive.
            &unsafe { func.as_ref() }.shared,
        );
        let h = Handle {
            shared,
            work,
            wq: self.id_and_ordered(),
        };
        if !self.queue(&h.work) {
            // A new item is never pending already: the queue was refused.
            h.shared().complete(REFUSED, Err(JoinError::Refused));
        }
        h
    }
}

impl<T> Handle<T> {
    /// Wait for the result. Inside a work item the wait counts as a hinted
    /// block ([`blocking`](crate::blocking)), so the pool keeps its CPU
    /// busy meanwhile.
    ///
    /// A join from one of the same workqueue's items waits while that item
    /// holds one of the workqueue's `max_active` slots: with every slot
    /// held by joiners, the joined items cannot start. `system_dfl_wq`
    /// has 2048.
    ///
    /// # Panics
    ///
    /// When called from inside the very item it waits for, or from an item
    /// of the same ordered workqueue while the joined item has not started
    /// (either would wait for itself forever).
    pub fn join(self) -> Result<T, JoinError> {
        if !self.shared().finished() {
            if let Some((cur, _)) = crate::pool::worker::current_exec() {
                if std::ptr::addr_eq(cur.as_ptr(), self.work.as_ptr().as_ptr()) {
                    panic!(
                        "cmwq::Handle::join called from inside the submitted closure it waits \
                         for: it would wait for itself forever"
                    );
                }
                if self.wq.1
                    && crate::pool::worker::current_wq_id() == Some(self.wq.0)
                    && self.shared().state.load(Acquire) == QUEUED
                {
                    panic!(
                        "cmwq::Handle::join called from an item of the ordered workqueue the \
                         joined closure waits in: it cannot start before this item ends"
                    );
                }
            }
            crate::blocking(|| loop {
                let seen = self.shared().word.load(Acquire);
                if self.shared().finished() {
                    break;
                }
                crate::sync::wait(&self.shared().word, seen, None);
            });
        }
        self.take()
    }

    /// The result if it is there (`None` while queued or running). Once a
    /// result was taken, the next call panics.
    pub fn try_join(&mut self) -> Option<Result<T, JoinError>> {
        self.shared().finished().then(|| self.take())
    }

    /// Whether the result is there (the closure returned or panicked, or
    /// the item was cancelled or refused).
    pub fn is_finished(&self) -> bool {
        self.shared().finished()
    }

    /// Take it off the queue if it has not started: true if so (the
    /// handle then resolves to [`JoinError::Cancelled`]; the closure, never
    /// run, is dropped with the handle); false once it started (it runs to
    /// the end) or finished.
    pub fn cancel(&self) -> bool {
        if self
            .shared()
            .state
            .compare_exchange(QUEUED, CANCELLED, AcqRel, Acquire)
            .is_err()
        {
            return false;
        }
        // Off the worklist now, if it is still there; if a worker took it
        // already, the closure sees CANCELLED and returns at once.
        self.work.cancel();
        self.shared().complete(CANCELLED, Err(JoinError::Cancelled));
        true
    }

    fn take(&self) -> Result<T, JoinError> {
        self.shared()
            .result
            .lock()
            .take()
            .expect("cmwq::Handle: the result was already taken")
    }
}

impl<T> Future for Handle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.shared().finished() {
            return Poll::Ready(self.take());
        }
        {
            let mut w = self.shared().waker.lock();
            match &*w {
                Some(old) if old.will_wake(cx.waker()) => {}
                _ => *w = Some(cx.waker().clone()),
            }
        }
        // The result may have come between the check and the registration.
        if self.shared().finished() {
            return Poll::Ready(self.take());
        }
        Poll::Pending
    }
}

/// A blocking closure run on [`system_dfl_wq`](crate::system_dfl_wq) for
/// async code (the `blocking` crate's `unblock`): it starts at once, not on
/// the first poll, so futures made together overlap. The future resolves
/// to the closure's value under any executor; a panic in the closure is
/// raised again where the future is polled.
///
/// ```
/// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     use std::task::{Context, Poll, Wake, Waker};
/// #     struct T(std::thread::Thread);
/// #     impl Wake for T { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
/// #     let w = Waker::from(std::sync::Arc::new(T(std::thread::current())));
/// #     let mut f = std::pin::pin!(f);
/// #     loop {
/// #         if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&w)) { return v; }
/// #         std::thread::park();
/// #     }
/// # }
/// let a = cmwq::unblock(|| std::fs::read_to_string("/proc/self/stat").unwrap());
/// let b = cmwq::unblock(|| 1 + 1); // already running beside `a`
/// assert!(block_on(a).contains('('));
/// assert_eq!(block_on(b), 2);
/// ```
pub fn unblock<T, F>(f: F) -> impl Future<Output = T> + Send + 'static
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Unblock(crate::system_dfl_wq().submit(f))
}

/// The future of [`unblock`].
struct Unblock<T>(Handle<T>);

impl<T> Future for Unblock<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match Pin::new(&mut self.0).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(v)) => Poll::Ready(v),
            Poll::Ready(Err(JoinError::Panicked(p))) => std::panic::resume_unwind(p),
            Poll::Ready(Err(e)) => panic!("cmwq::unblock: {e}"),
        }
    }
}
