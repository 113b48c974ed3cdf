//! Workqueues: the front end work items are queued on.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use crate::sync::{Condvar, Mutex, MutexGuard};

use crate::attrs::{AffinityScope, WqFlags, WQ_DFL_ACTIVE, WQ_MAX_ACTIVE};
use crate::config::settings;
use crate::cpumask::CpuMask;
use crate::pool::pwq::{self, next_color, PodActive, Pwq, PwqStats, WqShared, NR_COLORS};
use crate::pool::work::Work;
use crate::pool::worker;
use crate::pool::{self, pools, PoolAttrs, WorkerPool};
use crate::rcu::Rcu;
use crate::stats::WqStats;
use crate::topology::{topology, Scope};
use crate::util;
use crate::Error;

/// Attributes of an unbound workqueue (the kernel's `workqueue_attrs`,
/// applied with `apply_workqueue_attrs`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct WqAttrs {
    /// Nice level of the workers, -20..=19.
    pub nice: i32,
    /// CPUs the workers may use; `None`: every CPU the process may use.
    pub cpus: Option<Vec<usize>>,
    /// How CPUs are grouped into pods.
    pub affinity_scope: AffinityScope,
    /// Confine workers to their pod (otherwise they may run anywhere in
    /// `cpus`, but items still go to the pool of the queueing CPU's pod).
    pub affinity_strict: bool,
}

impl WqAttrs {
    fn validate(&self) -> Result<CpuMask, Error> {
        if !(-20..=19).contains(&self.nice) {
            return Err(Error::InvalidNice(self.nice));
        }
        let topo = topology();
        match &self.cpus {
            None => Ok(topo.allowed.clone()),
            Some(list) => {
                let mut m = CpuMask::new();
                for &c in list {
                    if c >= topo.nr_cpus {
                        return Err(Error::InvalidCpu(c));
                    }
                    m.set(c);
                }
                if m.and(&topo.allowed).is_empty() {
                    return Err(Error::EmptyCpumask);
                }
                Ok(m)
            }
        }
    }
}

/// The pwqs of a workqueue, indexed by CPU (the pod's pwq for unbound
/// workqueues; the single pwq for ordered ones).
pub(crate) struct PwqTable {
    pub(crate) per_cpu: Box<[Arc<Pwq>]>,
    /// Unbound: the pwq used for CPUs outside the workqueue's CPU set.
    pub(crate) dfl: Option<Arc<Pwq>>,
}

/// Flush colour bookkeeping (see `Workqueue::flush`). Annotations:
/// `src/LOCKING.md`.
struct FlushCtl {
    /// F: colour new items get.
    work_color: u8,
    /// F: oldest colour not yet flushed: colours in `[flush_color,
    /// work_color)` are closed and wait to be flushed, in order.
    flush_color: u8,
    /// F: a flusher is driving the flush of the closed colours.
    flushing: bool,
}

impl FlushCtl {
    /// `color` is closed and not yet flushed.
    fn pending(&self, color: u8) -> bool {
        let d = |a: u8, b: u8| (b as usize + NR_COLORS - a as usize) % NR_COLORS;
        d(self.flush_color, color) < d(self.flush_color, self.work_color)
    }
}

/// A workqueue's own state. Annotations: `src/LOCKING.md`.
pub(crate) struct WqInner {
    /// I: what its pwqs and executing workers need.
    pub(crate) shared: Arc<WqShared>,
    /// RCU (replaced under T): the current pwq table, read on every queue (the kernel's
    /// RCU-protected `wq->cpu_pwq`). Replaced only under `all_pwqs`, by
    /// `apply_attrs` and destruction; a replaced table is freed once no
    /// queuer can still hold it (unbound workqueues, whose tables
    /// `apply_attrs` replaces any number of times), or kept until the
    /// workqueue is dropped (bound and ordered ones: replaced once, at
    /// destruction, so their queuers pay nothing for the protection).
    pub(crate) table: Rcu<PwqTable>,
    /// T: every pwq, including replaced ones that still have items. Its lock
    /// also serialises table replacement, so "is this pwq in the current
    /// table" can be judged while holding it: a pwq is released only
    /// under it, and never while it is in the current table.
    pub(crate) all_pwqs: Mutex<Vec<Arc<Pwq>>>,
    /// Its own lock, a leaf taken under T: counters of released pwqs, and
    /// their CPU time, so a pwq's counters are in exactly one of the two.
    pub(crate) released_stats: Mutex<(PwqStats, u64)>,
    /// F: flush colours.
    flush: Mutex<FlushCtl>,
    /// F: flushers waiting for a colour.
    pub(crate) flush_cv: Condvar,
    /// S: unbound attributes in force.
    pub(crate) attrs: Mutex<Option<WqAttrs>>,
    /// I: a `MEM_RECLAIM` workqueue.
    pub(crate) mem_reclaim: bool,
}

/// Cancels a destroyed workqueue's armed timers and returns how many (G25):
/// set by delayed work (`timer`, the layer above) when it makes its wheel,
/// before anything can be armed.
static CANCEL_TIMERS: OnceLock<fn(&WqInner) -> usize> = OnceLock::new();

/// Install the hook that cancels a destroyed workqueue's armed timers.
pub(crate) fn on_destroy_cancel_timers(cancel: fn(&WqInner) -> usize) {
    let _ = CANCEL_TIMERS.set(cancel);
}

/// Every live workqueue, in creation order (for `dump()` and the monitor).
pub(crate) static WORKQUEUES: Mutex<Vec<Weak<WqInner>>> = Mutex::new(Vec::new());
static NEXT_WQ_ID: AtomicU64 = AtomicU64::new(1);

/// Live workqueues, oldest first.
pub(crate) fn all_workqueues() -> Vec<Arc<WqInner>> {
    WORKQUEUES.lock().iter().filter_map(Weak::upgrade).collect()
}

/// A workqueue: the front end work items are queued on, with flags,
/// `max_active` and a name; the domain of [`flush`](Self::flush) and
/// [`drain`](Self::drain). Dropping it destroys it (G25).
///
/// ```
/// let wq = cmwq::Workqueue::builder("my_wq").max_active(4).build().unwrap();
/// let w = cmwq::Work::new(|_| println!("hello from a kworker"));
/// assert!(wq.queue(&w));
/// wq.flush();
/// ```
pub struct Workqueue {
    pub(crate) inner: Arc<WqInner>,
}

/// Builds a [`Workqueue`] (the kernel's `alloc_workqueue`).
#[derive(Clone, Debug)]
pub struct WorkqueueBuilder {
    name: String,
    flags: WqFlags,
    max_active: Option<u32>,
    attrs: Option<WqAttrs>,
    ordered: bool,
}

impl WorkqueueBuilder {
    /// Workqueue flags. Without `PERCPU` or `UNBOUND` the workqueue
    /// spreads (G14); `PERCPU | UNBOUND` is an error at `build`.
    #[must_use = "a WorkqueueBuilder does nothing until .build()"]
    pub fn flags(mut self, flags: WqFlags) -> Self {
        self.flags = flags;
        self
    }

    /// Items that may execute at once per CPU (per-CPU) or pod (unbound,
    /// spreading), 1..=2048 (G17). Default 1024.
    #[must_use = "a WorkqueueBuilder does nothing until .build()"]
    pub fn max_active(mut self, max_active: u32) -> Self {
        self.max_active = Some(max_active);
        self
    }

    /// Attributes of an unbound workqueue.
    #[must_use = "a WorkqueueBuilder does nothing until .build()"]
    pub fn attrs(mut self, attrs: WqAttrs) -> Self {
        self.attrs = Some(attrs);
        self
    }

    /// Create the workqueue. Only through `build` (`init.rs`), which starts
    /// the process-wide services first: the rescuer of a `MEM_RECLAIM`
    /// workqueue needs the monitor.
    pub(crate) fn create(self) -> Result<Workqueue, Error> {
        let (flags, spreading) = resolve_kind(self.flags, settings().power_efficient)?;
        let max_active = self.max_active.unwrap_or(WQ_DFL_ACTIVE);
        if !(1..=WQ_MAX_ACTIVE).contains(&max_active) {
            return Err(Error::InvalidMaxActive(max_active));
        }
        let unbound = flags.contains(WqFlags::UNBOUND);
        if self.attrs.is_some() && !unbound {
            return Err(Error::NotUnbound);
        }
        let attrs = if unbound {
            let mut a = self.attrs.unwrap_or_default();
            if flags.contains(WqFlags::HIGHPRI) && a.nice == 0 {
                a.nice = -20;
            }
            a.validate()?;
            Some(a)
        } else {
            None
        };
        // G22: a MEM_RECLAIM workqueue is not created without its rescuer
        // (the kernel's alloc_workqueue fails the same way).
        let rescuer = if flags.contains(WqFlags::MEM_RECLAIM) {
            Some(crate::pool::worker::Rescuer::start(&self.name)?)
        } else {
            None
        };
        let shared = Arc::new(WqShared {
            id: NEXT_WQ_ID.fetch_add(1, Relaxed),
            name: self.name,
            flags,
            spreading,
            // G19: an explicit `UNBOUND | CPU_INTENSIVE` keeps the kernel's
            // unmanaged unbound pools; a spreading one stays managed.
            unmanaged: !spreading && flags.contains(WqFlags::UNBOUND | WqFlags::CPU_INTENSIVE),
            ordered: self.ordered,
            max_active: AtomicU32::new(max_active),
            nr_drainers: AtomicU32::new(0),
            destroying: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            refusal_logged: AtomicBool::new(false),
            dropped_logged: AtomicBool::new(false),
            nr_pwqs_to_flush: AtomicU32::new(0),
            nr_timers: AtomicUsize::new(0),
            rescuer,
        });
        let table = make_table(&shared, attrs.as_ref(), 0, None);
        let all = table_pwqs(&table);
        // Only the tables of unbound, unordered workqueues are replaced
        // while queuers run; they get one reader slot per CPU.
        let slots = if unbound && !self.ordered {
            topology().nr_cpus
        } else {
            0
        };
        let inner = Arc::new(WqInner {
            shared,
            table: Rcu::new(table, slots),
            all_pwqs: Mutex::new(all),
            released_stats: Mutex::new((PwqStats::default(), 0)),
            flush: Mutex::new(FlushCtl {
                work_color: 0,
                flush_color: 0,
                flushing: false,
            }),
            flush_cv: Condvar::new(),
            attrs: Mutex::new(attrs),
            mem_reclaim: flags.contains(WqFlags::MEM_RECLAIM),
        });
        WORKQUEUES.lock().push(Arc::downgrade(&inner));
        Ok(Workqueue { inner })
    }
}

/// The kind of workqueue `flags` ask for (the kernel's `alloc_workqueue`
/// with `WQ_PERCPU`, G14): the flags as the workqueue reports them, with
/// exactly one of `PERCPU` and `UNBOUND`, and whether it is *spreading*
/// (unbound because `PERCPU` was not asked for, rather than `UNBOUND`).
/// `power_efficient`: the process's power-efficient mode, in which a
/// `POWER_EFFICIENT` workqueue is unbound (else per-CPU, as in the kernel).
pub(crate) fn resolve_kind(
    mut flags: WqFlags,
    power_efficient: bool,
) -> Result<(WqFlags, bool), Error> {
    if WqFlags::from_bits(flags.bits()).is_none()
        || flags.contains(WqFlags::PERCPU | WqFlags::UNBOUND)
    {
        return Err(Error::InvalidFlags(flags));
    }
    if flags.contains(WqFlags::POWER_EFFICIENT) {
        if power_efficient {
            flags = (flags - WqFlags::PERCPU) | WqFlags::UNBOUND;
        } else if !flags.contains(WqFlags::UNBOUND) {
            flags |= WqFlags::PERCPU;
        }
    }
    if flags.intersects(WqFlags::PERCPU | WqFlags::UNBOUND) {
        return Ok((flags, false));
    }
    Ok((flags | WqFlags::UNBOUND, true))
}

/// Distinct pwqs of a table.
fn table_pwqs(t: &PwqTable) -> Vec<Arc<Pwq>> {
    let mut v: Vec<Arc<Pwq>> = Vec::new();
    for p in t.per_cpu.iter().chain(t.dfl.iter()) {
        if !v.iter().any(|q| Arc::ptr_eq(q, p)) {
            v.push(p.clone());
        }
    }
    v
}

/// Build the pwq table for a workqueue. `reuse`: pwqs of the previous
/// table, kept where the pool is the same.
fn make_table(
    shared: &Arc<WqShared>,
    attrs: Option<&WqAttrs>,
    color: u8,
    reuse: Option<&PwqTable>,
) -> PwqTable {
    let pools = pools();
    let topo = topology();
    let mut made: Vec<Arc<Pwq>> = reuse.map(table_pwqs).unwrap_or_default();
    let mut pwq_for = |pool: &'static WorkerPool| -> Arc<Pwq> {
        if let Some(p) = made.iter().find(|p| std::ptr::eq(p.pool, pool)) {
            return p.clone();
        }
        // A lane's pwq shares its group's active count with the
        // workqueue's other pwqs there (G17: max_active per pod).
        let pod = pool.lane.map(|(group, _)| {
            made.iter()
                .find(|p| p.pool.lane.is_some_and(|(l, _)| std::ptr::eq(l, group)))
                .and_then(|p| p.pod.clone())
                .unwrap_or_default()
        });
        let p = Pwq::new(pool, shared.clone(), color, pod);
        made.push(p.clone());
        p
    };
    let Some(attrs) = attrs else {
        let highpri = shared.flags.contains(WqFlags::HIGHPRI);
        let per_cpu = (0..topo.nr_cpus)
            .map(|c| pwq_for(pools.cpu_pool(c, highpri)))
            .collect();
        return PwqTable { per_cpu, dfl: None };
    };
    let wq_cpus = attrs.validate().expect("validated at build");
    let wq_cpus = if wq_cpus.and(&topo.allowed).is_empty() {
        wq_cpus
    } else {
        wq_cpus.and(&topo.allowed)
    };
    // G19: unbound pools are concurrency managed over their pod, except
    // for CPU_INTENSIVE workqueues (the kernel's unbound behaviour), and
    // where detection is off (`CMWQ_DETECT=hint`): a managed pool that
    // cannot tell a block would stall behind it.
    let managed = !shared.unmanaged;
    let detects = crate::monitor::mode() != crate::monitor::Mode::Hint;
    // A managed pod is a group of per-CPU lanes (G19, `pool/README.md`):
    // CPU c queues on its own lane. Otherwise one pool per pod; so for a
    // FREEZABLE workqueue, whose queued items a freeze moves back to their
    // pwqs under their pool's lock, which an item stolen by another lane
    // would escape; and for a MEM_RECLAIM one, whose rescuer runs a pwq's
    // items where they were queued.
    let lanes = managed
        && detects
        && !shared
            .flags
            .intersects(WqFlags::FREEZABLE | WqFlags::MEM_RECLAIM);
    let pod_pool = |pod_attrs: &PoolAttrs, cpu: usize| -> &'static WorkerPool {
        if lanes {
            pools.lane_group(pod_attrs).lane_for(cpu)
        } else {
            pools.unbound_pool(pod_attrs, detects)
        }
    };
    let first = wq_cpus.first().unwrap_or(0);
    let dfl = pwq_for(pod_pool(
        &PoolAttrs {
            nice: attrs.nice,
            cpus: wq_cpus.clone(),
            pod_cpus: wq_cpus.clone(),
            strict: attrs.affinity_strict,
            managed,
        },
        first,
    ));
    if shared.ordered {
        let per_cpu = (0..topo.nr_cpus).map(|_| dfl.clone()).collect();
        return PwqTable {
            per_cpu,
            dfl: Some(dfl),
        };
    }
    // G14: a spreading workqueue's default scope is `System`, so that
    // items queued from any one thread use every CPU.
    let pt = topo.pod_type(match attrs.affinity_scope.scope() {
        Some(scope) => scope,
        None if shared.spreading => Scope::System,
        None => settings().affinity_scope,
    });
    // A pod's pwq, or with lanes each CPU's own.
    let mut pod_pwq: Vec<Option<Arc<Pwq>>> = vec![None; pt.nr_pods()];
    let per_cpu = (0..topo.nr_cpus)
        .map(|c| {
            let pod = pt.cpu_pod[c];
            if let Some(p) = &pod_pwq[pod] {
                return p.clone();
            }
            let pod_cpus = pt.pod_cpus[pod].and(&wq_cpus);
            let p = if pod_cpus.is_empty() {
                dfl.clone()
            } else {
                pwq_for(pod_pool(
                    &PoolAttrs {
                        nice: attrs.nice,
                        cpus: if attrs.affinity_strict {
                            pod_cpus.clone()
                        } else {
                            wq_cpus.clone()
                        },
                        pod_cpus,
                        strict: attrs.affinity_strict,
                        managed,
                    },
                    c,
                ))
            };
            if !lanes {
                pod_pwq[pod] = Some(p.clone());
            }
            p
        })
        .collect();
    PwqTable {
        per_cpu,
        dfl: Some(dfl),
    }
}

impl Workqueue {
    /// A spreading workqueue with the default `max_active`: unbound and
    /// concurrency managed over every CPU the process may use (G14, G19),
    /// so items queued from any one thread run on every CPU, one running
    /// worker per CPU, another started when one blocks. For the kernel's
    /// per-CPU locality (an item runs on the CPU that queues it), build
    /// with [`WqFlags::PERCPU`].
    pub fn new(name: &str) -> Result<Workqueue, Error> {
        Self::builder(name).build()
    }

    /// Start building a workqueue: spreading unless the flags say
    /// `PERCPU` (or `UNBOUND`, the kernel's unbound workqueue with its
    /// `Cache` affinity scope by default).
    #[must_use = "a WorkqueueBuilder does nothing until .build()"]
    pub fn builder(name: &str) -> WorkqueueBuilder {
        WorkqueueBuilder {
            name: name.to_owned(),
            flags: WqFlags::empty(),
            max_active: None,
            attrs: None,
            ordered: false,
        }
    }

    /// An ordered workqueue (`alloc_ordered_workqueue`): at most one item
    /// at a time, in queueing order, whatever CPU queued them (G18). `flags`
    /// may add `FREEZABLE` and `MEM_RECLAIM` only.
    pub fn ordered(name: &str, flags: WqFlags) -> Result<Workqueue, Error> {
        if !(WqFlags::FREEZABLE | WqFlags::MEM_RECLAIM).contains(flags) {
            return Err(Error::InvalidFlags(flags));
        }
        WorkqueueBuilder {
            name: name.to_owned(),
            flags: flags | WqFlags::UNBOUND,
            max_active: Some(1),
            attrs: None,
            ordered: true,
        }
        .build()
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.inner.shared.name
    }

    /// The flags, with the kind resolved: exactly one of `PERCPU` and
    /// `UNBOUND`. `UNBOUND` is added for spreading workqueues (made
    /// without `PERCPU`), ordered ones and `POWER_EFFICIENT` ones in
    /// power-efficient mode; `PERCPU` for other `POWER_EFFICIENT` ones.
    pub fn flags(&self) -> WqFlags {
        self.inner.shared.flags
    }

    /// Whether this is an ordered workqueue.
    pub fn is_ordered(&self) -> bool {
        self.inner.shared.ordered
    }

    /// Queue `work` on the pool of the calling thread's CPU (or its pod's,
    /// unbound). `true` if this call made it pending (G1).
    ///
    /// On a per-CPU workqueue (`PERCPU`) the item runs on the caller's
    /// CPU, as in the kernel (G14): items queued from one thread all run
    /// on that thread's CPU. A spreading workqueue (the default) runs them
    /// on every CPU.
    #[inline]
    pub fn queue(&self, work: &Work) -> bool {
        self.inner.queue(None, work)
    }

    /// Queue `work` on `cpu`'s pool (G14): on a per-CPU workqueue it runs
    /// on `cpu`; on an unbound or spreading one, in the pool of `cpu`'s
    /// pod.
    ///
    /// # Panics
    ///
    /// If `cpu >= nr_cpus()`.
    #[inline]
    pub fn queue_on(&self, cpu: usize, work: &Work) -> bool {
        check_cpu("queue_on", cpu);
        self.inner.queue(Some(cpu), work)
    }

    /// One-shot convenience: a `Work` for `f`, queued; returns it (so it can
    /// be flushed or cancelled). Queued like [`queue`](Self::queue): on a
    /// per-CPU workqueue it runs on the caller's CPU.
    pub fn spawn<F>(&self, f: F) -> Work
    where
        F: FnOnce() + Send + 'static,
    {
        let mut f = Some(f);
        let w = Work::new(move |_| {
            if let Some(f) = f.take() {
                f()
            }
        });
        self.queue(&w);
        w
    }

    /// Wait for every item queued on this workqueue before the call to
    /// finish (G7). Items queued after the call are not waited for; armed
    /// timers are not covered.
    ///
    /// # Panics
    ///
    /// When called from one of this workqueue's own items (it would wait
    /// for itself forever, G27).
    pub fn flush(&self) {
        self.check_not_own("flush");
        worker::blocking(|| self.inner.flush());
    }

    /// Wait until the workqueue is empty, including items that its own
    /// items queue on it meanwhile (G8). Queue attempts from anywhere else
    /// return `false` while it drains.
    ///
    /// # Panics
    ///
    /// When called from one of this workqueue's own items (G27).
    pub fn drain(&self) {
        self.check_not_own("drain");
        let sh = &self.inner.shared;
        sh.nr_drainers.fetch_add(1, SeqCst);
        // Ends the drain even if a panic unwinds out of it, or the
        // workqueue would refuse outside queues for ever.
        struct Drainer<'a>(&'a WqShared);
        impl Drop for Drainer<'_> {
            fn drop(&mut self) {
                if self.0.nr_drainers.fetch_sub(1, SeqCst) == 1 {
                    self.0.refusal_logged.store(false, Relaxed);
                    self.0.dropped_logged.store(false, Relaxed);
                }
            }
        }
        let _drainer = Drainer(sh);
        worker::blocking(|| self.inner.drain());
    }

    /// The current `max_active`.
    pub fn max_active(&self) -> u32 {
        self.inner.shared.max_active.load(Relaxed)
    }

    /// Change `max_active` (1..=2048); takes effect at once (G17).
    pub fn set_max_active(&self, max_active: u32) -> Result<(), Error> {
        if self.is_ordered() {
            return Err(Error::Ordered(self.name().to_owned()));
        }
        if !(1..=WQ_MAX_ACTIVE).contains(&max_active) {
            return Err(Error::InvalidMaxActive(max_active));
        }
        self.inner.shared.max_active.store(max_active, SeqCst);
        self.inner.reactivate();
        Ok(())
    }

    /// Change the attributes of an unbound workqueue
    /// (`apply_workqueue_attrs`). Items already queued finish where they
    /// are; new ones use the new pools.
    pub fn apply_attrs(&self, attrs: &WqAttrs) -> Result<(), Error> {
        if !self.flags().contains(WqFlags::UNBOUND) {
            return Err(Error::NotUnbound);
        }
        if self.is_ordered() {
            return Err(Error::Ordered(self.name().to_owned()));
        }
        attrs.validate()?;
        self.inner.apply_attrs(attrs.clone());
        Ok(())
    }

    /// Whether items queued on `cpu` would wait for `max_active` (the
    /// kernel's workqueue_congested).
    ///
    /// # Panics
    ///
    /// If `cpu >= nr_cpus()`.
    pub fn is_congested(&self, cpu: usize) -> bool {
        check_cpu("is_congested", cpu);
        loop {
            let r = self.inner.table.read(cpu, |t| {
                let Some(p) = t.per_cpu.get(cpu) else {
                    return Some(false); // destroyed
                };
                let g = p.pool.lock();
                // Released: the table was replaced since we loaded it.
                (!p.released.load(Relaxed)).then(|| pwq::congested(&g, p))
            });
            if let Some(congested) = r {
                return congested;
            }
        }
    }

    /// `wq_monitor.py`'s columns for this workqueue (G29).
    pub fn stats(&self) -> WqStats {
        self.inner.stats()
    }

    /// Queue attempts refused because the workqueue was draining or being
    /// destroyed (G8).
    pub fn refused(&self) -> u64 {
        self.inner.shared.refused.load(Relaxed)
    }

    /// Its id (as `worker::current_wq_id` reports it) and whether it is
    /// ordered.
    pub(crate) fn id_and_ordered(&self) -> (u64, bool) {
        (self.inner.shared.id, self.inner.shared.ordered)
    }

    fn check_not_own(&self, what: &str) {
        if self.inner.executing_own() {
            panic!(
                "cmwq: Workqueue::{what} of {:?} called from one of its own work items: it would wait for itself forever",
                self.name()
            );
        }
    }
}

#[inline]
pub(crate) fn check_cpu(what: &str, cpu: usize) {
    let n = topology().nr_cpus;
    if cpu >= n {
        panic!("cmwq: {what}: CPU {cpu} does not exist (nr_cpus() is {n})");
    }
}

/// The workqueue locks the fork handlers hold across `fork()` (G26), in
/// the lock order: `S:`, `F:`, `T:`; `released_stats` is a leaf, taken last.
impl WqInner {
    /// Take `S:`, `F:` and `T:` and keep them held (guards forgotten).
    pub(crate) fn fork_lock(&self) {
        std::mem::forget(self.attrs.lock());
        std::mem::forget(self.flush.lock());
        std::mem::forget(self.all_pwqs.lock());
    }

    /// Take the leaves `released_stats` and its pwqs' `PodActive` waiting
    /// lists, and keep them held.
    pub(crate) fn fork_lock_leaf(&self) {
        std::mem::forget(self.released_stats.lock());
        for pod in self.pods_held() {
            pod.fork_lock();
        }
    }

    /// The distinct shared active counts of its pwqs, while the calling
    /// thread holds `all_pwqs` (`fork_lock`).
    fn pods_held(&self) -> Vec<Arc<PodActive>> {
        // SAFETY: `T:` is held by this thread (taken by `fork_lock`), so
        // nobody changes the list.
        let all = unsafe { &*self.all_pwqs.data_ptr() };
        let mut pods: Vec<Arc<PodActive>> = Vec::new();
        for p in all.iter() {
            if let Some(pod) = &p.pod {
                if !pods.iter().any(|q| Arc::ptr_eq(q, pod)) {
                    pods.push(pod.clone());
                }
            }
        }
        pods
    }

    /// Release what `fork_lock` and `fork_lock_leaf` took.
    ///
    /// # Safety
    ///
    /// The calling thread took them with those functions and has not
    /// released them.
    pub(crate) unsafe fn fork_unlock(&self) {
        // SAFETY: held by this thread (the caller's contract); the guards
        // were forgotten, so nothing else will unlock them.
        unsafe {
            for pod in self.pods_held() {
                pod.fork_unlock();
            }
            self.released_stats.force_unlock(Default::default());
            self.all_pwqs.force_unlock(Default::default());
            self.flush.force_unlock(Default::default());
            self.attrs.force_unlock(Default::default());
        }
    }

    /// In the child after `fork()`, with the locks of `fork_lock` held by
    /// this thread: flushers, drainers, timers and queuers of the parent
    /// do not exist here; no colour waits to be flushed.
    ///
    /// # Safety
    ///
    /// As for [`fork_unlock`](Self::fork_unlock), and the locks are still
    /// held.
    pub(crate) unsafe fn reset_after_fork(&self) {
        // SAFETY: `F:` is held by this thread, the only one in the child.
        let c = unsafe { &mut *self.flush.data_ptr() };
        c.flush_color = c.work_color;
        c.flushing = false;
        let sh = &self.shared;
        sh.nr_pwqs_to_flush.store(0, SeqCst);
        sh.nr_drainers.store(0, SeqCst);
        sh.nr_timers.store(0, SeqCst);
        for pod in self.pods_held() {
            // SAFETY: its waiting list is held by this thread
            // (`fork_lock_leaf`).
            unsafe { pod.reset_after_fork() };
        }
        self.table.reset_readers_after_fork();
    }
}

impl WqInner {
    /// The calling thread executes an item of this workqueue (a "chained"
    /// queue, allowed during drain and destruction).
    #[inline]
    pub(crate) fn executing_own(&self) -> bool {
        worker::current_wq_id() == Some(self.shared.id)
    }

    /// G1 and G8: refuse during a drain (unless chained), then take
    /// PENDING. True if the caller now owns PENDING.
    #[inline]
    pub(crate) fn grab(&self, work: &Work) -> bool {
        !self.refuses_caller() && work.inner().state.try_grab_for_queue().is_ok()
    }

    /// G8: a queue from outside this workqueue's own items during a drain
    /// or destruction is refused (counted and reported once).
    #[inline]
    pub(crate) fn refuses_caller(&self) -> bool {
        let sh = &*self.shared;
        let refused = sh.refusing() && !self.executing_own();
        if refused {
            sh.note_refused();
        }
        refused
    }

    #[inline]
    pub(crate) fn queue(&self, cpu: Option<usize>, work: &Work) -> bool {
        self.grab(work) && self.insert_grabbed(cpu, work)
    }

    /// Queue an item whose PENDING the caller owns (a queue call, or an
    /// expired timer). Returns false, with PENDING released, if the
    /// workqueue refuses it.
    pub(crate) fn insert_grabbed(&self, cpu: Option<usize>, work: &Work) -> bool {
        enum Outcome {
            /// Queued, with the pool still locked; the monitor must look
            /// at the pool's mayday timer.
            Queued(pool::PoolGuard, bool),
            Refused,
            /// The pwq was released: the table was replaced since we loaded
            /// it (the kernel's `__queue_work` retries the same way).
            Retry,
        }
        let sh = &*self.shared;
        let cpu = cpu.unwrap_or_else(util::current_cpu);
        loop {
            let r = self.table.read(cpu, |table| {
                let n = table.per_cpu.len();
                if n == 0 {
                    return Outcome::Refused; // destroyed
                }
                let pwq = &table.per_cpu[if cpu < n { cpu } else { cpu % n }];
                let pool = pwq.pool;
                let mut g = pool.lock();
                if sh.refusing() && !self.executing_own() {
                    return Outcome::Refused;
                }
                if pwq.released.load(Relaxed) {
                    return Outcome::Retry;
                }
                if crate::trace::on() {
                    work.inner().queued_ns.store(util::mono_ns(), Relaxed);
                }
                let active = pwq::insert_work(&mut g, pwq, work);
                crate::trace::queue_work!(sh.name, work, cpu, active);
                let k = if active {
                    pool::kick_pool(&mut g)
                } else {
                    pool::Kick::NotNeeded
                };
                if active && k != pool::Kick::Woken {
                    pool::note_pending_behind_runner(pool, &g);
                }
                let mayday = sh.rescuer.is_some()
                    && g.mayday_at.is_some()
                    && crate::rescuer::reclaim_queued(&mut g);
                // The lock is released (and a worker the kick asked for
                // created) outside the RCU read section.
                Outcome::Queued(g, mayday)
            });
            match r {
                Outcome::Queued(g, mayday) => {
                    if mayday {
                        // Rare (a rescuer's pool short of workers): one
                        // eventfd write, before a creation the kick asked
                        // for, as the mayday may be what rescues the item.
                        crate::monitor::wake();
                    }
                    drop(g);
                    return true;
                }
                Outcome::Refused => {
                    sh.note_refused();
                    if work.inner().state.release_pending() {
                        work.wake_waiters();
                    }
                    return false;
                }
                Outcome::Retry => crate::loom::spin_loop_hint(),
            }
        }
    }

    fn pwqs(&self) -> Vec<Arc<Pwq>> {
        self.all_pwqs.lock().clone()
    }

    /// Flush colours (G7). Each call closes the current colour (new items
    /// get the next one, on every pwq), then waits until no pwq has items of
    /// that colour or an older one in flight. Flushers that arrive while a
    /// flush is in progress close their own colours and are completed in
    /// order by whichever of them is driving (as the kernel's flusher
    /// queue does), so a flush never waits for items queued after it.
    pub(crate) fn flush(&self) {
        let mut c = self.flush.lock();
        while next_color(c.work_color) == c.flush_color {
            // All colours are in use by pending flushes: wait for one.
            self.flush_cv.wait(&mut c);
        }
        let my = c.work_color;
        c.work_color = next_color(my);
        for p in self.all_pwqs.lock().iter() {
            let mut g = p.pool.lock();
            if !p.released.load(Relaxed) {
                g.pwqs[p.slot].work_color = c.work_color;
            }
        }
        loop {
            if !c.pending(my) {
                return;
            }
            if !c.flushing {
                c.flushing = true;
                while c.pending(my) {
                    let color = c.flush_color;
                    self.flush_one_color(&mut c, color);
                    c.flush_color = next_color(color);
                    self.flush_cv.notify_all();
                }
                c.flushing = false;
                self.flush_cv.notify_all();
                return;
            }
            self.flush_cv.wait(&mut c);
        }
    }

    /// Wait until no pwq has items of `color` in flight.
    fn flush_one_color(&self, c: &mut MutexGuard<'_, FlushCtl>, color: u8) {
        let sh = &*self.shared;
        // One extra count while we are still marking pwqs, so that pwqs
        // finishing meanwhile cannot complete the flush early.
        sh.nr_pwqs_to_flush.store(1, SeqCst);
        for p in self.all_pwqs.lock().iter() {
            let mut g = p.pool.lock();
            if p.released.load(Relaxed) {
                continue;
            }
            let st = &mut g.pwqs[p.slot];
            if st.nr_in_flight[color as usize] > 0 {
                debug_assert!(st.flush_color.is_none());
                st.flush_color = Some(color);
                sh.nr_pwqs_to_flush.fetch_add(1, SeqCst);
            }
        }
        if sh.nr_pwqs_to_flush.fetch_sub(1, SeqCst) != 1 {
            MutexGuard::unlocked(c, || {
                pool::wait_on(&sh.nr_pwqs_to_flush, || {
                    sh.nr_pwqs_to_flush.load(Acquire) == 0
                })
            });
        }
    }

    /// Whether any pwq still has items; releases replaced pwqs (no longer
    /// in the current table) that are empty. Judged under `all_pwqs`, which table replacement also holds,
    /// so a pwq installed by a concurrent `apply_attrs` is never taken for
    /// a replaced one.
    pub(crate) fn busy(&self) -> bool {
        let mut all = self.all_pwqs.lock();
        let mut busy = false;
        let mut released = Vec::new();
        self.table.read(0, |table| {
            let current = |p: &Arc<Pwq>| {
                table
                    .per_cpu
                    .iter()
                    .chain(table.dfl.iter())
                    .any(|q| Arc::ptr_eq(q, p))
            };
            all.retain(|p| {
                if current(p) {
                    busy |= p.busy();
                    return true;
                }
                // Released only if empty (checked under its pool lock).
                match p.try_release() {
                    Some(st) => {
                        released.push((st, p.cpu_time_ns.load(Relaxed)));
                        false
                    }
                    None => {
                        busy = true;
                        true
                    }
                }
            });
        });
        if !released.is_empty() {
            let mut r = self.released_stats.lock();
            for (st, cpu) in released {
                r.0.add(&st);
                r.1 += cpu;
            }
        }
        busy
    }

    pub(crate) fn drain(&self) {
        loop {
            self.flush();
            if !self.busy() {
                return;
            }
        }
    }

    /// Apply a new max_active to throttled items.
    fn reactivate(&self) {
        for p in self.pwqs() {
            pwq::reactivate(&p);
        }
    }

    fn apply_attrs(&self, attrs: WqAttrs) {
        // Serialises callers: one table is built from the one before.
        let mut cur = self.attrs.lock();
        // New pwqs start with the current flush colour.
        let c = self.flush.lock();
        let t = self.table.read(0, |old| {
            make_table(&self.shared, Some(&attrs), c.work_color, Some(old))
        });
        let old = {
            let mut all = self.all_pwqs.lock();
            for p in table_pwqs(&t) {
                if !all.iter().any(|q| Arc::ptr_eq(q, &p)) {
                    all.push(p);
                }
            }
            self.table.replace(t)
        };
        drop(c);
        *cur = Some(attrs);
        drop(cur);
        // No queuer holds the old table any more: free it (bounded memory
        // however often attributes change). Its pwqs stay in `all_pwqs`
        // until they are empty.
        drop(old);
        self.busy(); // releases old pwqs that are already empty
    }

    pub(crate) fn stats(&self) -> WqStats {
        // Under `all_pwqs`: a pwq released meanwhile is counted once.
        let all = self.all_pwqs.lock();
        let (mut st, mut cpu) = *self.released_stats.lock();
        let mut in_flight = 0;
        for p in all.iter() {
            let g = p.pool.lock();
            if p.released.load(Relaxed) {
                continue;
            }
            let ps = &g.pwqs[p.slot];
            st.add(&ps.stats);
            p.foreign.add_into(&mut st);
            in_flight += ps.in_flight();
            cpu += p.cpu_time_ns.load(Relaxed);
        }
        WqStats {
            total: st.started,
            in_flight,
            cpu_time: Duration::from_nanos(cpu),
            cpu_hog: st.cpu_hog,
            cm_wakeups: st.cm_wakeups,
            mayday: st.mayday,
            rescued: st.rescued,
            panics: st.panics,
        }
    }

    /// Tear down after `destroying` was set: drain, cancel armed timers,
    /// release the pwqs.
    fn destroy(&self) {
        self.drain();
        let cancelled = CANCEL_TIMERS.get().map_or(0, |cancel| cancel(self));
        if cancelled > 0 {
            crate::event::report(crate::Event::TimersCancelled {
                workqueue: &self.shared.name,
                count: cancelled,
            });
        }
        WORKQUEUES
            .lock()
            .retain(|w| w.upgrade().is_some_and(|w| !std::ptr::eq(&*w, self)));
        let old = {
            let _all = self.all_pwqs.lock();
            self.table.replace(PwqTable {
                per_cpu: Box::new([]),
                dfl: None,
            })
        };
        drop(old);
        // Nothing can be queued any more (the table is empty) and no pwq is
        // current: draining once more releases every pwq, waiting for any
        // that is still finishing.
        self.drain();
        debug_assert!(self.all_pwqs.lock().is_empty());
        // Gone with the workqueue (nothing of it is left to rescue).
        if let Some(r) = &self.shared.rescuer {
            r.stop();
        }
    }
}

impl Drop for Workqueue {
    fn drop(&mut self) {
        let inner = self.inner.clone();
        inner.shared.destroying.store(true, SeqCst);
        if inner.executing_own() {
            // Dropped from one of its own items: that item cannot be waited
            // for here, so the rest of the destruction runs elsewhere and
            // completes once it returns (G25).
            system_unbound_wq().spawn(move || inner.destroy());
            return;
        }
        worker::blocking(|| inner.destroy());
    }
}

impl fmt::Debug for Workqueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workqueue")
            .field("name", &self.name())
            .field("flags", &self.flags())
            .field("max_active", &self.max_active())
            .field("ordered", &self.is_ordered())
            .finish()
    }
}

// ----------------------------------------------------------- system workqueues

macro_rules! system_workqueue {
    ($(#[$doc:meta])* $fn:ident, $name:literal, $flags:expr, $max:expr) => {
        $(#[$doc])*
        pub fn $fn() -> &'static Workqueue {
            static WQ: OnceLock<Workqueue> = OnceLock::new();
            WQ.get_or_init(|| {
                Workqueue::builder($name)
                    .flags($flags)
                    .max_active($max)
                    .build()
                    .expect("system workqueue attributes are valid")
            })
        }
    };
}

system_workqueue!(
    /// `events`, per-CPU ([`schedule_work`](crate::schedule_work)): an
    /// item runs on the CPU it is queued from (or the one `queue_on`
    /// names), so items queued from one thread all run on its CPU. The
    /// kernel's `system_wq`, also called [`system_percpu_wq`].
    system_wq, "events", WqFlags::PERCPU, WQ_DFL_ACTIVE
);
system_workqueue!(
    /// `events_highpri`: per-CPU, highpri pools (nice -20).
    system_highpri_wq, "events_highpri", WqFlags::PERCPU.union(WqFlags::HIGHPRI), WQ_DFL_ACTIVE
);
system_workqueue!(
    /// `events_long`: per-CPU, for items that may run long.
    system_long_wq, "events_long", WqFlags::PERCPU, WQ_DFL_ACTIVE
);
system_workqueue!(
    /// `events_unbound`: unbound (affinity scope `Cache` by default, as in
    /// the kernel), max_active 2048.
    system_unbound_wq, "events_unbound", WqFlags::UNBOUND, WQ_MAX_ACTIVE
);
system_workqueue!(
    /// `events_freezable`: per-CPU, stopped by [`freeze`](crate::freeze()).
    system_freezable_wq, "events_freezable", WqFlags::PERCPU.union(WqFlags::FREEZABLE), WQ_DFL_ACTIVE
);
system_workqueue!(
    /// `events_power_efficient`: unbound in power-efficient mode, else per-CPU.
    system_power_efficient_wq, "events_power_efficient", WqFlags::PERCPU.union(WqFlags::POWER_EFFICIENT), WQ_DFL_ACTIVE
);
system_workqueue!(
    /// `events_freezable_power_efficient`.
    system_freezable_power_efficient_wq,
    "events_freezable_power_efficient",
    WqFlags::PERCPU
        .union(WqFlags::FREEZABLE)
        .union(WqFlags::POWER_EFFICIENT),
    WQ_DFL_ACTIVE
);

/// `events` by its newer kernel name (`system_percpu_wq`, 2025): the same
/// workqueue as [`system_wq`], per-CPU.
pub fn system_percpu_wq() -> &'static Workqueue {
    system_wq()
}

/// `events_dfl`: the default workqueue for work that should use every
/// CPU, whichever thread queues it (the kernel's `system_dfl_wq`). A
/// spreading workqueue, as [`Workqueue::new`] makes: unbound and
/// concurrency managed (G19), one pool over every CPU the process may use
/// (affinity scope [`AffinityScope::System`]) that keeps
/// as many workers running as there are CPUs while it has pending work,
/// and starts another when one blocks, found automatically like on a
/// bound pool. max_active 2048. [`spawn`](crate::spawn) queues on it.
pub fn system_dfl_wq() -> &'static Workqueue {
    static WQ: OnceLock<Workqueue> = OnceLock::new();
    WQ.get_or_init(|| {
        Workqueue::builder("events_dfl")
            .max_active(WQ_MAX_ACTIVE)
            .build()
            .expect("system workqueue attributes are valid")
    })
}
