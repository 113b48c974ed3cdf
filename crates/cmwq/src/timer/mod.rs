//! Delayed work: a timing wheel whose expiry queues work items (G12, G13).
//!
//! One process-wide wheel (`wheel.rs`) under one lock, ticking in
//! milliseconds, and one timer thread that sleeps until the next deadline
//! (no periodic tick while nothing is armed). An armed item holds PENDING
//! and the TIMER bit of its state word; its wheel entry holds a reference
//! to the item and to the workqueue, and the CPU it was armed for. Expiry
//! clears TIMER under the wheel lock, which hands PENDING to the timer
//! thread, and queues the item through the normal queue path (so
//! max_active, non-reentrancy and stats apply).
//!
//! Under the manual clock (G31) there is no timer thread: `clock::advance`
//! expires the wheel itself.

pub(crate) mod wheel;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::sync::Mutex;

use crate::clock;
use crate::pool::work::state::Held;
use crate::pool::work::{Work, WorkInner};
use crate::util::Parker;
use crate::workqueue::{check_cpu, Workqueue, WqInner};
use wheel::Wheel;

/// Wheel tick.
pub(crate) const TICK_NS: u64 = 1_000_000;

/// What an armed entry fires. All fields `W:` (in the wheel, under its
/// lock; whoever takes the entry off the wheel owns it). Annotations:
/// `src/LOCKING.md`.
#[derive(Default)]
pub(crate) struct Target {
    /// W: the item (a strong reference while armed).
    work: Option<Work>,
    /// W: where to queue it.
    wq: Option<Arc<WqInner>>,
    /// W: the CPU asked for (`_on` variants).
    cpu: Option<usize>,
    /// W: exact deadline (clock ns), for deadline order.
    when_ns: u64,
    /// W: arming order, for deadline order among equal deadlines.
    seq: u64,
}

struct Timers {
    /// W: the wheel (a leaf lock: nothing is taken while holding it).
    wheel: Mutex<Wheel<Target>>,
    /// A: tick until which the timer thread sleeps (u64::MAX:
    /// indefinitely); written by the timer thread.
    sleep_until: AtomicU64,
    /// A: wakes the timer thread.
    parker: Parker,
    /// A: the timer thread was started (or a start is in flight).
    started: AtomicBool,
}

static TIMERS: OnceLock<Timers> = OnceLock::new();

fn timers() -> &'static Timers {
    TIMERS.get_or_init(|| {
        clock::on_advance(advance_manual);
        crate::pool::work::on_drop_timer_entry(release_entry);
        crate::workqueue::on_destroy_cancel_timers(cancel_all_for);
        Timers {
            wheel: Mutex::new(Wheel::new()),
            sleep_until: AtomicU64::new(u64::MAX),
            parker: Parker::new(),
            started: AtomicBool::new(false),
        }
    })
}

/// The wheel entry of `work`, allocated on its first arm (under the wheel
/// lock) and kept until the item is dropped.
fn entry_of(w: &mut Wheel<Target>, inner: &WorkInner) -> u32 {
    let id = inner.timer.load(Relaxed);
    if id != NO_ENTRY {
        return id;
    }
    let id = w.alloc();
    inner.timer.store(id, Relaxed);
    id
}

/// `WorkInner::timer` when the item was never armed.
const NO_ENTRY: u32 = crate::pool::work::NO_TIMER_ENTRY;

/// Release the wheel entry of a dropped item (the hook `work` calls).
fn release_entry(id: u32) {
    if let Some(t) = TIMERS.get() {
        t.wheel.lock().free(id);
    }
}

/// The tick a clock time falls in. An entry of tick `T` is due from some
/// time within `[T, T + 1)` ticks; expiry runs up to the current tick and
/// puts entries of the current tick that are not due yet into the next one,
/// so nothing fires early and nothing fires more than a tick late.
fn to_tick(ns: u64) -> u64 {
    ns / TICK_NS
}

/// Arm `work` (whose PENDING the caller owns) to be queued on `wq` after
/// `delay`.
pub(crate) fn arm(work: &Work, wq: &Arc<WqInner>, cpu: Option<usize>, delay: Duration) {
    let t = timers();
    ensure_thread(t);
    let when_ns = clock::now_ns().saturating_add(delay.as_nanos() as u64);
    let tick = to_tick(when_ns);
    let inner = work.inner();
    let mut w = t.wheel.lock();
    let id = entry_of(&mut w, inner);
    debug_assert!(!w.is_armed(id));
    let seq = w.next_seq();
    {
        let d = w.data_mut(id);
        d.work = Some(work.clone());
        d.wq = Some(wq.clone());
        d.cpu = cpu;
        d.when_ns = when_ns;
        d.seq = seq;
    }
    w.insert(id, tick);
    wq.shared.nr_timers.fetch_add(1, Relaxed);
    inner.state.set_timer();
    drop(w);
    poke(t, tick);
}

/// G13 fast path: if `work` is armed, move its deadline (and target) and
/// return true; the state word is untouched.
pub(crate) fn rearm(work: &Work, wq: &Arc<WqInner>, cpu: Option<usize>, delay: Duration) -> bool {
    let inner = work.inner();
    let id = inner.timer.load(Relaxed);
    if id == NO_ENTRY || !inner.state.load().timer() {
        return false;
    }
    let t = timers();
    let when_ns = clock::now_ns().saturating_add(delay.as_nanos() as u64);
    let tick = to_tick(when_ns);
    let mut w = t.wheel.lock();
    if !w.is_armed(id) {
        return false; // fired or cancelled meanwhile
    }
    let seq = w.next_seq();
    let old_wq = {
        let d = w.data_mut(id);
        d.when_ns = when_ns;
        d.seq = seq;
        d.cpu = cpu;
        match &d.wq {
            Some(q) if Arc::ptr_eq(q, wq) => None,
            _ => {
                wq.shared.nr_timers.fetch_add(1, Relaxed);
                d.wq.replace(wq.clone())
            }
        }
    };
    w.insert(id, tick);
    drop(w);
    if let Some(q) = old_wq {
        q.shared.nr_timers.fetch_sub(1, Relaxed);
    }
    poke(t, tick);
    true
}

/// Disarm `work`'s timer and become the owner of its PENDING (cancel,
/// G9). False if the timer already fired (its PENDING is in transit to a
/// queue).
pub(crate) fn try_disarm(work: &Work) -> bool {
    let Some(target) = take_armed(work) else {
        return false;
    };
    drop(target);
    true
}

/// Unlink an armed entry and clear TIMER: the caller owns PENDING and gets
/// the target. Must not be called with the wheel lock held.
fn take_armed(work: &Work) -> Option<Target> {
    let inner = work.inner();
    let id = inner.timer.load(Relaxed);
    if id == NO_ENTRY {
        return None;
    }
    let t = timers();
    let mut w = t.wheel.lock();
    if !w.remove(id) {
        return None;
    }
    let stolen = inner.state.steal(Held::Timer);
    debug_assert!(stolen);
    let target = std::mem::take(w.data_mut(id));
    drop(w);
    if let Some(q) = &target.wq {
        q.shared.nr_timers.fetch_sub(1, Relaxed);
    }
    Some(target)
}

/// G6: fire an armed item's timer now (flush of an armed item).
pub(crate) fn fire_now(work: &Work) {
    if let Some(target) = take_armed(work) {
        queue_target(target);
    }
}

/// Queue a fired target (PENDING owned by the caller). A workqueue that
/// is draining (or being destroyed) refuses it, as the kernel's does: the
/// item is dropped and that is reported once per drain (the G4 exception).
/// The target's handle may be the item's last one: it is dropped with the
/// closure's destructor contained, since this may be the timer thread.
fn queue_target(target: Target) {
    let work = target.work.expect("armed with a work item");
    let wq = target.wq.expect("armed with a workqueue");
    if !wq.insert_grabbed(target.cpu, &work) {
        wq.shared.note_delayed_dropped(work.name());
    }
    drop(wq);
    crate::pool::work::drop_contained(work);
}

/// G25: cancel every timer armed for `wq`; returns how many.
fn cancel_all_for(wq: &WqInner) -> usize {
    if wq.shared.nr_timers.load(Acquire) == 0 {
        return 0;
    }
    let Some(t) = TIMERS.get() else { return 0 };
    let mut cancelled = Vec::new();
    {
        let mut w = t.wheel.lock();
        let ids: Vec<u32> = (0..w.slab_len() as u32)
            .filter(|&id| {
                w.is_armed(id)
                    && w.data(id)
                        .wq
                        .as_ref()
                        .is_some_and(|q| std::ptr::eq(&**q, wq))
            })
            .collect();
        for id in ids {
            w.remove(id);
            let target = std::mem::take(w.data_mut(id));
            if let Some(work) = &target.work {
                let stolen = work.inner().state.steal(Held::Timer);
                debug_assert!(stolen);
            }
            cancelled.push(target);
        }
    }
    let n = cancelled.len();
    wq.shared.nr_timers.fetch_sub(n, Relaxed);
    for target in cancelled {
        if let Some(work) = target.work {
            if work.inner().state.release_pending() {
                work.wake_waiters();
            }
            crate::pool::work::drop_contained(work);
        }
    }
    n
}

/// Expire everything due at `now_ns` and queue it, in deadline order.
/// Returns the next deadline tick.
fn run_expired(t: &Timers, now_ns: u64) -> Option<u64> {
    let mut due: Vec<Target> = Vec::new();
    let mut rearm: Vec<u32> = Vec::new();
    let now_tick = to_tick(now_ns);
    let next = {
        let mut w = t.wheel.lock();
        w.expire(now_tick, |id, d| {
            if d.when_ns > now_ns {
                // Later within this tick, or a clamped far deadline: not
                // due yet.
                rearm.push(id);
            } else {
                let target = std::mem::take(d);
                if let Some(work) = &target.work {
                    let stolen = work.inner().state.steal(Held::Timer);
                    debug_assert!(stolen);
                }
                due.push(target);
            }
        });
        for id in rearm {
            let tick = to_tick(w.data(id).when_ns).max(now_tick + 1);
            w.insert(id, tick);
        }
        w.next_deadline()
    };
    due.sort_by_key(|d| (d.when_ns, d.seq));
    for target in due {
        if let Some(q) = &target.wq {
            q.shared.nr_timers.fetch_sub(1, Relaxed);
        }
        queue_target(target);
    }
    next
}

/// Wake the timer thread if `tick` is earlier than it sleeps until.
fn poke(t: &Timers, tick: u64) {
    if tick < t.sleep_until.load(Acquire) && !clock::is_manual() {
        t.parker.unpark();
    }
}

fn ensure_thread(t: &'static Timers) {
    if clock::is_manual() || t.started.load(Acquire) || t.started.swap(true, AcqRel) {
        return;
    }
    let r = crate::fault::check_spawn().and_then(|()| {
        std::thread::Builder::new()
            .name("cmwq-timer".into())
            .spawn(move || timer_main(t))
    });
    if let Err(e) = r {
        t.started.store(false, Release);
        crate::event::report(crate::Event::Misuse {
            message: &format!("could not start the timer thread: {e}; retrying on the next arm"),
        });
    }
}

fn timer_main(t: &'static Timers) {
    // SAFETY: PR_SET_TIMERSLACK only affects the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000u64, 0, 0, 0);
    }
    loop {
        // Announce the sleep target before looking, so an arm that comes
        // after the look sees it and wakes us.
        t.sleep_until.store(0, SeqCst);
        let now = clock::now_ns();
        let next = run_expired(t, now);
        let target = next.unwrap_or(u64::MAX);
        t.sleep_until.store(target, SeqCst);
        // Re-check: an arm between run_expired and the store above would
        // have seen sleep_until == 0 and not woken us.
        let again = t.wheel.lock().next_deadline().unwrap_or(u64::MAX);
        if again < target {
            continue;
        }
        let timeout = (target != u64::MAX)
            .then(|| Duration::from_nanos((target * TICK_NS).saturating_sub(clock::now_ns())));
        if timeout.is_some_and(|d| d.is_zero()) {
            continue;
        }
        t.parker.park(timeout);
        WAKEUPS.fetch_add(1, Relaxed);
    }
}

/// Fork (G26): take the wheel lock and keep it held across `fork()`.
pub(crate) fn fork_lock() {
    if let Some(t) = TIMERS.get() {
        std::mem::forget(t.wheel.lock());
    }
}

/// Release what [`fork_lock`] took.
///
/// # Safety
///
/// The calling thread took it with [`fork_lock`] and has not released it.
pub(crate) unsafe fn fork_unlock() {
    if let Some(t) = TIMERS.get() {
        // SAFETY: held by this thread, guard forgotten (the contract).
        unsafe { t.wheel.force_unlock(Default::default()) };
    }
}

/// In the child after `fork()`, with the wheel lock held by this thread:
/// the timer thread does not exist here, and no armed item of the parent
/// may fire here: every armed item becomes idle (its handle is leaked, as
/// in `pool::reset_after_fork`); the thread starts afresh on the next arm.
///
/// # Safety
///
/// As for [`fork_unlock`], and the lock is still held.
pub(crate) unsafe fn reset_after_fork() {
    let Some(t) = TIMERS.get() else {
        return;
    };
    // SAFETY: the wheel lock is held by this thread, the only one.
    let w = unsafe { &mut *t.wheel.data_ptr() };
    w.disarm_all(|_, target| {
        if let Some(work) = target.work.take() {
            work.reset_after_fork();
            std::mem::forget(work);
        }
        std::mem::forget(target.wq.take());
    });
    t.sleep_until.store(u64::MAX, SeqCst);
    t.started.store(false, SeqCst);
    t.parker.reset();
}

/// Timer thread wake-ups (for benchmarks).
pub(crate) static WAKEUPS: AtomicU64 = AtomicU64::new(0);

/// Manual clock: expire what is due at the new time and queue it before
/// returning (`clock::advance`, through `clock::on_advance`).
fn advance_manual(now_ns: u64) {
    let t = timers();
    run_expired(t, now_ns);
}

/// Armed timers (for dump).
pub(crate) fn armed() -> usize {
    TIMERS.get().map_or(0, |t| t.wheel.lock().armed())
}

// ------------------------------------------------ queueing delayed work

impl Workqueue {
    /// Queue `work` after `delay` (G12): a timer is armed and the item is
    /// pending meanwhile; no sooner than `delay` later it is queued on this
    /// workqueue, on the pool of the CPU the timer fires on (the kernel's
    /// global timers do the same; [`queue_delayed_on`](Self::queue_delayed_on)
    /// names the CPU). `delay == 0` queues at once, on the calling CPU.
    /// `true` if this call made it pending.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let wq = cmwq::Workqueue::new("delayed_doc").unwrap();
    /// let t = Instant::now();
    /// let w = cmwq::Work::new(move |_| assert!(t.elapsed() >= Duration::from_millis(20)));
    /// assert!(wq.queue_delayed(&w, Duration::from_millis(20)));
    /// assert!(!wq.queue(&w), "armed: pending");
    /// w.flush(); // fires it now and waits
    /// ```
    pub fn queue_delayed(&self, work: &Work, delay: Duration) -> bool {
        self.inner.queue_delayed(None, work, delay)
    }

    /// [`queue_delayed`](Self::queue_delayed) on `cpu`'s pool.
    ///
    /// # Panics
    ///
    /// If `cpu >= nr_cpus()`.
    pub fn queue_delayed_on(&self, cpu: usize, work: &Work, delay: Duration) -> bool {
        check_cpu("queue_delayed_on", cpu);
        self.inner.queue_delayed(Some(cpu), work, delay)
    }
}

impl WqInner {
    pub(crate) fn queue_delayed(
        self: &Arc<Self>,
        cpu: Option<usize>,
        work: &Work,
        delay: Duration,
    ) -> bool {
        if delay.is_zero() {
            return self.queue(cpu, work);
        }
        if !self.grab(work) {
            return false;
        }
        arm(work, self, cpu, delay);
        true
    }
}
