//! Tracing of executions, in two forms:
//!
//! * the recorder behind `cmwq trace PID` (G32): while a tracer is
//!   attached through the control socket, every worker writes one
//!   [`Record`] per execution into its own lock-free [`ring`](ring::Ring),
//!   which the tracer drains. With no tracer attached the cost is one
//!   relaxed load per execution (and one per queue, for the queue time);
//! * events named after the kernel's workqueue tracepoints
//!   (`workqueue_queue_work`, `workqueue_activate_work`,
//!   `workqueue_execute_start`, `workqueue_execute_end`), emitted through
//!   the `tracing` crate at TRACE level under the target `cmwq`, with the
//!   `tracing` feature, and a span per execution (`execute`, with the
//!   workqueue, item and CPU) so subscribers such as `tracing-chrome` show
//!   executions beside the program's own spans. Without the feature they
//!   compile to nothing.

pub(crate) mod ring;

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, OnceLock};

use crate::sync::Mutex;

pub(crate) use ring::{Record, Ring, MAX_SPANS};

/// Records each worker's ring holds; a tracer drains every
/// [`DRAIN_INTERVAL_MS`], so a worker may run up to this many items per
/// interval before records are lost (and counted).
pub(crate) const RING_CAPACITY: usize = 512;
/// How often the tracer drains the rings.
pub(crate) const DRAIN_INTERVAL_MS: u64 = 5;

/// A: a tracer is attached. Read once per execution and once per queue.
static ON: AtomicBool = AtomicBool::new(false);
/// A: a tracer holds the recorder (one at a time).
static BUSY: AtomicBool = AtomicBool::new(false);
/// A: records lost by rings since made (summed at drain; see `Session`).
static LOST_TOTAL: AtomicU64 = AtomicU64::new(0);

/// Whether executions are being recorded.
#[inline(always)]
pub(crate) fn on() -> bool {
    ON.load(Relaxed)
}

/// Records lost by every ring so far (as of the last drain).
pub(crate) fn lost_total() -> u64 {
    LOST_TOTAL.load(Relaxed)
}

/// Who wrote a ring.
#[derive(Clone, Debug)]
pub(crate) struct Owner {
    /// The worker's thread id.
    pub(crate) tid: i32,
    /// Its pool's id.
    pub(crate) pool: u32,
    /// Its thread name.
    pub(crate) name: String,
}

/// Every ring made by a worker that recorded (taken once per worker, on
/// its first traced execution, outside its pool lock). Rings outlive their
/// workers here until drained. Held only to add or list rings: never while
/// draining or formatting, and never with a pool lock held.
static RINGS: Mutex<Vec<(Arc<Ring>, Owner)>> = Mutex::new(Vec::new());
/// Serializes the rings' consumers (a session's drains; the throw-away
/// drain when one starts).
static DRAINER: Mutex<()> = Mutex::new(());

/// The ring of the calling worker, kept in `cell` (the worker's), made and
/// registered on first use with the worker's `owner` description.
pub(crate) fn ring_in(cell: &OnceLock<Arc<Ring>>, owner: impl FnOnce() -> Owner) -> &Arc<Ring> {
    cell.get_or_init(|| {
        let r = Arc::new(Ring::new(RING_CAPACITY));
        let owner = owner();
        RINGS.lock().push((r.clone(), owner));
        r
    })
}

/// An attached tracer: recording is on while it lives.
pub(crate) struct Session {
    /// CLOCK_MONOTONIC ns when it started.
    pub(crate) t0_ns: u64,
    lost0: u64,
}

impl Session {
    /// Attach, or `None` if another tracer is attached.
    pub(crate) fn start() -> Option<Session> {
        if BUSY.swap(true, Acquire) {
            return None;
        }
        // Throw away what an earlier session left unread.
        let mut scratch = Vec::new();
        drain_all(&mut |_, _| {}, &mut scratch);
        let lost0 = LOST_TOTAL.load(Relaxed);
        let t0_ns = crate::util::mono_ns();
        ON.store(true, SeqCst);
        Some(Session { t0_ns, lost0 })
    }

    /// Hand every record written since the last call to `f`, with its
    /// writer. Records queued before the session began read `queued_ns` 0.
    pub(crate) fn drain(&mut self, f: &mut dyn FnMut(&Owner, &Record)) {
        let t0 = self.t0_ns;
        let mut scratch = Vec::new();
        drain_all(
            &mut |o, r| {
                let mut r = *r;
                if r.queued_ns < t0 || r.queued_ns > r.start_ns {
                    r.queued_ns = 0;
                }
                f(o, &r)
            },
            &mut scratch,
        );
    }

    /// Records lost since the session began (rings full: the tracer did
    /// not drain fast enough).
    pub(crate) fn lost(&self) -> u64 {
        LOST_TOTAL.load(Relaxed) - self.lost0
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        ON.store(false, SeqCst);
        BUSY.store(false, Release);
    }
}

/// Drain every ring into `f`; forget rings of exited workers once empty.
fn drain_all(f: &mut dyn FnMut(&Owner, &Record), scratch: &mut Vec<Record>) {
    let _one = DRAINER.lock();
    let rings: Vec<(Arc<Ring>, Owner)> = RINGS.lock().clone();
    let mut live_lost = 0;
    let mut gone = Vec::new();
    for (r, owner) in &rings {
        // Orphaned before the drain (only the registry and `rings` hold
        // it): its worker exited, and the Acquire orders its last push
        // before our drain, so nothing is left behind. A worker that exits
        // during the drain is caught by the next one.
        let orphan = Arc::strong_count(r) == 2;
        fence(Acquire);
        scratch.clear();
        // SAFETY: DRAINER serializes consumers: only one thread drains a
        // ring at a time.
        unsafe { r.drain(scratch) };
        for rec in scratch.iter() {
            f(owner, rec);
        }
        if orphan {
            FORGOTTEN_LOST.fetch_add(r.lost(), Relaxed);
            gone.push(Arc::as_ptr(r));
        } else {
            live_lost += r.lost();
        }
    }
    drop(rings);
    if !gone.is_empty() {
        RINGS
            .lock()
            .retain(|(r, _)| !gone.contains(&Arc::as_ptr(r)));
    }
    LOST_TOTAL.store(FORGOTTEN_LOST.load(Relaxed) + live_lost, Relaxed);
}

/// In a forked child: no tracer is attached here (its thread was the
/// parent's), and the registry's lock may have been held by a thread that
/// does not exist in the child.
pub(crate) fn reset_after_fork() {
    // SAFETY: in the child only the forking thread exists, and it was not
    // inside the registry or a drain (those run on library threads only),
    // so a held lock belongs to a thread that is gone.
    unsafe {
        if RINGS.is_locked() {
            RINGS.force_unlock(Default::default());
        }
        if DRAINER.is_locked() {
            DRAINER.force_unlock(Default::default());
        }
    }
    RINGS.lock().clear();
    ON.store(false, SeqCst);
    BUSY.store(false, SeqCst);
}

/// A: records lost by rings that were forgotten.
static FORGOTTEN_LOST: AtomicU64 = AtomicU64::new(0);

/// L (of the worker's pool): a worker's blocked spans in its current
/// execution, kept while a tracer is attached. Changed where `blocked`
/// changes (`pool::update_worker`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Blocked {
    /// When the open span began (0: none open).
    since: u64,
    spans: [(u64, u64); MAX_SPANS],
    n: u8,
    total: u64,
}

impl Blocked {
    /// The worker became known blocked (`true`) or running again.
    pub(crate) fn change(&mut self, blocked: bool, now: u64) {
        if blocked {
            self.since = now;
        } else if self.since != 0 {
            self.close(now);
        }
    }

    fn close(&mut self, now: u64) {
        let since = std::mem::take(&mut self.since);
        self.total += now.saturating_sub(since);
        if (self.n as usize) < MAX_SPANS {
            self.spans[self.n as usize] = (since, now);
            self.n += 1;
        }
    }

    /// Fill `r`'s blocked fields for an execution that ran from
    /// `r.start_ns` to `r.end_ns` (a span still open ends there) and
    /// start afresh.
    pub(crate) fn take_into(&mut self, r: &mut Record) {
        if self.since != 0 {
            self.close(r.end_ns);
        }
        // Reset at each execution's start (`worker::start_exec`), so all of
        // it belongs to this one; the clipping below is for spans that
        // began in the moment between that reset and `start_ns`.
        let b = std::mem::take(self);
        let mut n = 0;
        for &(a, z) in &b.spans[..b.n as usize] {
            // Spans from before this execution began (tracing switched on
            // mid-item) are clipped to it.
            let (a, z) = (a.max(r.start_ns), z.min(r.end_ns));
            if a < z {
                r.spans[n] = (a, z);
                n += 1;
            }
        }
        r.nspans = n as u8;
        r.blocked_ns = b.total.min(r.end_ns.saturating_sub(r.start_ns));
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

/// `workqueue_queue_work`: an item was queued (`cpu` is the CPU asked for
/// or the caller's).
macro_rules! queue_work {
    ($wq:expr, $work:expr, $cpu:expr, $active:expr) => {
        #[cfg(feature = "tracing")]
        tracing::trace!(
            target: "cmwq",
            event = "workqueue_queue_work",
            workqueue = %$wq,
            work = $work.name().unwrap_or("work"),
            cpu = $cpu,
            active = $active,
        );
    };
}

/// `workqueue_activate_work`: a throttled item became active.
macro_rules! activate_work {
    ($wq:expr, $work:expr) => {
        #[cfg(feature = "tracing")]
        tracing::trace!(
            target: "cmwq",
            event = "workqueue_activate_work",
            workqueue = %$wq,
            work = $work.name().unwrap_or("work"),
        );
    };
}

/// `workqueue_execute_start`.
macro_rules! execute_start {
    ($wq:expr, $work:expr) => {
        #[cfg(feature = "tracing")]
        tracing::trace!(
            target: "cmwq",
            event = "workqueue_execute_start",
            workqueue = %$wq,
            work = $work.name().unwrap_or("work"),
        );
    };
}

/// `workqueue_execute_end`.
macro_rules! execute_end {
    ($wq:expr, $work:expr) => {
        #[cfg(feature = "tracing")]
        tracing::trace!(
            target: "cmwq",
            event = "workqueue_execute_end",
            workqueue = %$wq,
            work = $work.name().unwrap_or("work"),
        );
    };
}

/// A pool sent a mayday for a workqueue's pwq (G22; the kernel has no
/// tracepoint here, `wq_monitor.py` counts them).
macro_rules! mayday {
    ($wq:expr, $pool:expr) => {
        #[cfg(feature = "tracing")]
        tracing::trace!(
            target: "cmwq",
            event = "workqueue_mayday",
            workqueue = %$wq,
            pool = $pool,
        );
    };
}

pub(crate) use {activate_work, execute_end, execute_start, mayday, queue_work};
