//! The work item operations: flush, cancel, disable and enable (the
//! kernel's `__flush_work`, `try_to_grab_pending`, `__cancel_work`,
//! `disable_work` and `enable_work`).
//!
//! They sit above the pools and the timer of delayed work, as in the
//! kernel: taking a pending item back ([`steal_pending`]) must find it
//! wherever it waits, on a pool's worklist, on its pwq's inactive list, in
//! a collided hand-over or on the timer wheel. The item's own state word
//! and its queue-side fields are `work`'s; this file only drives their
//! transitions.

use std::ptr;
use std::sync::atomic::Ordering::*;
use std::sync::Arc;

use crate::event::{report, Event};
use crate::pool;
use crate::pool::pwq;
use crate::pool::work::state::{self, seq_reached, Enabled, Held, Snapshot};
use crate::pool::work::{Work, WorkInner};
use crate::pool::worker;
use crate::workqueue::{check_cpu, Workqueue, WqInner};
use std::time::Duration;

impl Work {
    /// Wait until the execution that was pending or running when called
    /// has finished (G6). Returns `true` if it waited, `false` if the item
    /// was idle. Called from inside the item's own function it does not
    /// wait for that execution (nor for a pending one, which can only start
    /// after it), and returns `false`.
    pub fn flush(&self) -> bool {
        let inner = self.inner();
        self.reclaim_if_orphan();
        let s = inner.state.load();
        if s.idle() || worker::executing(inner) {
            return false;
        }
        if s.timer() {
            crate::timer::fire_now(self);
        }
        let s = inner.state.load();
        if s.idle() {
            return true;
        }
        // The pending execution will be number seq + 1; a running one is
        // number seq.
        let target = if s.pending() {
            s.seq().wrapping_add(1)
        } else {
            s.seq()
        };
        worker::blocking(|| {
            // Done when execution `target` has ended and reads so: its
            // count is stored just before RUNNING is cleared, so "reached"
            // alone could return while it still reads running (G6).
            self.wait_while(|s| {
                !s.idle()
                    && !(seq_reached(inner.done.load(Acquire), target)
                        && !(s.running() && s.seq() == target))
            })
        });
        true
    }

    /// Remove a pending item (queued, throttled or timer armed) and return
    /// `true`; `false` if it was not pending (G9). Does not wait for a
    /// running execution.
    pub fn cancel(&self) -> bool {
        let stolen = steal_pending(self);
        if stolen && self.inner().state.release_pending() {
            self.wake_waiters();
        }
        stolen
    }

    /// [`cancel`](Self::cancel), then wait until no execution is running
    /// (G10). Queue attempts made meanwhile return `false`. On return the
    /// item is neither pending nor running, unless called from the item's
    /// own function, which cancels a pending requeue and does not wait for
    /// itself. Safe to call from several threads at once.
    pub fn cancel_sync(&self) -> bool {
        let r = self.disable_sync();
        self.enable();
        r
    }

    /// Cancel the item and increment its disable count (G11): while the
    /// count is above zero every queue attempt returns `false`. Returns
    /// `true` if it was pending.
    ///
    /// As in the kernel, the count is raised only while nobody else owns
    /// the item's PENDING state (in the CAS that sees it idle, or in the
    /// one that gives back the instance this call stole): a `mod_delayed`
    /// racing with it either re-armed the instance before (and this call
    /// then steals and reports it) or finds the item disabled; the
    /// instance is never dropped unreported.
    ///
    /// # Panics
    ///
    /// If the count would exceed 65535 (unbalanced `disable`).
    pub fn disable(&self) -> bool {
        let st = &self.inner().state;
        loop {
            if steal_pending(self) {
                break;
            }
            match st.disable_if_not_pending() {
                state::DisableIdle::Done => return false,
                state::DisableIdle::Overflow => self.disable_overflow(),
                // Queued by someone else meanwhile: steal that instance.
                state::DisableIdle::Pending => {}
            }
        }
        match st.release_pending_disabled() {
            Ok(waiters) => {
                if waiters {
                    self.wake_waiters();
                }
                true
            }
            Err(waiters) => {
                if waiters {
                    self.wake_waiters();
                }
                self.disable_overflow()
            }
        }
    }

    #[cold]
    fn disable_overflow(&self) -> ! {
        panic!(
            "cmwq: Work::disable: disable count overflow on work item {} (more than {} unbalanced disables)",
            self.name().unwrap_or("(unnamed)"),
            state::DISABLE_MAX
        )
    }

    /// [`disable`](Self::disable), then wait until no execution is running
    /// (except the caller's own, when called from the item's function).
    pub fn disable_sync(&self) -> bool {
        let r = self.disable();
        if !worker::executing(self.inner()) {
            worker::blocking(|| self.wait_while(|s| s.running()));
        }
        r
    }

    /// Decrement the disable count; `true` when it reaches zero and the item
    /// can be queued again. An `enable` without a matching `disable` is
    /// reported through the log hook and returns `false`.
    pub fn enable(&self) -> bool {
        match self.inner().state.enable() {
            Enabled::Zero => true,
            Enabled::StillDisabled => false,
            Enabled::NotDisabled => {
                // The one report that may come before anything started the
                // pools: resolve the settings, so it reaches the configured
                // hook (`event::report`).
                let _ = crate::config::settings();
                report(Event::Misuse {
                    message: &format!(
                        "Work::enable on work item {} that is not disabled",
                        self.name().unwrap_or("(unnamed)")
                    ),
                });
                false
            }
        }
    }

    /// Park until `must_wait` stops holding; the item's state transitions
    /// that can end the wait clear WAITERS and wake us.
    fn wait_while(&self, must_wait: impl Fn(Snapshot) -> bool) {
        let st = &self.inner().state;
        // `wait_on` reads the wake word before each check: a waker that
        // clears WAITERS after `set_waiters_if` set it bumps the word, so
        // the sleep returns at once or is woken.
        pool::wait_on(&self.inner().wake, || !st.set_waiters_if(&must_wait));
    }
}

/// Become the owner of a pending instance of `work`, taking it off its
/// list, its collided hand-over or its timer, and releasing its accounting
/// (the kernel's try_to_grab_pending). Returns false if it was not pending.
/// On true the caller owns PENDING and must release it.
pub(crate) fn steal_pending(work: &Work) -> bool {
    let inner = work.inner();
    let mut spins = 0u32;
    loop {
        let s = inner.state.load();
        if !s.pending() {
            return false;
        }
        if s.queued() {
            let Some(pool) = inner.queued_pool() else {
                continue;
            };
            let mut g = pool.lock();
            let s = inner.state.load();
            if !(s.queued() && ptr::eq(inner.pool.load(Acquire), pool)) {
                continue; // moved meanwhile
            }
            let stolen = inner.state.steal(Held::Queued);
            debug_assert!(stolen);
            // SAFETY: we own PENDING now (and hold the pool lock).
            let (pwq_ptr, color, active) = unsafe { inner.slot_read() };
            // SAFETY: the slot's reference is ours with PENDING.
            let pwq = unsafe { Arc::from_raw(pwq_ptr) };
            // SAFETY: the item was QUEUED on this pool, on the worklist if
            // active and on its pwq's inactive list otherwise.
            let list_ref = unsafe {
                if active {
                    g.worklist.remove(work)
                } else {
                    g.pwqs[pwq.slot].inactive.remove(work)
                }
            };
            if ptr::eq(pwq.pool, pool) {
                if pwq::dec_nr_in_flight(&mut g, &pwq, color, active) {
                    pool::kick_pool(&mut g);
                }
                drop(g);
            } else {
                // Taken by a sibling lane (`pool::steal`): its accounting
                // is on the pwq of the lane it was queued on.
                drop(g);
                let mut g = pwq.pool.lock();
                if pwq::dec_nr_in_flight(&mut g, &pwq, color, active) {
                    pool::kick_pool(&mut g);
                }
            }
            drop(list_ref);
            return true;
        }
        if s.collided() {
            if inner.state.steal(Held::Collided) {
                release_accounting(inner);
                return true;
            }
            continue;
        }
        if s.timer() {
            // An armed item has no pwq accounting yet (G7: timers are not
            // in flight).
            if crate::timer::try_disarm(work) {
                return true;
            }
            continue;
        }
        if s.orphan() {
            // In transit when this process was forked: nobody owns it.
            if inner.state.reclaim_orphan() {
                work.wake_waiters();
            }
            return false;
        }
        // In transit: being queued, or being handed over. Wait it out.
        spins += 1;
        if spins < 64 {
            crate::loom::spin_loop_hint();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Undo the accounting of a stolen pending instance whose slot holds a pwq
/// (collided or armed items).
fn release_accounting(inner: &WorkInner) {
    // SAFETY: the caller stole PENDING, so the slot is ours.
    let (pwq_ptr, color, active) = unsafe { inner.slot_read() };
    if pwq_ptr.is_null() {
        return;
    }
    // SAFETY: the slot's reference is ours with PENDING.
    let pwq = unsafe { Arc::from_raw(pwq_ptr) };
    // SAFETY: as above; clear it so it is not released twice.
    unsafe { inner.slot_write(ptr::null(), 0, false) };
    let pool = pwq.pool;
    let mut g = pool.lock();
    if pwq::dec_nr_in_flight(&mut g, &pwq, color, active) {
        pool::kick_pool(&mut g);
    }
}

// ------------------------------------------------------- modifying a delay

impl Workqueue {
    /// Modify a delay (G13): if `work` is pending (armed or queued) it is
    /// re-armed to fire `delay` from now and `true` is returned; otherwise
    /// it is armed and `false` is returned. `delay == 0` runs it now. Never
    /// two executions. This is how to debounce: each call pushes the
    /// execution back.
    pub fn mod_delayed(&self, work: &Work, delay: Duration) -> bool {
        self.inner.mod_delayed(None, work, delay)
    }

    /// [`mod_delayed`](Self::mod_delayed) on `cpu`'s pool.
    ///
    /// # Panics
    ///
    /// If `cpu >= nr_cpus()`.
    pub fn mod_delayed_on(&self, cpu: usize, work: &Work, delay: Duration) -> bool {
        check_cpu("mod_delayed_on", cpu);
        self.inner.mod_delayed(Some(cpu), work, delay)
    }
}

impl WqInner {
    pub(crate) fn mod_delayed(
        self: &Arc<Self>,
        cpu: Option<usize>,
        work: &Work,
        delay: Duration,
    ) -> bool {
        // G8: during a drain a queue from anywhere else is refused before
        // anything is touched: the item stays as it was (pending where it
        // was, or idle), and the caller is told (false).
        if self.refuses_caller() {
            return false;
        }
        // Debounce fast path: an armed item only moves in the wheel.
        if !delay.is_zero() && crate::timer::rearm(work, self, cpu, delay) {
            return true;
        }
        let state = &work.inner().state;
        let was_pending = loop {
            if steal_pending(work) {
                break true;
            }
            match state.try_grab_for_queue() {
                Ok(_) => break false,
                // Queued by someone else meanwhile: steal that one.
                Err(crate::pool::work::state::Refused::Pending) => continue,
                Err(crate::pool::work::state::Refused::Disabled) => return false,
            }
        };
        // We own PENDING. The disable count only rises while its raiser
        // owns PENDING (see `Work::disable`), and it was zero when this
        // instance became pending, so it is zero now.
        debug_assert_eq!(state.load().disable_count(), 0);
        if delay.is_zero() {
            // A drain that started since the check above refuses this
            // re-queue (reported): the documented G4 exception.
            self.insert_grabbed(cpu, work);
        } else {
            crate::timer::arm(work, self, cpu, delay);
        }
        was_pending
    }
}
