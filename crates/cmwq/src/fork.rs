//! Fork (G26): after `fork()` the child can use cmwq at once.
//!
//! The child of a multithreaded process has one thread, the one that
//! called `fork()`; every other thread, with what it was doing, is gone,
//! and any lock one of them held stays held for ever. cmwq registers
//! `pthread_atfork` handlers when its first workqueue is made (`init.rs`):
//!
//! * **prepare** (in the parent, before the fork): take every lock of the
//!   library, in the lock order of `src/LOCKING.md`, so that no other
//!   thread is inside any of them when the address space is copied;
//! * **parent** (after the fork): release them all;
//! * **child**: with every lock held by its only thread, reset what the
//!   parent's threads owned: every pool forgets its workers and lets go of
//!   its queued and throttled items (they become idle and never run in the
//!   child), in-flight and active counts start from zero, armed timers are
//!   disarmed, flushes and drains in progress are forgotten, and the
//!   monitor, the timer thread and the rescuers start again on first use
//!   (the first worker the child creates starts the monitor, which starts
//!   the rescuers). Then the locks are released.
//!
//! Items pending, armed or running in the parent still run there, exactly
//! once: the parent's state is not touched. Items that other threads were
//! queueing, firing, re-arming or cancelling at the instant of the fork
//! (they owned the PENDING bit and had not linked the item yet, often
//! because they waited for a pool lock the fork held) are orphans in the
//! child: the state word records the fork generation of whoever took the
//! bit, and a pending, unlinked item of an older generation reads idle and
//! is taken back by the next queue, cancel, disable or flush.
//!
//! Why `pthread_atfork` rather than a process id check on first use: a pid
//! check costs a system call on the queue path (glibc no longer caches
//! `getpid`), and by the time it ran, a lock held by a vanished thread
//! could not be released safely. The handlers make the copy consistent
//! at the moment it is taken. What makes releasing the locks in the child
//! enough is that every lock and wait of the library is a bare futex
//! (`sync.rs`): the kernel keeps futex waiters per process, so the child
//! inherits none of the parent's.
//!
//! A fork from inside a work item: in the child, the item runs on with no
//! worker behind it (it stays RUNNING, so queueing it there never starts a
//! second execution); it should `exec` or exit. If it returns, the child
//! exits with status 0 (reported as `Event::Misuse`).
//!
//! Not supported: a fork from a library thread outside a work function (a
//! log hook, or a closure's destructor run by a worker or the timer
//! thread): that thread would carry on in the child as a worker or timer
//! of pools that were reset. And the generation has 10 bits: an orphan
//! left untouched across 1024 nested forks would read owned again.

use std::cell::RefCell;
use std::sync::{Arc, Once};

use crate::pool::{pools_if_started, WorkerPool};
use crate::workqueue::WqInner;

/// What `prepare` locked, released by `parent` or `child` (the same thread,
/// in both processes).
struct Held {
    wqs: Vec<Arc<WqInner>>,
    pools: Vec<&'static WorkerPool>,
}

thread_local! {
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// Register the handlers (once, by `init::start`, before any workqueue
/// exists).
pub(crate) fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: the three handlers are `extern "C"` functions that live
        // for the whole process and do not unwind.
        let r = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        if r != 0 {
            crate::event::report(crate::Event::Misuse {
                message: "pthread_atfork failed: a forked child cannot use cmwq",
            });
        }
        crate::monitor::on_child_start(restart_in_child);
    });
}

/// In a forked child, from the monitor's thread once it runs: start the
/// rescuers' threads and the control socket again (a no-op unless asked
/// for).
fn restart_in_child() {
    crate::control::start();
    for wq in crate::workqueue::all_workqueues() {
        if let Some(r) = &wq.shared.rescuer {
            r.restart_after_fork();
        }
    }
}

extern "C" fn prepare() {
    // Nothing may unwind out of a fork handler.
    let _ = std::panic::catch_unwind(prepare_locks);
}

fn prepare_locks() {
    let Some(pools) = pools_if_started() else {
        return;
    };
    // A system workqueue being created by another thread right now would
    // wait for WORKQUEUES, which we are about to hold, inside its
    // `OnceLock`: the child would inherit that `OnceLock` as "being
    // initialised" for ever. Make sure they all exist first (only the
    // first fork pays for it).
    let _ = (
        crate::system_wq(),
        crate::system_highpri_wq(),
        crate::system_long_wq(),
        crate::system_unbound_wq(),
        crate::system_dfl_wq(),
        crate::system_freezable_wq(),
        crate::system_power_efficient_wq(),
        crate::system_freezable_power_efficient_wq(),
    );
    // The lock order (src/LOCKING.md): the manual clock's advance lock,
    // FREEZER, WORKQUEUES, per workqueue S, F, T; Pools::unbound,
    // Pools::lanes, Pools::all; every pool lock; leaves.
    std::mem::forget(crate::clock::ADVANCE.lock());
    std::mem::forget(crate::freeze::FREEZER.lock());
    let wqs: Vec<Arc<WqInner>> = {
        let list = crate::workqueue::WORKQUEUES.lock();
        let wqs = list.iter().filter_map(std::sync::Weak::upgrade).collect();
        std::mem::forget(list);
        wqs
    };
    for wq in &wqs {
        wq.fork_lock();
    }
    std::mem::forget(pools.unbound.lock());
    std::mem::forget(pools.lanes.lock());
    let all = pools.all.lock();
    let pool_list: Vec<&'static WorkerPool> = all.clone();
    std::mem::forget(all);
    for p in &pool_list {
        std::mem::forget(p.lock.lock());
    }
    for wq in &wqs {
        wq.fork_lock_leaf();
        if let Some(r) = &wq.shared.rescuer {
            r.fork_lock();
        }
    }
    crate::timer::fork_lock();
    crate::event::PANICS.fork_lock();
    crate::event::DROP_PANICS.fork_lock();
    HELD.with(|h| {
        *h.borrow_mut() = Some(Held {
            wqs,
            pools: pool_list,
        })
    });
}

/// Release every lock `prepare` took (in either process).
///
/// # Safety
///
/// Called once, on the thread that ran `prepare`, with `held` from it.
unsafe fn unlock_all(held: &Held) {
    let Some(pools) = pools_if_started() else {
        return;
    };
    // SAFETY: (the whole block) each of these locks was taken by `prepare`
    // on this thread and its guard forgotten; nothing released them since.
    unsafe {
        crate::event::DROP_PANICS.fork_unlock();
        crate::event::PANICS.fork_unlock();
        crate::timer::fork_unlock();
        for wq in &held.wqs {
            if let Some(r) = &wq.shared.rescuer {
                r.fork_unlock();
            }
        }
        for p in &held.pools {
            p.lock.force_unlock(Default::default());
        }
        pools.all.force_unlock(Default::default());
        pools.lanes.force_unlock(Default::default());
        pools.unbound.force_unlock(Default::default());
        for wq in &held.wqs {
            wq.fork_unlock();
        }
        crate::workqueue::WORKQUEUES.force_unlock(Default::default());
        crate::freeze::FREEZER.force_unlock(Default::default());
        crate::clock::ADVANCE.force_unlock(Default::default());
    }
}

extern "C" fn parent() {
    let _ = std::panic::catch_unwind(|| {
        if let Some(held) = HELD.with(|h| h.borrow_mut().take()) {
            // SAFETY: this thread ran `prepare`, which filled HELD.
            unsafe { unlock_all(&held) };
        }
    });
}

extern "C" fn child() {
    let _ = std::panic::catch_unwind(|| {
        let Some(held) = HELD.with(|h| h.borrow_mut().take()) else {
            return;
        };
        // Everything is locked by this thread, the child's only one.
        let own = crate::pool::worker::current_exec().map(|(w, _)| w.as_ptr() as *const u8);
        for p in &held.pools {
            // SAFETY: the pool lock is held by this thread (prepare).
            let g = unsafe { &mut *p.lock.data_ptr() };
            crate::pool::reset_after_fork(p, g, own);
        }
        // Items other threads owned the PENDING bit of at the instant of
        // the fork (queueing, firing, re-arming them): nobody will link
        // them here. They carry the parent's generation, which makes them
        // read idle from now on (`pool::work::state`, "fork generation").
        crate::pool::work::state::next_fork_generation();
        for wq in &held.wqs {
            // SAFETY: its locks are held by this thread (prepare).
            unsafe { wq.reset_after_fork() };
            if let Some(r) = &wq.shared.rescuer {
                // SAFETY: as above, for its mayday-list lock.
                unsafe { r.reset_after_fork() };
            }
        }
        // SAFETY: the wheel lock is held by this thread (prepare).
        unsafe { crate::timer::reset_after_fork() };
        if let Some((w, _)) = crate::pool::worker::current_exec() {
            // SAFETY: this thread is executing the item, whose handle its
            // worker holds (on this thread's stack, still alive here).
            unsafe { w.as_ref() }.state.running_only_after_fork();
        }
        crate::pool::reset_counts_after_fork();
        crate::monitor::reset_after_fork();
        crate::control::reset_after_fork();
        crate::trace::reset_after_fork();
        crate::pool::worker::forget_self_after_fork();
        // SAFETY: this thread ran `prepare`, which filled HELD.
        unsafe { unlock_all(&held) };
    });
}
