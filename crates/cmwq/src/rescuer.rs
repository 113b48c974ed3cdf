//! Rescuers: forward progress for `MEM_RECLAIM` workqueues (G22), as in
//! the kernel (`send_mayday`, `pool_mayday_timeout`, `rescuer_thread`).
//!
//! A pool runs its items on workers it creates on demand. When creating one
//! is slow or fails (a thread limit, memory pressure), items that other
//! items wait for could wait for ever: every worker is blocked on them. A
//! `MEM_RECLAIM` workqueue therefore owns a thread of its own, its rescuer
//! (`kworker/R-NAME`), started with the workqueue and stopped with it.
//!
//! * **Mayday timer.** A pool that starts creating a worker while rescuers
//!   exist arms its mayday timer (`pool::arm_mayday`, `mayday_at` in the
//!   pool state) and wakes the monitor thread, which keeps the timers. When
//!   the timer fires ([`mayday_check`], `MAYDAY_TIMEOUT` after the creation
//!   began, `CMWQ_MAYDAY_TIMEOUT_MS`) and the pool still cannot run its
//!   items (`need_to_create_worker`: items wait, nobody runs, no idle
//!   worker), each item waiting on its worklist sends a mayday for its pwq:
//!   a pwq of a workqueue with a rescuer is put on that rescuer's list
//!   (once: `on_mayday`), counted in `mayday`, and the rescuer is woken.
//!   The timer then fires again every [`MAYDAY_INTERVAL`] while the pool
//!   stays stuck, and is disarmed once a creation succeeds.
//! * **Rescue.** The rescuer takes pwqs off its list one by one and runs
//!   their waiting items on the pwq's pool (`worker::rescue`): attached to
//!   the pool as an extra worker, pinned to its CPUs, through the same path
//!   as every worker, each execution counted in `rescued`. It keeps
//!   `WORKER_PREP`, so concurrency management never counts it.
//!
//! The rescuer's state is a worker's ([`Rescuer`] in `pool/worker.rs`, as the
//! kernel's rescuer is a `struct worker`); this file starts, runs and
//! stops it. Annotations: `src/LOCKING.md`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::Mutex;

use crate::config::settings;
use crate::pool::pwq::Pwq;
use crate::pool::worker::{Rescuer, DETACHED};
use crate::pool::{need_to_create_worker, PoolState, WorkerPool};
use crate::util::Parker;
use crate::Error;

/// While a pool stays stuck, maydays are sent again this often (the
/// kernel's MAYDAY_INTERVAL).
pub(crate) const MAYDAY_INTERVAL: Duration = Duration::from_millis(100);

/// The thread name of a rescuer: `kworker/R-NAME`, cut to the 15 bytes a
/// Linux thread name holds (on a character boundary).
pub(crate) fn thread_name(wq: &str) -> String {
    let mut s = format!("kworker/R-{wq}");
    let mut n = s.len().min(15);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    s.truncate(n);
    s
}

impl Rescuer {
    /// Start the rescuer of workqueue `wq` (the kernel's init_rescuer). An
    /// error if its thread, or the monitor thread that keeps the mayday
    /// timers, cannot be started.
    pub(crate) fn start(wq: &str) -> Result<Arc<Rescuer>, Error> {
        // `init::start` ran (every workqueue is built through it): the
        // monitor that fires the mayday timers is the detector.
        debug_assert!(crate::pool::detector_installed());
        crate::pool::detector().ensure_running();
        if !crate::pool::detector().running() {
            return Err(Error::ThreadStart {
                what: format!("the monitor thread that calls the rescuer of {wq:?}"),
                // The monitor's own creation failed earlier (and was
                // reported then): the process is out of threads.
                source: std::sync::Arc::new(std::io::Error::from_raw_os_error(libc::EAGAIN)),
            });
        }
        let r = Arc::new(Rescuer {
            name: thread_name(wq),
            parker: Parker::new(),
            maydays: Mutex::new(VecDeque::new()),
            stop: AtomicBool::new(false),
            tid: AtomicI32::new(0),
            attached: AtomicU32::new(DETACHED),
            thread: Mutex::new(None),
            needs_thread: AtomicBool::new(false),
        });
        match r.spawn() {
            Ok(()) => {
                crate::pool::NR_RESCUERS.fetch_add(1, SeqCst);
                Ok(r)
            }
            Err(e) => Err(Error::ThreadStart {
                what: format!("rescuer {}", r.name),
                source: std::sync::Arc::new(e),
            }),
        }
    }

    fn spawn(self: &Arc<Self>) -> std::io::Result<()> {
        let r2 = self.clone();
        let h = crate::fault::check_spawn().and_then(|()| {
            crate::config::item_thread(self.name.clone()).spawn(move || rescuer_main(r2))
        })?;
        *self.thread.lock() = Some(h);
        Ok(())
    }

    /// Fork (G26): take the mayday-list lock and keep it held.
    pub(crate) fn fork_lock(&self) {
        std::mem::forget(self.maydays.lock());
    }

    /// Release what [`fork_lock`](Self::fork_lock) took.
    ///
    /// # Safety
    ///
    /// The calling thread took it with `fork_lock` and has not released it.
    pub(crate) unsafe fn fork_unlock(&self) {
        // SAFETY: held by this thread, guard forgotten (the contract).
        unsafe { self.maydays.force_unlock(Default::default()) };
    }

    /// In the child after `fork()`, with the mayday-list lock held: the
    /// thread does not exist here (its handle is leaked: joining or
    /// detaching a thread of the parent is undefined); the pwqs it was
    /// asked for have nothing left to run here.
    ///
    /// # Safety
    ///
    /// As for [`fork_unlock`](Self::fork_unlock), and the lock is still
    /// held.
    pub(crate) unsafe fn reset_after_fork(&self) {
        // SAFETY: the lock is held by this thread, the only one.
        let m = unsafe { &mut *self.maydays.data_ptr() };
        std::mem::forget(std::mem::take(m));
        if let Some(mut t) = self.thread.try_lock() {
            std::mem::forget(t.take());
        }
        self.tid.store(0, SeqCst);
        self.attached.store(DETACHED, SeqCst);
        self.parker.reset();
        if !self.stop.load(SeqCst) {
            self.needs_thread.store(true, SeqCst);
        }
    }

    /// Start the thread again in a forked child (called by the monitor
    /// thread when it starts there).
    pub(crate) fn restart_after_fork(self: &Arc<Self>) {
        if self.needs_thread.swap(false, SeqCst) && self.spawn().is_err() {
            self.needs_thread.store(true, SeqCst);
        }
    }

    /// Stop the thread once its list is empty, and wait for it (the
    /// workqueue is being destroyed: it has been drained).
    pub(crate) fn stop(&self) {
        if self.stop.swap(true, AcqRel) {
            return;
        }
        crate::pool::NR_RESCUERS.fetch_sub(1, SeqCst);
        self.parker.unpark();
        let h = self.thread.lock().take();
        if let Some(h) = h {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        // Entries left by maydays sent after its last look: their items
        // are gone (drained). Dropping them breaks the pwq -> workqueue ->
        // rescuer cycle.
        self.maydays.lock().clear();
    }

    /// Pwqs waiting for this rescuer.
    pub(crate) fn nr_maydays(&self) -> usize {
        self.maydays.lock().len()
    }
}

fn rescuer_main(r: Arc<Rescuer>) {
    let tid = rustix::thread::gettid().as_raw_nonzero().get();
    r.tid.store(tid, Relaxed);
    crate::config::run_thread_hook(true);
    loop {
        let next = r.maydays.lock().pop_front();
        match next {
            Some(pwq) => crate::pool::worker::rescue(&r, pwq),
            None if r.stop.load(Acquire) => break,
            None => {
                r.parker.park(None);
            }
        }
    }
    crate::config::run_thread_hook(false);
}

/// An item of a workqueue with a rescuer was queued on a pool (under its
/// lock) whose mayday timer is armed: the pool is short of workers, and
/// the timer may be a whole `MAYDAY_INTERVAL` away. Bring it to one mayday
/// timeout from now, so the new item is rescued as promptly as the first.
/// Returns whether the caller must wake the monitor (after unlocking).
#[cold]
pub(crate) fn reclaim_queued(g: &mut PoolState) -> bool {
    let Some(at) = g.mayday_at else {
        return false;
    };
    let soon = Instant::now() + settings().mayday_timeout;
    if at <= soon {
        return false;
    }
    g.mayday_at = Some(soon);
    true
}

/// The monitor's look at a pool's mayday timer (under the pool lock; the
/// kernel's pool_mayday_timeout). Sends maydays if it fired while the pool
/// still cannot run its items, collecting the rescuers to wake in `wake`
/// (woken by the caller once the lock is dropped). Returns when to look
/// again.
pub(crate) fn mayday_check(
    pool: &'static WorkerPool,
    g: &mut PoolState,
    wake: &mut Vec<Arc<Rescuer>>,
) -> Option<Instant> {
    let at = g.mayday_at?;
    let now = Instant::now();
    if now < at {
        return Some(at);
    }
    if need_to_create_worker(g) {
        send_maydays(pool, g, wake);
    } else if !g.manager_active && g.create_retry_at.is_none() {
        // Nothing waits and nothing is being created: disarm.
        g.mayday_at = None;
        return None;
    }
    let next = now + MAYDAY_INTERVAL;
    g.mayday_at = Some(next);
    Some(next)
}

/// Every item waiting on the worklist calls for its workqueue's rescuer
/// (the kernel's send_mayday).
fn send_maydays(pool: &'static WorkerPool, g: &mut PoolState, wake: &mut Vec<Arc<Rescuer>>) {
    let mut asked: Vec<*const Pwq> = Vec::new();
    g.worklist.for_each(|i| {
        let p = i.queued_pwq_raw();
        if !asked.contains(&p) {
            asked.push(p);
        }
    });
    for p in asked {
        // SAFETY: `p` is the pwq of an item QUEUED on this pool's worklist,
        // read under the pool lock we hold: the item's slot holds a strong
        // reference to it, so it is alive, and taking one more reference is
        // sound.
        let pwq = unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        };
        // An item a lane took from a sibling keeps its pwq, the
        // sibling's (`pool::steal`); MEM_RECLAIM workqueues get no lanes,
        // so such an item has no rescuer to call here.
        if !std::ptr::eq(pwq.pool, pool) {
            continue;
        }
        let Some(r) = pwq.wq.rescuer.clone() else {
            continue;
        };
        let st = &mut g.pwqs[pwq.slot];
        if st.on_mayday || r.stop.load(Relaxed) {
            continue;
        }
        st.on_mayday = true;
        st.stats.mayday += 1;
        crate::trace::mayday!(pwq.wq.name, pool.id);
        r.maydays.lock().push_back(pwq);
        if !wake.iter().any(|w| Arc::ptr_eq(w, &r)) {
            wake.push(r);
        }
    }
}

/// Wake rescuers collected by [`mayday_check`] (no lock held).
pub(crate) fn wake_all(wake: &mut Vec<Arc<Rescuer>>) {
    for r in wake.drain(..) {
        r.parker.unpark();
    }
}

impl Rescuer {
    /// `dump()`'s state column.
    pub(crate) fn state(&self) -> String {
        match self.attached.load(Relaxed) {
            DETACHED => format!("idle, {} mayday(s) queued", self.nr_maydays()),
            id => format!("rescuing on pool {id}"),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    #[test]
    fn thread_names_fit_in_15_bytes() {
        assert_eq!(super::thread_name("io"), "kworker/R-io");
        assert_eq!(super::thread_name("writeback_long"), "kworker/R-write");
        // Cut on a character boundary.
        let n = super::thread_name("ééééé");
        assert!(n.len() <= 15 && n.starts_with("kworker/R-"), "{n}");
    }
}
