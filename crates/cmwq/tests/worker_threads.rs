//! `Config::worker_stack_size`, `Config::on_worker_start` and
//! `Config::on_worker_stop`: the threads that run work items (workers and
//! rescuers) get the configured stack, and run the start hook once as they
//! start and the stop hook once before they exit, on that thread. Own test
//! binary: the settings are process-wide, applied before first use.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use cmwq::{Work, Workqueue, WqFlags};
use common::*;

const STACK: usize = 32 << 20;
const IDLE_TIMEOUT: Duration = Duration::from_millis(300);

/// (tid, thread name) of each start and stop hook call, in order.
static STARTS: Mutex<Vec<(i32, String)>> = Mutex::new(Vec::new());
static STOPS: Mutex<Vec<(i32, String)>> = Mutex::new(Vec::new());

fn me() -> (i32, String) {
    (
        rustix::thread::gettid().as_raw_nonzero().get(),
        own_thread_name(),
    )
}

fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        cmwq::Config::default()
            .worker_stack_size(STACK)
            .idle_timeout(IDLE_TIMEOUT)
            .on_worker_start(|| STARTS.lock().unwrap().push(me()))
            .on_worker_stop(|| STOPS.lock().unwrap().push(me()))
            .apply()
            .expect("before first use");
    });
}

/// The calling thread's stack size, as its attributes say.
fn own_stack_size() -> usize {
    // SAFETY: `attr` is initialised by pthread_getattr_np for the calling
    // thread before it is read, and destroyed once.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        assert_eq!(libc::pthread_getattr_np(libc::pthread_self(), &mut attr), 0);
        let mut size = 0;
        assert_eq!(libc::pthread_attr_getstacksize(&attr, &mut size), 0);
        libc::pthread_attr_destroy(&mut attr);
        size
    }
}

/// Uses about `depth` times 64 KiB of stack.
#[inline(never)]
fn deep(depth: usize) -> u64 {
    let frame = std::hint::black_box([depth as u8; 64 << 10]);
    if depth == 0 {
        return frame[0] as u64;
    }
    frame[frame.len() - 1] as u64 + deep(depth - 1)
}

/// Run `f` as an item of `wq` (queued on `cpu` if given) and return what
/// it returned.
fn on_worker<R: Send + 'static>(
    wq: &Workqueue,
    cpu: Option<usize>,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let out = std::sync::Arc::new(Mutex::new(None));
    let o = out.clone();
    let mut f = Some(f);
    let w = Work::new(move |_| {
        if let Some(f) = f.take() {
            *o.lock().unwrap() = Some(f());
        }
    });
    match cpu {
        Some(c) => assert!(wq.queue_on(c, &w)),
        None => assert!(wq.queue(&w)),
    }
    w.flush();
    let r = out.lock().unwrap().take();
    r.expect("the item ran")
}

#[test]
fn workers_get_the_configured_stack() {
    let _s = serial();
    setup();
    let percpu = percpu_wq("stack_percpu");
    let spreading = Workqueue::new("stack_spreading").unwrap();
    let unbound = Workqueue::builder("stack_unbound")
        .flags(WqFlags::UNBOUND | WqFlags::CPU_INTENSIVE)
        .build()
        .unwrap();
    for (wq, cpu) in [(&percpu, Some(0)), (&spreading, None), (&unbound, None)] {
        let size = on_worker(wq, cpu, own_stack_size);
        assert!(size >= STACK, "{}: a worker's stack is {size}", wq.name());
        // 8 MiB of frames: past the default 2 MiB, well within 32.
        assert_eq!(on_worker(wq, cpu, || deep(128)), (1..=128).sum::<u64>());
    }
}

/// The hooks ran on worker and rescuer threads only, at most once each
/// per thread, stops only on threads that started; and the threads that
/// started and did not stop are exactly the live ones.
fn check_hooks() -> Result<(), String> {
    let starts = STARTS.lock().unwrap().clone();
    let stops = STOPS.lock().unwrap().clone();
    let mut started = HashMap::new();
    for (tid, name) in &starts {
        if !name.starts_with("kworker/") {
            return Err(format!("start hook on {name}"));
        }
        if started.insert(*tid, name.clone()).is_some() {
            return Err(format!("start hook twice on {tid} {name}"));
        }
    }
    let mut stopped = HashSet::new();
    for (tid, name) in &stops {
        if started.get(tid) != Some(name) {
            return Err(format!("stop hook on {tid} {name}, which did not start"));
        }
        if !stopped.insert(*tid) {
            return Err(format!("stop hook twice on {tid} {name}"));
        }
    }
    let mut live = HashSet::new();
    for e in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        if comm.starts_with("kworker/") {
            live.insert(e.file_name().to_string_lossy().parse::<i32>().unwrap());
        }
    }
    let running: HashSet<i32> = started
        .keys()
        .filter(|t| !stopped.contains(t))
        .copied()
        .collect();
    if running != live {
        return Err(format!(
            "started and not stopped {running:?}, live workers {live:?}"
        ));
    }
    Ok(())
}

fn hooks_hold() {
    let mut last = Ok(());
    // A worker may have run its stop hook and not have exited yet.
    let ok = wait_until(Duration::from_secs(5), || {
        last = check_hooks();
        last.is_ok()
    });
    assert!(ok, "{last:?}");
}

fn pool_workers(cpu: usize) -> usize {
    let prefix = format!("kworker/{cpu}:");
    thread_names()
        .iter()
        .filter(|n| n.starts_with(&prefix) && !n.ends_with('H'))
        .count()
}

fn stops_named(prefix: &str) -> usize {
    STOPS
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, n)| n.starts_with(prefix))
        .count()
}

#[test]
fn hooks_run_once_per_worker_start_and_stop() {
    let _s = serial();
    setup();
    let wq = percpu_wq("hooks");
    on_worker(&wq, Some(0), || ());
    hooks_hold();
    assert!(!STARTS.lock().unwrap().is_empty(), "no start hook ran");

    // Eight items that block at once: CPU 0's pool grows by eight workers
    // or more, each running the start hook.
    let starts0 = STARTS.lock().unwrap().len();
    let (gate, _items) = blocked_burst(&wq, 0, 8, Duration::from_secs(5));
    gate.open();
    wq.flush();
    let grown = STARTS.lock().unwrap().len() - starts0;
    let workers = pool_workers(0);
    assert!(workers >= 9, "CPU 0's pool grew to {workers}");
    assert!(
        grown >= workers - 3,
        "{grown} workers started, {workers} now"
    );
    hooks_hold();

    // Idle past the timeout: the pool is reaped down to two idle workers
    // (G21), each one leaving running the stop hook on its own thread.
    let stops0 = stops_named("kworker/0:");
    assert!(
        wait_until(Duration::from_secs(10), || stops_named("kworker/0:")
            >= stops0 + workers - 2),
        "idle workers of CPU 0 left without their stop hook: {:?}",
        STOPS.lock().unwrap()
    );
    hooks_hold();

    // A rescuer runs them too: started with its workqueue, stopped when
    // that is destroyed.
    let reclaim = Workqueue::builder("hooks_r")
        .flags(WqFlags::MEM_RECLAIM)
        .build()
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || STARTS
        .lock()
        .unwrap()
        .iter()
        .any(|(_, n)| n == "kworker/R-hooks")));
    drop(reclaim);
    assert!(
        wait_until(Duration::from_secs(5), || stops_named("kworker/R-hooks")
            == 1),
        "{:?}",
        STOPS.lock().unwrap()
    );
    hooks_hold();
}

/// `Config`'s `Debug` says which hooks are set.
#[test]
fn config_debug_shows_the_hooks() {
    let c = cmwq::Config::default()
        .worker_stack_size(1 << 20)
        .on_worker_start(|| {});
    let s = format!("{c:?}");
    assert!(s.contains("worker_stack_size: Some(1048576)"), "{s}");
    assert!(s.contains("on_worker_start: true"), "{s}");
    assert!(s.contains("on_worker_stop: false"), "{s}");
}
