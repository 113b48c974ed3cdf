//! Model-based tests (proptest).
//!
//! 1. `g1_..._model_matches_reference`: random sequences of operations on
//!    three work items run against the library and against a small
//!    reference model of the work item state machine (idle / queued /
//!    armed with a deadline, disable count, execution count). Every return
//!    value, every item's `is_pending()` and `is_running()`, and every
//!    execution count is compared after every step.
//!
//!    Determinism: the process uses the manual clock (G31), so timers fire
//!    only on `clock::advance`, and the items are queued on a FREEZABLE
//!    workqueue that stays frozen (G24) during the sequence, so queued
//!    items stay pending until a `Run` step thaws, flushes and freezes
//!    again.
//!
//! 2. `g2_..._two_threads_ledger`: two threads queue, cancel, disable and
//!    flush one item on two workqueues with real (not frozen) workers; the
//!    item requeues itself from its own function too. Its function must
//!    never overlap itself (G3) and the number of executions must equal
//!    successful queues minus successful cancels (G2, G4).
//!
//! `PROPTEST_CASES` overrides the (small) default number of cases.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Once, OnceLock};
use std::time::{Duration, Instant};

use cmwq::{clock, Work, Workqueue, WqFlags};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// The log hook (to see unbalanced `enable`s reported) and the manual
/// clock, before any other use of cmwq in this process.
fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        common::setup_log();
        clock::use_manual().expect("the manual clock, before first use");
    });
}

/// Cases per test: `PROPTEST_CASES` if set (proptest 1.12's macro reads it
/// too; reading it here keeps that true for older 1.x), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn config(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default_cases),
        // Never write `proptest-regressions/` into the source tree.
        failure_persistence: None,
        // A failing case of the concurrent test may not reproduce on every
        // run; do not let shrinking go on for ever.
        max_shrink_time: 120_000,
        ..ProptestConfig::default()
    }
}

fn ms(d: u64) -> Duration {
    Duration::from_millis(d)
}

// ---------------------------------------------------------------------------
// 1. The reference model, single-threaded, frozen workqueue.
// ---------------------------------------------------------------------------

/// Number of work items per case.
const N: usize = 3;
/// Their names (reports of misuse name the item).
const NAMES: [&str; N] = ["model-item-0", "model-item-1", "model-item-2"];
/// Longest delay generated (ms).
const MAX_DELAY: u64 = 50;

#[derive(Clone, Copy, Debug)]
enum Op {
    /// `wq.queue(item)`
    Queue(usize),
    /// `wq.queue_delayed(item, ms)`
    QueueDelayed(usize, u64),
    /// `wq.mod_delayed(item, ms)`
    ModDelayed(usize, u64),
    /// `item.cancel()`
    Cancel(usize),
    /// `item.disable()`
    Disable(usize),
    /// `item.enable()`, balanced or not
    Enable(usize),
    /// `clock::advance(ms)`
    Advance(u64),
    /// Advance to item i's deadline plus `off` ms (-1, 0, 1), where the
    /// boundary is; by 1 ms if it is not armed. Resolved with the model
    /// into an `Advance` before it runs.
    AdvanceNear(usize, i64),
    /// thaw, `wq.flush()`, freeze: every queued item runs once
    Run,
    /// `item.flush()` (on another thread, thawed once it waits), then as
    /// `Run`
    FlushItem(usize),
}

fn delay() -> impl Strategy<Value = u64> {
    prop_oneof![1 => Just(0u64), 5 => 1..=MAX_DELAY]
}

fn op() -> impl Strategy<Value = Op> {
    let item = || 0..N;
    prop_oneof![
        3 => item().prop_map(Op::Queue),
        3 => (item(), delay()).prop_map(|(i, d)| Op::QueueDelayed(i, d)),
        4 => (item(), delay()).prop_map(|(i, d)| Op::ModDelayed(i, d)),
        2 => item().prop_map(Op::Cancel),
        1 => item().prop_map(Op::Disable),
        1 => item().prop_map(Op::Enable),
        2 => (0..=60u64).prop_map(Op::Advance),
        2 => (item(), -1..=1i64).prop_map(|(i, off)| Op::AdvanceNear(i, off)),
        2 => Just(Op::Run),
        1 => item().prop_map(Op::FlushItem),
    ]
}

/// Where a model item is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
enum Pend {
    #[default]
    Idle,
    /// Queued, not started (the workqueue is frozen).
    Queued,
    /// Timer armed, due at this time (ms since the case started).
    Armed(u64),
}

#[derive(Clone, Copy, Debug, Default)]
struct MItem {
    pend: Pend,
    disabled: u32,
    runs: usize,
}

impl MItem {
    fn pending(&self) -> bool {
        self.pend != Pend::Idle
    }
}

#[derive(Debug, Default)]
struct Model {
    /// ms since the case started.
    now: u64,
    items: [MItem; N],
}

impl Model {
    /// G1, G11, G12: queue (d == 0) or arm (d > 0) unless pending or
    /// disabled.
    fn queue(&mut self, i: usize, d: u64) -> bool {
        let now = self.now;
        let it = &mut self.items[i];
        if it.disabled > 0 || it.pending() {
            return false;
        }
        it.pend = if d == 0 {
            Pend::Queued
        } else {
            Pend::Armed(now + d)
        };
        true
    }

    /// G9.
    fn cancel(&mut self, i: usize) -> bool {
        let it = &mut self.items[i];
        let was = it.pending();
        it.pend = Pend::Idle;
        was
    }

    /// Every queued item runs once (armed ones stay armed).
    fn run(&mut self) {
        for it in &mut self.items {
            if it.pend == Pend::Queued {
                it.pend = Pend::Idle;
                it.runs += 1;
            }
        }
    }

    /// `op` with `AdvanceNear` made concrete.
    fn resolve(&self, op: Op) -> Op {
        match op {
            Op::AdvanceNear(i, off) => Op::Advance(match self.items[i].pend {
                Pend::Armed(t) => (t as i64 - self.now as i64 + off).max(0) as u64,
                _ => 1,
            }),
            op => op,
        }
    }

    /// The expected return value (`None`: the call returns nothing).
    fn step(&mut self, op: Op) -> Option<bool> {
        match op {
            Op::Queue(i) => Some(self.queue(i, 0)),
            Op::QueueDelayed(i, d) => Some(self.queue(i, d)),
            Op::ModDelayed(i, d) => {
                // G13: pending (armed or queued): re-armed to d from now,
                // true; idle: armed, false; d == 0: queued now; disabled:
                // false, nothing changes (a disabled item is never pending
                // here: disable cancels, and queueing is refused).
                let now = self.now;
                let it = &mut self.items[i];
                if it.disabled > 0 {
                    return Some(false);
                }
                let was = it.pending();
                it.pend = if d == 0 {
                    Pend::Queued
                } else {
                    Pend::Armed(now + d)
                };
                Some(was)
            }
            Op::Cancel(i) => Some(self.cancel(i)),
            Op::Disable(i) => {
                self.items[i].disabled += 1;
                Some(self.cancel(i))
            }
            Op::Enable(i) => {
                let it = &mut self.items[i];
                Some(match it.disabled {
                    0 => false, // unbalanced: reported, count stays 0
                    n => {
                        it.disabled = n - 1;
                        n == 1
                    }
                })
            }
            Op::AdvanceNear(..) => unreachable!("resolved first"),
            Op::Advance(d) => {
                // G12, G31: an item armed for d fires when the clock has
                // moved by at least d (at exactly its deadline, as
                // `run_expired` compares `when_ns > now_ns`); while frozen
                // it becomes queued, not started.
                self.now += d;
                let now = self.now;
                for it in &mut self.items {
                    if let Pend::Armed(t) = it.pend {
                        if t <= now {
                            it.pend = Pend::Queued;
                        }
                    }
                }
                None
            }
            Op::Run => {
                self.run();
                None
            }
            Op::FlushItem(i) => {
                // G6: waits (true) iff pending or running (nothing runs
                // while frozen); an armed timer fires now.
                let it = &mut self.items[i];
                let was = it.pending();
                if let Pend::Armed(_) = it.pend {
                    it.pend = Pend::Queued;
                }
                self.run();
                Some(was)
            }
        }
    }
}

/// The freezable workqueue of the model test (bound, default max_active).
fn model_wq() -> &'static Workqueue {
    static WQ: OnceLock<Workqueue> = OnceLock::new();
    WQ.get_or_init(|| {
        Workqueue::builder("model_frozen")
            .flags(WqFlags::FREEZABLE)
            .build()
            .unwrap()
    })
}

/// Whether a thread is parked in `flush`/`cancel_sync` on `w`: the WAITERS
/// flag, the sixth flag of the state shown by `Debug` (`state: PQ---W`).
fn has_waiters(w: &Work) -> bool {
    let s = format!("{w:?}");
    let flags = s
        .split_once("state: ")
        .and_then(|(_, rest)| rest.get(..6))
        .unwrap_or_else(|| panic!("unexpected Debug format of Work: {s}"));
    flags.ends_with('W')
}

/// The items of one case. Dropping it (also when the case fails) cancels
/// them and thaws, so every case starts from idle items and a thawed
/// process.
struct Case {
    items: Vec<Work>,
    runs: Vec<Arc<AtomicUsize>>,
}

impl Case {
    fn new() -> Case {
        let runs: Vec<Arc<AtomicUsize>> = (0..N).map(|_| common::counter()).collect();
        let items = runs
            .iter()
            .zip(NAMES)
            .map(|(c, name)| {
                let c = c.clone();
                Work::named(name, move |_| {
                    c.fetch_add(1, SeqCst);
                })
            })
            .collect();
        Case { items, runs }
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        for w in &self.items {
            // Armed or queued leftovers of a failed case; idle items after a
            // passing one.
            w.cancel();
        }
        cmwq::thaw();
    }
}

/// thaw, flush the workqueue, freeze: every item queued (while frozen)
/// runs, and has finished on return.
fn run_frozen_items(wq: &Workqueue) {
    cmwq::thaw();
    wq.flush();
    cmwq::freeze();
}

/// `item.flush()` while frozen, made deterministic: it runs on another
/// thread; once that thread waits (WAITERS set) or has returned (the item
/// was idle), thaw, flush the workqueue, take its result, freeze.
fn flush_item(wq: &Workqueue, w: &Work) -> bool {
    std::thread::scope(|s| {
        let h = s.spawn(|| w.flush());
        let deadline = Instant::now() + Duration::from_secs(20);
        while !h.is_finished() && !has_waiters(w) {
            if Instant::now() > deadline {
                cmwq::thaw(); // let the flusher return before failing
                panic!("Work::flush neither returned nor waited within 20 s: {w:?}");
            }
            std::thread::yield_now();
        }
        cmwq::thaw();
        wq.flush();
        let r = h.join().expect("the flushing thread");
        cmwq::freeze();
        r
    })
}

/// Reports through the log hook that name `name`.
fn reports_naming(name: &str) -> usize {
    common::EVENTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|e| e.contains(name))
        .count()
}

/// Run `op` on the library; its return value (`None`: nothing returned).
fn step_real(
    wq: &Workqueue,
    case: &Case,
    op: Op,
    model_disabled: u32,
) -> Result<Option<bool>, TestCaseError> {
    let it = |i: usize| &case.items[i];
    Ok(match op {
        Op::Queue(i) => Some(wq.queue(it(i))),
        Op::QueueDelayed(i, d) => Some(wq.queue_delayed(it(i), ms(d))),
        Op::ModDelayed(i, d) => Some(wq.mod_delayed(it(i), ms(d))),
        Op::Cancel(i) => Some(it(i).cancel()),
        Op::Disable(i) => Some(it(i).disable()),
        Op::Enable(i) => {
            let before = reports_naming(NAMES[i]);
            let r = it(i).enable();
            let reported = reports_naming(NAMES[i]) - before;
            if model_disabled == 0 {
                prop_assert!(
                    reported >= 1,
                    "unbalanced enable of {} was not reported through the log hook",
                    NAMES[i]
                );
            } else {
                prop_assert_eq!(reported, 0, "balanced enable of {} was reported", NAMES[i]);
            }
            Some(r)
        }
        Op::Advance(d) => {
            clock::advance(ms(d));
            None
        }
        Op::AdvanceNear(..) => unreachable!("resolved first"),
        Op::Run => {
            run_frozen_items(wq);
            None
        }
        Op::FlushItem(i) => Some(flush_item(wq, it(i))),
    })
}

/// Compare every item with the model.
fn check_items(case: &Case, model: &Model, ctx: &str) -> Result<(), TestCaseError> {
    for (i, (w, m)) in case.items.iter().zip(&model.items).enumerate() {
        prop_assert_eq!(
            w.is_pending(),
            m.pending(),
            "{}: item {} is_pending (model {:?}, real {:?})",
            ctx,
            i,
            m,
            w
        );
        prop_assert!(
            !w.is_running(),
            "{}: item {} runs while its workqueue is frozen: {:?}",
            ctx,
            i,
            w
        );
        prop_assert_eq!(
            case.runs[i].load(SeqCst),
            m.runs,
            "{}: item {} executions (model {:?})",
            ctx,
            i,
            m
        );
    }
    Ok(())
}

fn run_model_case(ops: &[Op]) -> Result<(), TestCaseError> {
    let wq = model_wq();
    let case = Case::new();
    cmwq::freeze();
    let t0 = clock::now();
    let mut model = Model::default();
    let mut history: Vec<String> = Vec::new();

    let do_step =
        |op: Op, model: &mut Model, history: &mut Vec<String>| -> Result<(), TestCaseError> {
            let op = model.resolve(op);
            let disabled = match op {
                Op::Enable(i) => model.items[i].disabled,
                _ => 0,
            };
            let real = step_real(wq, &case, op, disabled)?;
            let expected = model.step(op);
            history.push(format!("{op:?} -> {real:?}"));
            let ctx = format!(
                "after step {} {:?} (t = {} ms; steps: {})",
                history.len(),
                op,
                model.now,
                history.join(", ")
            );
            prop_assert_eq!(real, expected, "{}: return value", ctx);
            prop_assert_eq!(clock::now() - t0, ms(model.now), "{}: clock", ctx);
            check_items(&case, model, &ctx)
        };

    for &op in ops {
        do_step(op, &mut model, &mut history)?;
    }
    // The end: enable everything, let every armed timer fire, run all.
    for i in 0..N {
        while model.items[i].disabled > 0 {
            do_step(Op::Enable(i), &mut model, &mut history)?;
        }
    }
    do_step(Op::Advance(MAX_DELAY + 1), &mut model, &mut history)?;
    do_step(Op::Run, &mut model, &mut history)?;
    for (i, m) in model.items.iter().enumerate() {
        prop_assert_eq!(m.pend, Pend::Idle, "model item {} idle at the end", i);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    /// G1 dedup, G6 flush (fires an armed timer), G9 cancel, G11
    /// disable/enable, G12 delay (fires no sooner than d, at exactly d
    /// under the manual clock), G13 mod_delayed, G24 freeze (queued and
    /// fired items stay queued), G31 manual clock.
    #[test]
    fn g1_g6_g9_g11_g12_g13_g24_g31_model_matches_reference(
        ops in proptest::collection::vec(op(), 1..48)
    ) {
        setup();
        run_model_case(&ops)?;
    }
}

// ---------------------------------------------------------------------------
// 2. Two threads, one item, real workers: a ledger.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum TOp {
    /// Queue on workqueue 0 (bound) or 1 (unbound).
    Queue(usize),
    Cancel,
    CancelSync,
    /// `disable()` then `enable()`.
    DisableEnable,
    Flush,
    /// Let the function requeue itself once more, then queue it.
    SelfRequeue(usize),
    /// Busy-wait this many microseconds.
    Spin(u64),
}

fn top() -> impl Strategy<Value = TOp> {
    prop_oneof![
        6 => (0..2usize).prop_map(TOp::Queue),
        3 => Just(TOp::Cancel),
        1 => Just(TOp::CancelSync),
        1 => Just(TOp::DisableEnable),
        2 => Just(TOp::Flush),
        1 => (0..2usize).prop_map(TOp::SelfRequeue),
        2 => (0..40u64).prop_map(TOp::Spin),
    ]
}

/// A bound and an unbound workqueue (not freezable: the model test may be
/// freezing meanwhile, G24 says these are unaffected).
fn ledger_wqs() -> &'static [Workqueue; 2] {
    static WQS: OnceLock<[Workqueue; 2]> = OnceLock::new();
    WQS.get_or_init(|| {
        [
            common::percpu_wq("model_ledger_bound"),
            Workqueue::builder("model_ledger_unbound")
                .flags(WqFlags::UNBOUND)
                .build()
                .unwrap(),
        ]
    })
}

#[derive(Default)]
struct Ledger {
    /// Executions in progress (G3: never more than one).
    running: AtomicUsize,
    overlapped: AtomicBool,
    executions: AtomicUsize,
    /// `queue` calls that returned true (from the threads and the function).
    queued: AtomicUsize,
    /// `cancel`/`cancel_sync`/`disable` calls that returned true.
    cancelled: AtomicUsize,
    /// How many more times the function requeues itself.
    self_requeues: AtomicUsize,
    /// Which workqueue it requeues itself on.
    self_wq: AtomicUsize,
    /// How long each execution busy-waits (µs).
    spin_us: AtomicUsize,
}

fn ledger_work(l: &Arc<Ledger>) -> Work {
    let l = l.clone();
    Work::named("model-ledger", move |w| {
        if l.running.fetch_add(1, SeqCst) != 0 {
            l.overlapped.store(true, SeqCst);
        }
        l.executions.fetch_add(1, SeqCst);
        common::spin_for(Duration::from_micros(l.spin_us.load(SeqCst) as u64));
        if l.self_requeues
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            // G2: queued from inside its own function.
            let wq = &ledger_wqs()[l.self_wq.load(SeqCst) % 2];
            if wq.queue(w) {
                l.queued.fetch_add(1, SeqCst);
            }
        }
        l.running.fetch_sub(1, SeqCst);
    })
}

fn ledger_thread(l: &Ledger, w: &Work, ops: &[TOp]) {
    let wqs = ledger_wqs();
    for &op in ops {
        match op {
            TOp::Queue(q) => {
                if wqs[q].queue(w) {
                    l.queued.fetch_add(1, SeqCst);
                }
            }
            TOp::Cancel => {
                if w.cancel() {
                    l.cancelled.fetch_add(1, SeqCst);
                }
            }
            TOp::CancelSync => {
                if w.cancel_sync() {
                    l.cancelled.fetch_add(1, SeqCst);
                }
            }
            TOp::DisableEnable => {
                if w.disable() {
                    l.cancelled.fetch_add(1, SeqCst);
                }
                // Balanced (each thread enables its own disable), so the
                // count is back to zero once both threads are done.
                w.enable();
            }
            TOp::Flush => {
                w.flush();
            }
            TOp::SelfRequeue(q) => {
                l.self_wq.store(q, SeqCst);
                l.self_requeues.fetch_add(1, SeqCst);
                if wqs[q].queue(w) {
                    l.queued.fetch_add(1, SeqCst);
                }
            }
            TOp::Spin(us) => common::spin_for(Duration::from_micros(us)),
        }
    }
}

fn run_ledger_case(a: &[TOp], b: &[TOp], spin_us: usize) -> Result<(), TestCaseError> {
    let l = Arc::new(Ledger::default());
    l.spin_us.store(spin_us, SeqCst);
    let w = ledger_work(&l);
    let start = Barrier::new(2);
    std::thread::scope(|s| {
        let (l, w, start) = (&*l, &w, &start);
        s.spawn(move || {
            start.wait();
            ledger_thread(l, w, a);
        });
        start.wait();
        ledger_thread(l, w, b);
    });
    // Wait for the executions still owed, including self-requeue chains.
    let deadline = Instant::now() + Duration::from_secs(20);
    while w.is_pending() || w.is_running() {
        prop_assert!(Instant::now() < deadline, "item never went idle: {:?}", w);
        w.flush();
    }
    prop_assert!(
        !l.overlapped.load(SeqCst),
        "G3: the function overlapped itself"
    );
    let (q, c, e) = (
        l.queued.load(SeqCst),
        l.cancelled.load(SeqCst),
        l.executions.load(SeqCst),
    );
    prop_assert!(
        c <= q,
        "more successful cancels ({}) than queues ({})",
        c,
        q
    );
    prop_assert_eq!(
        e,
        q - c,
        "G2/G4: executions == successful queues ({}) - successful cancels ({})",
        q,
        c
    );
    // Usable again afterwards.
    l.self_requeues.store(0, SeqCst);
    prop_assert!(ledger_wqs()[0].queue(&w), "queue after the case: {:?}", w);
    // (`flush` may find it already done and return false: G6.)
    w.flush();
    prop_assert_eq!(l.executions.load(SeqCst), e + 1);
    Ok(())
}

proptest! {
    #![proptest_config(config(128))]

    /// G2 requeue while running (also from its own function), G3 never
    /// concurrent with itself (across two workqueues), G4 nothing lost,
    /// G10 cancel_sync, G11 disable racing queue.
    #[test]
    fn g2_g3_g4_g10_g11_two_threads_ledger(
        a in proptest::collection::vec(top(), 1..40),
        b in proptest::collection::vec(top(), 1..40),
        spin_us in prop_oneof![Just(0usize), 0..50usize],
    ) {
        setup();
        run_ledger_case(&a, &b, spin_us)?;
    }
}
