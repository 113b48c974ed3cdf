//! Helpers shared by the integration tests.
// Each test binary compiles this module and uses a part of it: every item
// carries `allow(dead_code)` for the binaries that do not use it (each is
// used by some binary).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Timing-dependent tests take this lock so they run one at a time within
/// a test binary (the machines are small and noisy).
#[allow(dead_code)] // used by some of the test binaries only
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Poll `cond` until it holds or `timeout` passes; returns whether it held.
#[allow(dead_code)] // used by some of the test binaries only
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    cond()
}

/// CPU time of the calling thread.
#[allow(dead_code)] // used by some of the test binaries only
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Burn `d` of this thread's CPU time (not wall time).
#[allow(dead_code)] // used by some of the test binaries only
pub fn burn_cpu(d: Duration) {
    let start = thread_cpu();
    let mut x = 0u64;
    while thread_cpu() - start < d {
        for i in 0..1000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
    }
}

/// Spin for `d` of wall time.
#[allow(dead_code)] // used by some of the test binaries only
pub fn spin_for(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// The CPU the calling thread runs on.
#[allow(dead_code)] // used by some of the test binaries only
pub fn current_cpu() -> usize {
    // SAFETY: no preconditions.
    unsafe { libc::sched_getcpu() as usize }
}

/// Pin the calling thread to `cpus`.
#[allow(dead_code)] // used by some of the test binaries only
pub fn pin_self(cpus: &[usize]) {
    let mut set = rustix::thread::CpuSet::new();
    for &c in cpus {
        set.set(c);
    }
    rustix::thread::sched_setaffinity(None, &set).expect("sched_setaffinity");
}

/// The calling thread's affinity mask.
#[allow(dead_code)] // used by some of the test binaries only
pub fn own_affinity() -> Vec<usize> {
    let set = rustix::thread::sched_getaffinity(None).expect("sched_getaffinity");
    (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| set.is_set(c))
        .collect()
}

/// Counts concurrent executions and remembers the most seen at once.
#[derive(Default)]
#[allow(dead_code)] // used by some of the test binaries only
pub struct Concurrency {
    now: AtomicUsize,
    max: AtomicUsize,
    total: AtomicUsize,
}

#[allow(dead_code)] // used by some of the test binaries only
impl Concurrency {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn enter(&self) -> usize {
        let n = self.now.fetch_add(1, SeqCst) + 1;
        self.max.fetch_max(n, SeqCst);
        self.total.fetch_add(1, SeqCst);
        n
    }
    pub fn exit(&self) {
        self.now.fetch_sub(1, SeqCst);
    }
    pub fn max(&self) -> usize {
        self.max.load(SeqCst)
    }
    pub fn total(&self) -> usize {
        self.total.load(SeqCst)
    }
    pub fn reset(&self) {
        self.max.store(0, SeqCst);
        self.total.store(0, SeqCst);
    }
}

/// A shared counter.
#[allow(dead_code)] // used by some of the test binaries only
pub fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// A work item that increments `c`.
#[allow(dead_code)] // used by some of the test binaries only
pub fn counting_work(c: &Arc<AtomicUsize>) -> cmwq::Work {
    let c = c.clone();
    cmwq::Work::new(move |_| {
        c.fetch_add(1, SeqCst);
    })
}

/// A gate: items wait on it until opened.
#[derive(Default)]
#[allow(dead_code)] // used by some of the test binaries only
pub struct Gate {
    open: Mutex<bool>,
    cv: std::sync::Condvar,
}

#[allow(dead_code)] // used by some of the test binaries only
impl Gate {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn wait(&self) {
        let mut g = self.open.lock().unwrap();
        while !*g {
            g = self.cv.wait(g).unwrap();
        }
    }
    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

/// The names of this process's threads.
#[allow(dead_code)] // used by some of the test binaries only
pub fn thread_names() -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(s) = std::fs::read_to_string(e.path().join("comm")) {
            v.push(s.trim_end().to_string());
        }
    }
    v
}

/// The calling thread's name.
#[allow(dead_code)] // used by some of the test binaries only
pub fn own_thread_name() -> String {
    std::fs::read_to_string("/proc/thread-self/comm")
        .unwrap()
        .trim_end()
        .to_string()
}

/// The calling thread's nice level.
#[allow(dead_code)] // used by some of the test binaries only
pub fn own_nice() -> i32 {
    rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
}

/// Reports received by [`log_hook`].
#[allow(dead_code)] // used by some of the test binaries only
pub static EVENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A log hook that keeps every report in [`EVENTS`].
#[allow(dead_code)] // used by some of the test binaries only
pub fn log_hook(ev: &cmwq::Event<'_>) {
    EVENTS.lock().unwrap().push(ev.to_string());
}

/// Install [`log_hook`] (once per test binary, before first use).
#[allow(dead_code)] // used by some of the test binaries only
pub fn setup_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        cmwq::Config::default()
            .log(log_hook)
            .apply()
            .expect("before first use");
    });
}

/// How many reports so far contain `s`.
#[allow(dead_code)] // used by some of the test binaries only
pub fn events_matching(s: &str) -> usize {
    EVENTS
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.contains(s))
        .count()
}

/// Set the soft RLIMIT_NPROC (the hard limit stays, so it can be lifted).
#[allow(dead_code)] // used by some of the test binaries only
pub fn set_nproc_soft(soft: u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut r) }, 0);
    r.rlim_cur = soft.min(r.rlim_max);
    // SAFETY: valid pointer to an initialised rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NPROC, &r) }, 0);
}

/// Number of threads of this process.
#[allow(dead_code)] // used by some of the test binaries only
pub fn own_threads() -> u64 {
    std::fs::read_dir("/proc/self/task").unwrap().count() as u64
}

/// This process's thread count once it has not changed for 200 ms (at
/// most 5 s): the library's start may return while the monitor thread
/// still spawns a sentinel, which would take a thread a test's
/// `RLIMIT_NPROC` meant for a worker.
#[allow(dead_code)] // used by some of the test binaries only
pub fn settled_threads() -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut n = own_threads();
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_millis(200) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        let m = own_threads();
        if m != n {
            (n, since) = (m, Instant::now());
        }
    }
    n
}

/// Run this test binary's test `entry` again in a child process as uid/gid
/// 65534, with `env=scenario` set, and check that it printed "child
/// scenario ok". Needs root to switch users; prints "skipped" otherwise.
/// Returns the child's output.
#[allow(dead_code)] // used by some of the test binaries only
pub fn run_unprivileged_child(entry: &str, env: &str, scenario: &str) -> String {
    use std::os::unix::process::CommandExt;
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: switching to an unprivileged user needs root");
        return String::new();
    }
    // A copy any user may execute (the build tree may not be).
    let dir = std::env::temp_dir().join(format!("cmwq-{entry}-{}-{scenario}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("test-binary");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = std::process::Command::new(&exe);
    cmd.args([entry, "--exact", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(env, scenario)
        .current_dir(&dir);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the child");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let status = status.unwrap_or_else(|| panic!("child {scenario} hung:\n{text}"));
    assert!(
        status.success() && text.contains("child scenario ok"),
        "child {scenario} failed ({status}):\n{text}"
    );
    text
}

/// A per-CPU workqueue (`WqFlags::PERCPU`, the kernel's classic kind: an
/// item runs on the pool of the CPU it is queued on) with the default
/// `max_active`. `Workqueue::new` makes a spreading one (G14).
#[allow(dead_code)] // used by some of the test binaries only
pub fn percpu_wq(name: &str) -> cmwq::Workqueue {
    cmwq::Workqueue::builder(name)
        .flags(cmwq::WqFlags::PERCPU)
        .build()
        .expect("a per-CPU workqueue")
}

/// Run `count` CPU-bound items, each burning `half` of CPU, noting the
/// CPU it is on, and burning `half` again; `queue(i, item)` queues the
/// i-th. Returns the most that ran at once and the CPUs they ran on,
/// sorted and deduplicated.
#[allow(dead_code)] // used by some of the test binaries only
pub fn cpu_spread(
    count: usize,
    half: Duration,
    queue: impl Fn(usize, &cmwq::Work),
) -> (usize, Vec<usize>) {
    let conc = Concurrency::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let items: Vec<cmwq::Work> = (0..count)
        .map(|_| {
            let (conc, seen) = (conc.clone(), seen.clone());
            cmwq::Work::new(move |_| {
                conc.enter();
                burn_cpu(half);
                seen.lock().unwrap().push(current_cpu());
                burn_cpu(half);
                conc.exit();
            })
        })
        .collect();
    for (i, w) in items.iter().enumerate() {
        queue(i, w);
    }
    for w in &items {
        w.flush();
    }
    let mut cpus = seen.lock().unwrap().clone();
    cpus.sort_unstable();
    cpus.dedup();
    (conc.max(), cpus)
}

/// The threads of this process.
#[allow(dead_code)] // used by some of the test binaries only
pub fn tids() -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

#[allow(dead_code)] // used by some of the test binaries only
/// Set every thread's affinity to `cpus`, as `taskset -a -p` does.
pub fn set_process_affinity(cpus: &[usize]) {
    let mut set = rustix::thread::CpuSet::new();
    for &c in cpus {
        set.set(c);
    }
    // Threads started meanwhile inherit a creator's mask or are set by the
    // library: go round until a pass finds no new thread.
    let mut done: Vec<i32> = Vec::new();
    loop {
        let now = tids();
        let new: Vec<i32> = now.into_iter().filter(|t| !done.contains(t)).collect();
        if new.is_empty() {
            return;
        }
        for t in new {
            // A thread may have exited since the listing.
            let _ = rustix::thread::sched_setaffinity(rustix::thread::Pid::from_raw(t), &set);
            done.push(t);
        }
    }
}

#[allow(dead_code)] // used by some of the test binaries only
/// Restores every thread's affinity to the mask the process started with.
pub struct Narrowed {
    all: Vec<usize>,
}

#[allow(dead_code)] // used by some of the test binaries only
impl Narrowed {
    pub fn to(cpus: &[usize], all: &[usize]) -> Narrowed {
        set_process_affinity(cpus);
        Narrowed { all: all.to_vec() }
    }
}

impl Drop for Narrowed {
    fn drop(&mut self) {
        set_process_affinity(&self.all);
    }
}

/// Queue `n` items on `wq`'s pool of `cpu` that block (with the hint)
/// until the returned gate opens, and wait up to `within` until every one
/// of them runs: a burst that grows the pool by `n` workers.
#[allow(dead_code)] // used by some of the test binaries only
pub fn blocked_burst(
    wq: &cmwq::Workqueue,
    cpu: usize,
    n: usize,
    within: Duration,
) -> (Arc<Gate>, Vec<cmwq::Work>) {
    let gate = Gate::new();
    let items: Vec<cmwq::Work> = (0..n)
        .map(|_| {
            let g = gate.clone();
            cmwq::Work::new(move |_| cmwq::blocking(|| g.wait()))
        })
        .collect();
    for w in &items {
        assert!(wq.queue_on(cpu, w));
    }
    assert!(
        wait_until(within, || items.iter().all(|w| w.is_running())),
        "the burst's items did not all start"
    );
    (gate, items)
}
