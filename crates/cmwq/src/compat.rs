//! The kernel's workqueue API by its own names, for porting kernel code.
//!
//! Kernel code still calls the interface of Linux 2.6.35 (when cmwq was
//! merged) and the `alloc_workqueue` family that replaced it. These thin
//! aliases map each name onto the cmwq call the kernel itself maps it to
//! today, so a port can keep its structure and be tidied later. Delays are
//! `Duration`s where the kernel takes jiffies; "returns `int`" calls return
//! `Result` or nothing.
//!
//! | kernel | cmwq |
//! |---|---|
//! | `INIT_WORK(&w, fn)`, `DECLARE_WORK` | [`Work::new`] (`Work::named` for a name in `dump()`) |
//! | `INIT_DELAYED_WORK(&dw, fn)` | [`Work::new`]: every `Work` can be delayed |
//! | `alloc_workqueue(name, flags, max_active)` | [`alloc_workqueue`] -> [`Workqueue::builder`], per-CPU (`PERCPU`) unless `UNBOUND` |
//! | `alloc_ordered_workqueue(name, flags)` | [`alloc_ordered_workqueue`] -> [`Workqueue::ordered`] |
//! | `create_workqueue(name)` | [`create_workqueue`]: per-CPU, `MEM_RECLAIM`, max_active 1 |
//! | `create_singlethread_workqueue(name)` | [`create_singlethread_workqueue`]: ordered, `MEM_RECLAIM` |
//! | `create_freezable_workqueue(name)` | [`create_freezable_workqueue`]: ordered, `FREEZABLE \| MEM_RECLAIM` |
//! | `destroy_workqueue(wq)` | [`destroy_workqueue`] (dropping it does the same) |
//! | `queue_work(wq, w)` / `queue_work_on(cpu, wq, w)` | [`queue_work`] / [`queue_work_on`] |
//! | `queue_delayed_work(wq, dw, delay)` / `_on` | [`queue_delayed_work`] / [`queue_delayed_work_on`] |
//! | `mod_delayed_work(wq, dw, delay)` / `_on` | [`mod_delayed_work`] / [`mod_delayed_work_on`] |
//! | `schedule_work(w)` / `schedule_work_on(cpu, w)` | [`schedule_work`] / [`schedule_work_on`] (on `system_wq`) |
//! | `schedule_delayed_work(dw, delay)` / `_on` | [`schedule_delayed_work`] / [`schedule_delayed_work_on`] |
//! | `flush_workqueue(wq)` / `drain_workqueue(wq)` | [`flush_workqueue`] / [`drain_workqueue`] |
//! | `flush_scheduled_work()` | [`flush_scheduled_work`]: flushes `system_wq` |
//! | `schedule_on_each_cpu(fn)` | [`schedule_on_each_cpu`]: runs on every CPU's pool, waits |
//! | `flush_work(w)` / `flush_delayed_work(dw)` | [`flush_work`] / [`flush_delayed_work`] |
//! | `cancel_work(w)` / `cancel_work_sync(w)` | [`cancel_work`] / [`cancel_work_sync`] |
//! | `cancel_delayed_work(dw)` / `cancel_delayed_work_sync(dw)` | [`cancel_delayed_work`] / [`cancel_delayed_work_sync`] |
//! | `disable_work(w)` / `disable_work_sync(w)` / `enable_work(w)` | [`disable_work`] / [`disable_work_sync`] / [`enable_work`] |
//! | `work_pending(w)` / `delayed_work_pending(dw)` | [`work_pending`] / [`delayed_work_pending`] |
//! | `work_busy(w)` | [`work_busy`]: `WORK_BUSY_PENDING \| WORK_BUSY_RUNNING` |
//! | `workqueue_set_max_active(wq, n)` | [`workqueue_set_max_active`] |
//! | `workqueue_congested(cpu, wq)` | [`workqueue_congested`] |
//! | `current_work()` | [`crate::current_work`] |
//! | `system_wq` / `system_percpu_wq`, `system_dfl_wq`, `system_long_wq`, ... | [`crate::system_wq`] / [`crate::system_percpu_wq`], [`crate::system_dfl_wq`], [`crate::system_long_wq`], ... |
//!
//! ```
//! use cmwq::compat::*;
//! use std::time::Duration;
//!
//! let wq = create_singlethread_workqueue("mydrv").unwrap();
//! let w = cmwq::Work::new(|_| { /* bottom half */ });
//! assert!(queue_work(&wq, &w));
//! assert!(queue_delayed_work(&wq, &w, Duration::from_millis(5)) || work_pending(&w));
//! cancel_delayed_work_sync(&w);
//! flush_workqueue(&wq);
//! destroy_workqueue(wq);
//! ```
//!
//! See `examples/porting.rs` for a small driver ported line by line.

use std::sync::Arc;
use std::time::Duration;

use crate::{Error, Work, Workqueue, WqFlags};

/// `alloc_workqueue(name, flags, max_active)`: `max_active` 0 means the
/// default, as in the kernel. Without `WQ_UNBOUND` the workqueue is
/// per-CPU (`WqFlags::PERCPU` is added), as the kernel's is, so ported
/// code means what it meant; [`Workqueue::builder`] without `PERCPU`
/// makes a spreading one instead (G14).
pub fn alloc_workqueue(name: &str, flags: WqFlags, max_active: u32) -> Result<Workqueue, Error> {
    let flags = if flags.contains(WqFlags::UNBOUND) {
        flags
    } else {
        flags | WqFlags::PERCPU
    };
    let b = Workqueue::builder(name).flags(flags);
    if max_active == 0 {
        b.build()
    } else {
        b.max_active(max_active).build()
    }
}

/// `alloc_ordered_workqueue(name, flags)`.
pub fn alloc_ordered_workqueue(name: &str, flags: WqFlags) -> Result<Workqueue, Error> {
    Workqueue::ordered(name, flags)
}

/// `create_workqueue(name)`: per-CPU, `MEM_RECLAIM`, max_active 1 (the
/// kernel's mapping since 2.6.36).
pub fn create_workqueue(name: &str) -> Result<Workqueue, Error> {
    alloc_workqueue(name, WqFlags::MEM_RECLAIM, 1)
}

/// `create_singlethread_workqueue(name)`: ordered, `MEM_RECLAIM`.
pub fn create_singlethread_workqueue(name: &str) -> Result<Workqueue, Error> {
    Workqueue::ordered(name, WqFlags::MEM_RECLAIM)
}

/// `create_freezable_workqueue(name)`: ordered, `FREEZABLE | MEM_RECLAIM`.
pub fn create_freezable_workqueue(name: &str) -> Result<Workqueue, Error> {
    Workqueue::ordered(name, WqFlags::FREEZABLE | WqFlags::MEM_RECLAIM)
}

/// `destroy_workqueue(wq)`: drains it, cancels its armed timers and stops
/// its rescuer (G25); the same as dropping it.
pub fn destroy_workqueue(wq: Workqueue) {
    drop(wq);
}

/// `queue_work(wq, work)`: `true` if this call made it pending (G1).
pub fn queue_work(wq: &Workqueue, work: &Work) -> bool {
    wq.queue(work)
}

/// `queue_work_on(cpu, wq, work)`.
pub fn queue_work_on(cpu: usize, wq: &Workqueue, work: &Work) -> bool {
    wq.queue_on(cpu, work)
}

/// `queue_delayed_work(wq, dwork, delay)`.
pub fn queue_delayed_work(wq: &Workqueue, work: &Work, delay: Duration) -> bool {
    wq.queue_delayed(work, delay)
}

/// `queue_delayed_work_on(cpu, wq, dwork, delay)`.
pub fn queue_delayed_work_on(cpu: usize, wq: &Workqueue, work: &Work, delay: Duration) -> bool {
    wq.queue_delayed_on(cpu, work, delay)
}

/// `mod_delayed_work(wq, dwork, delay)`: `true` if it was pending (G13).
pub fn mod_delayed_work(wq: &Workqueue, work: &Work, delay: Duration) -> bool {
    wq.mod_delayed(work, delay)
}

/// `mod_delayed_work_on(cpu, wq, dwork, delay)`.
pub fn mod_delayed_work_on(cpu: usize, wq: &Workqueue, work: &Work, delay: Duration) -> bool {
    wq.mod_delayed_on(cpu, work, delay)
}

/// `schedule_work(work)`: on `system_wq`.
pub fn schedule_work(work: &Work) -> bool {
    crate::schedule_work(work)
}

/// `schedule_work_on(cpu, work)`.
pub fn schedule_work_on(cpu: usize, work: &Work) -> bool {
    crate::schedule_work_on(cpu, work)
}

/// `schedule_delayed_work(dwork, delay)`.
pub fn schedule_delayed_work(work: &Work, delay: Duration) -> bool {
    crate::schedule_delayed_work(work, delay)
}

/// `schedule_delayed_work_on(cpu, dwork, delay)`.
pub fn schedule_delayed_work_on(cpu: usize, work: &Work, delay: Duration) -> bool {
    crate::system_wq().queue_delayed_on(cpu, work, delay)
}

/// `flush_workqueue(wq)` (G7).
pub fn flush_workqueue(wq: &Workqueue) {
    wq.flush();
}

/// `drain_workqueue(wq)` (G8).
pub fn drain_workqueue(wq: &Workqueue) {
    wq.drain();
}

/// `flush_scheduled_work()`: flush `system_wq`. (The kernel deprecates it:
/// it waits for everyone's items, not only the caller's.)
pub fn flush_scheduled_work() {
    crate::system_wq().flush();
}

/// `schedule_on_each_cpu(fn)`: run `f` once on every CPU's pool of
/// `system_wq` and return when all have finished.
pub fn schedule_on_each_cpu(f: impl Fn() + Send + Sync + 'static) {
    let f = Arc::new(f);
    let items: Vec<Work> = (0..crate::nr_cpus())
        .map(|cpu| {
            let f = f.clone();
            let w = Work::named("schedule_on_each_cpu", move |_| f());
            crate::schedule_work_on(cpu, &w);
            w
        })
        .collect();
    for w in &items {
        w.flush();
    }
}

/// `flush_work(work)`: `true` if it waited (G6).
pub fn flush_work(work: &Work) -> bool {
    work.flush()
}

/// `flush_delayed_work(dwork)`: an armed timer fires at once, then the
/// execution is waited for (G6).
pub fn flush_delayed_work(work: &Work) -> bool {
    work.flush()
}

/// `cancel_work(work)`: `true` if it was pending (G9).
pub fn cancel_work(work: &Work) -> bool {
    work.cancel()
}

/// `cancel_work_sync(work)` (G10).
pub fn cancel_work_sync(work: &Work) -> bool {
    work.cancel_sync()
}

/// `cancel_delayed_work(dwork)`: disarms or dequeues it (G9).
pub fn cancel_delayed_work(work: &Work) -> bool {
    work.cancel()
}

/// `cancel_delayed_work_sync(dwork)` (G10).
pub fn cancel_delayed_work_sync(work: &Work) -> bool {
    work.cancel_sync()
}

/// `disable_work(work)` (G11).
pub fn disable_work(work: &Work) -> bool {
    work.disable()
}

/// `disable_work_sync(work)`.
pub fn disable_work_sync(work: &Work) -> bool {
    work.disable_sync()
}

/// `enable_work(work)`: `true` when the disable count reached 0.
pub fn enable_work(work: &Work) -> bool {
    work.enable()
}

/// `work_pending(work)`: queued, throttled or timer armed.
pub fn work_pending(work: &Work) -> bool {
    work.is_pending()
}

/// `delayed_work_pending(dwork)`.
pub fn delayed_work_pending(work: &Work) -> bool {
    work.is_pending()
}

/// `work_busy()`: pending.
pub const WORK_BUSY_PENDING: u32 = 1 << 0;
/// `work_busy()`: running.
pub const WORK_BUSY_RUNNING: u32 = 1 << 1;

/// `work_busy(work)`: `WORK_BUSY_PENDING | WORK_BUSY_RUNNING` as they are
/// now (a hint, as in the kernel).
pub fn work_busy(work: &Work) -> u32 {
    let mut b = 0;
    if work.is_pending() {
        b |= WORK_BUSY_PENDING;
    }
    if work.is_running() {
        b |= WORK_BUSY_RUNNING;
    }
    b
}

/// `workqueue_set_max_active(wq, max_active)` (G17).
pub fn workqueue_set_max_active(wq: &Workqueue, max_active: u32) -> Result<(), Error> {
    wq.set_max_active(max_active)
}

/// `workqueue_congested(cpu, wq)`.
pub fn workqueue_congested(cpu: usize, wq: &Workqueue) -> bool {
    wq.is_congested(cpu)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    #[test]
    fn legacy_constructors_map_like_the_kernel() {
        let w = create_workqueue("compat_cw").unwrap();
        assert_eq!(w.max_active(), 1);
        assert!(w.flags().contains(WqFlags::MEM_RECLAIM));
        assert!(!w.is_ordered() && !w.flags().contains(WqFlags::UNBOUND));
        let s = create_singlethread_workqueue("compat_st").unwrap();
        assert!(s.is_ordered() && s.flags().contains(WqFlags::MEM_RECLAIM));
        let f = create_freezable_workqueue("compat_fz").unwrap();
        assert!(f.is_ordered() && f.flags().contains(WqFlags::FREEZABLE));
        assert!(w.flags().contains(WqFlags::PERCPU));
        let a = alloc_workqueue("compat_a", WqFlags::empty(), 0).unwrap();
        assert_eq!(a.max_active(), crate::WQ_DFL_ACTIVE);
        // Without WQ_UNBOUND the kernel's alloc_workqueue is per-CPU; with
        // it, unbound.
        assert!(a.flags().contains(WqFlags::PERCPU) && !a.flags().contains(WqFlags::UNBOUND));
        let u = alloc_workqueue("compat_u", WqFlags::UNBOUND, 0).unwrap();
        assert!(u.flags().contains(WqFlags::UNBOUND) && !u.flags().contains(WqFlags::PERCPU));
        for wq in [w, s, f, a, u] {
            destroy_workqueue(wq);
        }
    }

    #[test]
    fn schedule_on_each_cpu_runs_once_per_cpu_and_waits() {
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        schedule_on_each_cpu(move || {
            n2.fetch_add(1, SeqCst);
        });
        assert_eq!(n.load(SeqCst), crate::nr_cpus());
    }

    #[test]
    fn work_busy_and_cancel() {
        let wq = alloc_workqueue("compat_busy", WqFlags::empty(), 0).unwrap();
        let w = Work::new(|_| {});
        assert_eq!(work_busy(&w), 0);
        assert!(queue_delayed_work(&wq, &w, Duration::from_secs(60)));
        assert_eq!(work_busy(&w), WORK_BUSY_PENDING);
        assert!(cancel_delayed_work_sync(&w));
        assert!(!work_pending(&w));
        assert!(!mod_delayed_work(&wq, &w, Duration::ZERO));
        assert!(flush_work(&w) || !work_pending(&w));
        flush_workqueue(&wq);
    }
}
