//! Scoped work (G33): [`scope`] and [`scope_on`], like
//! `std::thread::scope` and `rayon::scope`. Closures spawned in a scope
//! may borrow from outside it; the scope returns only after every one of
//! them finished, and re-raises the first panic among them after that.
//!
//! Soundness rests on one rule: `scope_on` does not return (nor unwind)
//! before the count of spawned closures still to finish is zero, and a
//! closure's last touch of shared state is the decrement of that count on
//! an `Arc` it holds itself (so the scope's frame may go away the moment
//! the count reaches zero). The user never holds anything whose
//! `mem::forget` could skip the wait: the `Scope` is only lent.

use std::any::Any;
use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::*};
use std::sync::Arc;

use crate::sync::Mutex;
use crate::{Work, Workqueue};

/// What a scope's closures report to it.
struct ScopeData {
    /// A: closures spawned and not finished yet.
    pending: AtomicUsize,
    /// A: futex word, bumped when `pending` reaches zero.
    word: AtomicU32,
    /// M: the first panic of a spawned closure.
    panic: Mutex<Option<Box<dyn Any + Send + 'static>>>,
    /// M: the spawned closures' slots, for a scope waited for inside a
    /// work item: the waiter runs those not started yet itself (their
    /// items may be queued behind the waiter's own, in a workqueue whose
    /// `max_active` slots the waiters hold).
    slots: Mutex<Vec<Slot>>,
}

type Run = Box<dyn FnOnce() + Send>;
/// A closure, taken by whoever runs it first: its item or the waiter.
type Slot = Arc<Mutex<Option<Run>>>;

/// Calls `ScopeData::finish` when dropped: a closure's count drops even if
/// dropping its panic payload panics.
struct Finish(Arc<ScopeData>);

/// A spawned closure and its count. Fields drop in order: the closure (and
/// what it captured) before the count, so the scope cannot return while
/// anything of the closure is still alive, run or not.
struct Job {
    job: Box<dyn FnOnce() + Send + 'static>,
    done: Finish,
}

impl Job {
    fn run(self) {
        let Job { job, done } = self;
        if let Err(p) = catch_unwind(AssertUnwindSafe(job)) {
            let mut first = done.0.panic.lock();
            if first.is_none() {
                *first = Some(p);
            }
        }
        drop(done);
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.0.finish();
    }
}

impl ScopeData {
    /// One closure finished: the last touch of the scope by its item.
    fn finish(&self) {
        if self.pending.fetch_sub(1, AcqRel) == 1 {
            self.word.fetch_add(1, Release);
            crate::sync::wake_all(&self.word);
        }
    }
}

/// A scope to spawn borrowing closures in; see [`scope`].
pub struct Scope<'scope, 'env: 'scope> {
    data: Arc<ScopeData>,
    wq: &'scope Workqueue,
    /// Invariant in 'scope, as std's (a closure may not shrink it).
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

/// The workqueue and the closures not finished yet, as
/// `std::thread::Scope` shows its running threads.
impl std::fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("workqueue", &self.wq.name())
            .field("pending", &self.data.pending.load(Relaxed))
            .field("panicked", &self.data.panic.lock().is_some())
            .finish_non_exhaustive()
    }
}

impl<'scope, 'env> Scope<'scope, 'env> {
    /// Run `f` as a work item of the scope's workqueue. `f` may borrow
    /// anything that outlives the scope. A panic in `f` is re-raised by
    /// the scope once every closure finished. If the workqueue refuses the
    /// item (draining or being destroyed), `f` runs here, at once.
    pub fn spawn<F>(&'scope self, f: F)
    where
        F: FnOnce() + Send + 'scope,
    {
        let job: Box<dyn FnOnce() + Send + 'scope> = Box::new(f);
        // SAFETY: the closure may borrow for 'scope only; `scope_on` does
        // not return before `pending` is zero, and the item decrements it
        // after the closure ran and was dropped (module docs), so nothing
        // it borrows is used after 'scope ends.
        let job: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(job) };
        // Counted from here; from here on nothing panics before the
        // closure is handed to whoever runs it (which decrements).
        self.data.pending.fetch_add(1, Relaxed);
        let job = Job {
            job,
            done: Finish(self.data.clone()),
        };
        let run = move || job.run();
        // Shared with the item so that a refused one, or one a waiting
        // item runs itself, can be run here.
        let slot: Slot = Arc::new(Mutex::new(Some(Box::new(run))));
        if crate::pool::worker::current_exec().is_some() {
            self.data.slots.lock().push(slot.clone());
        }
        let theirs = slot.clone();
        let work = Work::named("scope", move |_| {
            let r = theirs.lock().take();
            if let Some(r) = r {
                r();
            }
        });
        if !self.wq.queue(&work) {
            // Refused (draining or being destroyed): nobody else will run
            // it.
            let r = slot.lock().take();
            if let Some(r) = r {
                r();
            }
        }
    }
}

/// Run `f` with a [`Scope`] whose closures run on
/// [`system_dfl_wq`](crate::system_dfl_wq) (managed unbound: a scope fed
/// from one thread uses every CPU, and closures that block keep the CPUs
/// busy without a hint). Returns `f`'s value once every spawned closure
/// finished; if one of them panicked (or `f` did), the panic is raised
/// again after that.
///
/// ```
/// let mut counts = vec![0u64; 8];
/// let text = "the quick brown fox jumps over the lazy dog";
/// cmwq::scope(|s| {
///     for (i, c) in counts.iter_mut().enumerate() {
///         s.spawn(move || *c = text.split(' ').filter(|w| w.len() == i).count() as u64);
///     }
/// });
/// assert_eq!(counts[3], 4); // the, fox, the, dog
/// ```
pub fn scope<'env, F, R>(f: F) -> R
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
{
    scope_on(crate::system_dfl_wq(), f)
}

/// [`scope`] with its closures on `wq`.
///
/// A scope waited for from inside one of `wq`'s own items counts as a
/// hinted block ([`blocking`](crate::blocking)), so the pool starts
/// another worker for the closures.
pub fn scope_on<'env, F, R>(wq: &Workqueue, f: F) -> R
where
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
{
    let s = Scope {
        data: Arc::new(ScopeData {
            pending: AtomicUsize::new(0),
            word: AtomicU32::new(0),
            panic: Mutex::new(None),
            slots: Mutex::new(Vec::new()),
        }),
        wq,
        scope: PhantomData,
        env: PhantomData,
    };
    let r = catch_unwind(AssertUnwindSafe(|| f(&s)));
    // Inside a work item: run the closures no worker has started yet here
    // (newest first), so a scope never waits on items queued behind its
    // own (nested scopes, an ordered or throttled workqueue).
    loop {
        let slot = s.data.slots.lock().pop();
        let Some(slot) = slot else {
            break;
        };
        let run = slot.lock().take();
        if let Some(run) = run {
            run();
        }
    }
    // Wait for every spawned closure, whatever `f` did.
    if s.data.pending.load(Acquire) != 0 {
        crate::blocking(|| loop {
            let seen = s.data.word.load(Acquire);
            if s.data.pending.load(Acquire) == 0 {
                break;
            }
            crate::sync::wait(&s.data.word, seen, None);
        });
    }
    if let Some(p) = s.data.panic.lock().take() {
        resume_unwind(p);
    }
    match r {
        Ok(v) => v,
        Err(p) => resume_unwind(p),
    }
}
