//! Delayed work: G12, G13, and delayed items under G1, G6, G9-G11, G25.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cmwq::{Work, Workqueue, WqFlags};
use common::*;

fn setup() {
    setup_log();
}

/// A work item that records when it ran (relative to `t0`) and how often.
fn timed(t0: Instant) -> (Work, Arc<Mutex<Vec<Duration>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    let w = Work::new(move |_| l2.lock().unwrap().push(t0.elapsed()));
    (w, log)
}

#[test]
fn g12_delayed_item_is_queued_no_sooner_than_its_delay() {
    setup();
    let wq = Workqueue::new("g12_delay").unwrap();
    let t0 = Instant::now();
    let (w, log) = timed(t0);
    assert!(wq.queue_delayed(&w, Duration::from_millis(40)));
    assert!(w.is_pending(), "armed = pending");
    // G1: pending; a second arm or queue changes nothing, the expiry stays.
    assert!(!wq.queue_delayed(&w, Duration::from_millis(500)));
    assert!(!wq.queue(&w));
    assert!(wait_until(Duration::from_secs(5), || !log
        .lock()
        .unwrap()
        .is_empty()));
    let ran = log.lock().unwrap()[0];
    assert!(ran >= Duration::from_millis(40), "ran early: {ran:?}");
    assert!(
        ran < Duration::from_millis(400),
        "kept its first expiry: {ran:?}"
    );
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[test]
fn g12_zero_delay_queues_at_once_and_on_cpu() {
    setup();
    let wq = percpu_wq("g12_zero");
    let c = counter();
    let w = counting_work(&c);
    assert!(wq.queue_delayed(&w, Duration::ZERO));
    wq.flush(); // a workqueue flush does not cover armed timers: it ran
    assert_eq!(c.load(SeqCst), 1);
    for &cpu in &own_affinity() {
        let got = Arc::new(Mutex::new(None));
        let g2 = got.clone();
        let w = Work::new(move |_| *g2.lock().unwrap() = Some(current_cpu()));
        assert!(wq.queue_delayed_on(cpu, &w, Duration::from_millis(5)));
        assert!(wait_until(Duration::from_secs(5), || got
            .lock()
            .unwrap()
            .is_some()));
        assert_eq!(got.lock().unwrap().unwrap(), cpu);
    }
}

#[test]
fn g13_mod_delayed_rearms_pending_and_arms_idle() {
    setup();
    let wq = Workqueue::new("g13_mod").unwrap();
    let t0 = Instant::now();
    let (w, log) = timed(t0);
    assert!(
        !wq.mod_delayed(&w, Duration::from_millis(500)),
        "idle: armed, false"
    );
    assert!(w.is_pending());
    assert!(
        wq.mod_delayed(&w, Duration::from_millis(30)),
        "armed: re-armed, true"
    );
    assert!(wait_until(Duration::from_secs(5), || !log
        .lock()
        .unwrap()
        .is_empty()));
    let ran = log.lock().unwrap()[0];
    assert!(
        ran >= Duration::from_millis(30) && ran < Duration::from_millis(400),
        "{ran:?}"
    );
    // A queued (not armed) item is re-armed too.
    let (o, gate, _b) = {
        let o = Workqueue::ordered("g13_ordered", WqFlags::empty()).unwrap();
        let gate = Gate::new();
        let g2 = gate.clone();
        let b = Work::new(move |_| g2.wait());
        assert!(o.queue(&b));
        (o, gate, b)
    };
    let t1 = Instant::now();
    let (x, xlog) = timed(t1);
    assert!(o.queue(&x));
    assert!(
        o.mod_delayed(&x, Duration::from_millis(50)),
        "queued: re-armed, true"
    );
    gate.open();
    o.flush();
    assert!(
        xlog.lock().unwrap().is_empty(),
        "ran from the queue despite the re-arm"
    );
    assert!(wait_until(Duration::from_secs(5), || !xlog
        .lock()
        .unwrap()
        .is_empty()));
    assert!(xlog.lock().unwrap()[0] >= Duration::from_millis(50));
    // Zero means now.
    let (z, zlog) = timed(Instant::now());
    assert!(!wq.mod_delayed(&z, Duration::from_secs(60)));
    assert!(wq.mod_delayed(&z, Duration::ZERO));
    assert!(wait_until(Duration::from_secs(2), || !zlog
        .lock()
        .unwrap()
        .is_empty()));
    assert!(zlog.lock().unwrap()[0] < Duration::from_secs(1));
    assert_eq!(zlog.lock().unwrap().len(), 1);
}

#[test]
fn g13_debounce_hundreds_of_rearms_give_one_execution() {
    setup();
    let wq = Workqueue::new("g13_debounce").unwrap();
    let t0 = Instant::now();
    let (w, log) = timed(t0);
    let mut last = Duration::ZERO;
    for i in 0..300 {
        let was = wq.mod_delayed(&w, Duration::from_millis(30));
        assert_eq!(was, i > 0, "call {i}");
        last = t0.elapsed();
        std::thread::sleep(Duration::from_micros(500));
    }
    assert!(
        log.lock().unwrap().is_empty(),
        "fired while being pushed back"
    );
    assert!(wait_until(Duration::from_secs(5), || !log
        .lock()
        .unwrap()
        .is_empty()));
    std::thread::sleep(Duration::from_millis(50));
    let l = log.lock().unwrap();
    assert_eq!(l.len(), 1, "one execution");
    assert!(
        l[0] >= last + Duration::from_millis(30),
        "ran {:?}, last re-arm {last:?}",
        l[0]
    );
}

#[test]
fn g6_flush_fires_an_armed_item_now() {
    setup();
    let wq = Workqueue::new("g6_armed").unwrap();
    let c = counter();
    let w = counting_work(&c);
    assert!(wq.queue_delayed(&w, Duration::from_secs(30)));
    let t = Instant::now();
    assert!(w.flush());
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(c.load(SeqCst), 1);
    assert!(!w.is_pending());
}

#[test]
fn g9_g10_g11_cancel_and_disable_disarm_timers() {
    setup();
    let wq = Workqueue::new("g9_armed").unwrap();
    let c = counter();
    let w = counting_work(&c);
    assert!(wq.queue_delayed(&w, Duration::from_millis(30)));
    assert!(w.cancel(), "armed: cancelled");
    assert!(!w.is_pending());
    assert!(!w.cancel());
    assert!(wq.queue_delayed(&w, Duration::from_millis(30)));
    assert!(w.cancel_sync());
    assert!(wq.queue_delayed(&w, Duration::from_millis(30)));
    assert!(w.disable());
    assert!(!wq.queue_delayed(&w, Duration::from_millis(1)));
    assert!(
        !wq.mod_delayed(&w, Duration::from_millis(1)),
        "disabled: not armed"
    );
    assert!(!w.is_pending());
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(c.load(SeqCst), 0, "a disarmed timer fired");
    assert!(w.enable());
    assert!(!wq.mod_delayed(&w, Duration::from_millis(1)));
    assert!(wait_until(Duration::from_secs(5), || c.load(SeqCst) == 1));
}

#[test]
fn g25_drop_cancels_armed_timers_and_reports_them() {
    setup();
    let wq = Workqueue::new("g25_timers").unwrap();
    let c = counter();
    let items: Vec<Work> = (0..3).map(|_| counting_work(&c)).collect();
    for w in &items {
        assert!(wq.queue_delayed(w, Duration::from_secs(30)));
    }
    let before = events_matching("\"g25_timers\" destroyed with 3 armed");
    drop(wq);
    assert_eq!(
        events_matching("\"g25_timers\" destroyed with 3 armed"),
        before + 1
    );
    for w in &items {
        assert!(!w.is_pending(), "cancelled by the destruction");
    }
    assert_eq!(c.load(SeqCst), 0);
}

#[test]
fn g25_a_timer_firing_during_destruction_is_refused() {
    setup();
    let wq = Workqueue::new("g25_fire").unwrap();
    let gate = Gate::new();
    let g2 = gate.clone();
    let blocker = Work::new(move |_| cmwq::blocking(|| g2.wait()));
    let c = counter();
    let late = counting_work(&c);
    assert!(wq.queue(&blocker));
    assert!(wq.queue_delayed(&late, Duration::from_millis(20)));
    let before = events_matching("\"g25_fire\" refused: it is being destroyed");
    let opener = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        gate.open();
    });
    drop(wq); // drains: the blocker holds it while the timer fires
    opener.join().unwrap();
    assert_eq!(c.load(SeqCst), 0, "queued on a workqueue being destroyed");
    assert!(!late.is_pending());
    assert_eq!(
        events_matching("\"g25_fire\" refused: it is being destroyed"),
        before + 1
    );
}

#[test]
fn g12_ten_thousand_random_timers_fire_once_and_never_early() {
    setup();
    let _s = serial();
    let wq = Workqueue::new("g12_many").unwrap();
    let n = 10_000;
    let t0 = Instant::now();
    let fired: Arc<Vec<AtomicUsize>> = Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect());
    let early = Arc::new(AtomicUsize::new(0));
    let mut seed = 0xDEAD_BEEF_u64;
    let mut deadlines = Vec::with_capacity(n);
    let items: Vec<Work> = (0..n)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let delay = Duration::from_micros(seed % 300_000);
            deadlines.push(delay);
            let (f, e) = (fired.clone(), early.clone());
            Work::new(move |_| {
                f[i].fetch_add(1, SeqCst);
                if t0.elapsed() < delay {
                    e.fetch_add(1, SeqCst);
                }
            })
        })
        .collect();
    for (i, w) in items.iter().enumerate() {
        // The deadline is measured from t0; arm for what is left of it.
        let left = deadlines[i].saturating_sub(t0.elapsed());
        assert!(wq.queue_delayed(w, left));
    }
    assert!(wait_until(Duration::from_secs(10), || fired
        .iter()
        .all(|f| f.load(SeqCst) >= 1)));
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        fired.iter().all(|f| f.load(SeqCst) == 1),
        "a timer fired twice"
    );
    assert_eq!(early.load(SeqCst), 0, "a timer fired early");
}

#[test]
fn g13_expiry_cancel_sync_and_mod_delayed_race() {
    setup();
    let _s = serial();
    let wqs = Arc::new(vec![
        Workqueue::new("g13_race_a").unwrap(),
        Workqueue::builder("g13_race_b")
            .flags(WqFlags::UNBOUND)
            .build()
            .unwrap(),
    ]);
    struct It {
        w: Work,
        runs: Arc<AtomicUsize>,
        conc: Arc<Concurrency>,
        armed: AtomicUsize,
        /// mod_delayed returned false: it armed an idle item, or the item
        /// was disabled by a concurrent cancel_sync and nothing happened.
        maybe_armed: AtomicUsize,
        cancelled: AtomicUsize,
    }
    let items: Arc<Vec<It>> = Arc::new(
        (0..8)
            .map(|_| {
                let runs = counter();
                let conc = Concurrency::new();
                let (r, c) = (runs.clone(), conc.clone());
                It {
                    w: Work::new(move |_| {
                        c.enter();
                        r.fetch_add(1, SeqCst);
                        spin_for(Duration::from_micros(50));
                        c.exit();
                    }),
                    runs,
                    conc,
                    armed: AtomicUsize::new(0),
                    maybe_armed: AtomicUsize::new(0),
                    cancelled: AtomicUsize::new(0),
                }
            })
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (wqs, items, stop) = (wqs.clone(), items.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seed = 0x5555_1234_u64 + t;
                while !stop.load(Relaxed) {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let it = &items[(seed % 8) as usize];
                    let wq = &wqs[((seed >> 8) % 2) as usize];
                    let d = Duration::from_micros((seed >> 16) % 2000);
                    match (seed >> 32) % 4 {
                        0 => {
                            if wq.queue_delayed(&it.w, d) {
                                it.armed.fetch_add(1, SeqCst);
                            }
                        }
                        1 => {
                            if !wq.mod_delayed(&it.w, d) {
                                it.maybe_armed.fetch_add(1, SeqCst);
                            }
                        }
                        2 => {
                            if it.w.cancel_sync() {
                                it.cancelled.fetch_add(1, SeqCst);
                            }
                        }
                        _ => {
                            if it.w.cancel() {
                                it.cancelled.fetch_add(1, SeqCst);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    stop.store(true, SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    for it in items.iter() {
        // Let armed timers fire, then everything settles.
        it.w.flush();
    }
    for wq in wqs.iter() {
        wq.flush();
    }
    for (i, it) in items.iter().enumerate() {
        assert!(
            !it.w.is_pending() && !it.w.is_running(),
            "item {i} not idle"
        );
        assert_eq!(it.conc.max(), 1, "item {i} re-entered");
        // Every arm ends in one execution or one successful cancel (G4).
        let settled = it.runs.load(SeqCst) + it.cancelled.load(SeqCst);
        let (sure, maybe) = (it.armed.load(SeqCst), it.maybe_armed.load(SeqCst));
        assert!(
            settled >= sure && settled <= sure + maybe,
            "item {i}: runs + cancels = {settled}, arms in [{sure}, {}]",
            sure + maybe
        );
        assert!(it.runs.load(SeqCst) > 0);
    }
}
