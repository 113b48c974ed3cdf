//! The stall watchdog (G23), with a short threshold: a pool with items
//! waiting that starts and finishes nothing is reported once per stall,
//! naming the pool and what its workers run; long items that keep
//! finishing are not stalls; an idle process has no watchdog tick.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cmwq::{Work, Workqueue, WqFlags};
use common::{counter, serial, wait_until, Gate};

const THRESH: Duration = Duration::from_millis(400);

/// Stall reports, with the time they arrived.
static STALLS: Mutex<Vec<(Instant, String)>> = Mutex::new(Vec::new());

fn hook(ev: &cmwq::Event<'_>) {
    if let cmwq::Event::Stall { .. } = ev {
        STALLS
            .lock()
            .unwrap()
            .push((Instant::now(), ev.to_string()));
    }
}

fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        cmwq::Config::default()
            .watchdog_thresh(THRESH)
            .log(hook)
            .apply()
            .expect("before first use");
    });
}

fn stalls_about(s: &str) -> Vec<(Instant, String)> {
    STALLS
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, e)| e.contains(s))
        .cloned()
        .collect()
}

/// Every worker of CPU 0's pool waits on a gate and none can be created:
/// the item left on the worklist is reported once, between the threshold
/// and 1.25 times it (plus scheduling slack), with what runs there.
#[test]
fn g23_a_stalled_pool_is_reported_once() {
    let _s = serial();
    setup();
    let wq = common::percpu_wq("g23_stall");
    // CPU 0's pool has a worker (and a spare) before threads run out.
    let w0 = Work::new(|_| {});
    wq.queue_on(0, &w0);
    w0.flush();
    let started = counter();
    let gate = Gate::new();
    cmwq::test_util::fail_next_spawns(u64::MAX);
    let mut items = Vec::new();
    let mut stuck_at = None;
    for _ in 0..64 {
        let (st, g) = (started.clone(), gate.clone());
        let w = Work::named("holder", move |_| {
            st.fetch_add(1, SeqCst);
            cmwq::blocking(|| g.wait());
        });
        let t = Instant::now();
        assert!(wq.queue_on(0, &w));
        items.push(w);
        std::thread::sleep(Duration::from_millis(30));
        if started.load(SeqCst) < items.len() {
            stuck_at = Some(t);
            break;
        }
    }
    let stuck_at = stuck_at.expect("CPU 0's pool never ran out of workers");
    let reported = wait_until(THRESH * 4, || !stalls_about("cpu 0 (").is_empty());
    // Stay stuck a while longer: still one report.
    std::thread::sleep(THRESH * 2);
    let stalls = stalls_about("cpu 0 (");
    cmwq::test_util::fail_next_spawns(0);
    gate.open();
    for w in &items {
        w.flush();
    }
    assert!(reported, "no stall report: {:?}", STALLS.lock().unwrap());
    assert_eq!(stalls.len(), 1, "one report per stall: {stalls:?}");
    let (at, text) = &stalls[0];
    let latency = *at - stuck_at;
    println!("stall reported {latency:?} after it began (threshold {THRESH:?}): {text}");
    assert!(latency >= THRESH, "reported early: {latency:?}");
    assert!(latency < THRESH * 2, "reported late: {latency:?}");
    assert!(text.contains("g23_stall/holder for"), "{text}");
    assert!(text.contains("(blocked)"), "{text}");
    // A new stall after progress is a new report.
}

/// Long items that keep finishing, with items waiting behind them, are not
/// stalls.
#[test]
fn g23_long_items_that_keep_finishing_are_not_stalls() {
    let _s = serial();
    setup();
    let wq = Workqueue::builder("g23_long")
        .flags(WqFlags::UNBOUND)
        .attrs(cmwq::WqAttrs {
            cpus: Some(vec![0]),
            ..Default::default()
        })
        .build()
        .unwrap();
    // One worker for the pool, then no more threads: 12 items of 100 ms
    // queue up behind it.
    let w0 = Work::new(|_| {});
    wq.queue(&w0);
    w0.flush();
    cmwq::test_util::fail_next_spawns(u64::MAX);
    let done = Arc::new(AtomicUsize::new(0));
    let items: Vec<Work> = (0..12)
        .map(|_| {
            let d = done.clone();
            Work::named("long", move |_| {
                std::thread::sleep(Duration::from_millis(100));
                d.fetch_add(1, SeqCst);
            })
        })
        .collect();
    let before = STALLS.lock().unwrap().len();
    for w in &items {
        wq.queue(w);
    }
    for w in &items {
        w.flush();
    }
    cmwq::test_util::fail_next_spawns(0);
    assert_eq!(done.load(SeqCst), 12);
    let after: Vec<_> = STALLS.lock().unwrap()[before..].to_vec();
    assert!(after.is_empty(), "progress reported as a stall: {after:?}");
}

/// No watchdog tick in an idle process: once every pool is idle the
/// monitor thread does not wake at all.
#[test]
fn g23_the_watchdog_costs_nothing_while_idle() {
    let _s = serial();
    setup();
    let w = Work::new(|_| {});
    cmwq::system_wq().queue(&w);
    w.flush();
    // Let the watchdog see the empty worklists and disarm (one period),
    // and the monitor's own hysteresis pass.
    std::thread::sleep(THRESH / 2);
    let a = cmwq::__bench::monitor_wakeups();
    let cpu0 = process_cpu();
    std::thread::sleep(THRESH * 3);
    let cpu = process_cpu() - cpu0;
    let b = cmwq::__bench::monitor_wakeups();
    println!("process CPU while idle: {cpu:?} in {:?}", THRESH * 3);
    assert!(cpu < Duration::from_millis(5), "{cpu:?} of CPU while idle");
    println!("monitor wake-ups while idle: {} in {:?}", b - a, THRESH * 3);
    assert_eq!(b - a, 0, "the monitor woke while the process was idle");
}

/// CPU time of the whole process (all threads).
fn process_cpu() -> Duration {
    // SAFETY: rusage is plain data; all zeroes is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
