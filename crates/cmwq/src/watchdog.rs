//! The stall watchdog (G23), the kernel's `wq_watchdog`.
//!
//! A pool with items waiting on its worklist that starts and finishes no
//! item for `watchdog_thresh` ([`Config::watchdog_thresh`](crate::Config::watchdog_thresh)
//! says its default; `CMWQ_WATCHDOG_THRESH_S`, 0 disables) is reported once per stall
//! through the log hook as [`Event::Stall`](crate::Event::Stall): the pool,
//! how long, and what its workers are running (workqueue, item, for how
//! long).
//!
//! The checks run on the monitor thread every quarter of the threshold
//! (the kernel's period), and only while some pool has items waiting: a
//! queue that puts an item on a worklist calls `pool::touch_watchdog`, one
//! relaxed load of `pool::WATCHDOG_ARMED`; the first one after the
//! watchdog disarmed arms it and wakes the monitor. A check that finds every worklist empty disarms it,
//! so an idle process has no watchdog tick at all.
//!
//! Progress is a pool's count of started plus finished executions, read
//! under its lock at each check: nothing is timed on the item path. A
//! stall is reported once its pool was seen pending with an unchanged
//! count for the threshold, that is between `thresh` and `thresh + thresh
//! / 4` after its last progress. Long items that keep finishing are not
//! stalls; throttled (`max_active`) and frozen items are not on a worklist
//! and are not stalls either (as in the kernel).

use std::fmt::Write;
use std::sync::atomic::Ordering::*;
use std::time::Duration;

use crate::config::settings;
use crate::pool::{WorkerPool, WATCHDOG_ARMED};
use crate::util;

/// What the watchdog saw of one pool at its last check.
#[derive(Clone, Copy, Default)]
struct Seen {
    /// Items were waiting.
    pending: bool,
    /// Executions started plus finished.
    progress: u64,
    /// When (mono ns) it was first seen pending with this progress count.
    since: u64,
    /// This stall was reported.
    reported: bool,
}

/// The watchdog's state, kept by the monitor thread.
#[derive(Default)]
pub(crate) struct Watchdog {
    seen: Vec<Seen>,
    /// When the next check is due (mono ns); `None` while disarmed.
    next: Option<u64>,
}

/// A stall found by a check, reported once no lock is held.
struct Stall {
    pool: String,
    for_ms: u64,
    running: String,
}

impl Watchdog {
    /// Called on every monitor pass: check if due; returns when to be
    /// called again (`None`: disarmed, nothing to time).
    pub(crate) fn poll(&mut self, pools: &[&'static WorkerPool], now: u64) -> Option<u64> {
        let thresh = settings().watchdog_thresh?.as_nanos() as u64;
        let period = (thresh / 4).max(1);
        match self.next {
            None if !WATCHDOG_ARMED.load(Acquire) => return None,
            None => {
                // Armed by a queue: first look one period from now, so a
                // process that goes idle and busy again many times a second
                // re-arms at most once per period (one monitor wake-up).
                let next = now + period;
                self.next = Some(next);
                return Some(next);
            }
            Some(t) if now < t => return Some(t),
            Some(_) => {}
        }
        // Disarm first, then look: a queue that fills a worklist after we
        // looked at its pool sees WATCHDOG_ARMED down (we took that pool's
        // lock after clearing it) and arms it again.
        WATCHDOG_ARMED.store(false, SeqCst);
        // Read the pool list after disarming: a pool made since the caller
        // read it may have had its first item queued while WATCHDOG_ARMED
        // was still up (so that queue did not arm it).
        let fresh;
        let pools = match crate::pool::pools_if_started() {
            Some(p) if p.count() != pools.len() => {
                fresh = p.all();
                &fresh[..]
            }
            _ => pools,
        };
        self.seen.resize(pools.len(), Seen::default());
        let mut any = false;
        let mut stalls = Vec::new();
        for (i, pool) in pools.iter().enumerate() {
            let seen = &mut self.seen[i];
            let g = pool.lock();
            if g.worklist.is_empty() {
                *seen = Seen::default();
                continue;
            }
            any = true;
            let progress = g.nr_started + g.nr_completed;
            if !seen.pending || seen.progress != progress {
                *seen = Seen {
                    pending: true,
                    progress,
                    since: now,
                    reported: false,
                };
                continue;
            }
            if seen.reported || now - seen.since < thresh {
                continue;
            }
            seen.reported = true;
            stalls.push(Stall {
                pool: pool.describe(),
                for_ms: (now - seen.since) / 1_000_000,
                running: describe_running(&g),
            });
        }
        for s in stalls {
            crate::event::report(crate::Event::Stall {
                pool: &s.pool,
                for_ms: s.for_ms,
                running: &s.running,
            });
        }
        if any {
            WATCHDOG_ARMED.store(true, Relaxed);
            let next = now + period;
            self.next = Some(next);
            Some(next)
        } else {
            self.next = None;
            // A queue may have armed it again since we cleared it: the
            // monitor was woken and calls us again.
            None
        }
    }
}

/// What a pool's workers are running: `workqueue/item for 12.3s`, ...
fn describe_running(g: &crate::pool::PoolState) -> String {
    let now = util::coarse_ns();
    let mut s = String::new();
    for (_, ws) in g.workers.iter() {
        let Some(c) = ws.current else {
            continue;
        };
        // SAFETY: `current` is valid while recorded and we hold the pool
        // lock (see `pool::Current`).
        let (work, pwq) = unsafe { (c.work.as_ref(), &*c.pwq) };
        if !s.is_empty() {
            s.push_str(", ");
        }
        let _ = write!(
            s,
            "{}/{} for {:.1}s{}",
            pwq.wq.name,
            work.name.unwrap_or("(unnamed)"),
            Duration::from_nanos(now.saturating_sub(c.since)).as_secs_f64(),
            if ws.blocked.is_some() {
                " (blocked)"
            } else {
                ""
            }
        );
    }
    if s.is_empty() {
        s.push_str("nothing (no worker could be had)");
    }
    s
}
