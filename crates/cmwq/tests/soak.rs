//! Soak: adversarial mixed operations from many threads at once, on every
//! kind of workqueue, with a per-item ledger.
//!
//! A fixed set of reusable items is queued, delayed, re-armed, cancelled,
//! disabled, flushed and panicked while other threads drain, flush, change
//! `max_active` and attributes, freeze and thaw, create and drop
//! workqueues, and narrow and widen the process's CPU affinity from
//! outside every thread (G35). Every item counts its executions inside its function, and
//! the threads count what their calls returned. At the end, per item:
//!
//! * `lower <= executions + cancels <= upper` (G4), where `lower` counts the
//!   `queue*`/`queue_delayed*` calls that returned `true` (each made one
//!   pending instance) and `upper` adds the `mod_delayed` calls that returned
//!   `false` (each either armed a fresh instance or was refused). A
//!   `mod_delayed` returning `false` that no disable window (disable ..
//!   enable, cancel_sync) overlapped cannot have been refused (it only goes
//!   to workqueues that never drain), so it armed a fresh instance and
//!   counts in `lower` as well;
//! * no execution overlapped another (G3);
//! * no execution started while a thread held the item disabled after a
//!   `disable_sync` (G10, G11), and queue attempts made meanwhile failed;
//! * every spawned closure whose item was pending ran exactly once, and the
//!   refused ones never ran (G4, G8);
//! * the panics caused (work functions, closures, closures' destructors)
//!   were contained and counted (G4, G5).
//!
//! Workqueues that are drained or dropped (G8, G25) only get immediate
//! queues, never timers: a timer armed for a workqueue that is dropped is
//! cancelled, and one that fires into a draining workqueue is dropped (the
//! documented G4 exceptions), which would make the ledger inexact. Items
//! that may panic are never queued on them either, so the panics can be
//! matched against `stats().panics` of the workqueues that outlive the run.
//!
//! `CMWQ_SOAK_SECS` (default 5), `CMWQ_SOAK_THREADS` (default 8) and
//! `CMWQ_SOAK_SEED` (default: from the clock; printed) tune it:
//!
//! ```text
//! CMWQ_SOAK_SECS=60 cargo test -p cmwq --test soak -- --nocapture
//! ```
//!
//! A watchdog aborts the process with the ledger printed if the test has not
//! finished within the duration + 120 s, or makes no progress for 60 s.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cmwq::{AffinityScope, Work, Workqueue, WqAttrs, WqFlags};
use common::*;

/// Reusable ledger items.
const NR_ITEMS: usize = 32;
/// Items `0..NR_ROAMING` may also go to the drained and dropped
/// workqueues; they never panic. The others stay on the stable workqueues
/// and may panic.
const NR_ROAMING: usize = 12;
/// The watchdog's allowance beyond the soak duration.
const GRACE: Duration = Duration::from_secs(120);
/// The watchdog's limit for a run without any progress.
const STALL: Duration = Duration::from_secs(60);
/// Prefix of every panic this test causes on purpose.
const DELIBERATE: &str = "soak: deliberate";

/// Stops the item self-requeues and every thread of the run.
static STOP: AtomicBool = AtomicBool::new(false);
static SPAWN_PANICS: AtomicU64 = AtomicU64::new(0);
static BOMBS_MADE: AtomicU64 = AtomicU64::new(0);
static BOMBS_DROPPED: AtomicU64 = AtomicU64::new(0);
static BOMB_PANICS_IN_ITEM: AtomicU64 = AtomicU64::new(0);
static BOMB_PANICS_OUTSIDE: AtomicU64 = AtomicU64::new(0);
/// Panics nobody asked for (library bugs), as seen by the panic hook.
static UNEXPECTED_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// xorshift, to stay dependency-free (as in stress.rs).
fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn below(seed: &mut u64, n: usize) -> usize {
    (rng(seed) % n as u64) as usize
}

/// splitmix64 finaliser: decisions inside items, derived seeds.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            let r = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            r.unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        }
        Err(_) => default,
    }
}

/// A delay of 0..3 ms, zero one time in five (G12: queues at once).
fn small_delay(r: u64) -> Duration {
    if r % 5 == 0 {
        Duration::ZERO
    } else {
        Duration::from_micros((r >> 8) % 3000)
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

/// Silence the panics caused on purpose; keep (and record) the others.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = panic_text(info.payload());
            if msg.starts_with(DELIBERATE) {
                return;
            }
            let mut v = lock(&UNEXPECTED_PANICS);
            let first = v.len() < 5;
            if v.len() < 50 {
                let loc = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let thread = std::fs::read_to_string("/proc/thread-self/comm")
                    .unwrap_or_default()
                    .trim_end()
                    .to_string();
                v.push(format!("[{thread}] {msg} at {loc}"));
            }
            drop(v);
            // The first few in full (with a backtrace, if enabled); the
            // rest are listed at the end.
            if first {
                prev(info);
            }
        }));
    });
}

/// The per-item ledger.
#[derive(Default)]
struct Ledger {
    /// Executions started (counted inside the function).
    execs: AtomicU64,
    /// Executions that entered while another was inside (G3).
    overlaps: AtomicU64,
    /// Executions that started while a thread held it after disable_sync.
    runs_held: AtomicU64,
    /// Pending instances created: queue* and queue_delayed* returning true
    /// (and `mod_fresh`).
    lower: AtomicU64,
    /// mod_delayed* returning false while a disable may have overlapped
    /// the call (a fresh instance, or refused).
    mod_false: AtomicU64,
    /// mod_delayed* returning false with no disable overlapping the call:
    /// on a workqueue that never drains that armed a fresh instance (G13),
    /// so these count in `lower` too.
    mod_fresh: AtomicU64,
    /// mod_delayed* returning true (moved an existing instance).
    mod_true: AtomicU64,
    /// Incremented when a disable window opens (disable, disable_sync,
    /// cancel_sync): a call that sees it unchanged and `disables_out == 0`
    /// overlapped none.
    dis_epoch: AtomicU64,
    /// cancel, cancel_sync, disable, disable_sync returning true.
    cancels: AtomicU64,
    /// Threads holding it disabled after a disable_sync returned.
    held: AtomicI64,
    /// Disable windows open now (disable .. enable, and cancel_sync).
    disables_out: AtomicI64,
    /// Inside an execution now.
    running: AtomicBool,
    /// The next execution panics (non-roaming items only).
    panic_req: AtomicBool,
    /// Deliberate panics of its function.
    panics: AtomicU64,
    /// Successful queues from inside its own function (G2).
    self_queues: AtomicU64,
    /// A queue attempt returned true while it was held disabled (G11).
    viol_queue_held: AtomicU64,
    /// Pending or running right after disable_sync returned (G10, G11).
    viol_state_held: AtomicU64,
}

impl Ledger {
    fn done(&self) -> u64 {
        self.execs.load(SeqCst) + self.cancels.load(SeqCst)
    }
    fn lower(&self) -> u64 {
        self.lower.load(SeqCst)
    }
    fn upper(&self) -> u64 {
        self.lower() + self.mod_false.load(SeqCst)
    }
    fn lost(&self) -> u64 {
        self.lower().saturating_sub(self.done())
    }
    fn extra(&self) -> u64 {
        self.done().saturating_sub(self.upper())
    }
    fn bad(&self) -> bool {
        self.lost() > 0
            || self.extra() > 0
            || self.overlaps.load(SeqCst) > 0
            || self.runs_held.load(SeqCst) > 0
            || self.viol_queue_held.load(SeqCst) > 0
            || self.viol_state_held.load(SeqCst) > 0
            || self.held.load(SeqCst) != 0
            || self.disables_out.load(SeqCst) != 0
    }
}

struct Item {
    work: Work,
    l: Arc<Ledger>,
}

struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, SeqCst);
    }
}

fn make_item(i: usize, l: Arc<Ledger>) -> Work {
    let name: &'static str = Box::leak(format!("soak_item{i}").into_boxed_str());
    let may_panic = i >= NR_ROAMING;
    Work::named(name, move |w| {
        if l.running.swap(true, SeqCst) {
            l.overlaps.fetch_add(1, SeqCst);
        }
        let _running = ClearOnDrop(&l.running);
        if l.held.load(SeqCst) > 0 {
            l.runs_held.fetch_add(1, SeqCst);
        }
        let n = l.execs.fetch_add(1, SeqCst) + 1;
        match i % 4 {
            0 => {}
            1 => spin_for(Duration::from_micros(20)),
            2 => cmwq::blocking(|| std::thread::sleep(Duration::from_micros(50))),
            // Blocks without the hint: left to automatic detection (G15).
            _ => std::thread::sleep(Duration::from_micros(30)),
        }
        let h = mix(n, i as u64);
        if !STOP.load(SeqCst) {
            // G2: requeue from inside, on workqueues that are never drained.
            let ok = match h % 24 {
                0 => cmwq::system_wq().queue(w),
                1 => cmwq::system_unbound_wq()
                    .queue_delayed(w, Duration::from_micros(1 + (h >> 8) % 1500)),
                _ => false,
            };
            if ok {
                l.lower.fetch_add(1, SeqCst);
                l.self_queues.fetch_add(1, SeqCst);
            }
        }
        if may_panic && l.panic_req.swap(false, SeqCst) {
            l.panics.fetch_add(1, SeqCst);
            panic!("{DELIBERATE} panic in work item {i}");
        }
    })
}

/// A value whose destructor panics when it runs on a worker thread (G4:
/// "also a panic in a closure's Drop"). Elsewhere (a test thread dropped
/// the last handle) it only counts.
struct Bomb;

impl Bomb {
    fn new() -> Bomb {
        BOMBS_MADE.fetch_add(1, SeqCst);
        Bomb
    }
}

impl Drop for Bomb {
    fn drop(&mut self) {
        BOMBS_DROPPED.fetch_add(1, SeqCst);
        if std::thread::panicking() || !own_thread_name().starts_with("kworker") {
            return;
        }
        if cmwq::current_work().is_some() {
            BOMB_PANICS_IN_ITEM.fetch_add(1, SeqCst);
        } else {
            BOMB_PANICS_OUTSIDE.fetch_add(1, SeqCst);
        }
        panic!("{DELIBERATE} panic in a closure's Drop");
    }
}

enum WqRef {
    Owned(Workqueue),
    System(&'static Workqueue),
}

/// A workqueue of the run and what may be done to it.
struct Wq {
    wq: WqRef,
    /// Upper bound for set_max_active (0: leave it alone).
    max: u32,
    /// apply_attrs target.
    attrs: bool,
}

impl std::ops::Deref for Wq {
    type Target = Workqueue;
    fn deref(&self) -> &Workqueue {
        match &self.wq {
            WqRef::Owned(w) => w,
            WqRef::System(w) => w,
        }
    }
}

fn owned(wq: Result<Workqueue, cmwq::Error>, max: u32, attrs: bool) -> Wq {
    Wq {
        wq: WqRef::Owned(wq.expect("creating a soak workqueue")),
        max,
        attrs,
    }
}

fn system(wq: &'static Workqueue) -> Wq {
    Wq {
        wq: WqRef::System(wq),
        max: 0,
        attrs: false,
    }
}

/// Workqueues that are never drained nor dropped during the run: every
/// operation, timers included.
fn stable_wqs() -> Vec<Wq> {
    let b = Workqueue::builder;
    vec![
        owned(b("soak_bound").flags(WqFlags::PERCPU).build(), 16, false),
        owned(Workqueue::new("soak_spread"), 16, true),
        owned(
            b("soak_throttled1")
                .flags(WqFlags::PERCPU)
                .max_active(1)
                .build(),
            3,
            false,
        ),
        owned(b("soak_throttled3").max_active(3).build(), 3, false),
        owned(b("soak_unbound").flags(WqFlags::UNBOUND).build(), 16, false),
        owned(
            b("soak_unbound_attrs").flags(WqFlags::UNBOUND).build(),
            8,
            true,
        ),
        owned(
            b("soak_unbound_frz")
                .flags(WqFlags::UNBOUND | WqFlags::FREEZABLE)
                .max_active(2)
                .build(),
            4,
            true,
        ),
        owned(
            Workqueue::ordered("soak_ordered", WqFlags::empty()),
            0,
            false,
        ),
        owned(
            Workqueue::ordered("soak_ordered_frz", WqFlags::FREEZABLE),
            0,
            false,
        ),
        owned(
            Workqueue::ordered("soak_ordered_rcl", WqFlags::MEM_RECLAIM),
            0,
            false,
        ),
        owned(
            b("soak_highpri")
                .flags(WqFlags::PERCPU | WqFlags::HIGHPRI)
                .build(),
            8,
            false,
        ),
        owned(
            b("soak_cpu_int")
                .flags(WqFlags::PERCPU | WqFlags::CPU_INTENSIVE)
                .build(),
            8,
            false,
        ),
        owned(
            b("soak_spread_cpu_int")
                .flags(WqFlags::CPU_INTENSIVE)
                .build(),
            8,
            false,
        ),
        owned(
            b("soak_freezable").flags(WqFlags::FREEZABLE).build(),
            8,
            false,
        ),
        owned(
            b("soak_reclaim").flags(WqFlags::MEM_RECLAIM).build(),
            8,
            false,
        ),
        owned(
            b("soak_unbound_hi")
                .flags(WqFlags::UNBOUND | WqFlags::HIGHPRI)
                .build(),
            8,
            true,
        ),
        system(cmwq::system_wq()),
        system(cmwq::system_highpri_wq()),
        system(cmwq::system_long_wq()),
        system(cmwq::system_unbound_wq()),
        system(cmwq::system_freezable_wq()),
        system(cmwq::system_power_efficient_wq()),
        system(cmwq::system_freezable_power_efficient_wq()),
    ]
}

/// Workqueues that threads drain: immediate queues and spawns only.
fn drain_wqs() -> Vec<Wq> {
    let b = Workqueue::builder;
    vec![
        owned(b("soak_drain_bound").max_active(4).build(), 4, false),
        owned(b("soak_drain_unb").flags(WqFlags::UNBOUND).build(), 8, true),
        owned(
            Workqueue::ordered("soak_drain_ord", WqFlags::empty()),
            0,
            false,
        ),
        owned(
            b("soak_drain_frz").flags(WqFlags::FREEZABLE).build(),
            4,
            false,
        ),
        owned(
            b("soak_drain_rcl")
                .flags(WqFlags::MEM_RECLAIM | WqFlags::HIGHPRI)
                .build(),
            4,
            false,
        ),
    ]
}

fn attrs_variants() -> Vec<WqAttrs> {
    let n = cmwq::nr_cpus();
    let mut allowed: Vec<usize> = own_affinity().into_iter().filter(|&c| c < n).collect();
    if allowed.is_empty() {
        allowed.push(0);
    }
    let half = allowed[..allowed.len().div_ceil(2)].to_vec();
    let last = vec![*allowed.last().unwrap()];
    vec![
        WqAttrs::default(),
        WqAttrs {
            nice: 0,
            cpus: Some(half),
            affinity_scope: AffinityScope::Cpu,
            affinity_strict: true,
        },
        WqAttrs {
            nice: 5,
            cpus: Some(last),
            affinity_scope: AffinityScope::System,
            affinity_strict: false,
        },
        WqAttrs {
            nice: -5,
            cpus: None,
            affinity_scope: AffinityScope::Smt,
            affinity_strict: false,
        },
        WqAttrs {
            nice: 10,
            cpus: None,
            affinity_scope: AffinityScope::Numa,
            affinity_strict: true,
        },
        WqAttrs {
            nice: 0,
            cpus: Some(allowed),
            affinity_scope: AffinityScope::Cache,
            affinity_strict: false,
        },
    ]
}

/// One spawned closure (G4: it runs exactly once if its item was pending).
struct SpawnRec {
    ran: Arc<AtomicBool>,
    accepted: bool,
    /// Spawned on a workqueue that never refuses.
    stable: bool,
}

/// Per-thread progress, shown by the watchdog.
#[derive(Default)]
struct Slot {
    op: AtomicUsize,
    ops: AtomicU64,
}

/// Operations of the op threads and their weights.
const OPS: &[(&str, u32)] = &[
    ("queue", 120),
    ("queue_on", 70),
    ("queue_delayed", 100),
    ("mod_delayed", 90),
    ("queue_drain_family", 70),
    ("queue_dyn", 50),
    ("cancel", 60),
    ("cancel_sync", 30),
    ("disable_enable", 30),
    ("disable_sync_hold", 30),
    ("work_flush", 40),
    ("wq_flush", 15),
    ("drain", 12),
    ("set_max_active", 15),
    ("apply_attrs", 20),
    ("spawn_stable", 50),
    ("spawn_other", 40),
    ("arm_item_panic", 8),
    ("bomb_work", 5),
    ("is_congested", 25),
    ("stats", 10),
    ("dyn_misc", 10),
];
/// Names for the other threads' `Slot::op`, after the `OPS` indexes.
const OTHER_OPS: &[&str] = &[
    "idle",
    "freeze",
    "frozen",
    "thaw",
    "create",
    "dyn_queue",
    "dyn_drain",
    "dyn_drop",
    "narrow",
    "widen",
    "exited",
];

fn op_name(i: usize) -> &'static str {
    if i < OPS.len() {
        OPS[i].0
    } else {
        OTHER_OPS.get(i - OPS.len()).copied().unwrap_or("?")
    }
}

fn other_op(name: &str) -> usize {
    OPS.len() + OTHER_OPS.iter().position(|&n| n == name).unwrap()
}

struct Shared {
    items: Vec<Item>,
    stable: Vec<Wq>,
    drain: Vec<Wq>,
    /// The current workqueue of the create/drop thread.
    dyn_slot: Mutex<Option<Arc<Workqueue>>>,
    attrs: Vec<WqAttrs>,
    nr_cpus: usize,
    /// Op threads, then the freezer, the creator and the CPU churner.
    slots: Vec<Slot>,
    phase: Mutex<&'static str>,
    done: AtomicBool,
    start: Instant,
    wq_created: AtomicU64,
    wq_dropped: AtomicU64,
    freeze_cycles: AtomicU64,
    affinity_cycles: AtomicU64,
    apply_calls: AtomicU64,
    drains: AtomicU64,
    congested: AtomicU64,
    spawns: AtomicU64,
    /// Errors from calls that must succeed, and caught library panics.
    errors: Mutex<Vec<String>>,
    /// Details of ledger violations, as seen when they happened.
    details: Mutex<Vec<String>>,
}

impl Shared {
    fn error(&self, e: String) {
        let mut v = lock(&self.errors);
        if v.len() < 50 {
            v.push(e);
        }
    }

    fn detail(&self, e: String) {
        let mut v = lock(&self.details);
        if v.len() < 50 {
            v.push(e);
        }
    }

    fn dyn_wq(&self) -> Option<Arc<Workqueue>> {
        lock(&self.dyn_slot).clone()
    }

    fn set_phase(&self, p: &'static str) {
        *lock(&self.phase) = p;
    }

    fn progress(&self) -> u64 {
        let ops: u64 = self.slots.iter().map(|s| s.ops.load(SeqCst)).sum();
        let execs: u64 = self.items.iter().map(|i| i.l.execs.load(SeqCst)).sum();
        ops + execs + BOMBS_DROPPED.load(SeqCst)
    }

    /// The ledger, item by item (`all`: also the balanced ones).
    fn report(&self, all: bool) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "phase {}, {:.1}s since start",
            lock(&self.phase),
            self.start.elapsed().as_secs_f64()
        );
        for (i, it) in self.items.iter().enumerate() {
            let l = &it.l;
            if !all && !l.bad() {
                continue;
            }
            let _ = writeln!(
                s,
                "item {i:2}{}: execs={} cancels={} lower={} upper={} lost={} extra={} \
                 mod_fresh={} mod_true={} overlaps={} runs_held={} held={} disables_out={} viol_queue_held={} \
                 viol_state_held={} panics={} self_queues={} state={:?}",
                if i < NR_ROAMING { " (roaming)" } else { "" },
                l.execs.load(SeqCst),
                l.cancels.load(SeqCst),
                l.lower(),
                l.upper(),
                l.lost(),
                l.extra(),
                l.mod_fresh.load(SeqCst),
                l.mod_true.load(SeqCst),
                l.overlaps.load(SeqCst),
                l.runs_held.load(SeqCst),
                l.held.load(SeqCst),
                l.disables_out.load(SeqCst),
                l.viol_queue_held.load(SeqCst),
                l.viol_state_held.load(SeqCst),
                l.panics.load(SeqCst),
                l.self_queues.load(SeqCst),
                it.work,
            );
        }
        for (t, sl) in self.slots.iter().enumerate() {
            let who = match t.checked_sub(self.slots.len() - 2) {
                None => format!("op thread {t}"),
                Some(0) => "freezer".to_string(),
                Some(_) => "create/drop thread".to_string(),
            };
            let _ = writeln!(
                s,
                "{who}: {} ops, last op {}",
                sl.ops.load(SeqCst),
                op_name(sl.op.load(SeqCst))
            );
        }
        let _ = writeln!(
            s,
            "bombs made={} dropped={} panics in item={} outside={}; \
             events: work panicked={} drop panicked={}",
            BOMBS_MADE.load(SeqCst),
            BOMBS_DROPPED.load(SeqCst),
            BOMB_PANICS_IN_ITEM.load(SeqCst),
            BOMB_PANICS_OUTSIDE.load(SeqCst),
            events_matching("panicked:"),
            events_matching("panicked in its destructor"),
        );
        let (out, ev) = (
            BOMB_PANICS_OUTSIDE.load(SeqCst),
            events_matching("panicked in its destructor") as u64
                + cmwq::__bench::reports_suppressed().1,
        );
        if out > ev {
            let _ = writeln!(
                s,
                "HINT: {out} closure destructors panicked in library threads but only {ev} \
                 were reported as contained (DropPanicked): the others escaped, and the \
                 worker thread they ran on probably died (its pool then counts a worker that \
                 is gone and may stall)"
            );
        }
        for e in lock(&self.errors).iter() {
            let _ = writeln!(s, "error: {e}");
        }
        for e in lock(&self.details).iter() {
            let _ = writeln!(s, "seen: {e}");
        }
        for e in lock(&UNEXPECTED_PANICS).iter() {
            let _ = writeln!(s, "unexpected panic: {e}");
        }
        s
    }
}

/// Spawn `f` on `wq` and record whether its item was pending (G4, G8).
fn spawn_tracked(
    wq: &Workqueue,
    stable: bool,
    sh: &Shared,
    recs: &mut Vec<SpawnRec>,
    f: impl FnOnce() + Send + 'static,
) {
    let ran = Arc::new(AtomicBool::new(false));
    let r2 = ran.clone();
    let w = wq.spawn(move || {
        r2.store(true, SeqCst);
        f()
    });
    // Pending, then running, then done (ran): checked in that order, an
    // accepted item is seen in one of the three states.
    let accepted = w.is_pending() || w.is_running() || ran.load(SeqCst);
    if stable && !accepted {
        sh.error(format!(
            "spawn on {} (never drained) was refused",
            wq.name()
        ));
    }
    sh.spawns.fetch_add(1, SeqCst);
    recs.push(SpawnRec {
        ran,
        accepted,
        stable,
    });
}

/// Open a disable window (mod_delayed calls that overlap one are not
/// known to have armed a fresh instance).
fn open_window(l: &Ledger) {
    l.disables_out.fetch_add(1, SeqCst);
    l.dis_epoch.fetch_add(1, SeqCst);
}

/// A cancel_sync (a disable_sync and an enable) in progress.
struct Window<'a>(&'a Ledger);

impl<'a> Window<'a> {
    fn new(l: &'a Ledger) -> Self {
        open_window(l);
        Window(l)
    }
}

impl Drop for Window<'_> {
    fn drop(&mut self) {
        self.0.disables_out.fetch_sub(1, SeqCst);
    }
}

/// mod_delayed on a workqueue that never drains, accounted (G13).
fn mod_delayed_counted(l: &Ledger, call: impl FnOnce() -> bool) {
    let e0 = l.dis_epoch.load(SeqCst);
    let quiet0 = l.disables_out.load(SeqCst) == 0;
    let ok = call();
    let quiet = quiet0 && l.dis_epoch.load(SeqCst) == e0;
    if ok {
        l.mod_true.fetch_add(1, SeqCst);
    } else if quiet {
        l.mod_fresh.fetch_add(1, SeqCst);
        l.lower.fetch_add(1, SeqCst);
    } else {
        l.mod_false.fetch_add(1, SeqCst);
    }
}

/// Holds an item disabled: undone on drop, also while unwinding.
struct Disabled<'a> {
    it: &'a Item,
    held: bool,
}

impl<'a> Disabled<'a> {
    fn new(it: &'a Item) -> Self {
        open_window(&it.l);
        Disabled { it, held: false }
    }
    fn hold(&mut self) {
        self.it.l.held.fetch_add(1, SeqCst);
        self.held = true;
    }
}

impl Drop for Disabled<'_> {
    fn drop(&mut self) {
        if self.held {
            self.it.l.held.fetch_sub(1, SeqCst);
        }
        self.it.work.enable();
        self.it.l.disables_out.fetch_sub(1, SeqCst);
    }
}

fn pick_op(seed: &mut u64) -> usize {
    let total: u32 = OPS.iter().map(|o| o.1).sum();
    let mut r = (rng(seed) % total as u64) as u32;
    for (i, o) in OPS.iter().enumerate() {
        if r < o.1 {
            return i;
        }
        r -= o.1;
    }
    unreachable!()
}

fn count_queue(l: &Ledger, ok: bool) {
    if ok {
        l.lower.fetch_add(1, SeqCst);
    }
}

fn do_apply_attrs(sh: &Shared, wq: &Workqueue, r: u64) {
    let a = &sh.attrs[(r % sh.attrs.len() as u64) as usize];
    sh.apply_calls.fetch_add(1, SeqCst);
    if let Err(e) = wq.apply_attrs(a) {
        sh.error(format!("apply_attrs({a:?}) on {}: {e}", wq.name()));
    }
}

fn do_set_max_active(sh: &Shared, wq: &Workqueue, n: u32) {
    if let Err(e) = wq.set_max_active(n) {
        sh.error(format!("set_max_active({n}) on {}: {e}", wq.name()));
    }
}

/// G10/G11: disable_sync, then hold it; nothing may start and every queue
/// attempt fails until the enable.
fn hold(sh: &Shared, i: usize, wq: &Workqueue, seed: &mut u64) {
    let it = &sh.items[i];
    let l = &it.l;
    let mut g = Disabled::new(it);
    if it.work.disable_sync() {
        l.cancels.fetch_add(1, SeqCst);
    }
    g.hold();
    let (pending, running) = (it.work.is_pending(), it.work.is_running());
    // G10/G11: neither pending nor running once disable_sync returned, even
    // while other threads disable the same item (disable raises its count
    // without ever showing the item pending).
    if running || pending {
        l.viol_state_held.fetch_add(1, SeqCst);
        let state = format!("{:?}", it.work);
        std::thread::sleep(Duration::from_millis(1));
        sh.detail(format!(
            "item {i} right after disable_sync returned on a thread: pending={pending} \
             running={running} {state}; 1 ms later {:?}: a G10/G11 violation",
            it.work,
        ));
    }
    let r = rng(seed);
    match r % 3 {
        0 => {
            if wq.queue(&it.work) {
                l.viol_queue_held.fetch_add(1, SeqCst);
                l.lower.fetch_add(1, SeqCst);
            }
        }
        1 => {
            if wq.queue_delayed(&it.work, small_delay(r >> 2)) {
                l.viol_queue_held.fetch_add(1, SeqCst);
                l.lower.fetch_add(1, SeqCst);
            }
        }
        _ => {
            if wq.mod_delayed(&it.work, small_delay(r >> 2)) {
                // It was not pending: true is a lie.
                l.viol_queue_held.fetch_add(1, SeqCst);
            } else {
                l.mod_false.fetch_add(1, SeqCst);
            }
        }
    }
    match (r >> 16) % 4 {
        0 => std::thread::sleep(Duration::from_micros((r >> 20) % 300)),
        1 => std::thread::yield_now(),
        _ => {}
    }
    drop(g);
}

fn do_op(sh: &Shared, t: usize, seed: &mut u64, recs: &mut Vec<SpawnRec>) {
    let op = pick_op(seed);
    sh.slots[t].op.store(op, SeqCst);
    let cpu = below(seed, sh.nr_cpus);
    let any_i = below(seed, NR_ITEMS);
    let any = &sh.items[any_i];
    let roam = &sh.items[below(seed, NR_ROAMING)];
    let swq = &sh.stable[below(seed, sh.stable.len())];
    let dwq = &sh.drain[below(seed, sh.drain.len())];
    let r = rng(seed);
    match OPS[op].0 {
        "queue" => count_queue(&any.l, swq.queue(&any.work)),
        "queue_on" => count_queue(&any.l, swq.queue_on(cpu, &any.work)),
        "queue_delayed" => {
            let d = small_delay(r);
            let ok = if r & 1 == 0 {
                swq.queue_delayed(&any.work, d)
            } else {
                swq.queue_delayed_on(cpu, &any.work, d)
            };
            count_queue(&any.l, ok);
        }
        "mod_delayed" => {
            let d = small_delay(r);
            mod_delayed_counted(&any.l, || {
                if r & 1 == 0 {
                    swq.mod_delayed(&any.work, d)
                } else {
                    swq.mod_delayed_on(cpu, &any.work, d)
                }
            });
        }
        "queue_drain_family" => {
            let ok = if r & 1 == 0 {
                dwq.queue(&roam.work)
            } else {
                dwq.queue_on(cpu, &roam.work)
            };
            count_queue(&roam.l, ok);
        }
        "queue_dyn" => {
            if let Some(wq) = sh.dyn_wq() {
                let ok = if r & 1 == 0 {
                    wq.queue(&roam.work)
                } else {
                    wq.queue_on(cpu, &roam.work)
                };
                count_queue(&roam.l, ok);
                // This may be the last handle: then the drop (a drain, G25)
                // happens here.
                drop(wq);
            }
        }
        "cancel" => {
            if any.work.cancel() {
                any.l.cancels.fetch_add(1, SeqCst);
            }
        }
        "cancel_sync" => {
            let _w = Window::new(&any.l);
            if any.work.cancel_sync() {
                any.l.cancels.fetch_add(1, SeqCst);
            }
        }
        "disable_enable" => {
            let g = Disabled::new(any);
            if any.work.disable() {
                any.l.cancels.fetch_add(1, SeqCst);
            }
            if r & 1 == 0 {
                std::thread::yield_now();
            }
            drop(g);
        }
        "disable_sync_hold" => hold(sh, any_i, swq, seed),
        "work_flush" => {
            any.work.flush();
        }
        "wq_flush" => {
            if r % 3 == 0 {
                dwq.flush()
            } else {
                swq.flush()
            }
        }
        "drain" => {
            sh.drains.fetch_add(1, SeqCst);
            dwq.drain();
        }
        "set_max_active" => {
            let cands: Vec<&Wq> = sh
                .stable
                .iter()
                .chain(sh.drain.iter())
                .filter(|w| w.max > 0)
                .collect();
            let w = cands[(r % cands.len() as u64) as usize];
            do_set_max_active(sh, w, 1 + ((r >> 8) % w.max as u64) as u32);
        }
        "apply_attrs" => {
            let cands: Vec<&Wq> = sh
                .stable
                .iter()
                .chain(sh.drain.iter())
                .filter(|w| w.attrs)
                .collect();
            let w = cands[(r % cands.len() as u64) as usize];
            do_apply_attrs(sh, w, r >> 8);
        }
        "spawn_stable" => match r % 20 {
            0 | 1 => spawn_tracked(swq, true, sh, recs, || {
                SPAWN_PANICS.fetch_add(1, SeqCst);
                panic!("{DELIBERATE} panic in a spawned closure");
            }),
            2 => {
                let b = Bomb::new();
                // The closure owns the bomb; it is dropped at the end of
                // the call, inside the item.
                spawn_tracked(swq, true, sh, recs, move || {
                    let _b = b;
                });
            }
            _ => spawn_tracked(swq, true, sh, recs, || {}),
        },
        "spawn_other" => {
            if r & 1 == 0 {
                spawn_tracked(dwq, false, sh, recs, || {});
            } else if let Some(wq) = sh.dyn_wq() {
                spawn_tracked(&wq, false, sh, recs, || {});
            }
        }
        "arm_item_panic" => {
            let i = NR_ROAMING + (r % (NR_ITEMS - NR_ROAMING) as u64) as usize;
            sh.items[i].l.panic_req.store(true, SeqCst);
        }
        "bomb_work" => {
            // The worker usually drops the last handle: the closure's
            // destructor then panics in a library thread (G4, G5).
            let b = Bomb::new();
            let w = Work::named("soak_bomb", move |_| {
                let _keep = &b;
            });
            swq.queue(&w);
            drop(w);
        }
        "is_congested" => {
            let c = match r % 4 {
                0 => dwq.is_congested(cpu),
                1 => sh.dyn_wq().is_some_and(|w| w.is_congested(cpu)),
                _ => swq.is_congested(cpu),
            };
            if c {
                sh.congested.fetch_add(1, SeqCst);
            }
        }
        "stats" => {
            let st = if r & 1 == 0 { swq.stats() } else { dwq.stats() };
            std::hint::black_box(st);
        }
        "dyn_misc" => {
            if let Some(wq) = sh.dyn_wq() {
                match r % 5 {
                    0 => wq.flush(),
                    1 => {
                        sh.drains.fetch_add(1, SeqCst);
                        wq.drain()
                    }
                    2 if !wq.is_ordered() => do_set_max_active(sh, &wq, 1 + ((r >> 8) % 4) as u32),
                    3 if wq.flags().contains(WqFlags::UNBOUND) && !wq.is_ordered() => {
                        do_apply_attrs(sh, &wq, r >> 8)
                    }
                    _ => {
                        std::hint::black_box(wq.stats());
                    }
                }
            }
        }
        other => unreachable!("{other}"),
    }
}

fn op_thread(sh: Arc<Shared>, t: usize, mut seed: u64) -> Vec<SpawnRec> {
    let mut recs = Vec::new();
    while !STOP.load(SeqCst) {
        let r = catch_unwind(AssertUnwindSafe(|| do_op(&sh, t, &mut seed, &mut recs)));
        if let Err(p) = r {
            let op = op_name(sh.slots[t].op.load(SeqCst));
            sh.error(format!(
                "op thread {t}: the library panicked in {op}: {}",
                panic_text(&*p)
            ));
        }
        sh.slots[t].ops.fetch_add(1, SeqCst);
    }
    sh.slots[t].op.store(other_op("exited"), SeqCst);
    recs
}

/// freeze/thaw cycles (G24), never from inside an item.
fn freezer(sh: Arc<Shared>, t: usize, mut seed: u64) {
    let slot = &sh.slots[t];
    while !STOP.load(SeqCst) {
        slot.op.store(other_op("idle"), SeqCst);
        std::thread::sleep(Duration::from_micros(1000 + (rng(&mut seed) % 5000)));
        slot.op.store(other_op("freeze"), SeqCst);
        cmwq::freeze();
        slot.op.store(other_op("frozen"), SeqCst);
        std::thread::sleep(Duration::from_micros(rng(&mut seed) % 2000));
        slot.op.store(other_op("thaw"), SeqCst);
        cmwq::thaw();
        sh.freeze_cycles.fetch_add(1, SeqCst);
        slot.ops.fetch_add(1, SeqCst);
    }
    slot.op.store(other_op("exited"), SeqCst);
}

/// CPUs that come and go (G35): the process's affinity narrowed to a
/// random subset of its CPUs and widened back, every thread's as `taskset
/// -a -p` sets them from outside, while everything else runs. (Taking CPUs
/// offline is `hotplug.rs`'s: it needs root and changes the machine.)
fn cpu_churn(sh: Arc<Shared>, t: usize, mut seed: u64) {
    let slot = &sh.slots[t];
    let all = own_affinity();
    if all.len() >= 2 {
        // Every thread gets the whole mask back, also on a panic.
        let _restore = Narrowed::to(&all, &all);
        while !STOP.load(SeqCst) {
            slot.op.store(other_op("idle"), SeqCst);
            std::thread::sleep(Duration::from_micros(5000 + (rng(&mut seed) % 15000)));
            let n = 1 + below(&mut seed, all.len() - 1);
            let first = below(&mut seed, all.len());
            let some: Vec<usize> = (0..n).map(|k| all[(first + k) % all.len()]).collect();
            slot.op.store(other_op("narrow"), SeqCst);
            set_process_affinity(&some);
            std::thread::sleep(Duration::from_micros(2000 + (rng(&mut seed) % 8000)));
            slot.op.store(other_op("widen"), SeqCst);
            set_process_affinity(&all);
            sh.affinity_cycles.fetch_add(1, SeqCst);
            slot.ops.fetch_add(1, SeqCst);
        }
    }
    slot.op.store(other_op("exited"), SeqCst);
}

fn dyn_queue_some(sh: &Shared, wq: &Workqueue, seed: &mut u64, recs: &mut Vec<SpawnRec>) {
    for _ in 0..1 + below(seed, 4) {
        let it = &sh.items[below(seed, NR_ROAMING)];
        let ok = if rng(seed) & 1 == 0 {
            wq.queue(&it.work)
        } else {
            wq.queue_on(below(seed, sh.nr_cpus), &it.work)
        };
        count_queue(&it.l, ok);
        if rng(seed) % 3 == 0 {
            spawn_tracked(wq, false, sh, recs, || {});
        }
    }
}

/// Creates and drops workqueues continuously (G25); other threads queue on
/// the current one meanwhile and may hold the last handle.
fn creator(sh: Arc<Shared>, t: usize, mut seed: u64) -> Vec<SpawnRec> {
    let mut recs = Vec::new();
    let slot = &sh.slots[t];
    let mut n = 0u64;
    while !STOP.load(SeqCst) {
        n += 1;
        slot.op.store(other_op("create"), SeqCst);
        let name = format!("soak_dyn{n}");
        let b = Workqueue::builder(&name);
        let r = rng(&mut seed);
        let wq = match r % 9 {
            0 => Workqueue::new(&name),
            1 => b.max_active(1 + ((r >> 8) % 3) as u32).build(),
            2 => b.flags(WqFlags::UNBOUND).build(),
            3 => b
                .flags(WqFlags::UNBOUND)
                .attrs(sh.attrs[((r >> 8) % sh.attrs.len() as u64) as usize].clone())
                .build(),
            4 => Workqueue::ordered(&name, WqFlags::empty()),
            5 => Workqueue::ordered(&name, WqFlags::FREEZABLE | WqFlags::MEM_RECLAIM),
            6 => b.flags(WqFlags::HIGHPRI).build(),
            7 => b.flags(WqFlags::PERCPU | WqFlags::FREEZABLE).build(),
            _ => b
                .flags(WqFlags::MEM_RECLAIM | WqFlags::CPU_INTENSIVE)
                .build(),
        };
        let wq = match wq {
            Ok(w) => Arc::new(w),
            Err(e) => {
                sh.error(format!("creating {name}: {e}"));
                continue;
            }
        };
        sh.wq_created.fetch_add(1, SeqCst);
        let old = lock(&sh.dyn_slot).replace(wq.clone());
        drop(old);
        slot.op.store(other_op("dyn_queue"), SeqCst);
        dyn_queue_some(&sh, &wq, &mut seed, &mut recs);
        std::thread::sleep(Duration::from_micros(rng(&mut seed) % 3000));
        if rng(&mut seed) % 4 == 0 {
            slot.op.store(other_op("dyn_drain"), SeqCst);
            sh.drains.fetch_add(1, SeqCst);
            wq.drain();
        }
        slot.op.store(other_op("dyn_queue"), SeqCst);
        dyn_queue_some(&sh, &wq, &mut seed, &mut recs);
        if rng(&mut seed) % 3 == 0 {
            let old = lock(&sh.dyn_slot).take();
            drop(old);
        }
        slot.op.store(other_op("dyn_drop"), SeqCst);
        match rng(&mut seed) % 4 {
            // Dropped from another workqueue's item.
            0 => spawn_tracked(cmwq::system_unbound_wq(), true, &sh, &mut recs, move || {
                drop(wq)
            }),
            // Dropped from one of its own items (G25), unless refused.
            1 => {
                let w2 = wq.clone();
                spawn_tracked(&wq, false, &sh, &mut recs, move || drop(w2));
                drop(wq);
            }
            _ => drop(wq),
        }
        sh.wq_dropped.fetch_add(1, SeqCst);
        slot.ops.fetch_add(1, SeqCst);
    }
    let old = lock(&sh.dyn_slot).take();
    drop(old);
    slot.op.store(other_op("exited"), SeqCst);
    recs
}

fn watchdog(sh: Arc<Shared>, limit: Duration) {
    let mut last = (sh.progress(), Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if sh.done.load(SeqCst) {
            return;
        }
        let p = sh.progress();
        if p != last.0 {
            last = (p, Instant::now());
        }
        let why = if sh.start.elapsed() > limit {
            format!("the soak did not finish within {limit:?}")
        } else if last.1.elapsed() > STALL {
            format!("no progress (operations, executions) for {STALL:?}: a pool is stuck or a call hangs")
        } else {
            continue;
        };
        eprintln!("\nsoak WATCHDOG: {why}; aborting.\n{}", sh.report(true));
        // dump() takes pool locks: do not let a stuck one hang the abort.
        std::thread::spawn(|| eprintln!("{}", cmwq::dump()));
        std::thread::sleep(Duration::from_secs(3));
        std::process::abort();
    }
}

#[test]
fn g4_soak_ledger_balances() {
    let _s = serial();
    setup_log();
    install_panic_hook();
    let secs = env_u64("CMWQ_SOAK_SECS", 5);
    let nthreads = env_u64("CMWQ_SOAK_THREADS", 8).max(1) as usize;
    let clock_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let seed = env_u64("CMWQ_SOAK_SEED", clock_seed);
    println!(
        "soak: seed={seed:#x} secs={secs} threads={nthreads} cpus={} detection={:?} \
         (set CMWQ_SOAK_SEED/CMWQ_SOAK_SECS/CMWQ_SOAK_THREADS to repeat)",
        cmwq::nr_cpus(),
        cmwq::detection()
    );

    let items = (0..NR_ITEMS)
        .map(|i| {
            let l = Arc::new(Ledger::default());
            Item {
                work: make_item(i, l.clone()),
                l,
            }
        })
        .collect();
    let sh = Arc::new(Shared {
        items,
        stable: stable_wqs(),
        drain: drain_wqs(),
        dyn_slot: Mutex::new(None),
        attrs: attrs_variants(),
        nr_cpus: cmwq::nr_cpus(),
        slots: (0..nthreads + 3).map(|_| Slot::default()).collect(),
        phase: Mutex::new("run"),
        done: AtomicBool::new(false),
        start: Instant::now(),
        wq_created: AtomicU64::new(0),
        wq_dropped: AtomicU64::new(0),
        freeze_cycles: AtomicU64::new(0),
        affinity_cycles: AtomicU64::new(0),
        apply_calls: AtomicU64::new(0),
        drains: AtomicU64::new(0),
        congested: AtomicU64::new(0),
        spawns: AtomicU64::new(0),
        errors: Mutex::new(Vec::new()),
        details: Mutex::new(Vec::new()),
    });
    let dur = Duration::from_secs(secs);
    let wd = {
        let sh = sh.clone();
        std::thread::Builder::new()
            .name("soak-watchdog".into())
            .spawn(move || watchdog(sh, dur + GRACE))
            .unwrap()
    };
    let seed_of = |t: usize| mix(seed, t as u64 + 1) | 1;
    let ops_threads: Vec<_> = (0..nthreads)
        .map(|t| {
            let sh = sh.clone();
            let s = seed_of(t);
            std::thread::Builder::new()
                .name(format!("soak-op{t}"))
                .spawn(move || op_thread(sh, t, s))
                .unwrap()
        })
        .collect();
    let frz = {
        let sh = sh.clone();
        let s = seed_of(nthreads);
        std::thread::Builder::new()
            .name("soak-freezer".into())
            .spawn(move || freezer(sh, nthreads, s))
            .unwrap()
    };
    let churn = {
        let sh = sh.clone();
        let s = seed_of(nthreads + 2);
        std::thread::Builder::new()
            .name("soak-cpus".into())
            .spawn(move || cpu_churn(sh, nthreads + 2, s))
            .unwrap()
    };
    let crt = {
        let sh = sh.clone();
        let s = seed_of(nthreads + 1);
        std::thread::Builder::new()
            .name("soak-creator".into())
            .spawn(move || creator(sh, nthreads + 1, s))
            .unwrap()
    };

    std::thread::sleep(dur);

    // Stop everything.
    sh.set_phase("join");
    STOP.store(true, SeqCst);
    let mut recs = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for (t, h) in ops_threads.into_iter().enumerate() {
        match h.join() {
            Ok(r) => recs.extend(r),
            Err(p) => failures.push(format!("op thread {t} panicked: {}", panic_text(&*p))),
        }
    }
    if let Err(p) = churn.join() {
        sh.error(format!("the CPU churner panicked: {}", panic_text(&*p)));
    }
    if let Err(p) = frz.join() {
        failures.push(format!("freezer panicked: {}", panic_text(&*p)));
    }
    match crt.join() {
        Ok(r) => recs.extend(r),
        Err(p) => failures.push(format!("create/drop thread panicked: {}", panic_text(&*p))),
    }
    let run_time = sh.start.elapsed();

    // Quiesce: enable what is still disabled, thaw, fire armed timers
    // (Work::flush does), flush every workqueue, until all is idle.
    sh.set_phase("quiesce");
    for (i, it) in sh.items.iter().enumerate() {
        let out = it.l.disables_out.swap(0, SeqCst);
        if out != 0 || it.l.held.load(SeqCst) != 0 {
            failures.push(format!(
                "item {i}: {out} disables and {} holds outstanding after the threads stopped",
                it.l.held.load(SeqCst)
            ));
            it.l.held.store(0, SeqCst);
            for _ in 0..out.max(0) {
                it.work.enable();
            }
        }
    }
    cmwq::thaw();
    let mut rounds = 0;
    loop {
        rounds += 1;
        for it in &sh.items {
            it.work.flush();
        }
        for wq in sh.stable.iter().chain(sh.drain.iter()) {
            wq.flush();
        }
        let items_idle = sh
            .items
            .iter()
            .all(|it| !it.work.is_pending() && !it.work.is_running());
        let spawns_done = recs.iter().all(|r| !r.accepted || r.ran.load(SeqCst));
        let bombs_done = BOMBS_DROPPED.load(SeqCst) == BOMBS_MADE.load(SeqCst);
        if (items_idle && spawns_done && bombs_done) || rounds >= 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    // Check.
    sh.set_phase("check");
    let sum = |f: &dyn Fn(&Ledger) -> u64| -> u64 { sh.items.iter().map(|i| f(&i.l)).sum() };
    let execs = sum(&|l| l.execs.load(SeqCst));
    let cancels = sum(&|l| l.cancels.load(SeqCst));
    let lower = sum(&|l| l.lower());
    let upper = sum(&|l| l.upper());
    let lost = sum(&|l| l.lost());
    let extra = sum(&|l| l.extra());
    let overlaps = sum(&|l| l.overlaps.load(SeqCst));
    let runs_held = sum(&|l| l.runs_held.load(SeqCst));
    let viol_q = sum(&|l| l.viol_queue_held.load(SeqCst));
    let viol_s = sum(&|l| l.viol_state_held.load(SeqCst));
    let item_panics = sum(&|l| l.panics.load(SeqCst));
    let self_queues = sum(&|l| l.self_queues.load(SeqCst));
    let mod_fresh = sum(&|l| l.mod_fresh.load(SeqCst));
    let ops: u64 = sh.slots.iter().map(|s| s.ops.load(SeqCst)).sum();
    let spawn_panics = SPAWN_PANICS.load(SeqCst);
    let bomb_in = BOMB_PANICS_IN_ITEM.load(SeqCst);
    let bomb_out = BOMB_PANICS_OUTSIDE.load(SeqCst);
    let spawns_accepted = recs.iter().filter(|r| r.accepted).count();
    let spawns_lost = recs
        .iter()
        .filter(|r| r.accepted && !r.ran.load(SeqCst))
        .count();
    let spawns_refused_ran = recs
        .iter()
        .filter(|r| !r.accepted && r.ran.load(SeqCst))
        .count();
    let spawns_stable_refused = recs.iter().filter(|r| r.stable && !r.accepted).count();
    // Every deliberate panic inside an item happened on a stable workqueue.
    let panics_caused = item_panics + spawn_panics + bomb_in;
    let stats_panics: u64 = sh.stable.iter().map(|w| w.stats().panics).sum();
    // Reports beyond the rate limit are counted, not delivered.
    let ev_drop_panicked = events_matching("panicked in its destructor") as u64
        + cmwq::__bench::reports_suppressed().1;
    let ev_delayed_dropped = events_matching("while it was draining: dropped");
    let ev_timers_cancelled = events_matching("armed delayed item(s); cancelled");

    println!(
        "soak summary: secs={:.1} threads={nthreads} seed={seed:#x} ops={ops} execs={execs} \
         cancels={cancels} lower={lower} upper={upper} (mod_fresh={mod_fresh}) lost={lost} extra={extra} \
         overlaps={overlaps} runs_while_held={runs_held} self_queues={self_queues} \
         spawns={}/{spawns_accepted}accepted/{spawns_lost}lost wq_created={} wq_dropped={} \
         freeze_cycles={} affinity_cycles={} drains={} apply_attrs={} congested={} panics={} (item={item_panics} \
         spawn={spawn_panics} drop_in_item={bomb_in} drop_by_library={bomb_out}) \
         stats_panics={stats_panics} quiesce_rounds={rounds}",
        run_time.as_secs_f64(),
        sh.spawns.load(SeqCst),
        sh.wq_created.load(SeqCst),
        sh.wq_dropped.load(SeqCst),
        sh.freeze_cycles.load(SeqCst),
        sh.affinity_cycles.load(SeqCst),
        sh.drains.load(SeqCst),
        sh.apply_calls.load(SeqCst),
        sh.congested.load(SeqCst),
        panics_caused + bomb_out,
    );

    for (i, it) in sh.items.iter().enumerate() {
        let l = &it.l;
        if l.lower() > l.done() || l.done() > l.upper() {
            failures.push(format!(
                "G4 item {i}: executions + cancels = {} + {} outside [lower {}, upper {}]",
                l.execs.load(SeqCst),
                l.cancels.load(SeqCst),
                l.lower(),
                l.upper()
            ));
        }
        if it.work.is_pending() || it.work.is_running() {
            failures.push(format!(
                "G6 item {i} still pending/running after the final flushes: {:?}",
                it.work
            ));
        }
    }
    if !(lower <= execs + cancels && execs + cancels <= upper) {
        failures.push(format!(
            "G4 overall: executions + cancels = {} outside [lower {lower}, upper {upper}] \
             (lost {lost}, extra {extra})",
            execs + cancels
        ));
    }
    if overlaps > 0 {
        failures.push(format!(
            "G3: {overlaps} executions overlapped another of the same item"
        ));
    }
    if runs_held > 0 {
        failures.push(format!(
            "G10/G11: {runs_held} executions started while the item was held disabled"
        ));
    }
    if viol_q > 0 {
        failures.push(format!(
            "G11: {viol_q} queue/queue_delayed/mod_delayed calls returned true on a disabled item"
        ));
    }
    if viol_s > 0 {
        failures.push(format!(
            "G10/G11: {viol_s} times the item was pending or running right after disable_sync"
        ));
    }
    if spawns_lost > 0 {
        failures.push(format!(
            "G4: {spawns_lost} spawned closures whose item was pending never ran"
        ));
    }
    if spawns_refused_ran > 0 {
        failures.push(format!(
            "G8: {spawns_refused_ran} spawned closures whose item was not pending ran anyway"
        ));
    }
    if spawns_stable_refused > 0 {
        failures.push(format!(
            "{spawns_stable_refused} spawns on never-drained workqueues were refused"
        ));
    }
    if stats_panics < panics_caused {
        failures.push(format!(
            "G5/G29: stats().panics of the workqueues sum to {stats_panics}, fewer than the \
             {panics_caused} panics caused inside their items"
        ));
    }
    if BOMBS_DROPPED.load(SeqCst) != BOMBS_MADE.load(SeqCst) {
        failures.push(format!(
            "{} of {} closures with a panicking Drop were never dropped (leaked or stuck)",
            BOMBS_MADE.load(SeqCst) - BOMBS_DROPPED.load(SeqCst),
            BOMBS_MADE.load(SeqCst)
        ));
    }
    if ev_drop_panicked < bomb_out {
        failures.push(format!(
            "G4/G5: {bomb_out} closure destructors panicked in library threads but only \
             {ev_drop_panicked} were reported (DropPanicked)"
        ));
    }
    if ev_delayed_dropped > 0 || ev_timers_cancelled > 0 {
        failures.push(format!(
            "unexpected G4 exceptions: {ev_delayed_dropped} timers fired into a draining \
             workqueue, {ev_timers_cancelled} destroyed with armed timers (none are armed there)"
        ));
    }
    for wq in sh.stable.iter().chain(sh.drain.iter()) {
        let st = wq.stats();
        if st.in_flight != 0 {
            failures.push(format!(
                "G29: {} has {} in flight after the final flushes",
                wq.name(),
                st.in_flight
            ));
        }
    }
    for e in lock(&sh.errors).iter() {
        failures.push(format!("error: {e}"));
    }
    for e in lock(&UNEXPECTED_PANICS).iter() {
        failures.push(format!("unexpected panic: {e}"));
    }

    if !failures.is_empty() {
        eprintln!(
            "soak ledger:\n{}\nsoak failures:\n  {}",
            sh.report(true),
            failures.join("\n  ")
        );
    }
    sh.done.store(true, SeqCst);
    wd.join().unwrap();
    // Dropping the last handle destroys the owned workqueues (G25), under
    // a watchdog of its own.
    let torn_down = Arc::new(AtomicBool::new(false));
    let td = {
        let torn_down = torn_down.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            while !torn_down.load(SeqCst) {
                if t.elapsed() > STALL {
                    eprintln!("soak WATCHDOG: dropping the workqueues hangs; aborting");
                    std::process::abort();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    drop(sh);
    torn_down.store(true, SeqCst);
    td.join().unwrap();
    STOP.store(false, SeqCst);
    assert!(
        failures.is_empty(),
        "soak failed (seed {seed:#x}; ledger above):\n  {}",
        failures.join("\n  ")
    );
    assert!(ops > 1000, "only {ops} operations in {run_time:?}");
}
