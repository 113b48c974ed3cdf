//! Measurement helpers shared by the scenarios: clocks, CPU burning by
//! thread CPU time, percentiles and medians, RSS and thread counts from
//! `/proc`, a completion latch, a gate, a thread-count sampler, pinning.

use std::fs;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- clocks

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Monotonic nanoseconds since the first call in this process. Comparable
/// across threads (it is `CLOCK_MONOTONIC` underneath).
#[inline]
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Read one of the kernel's clocks, in nanoseconds.
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock ids we pass are
    // ones every Linux kernel supports.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    debug_assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time consumed by the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
#[inline]
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time (user + system) consumed by the whole process so far.
pub fn process_cpu_ns() -> u64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    debug_assert_eq!(rc, 0);
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Burn `d` of the calling thread's CPU time (not wall time: a preempted
/// burner takes longer on the wall clock, as a real CPU-bound item would).
pub fn burn_cpu(d: Duration) {
    let end = thread_cpu_ns() + d.as_nanos() as u64;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    loop {
        // About a microsecond of arithmetic between clock reads.
        for _ in 0..256 {
            x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
        if thread_cpu_ns() >= end {
            break;
        }
    }
    black_box(x);
}

/// Spin (on the wall clock) for `d`: for waits too short for `sleep`.
pub fn spin_for(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Wait for `d`: spin below 200 us (a timer would overshoot), sleep above.
pub fn wait_for(d: Duration) {
    if d < Duration::from_micros(200) {
        spin_for(d);
    } else {
        std::thread::sleep(d);
    }
}

// ------------------------------------------------------------ statistics

/// The `p`-th percentile (0..=100) of `v` by nearest rank; NaN if empty.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// The median of `v` (mean of the two middle values for an even count);
/// NaN if empty.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// The largest value of `v`; NaN if empty.
pub fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

// ------------------------------------------------------------------ /proc

/// Resident set size of the process, KiB (`VmRSS` of `/proc/self/status`).
pub fn rss_kib() -> u64 {
    status_field("/proc/self/status", "VmRSS:").unwrap_or(0)
}

/// A numeric field (first number after `key`) of a `status`-like file.
fn status_field(path: &str, key: &str) -> Option<u64> {
    let s = fs::read_to_string(path).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// The process's threads as (tid, name from `comm`).
pub fn threads() -> Vec<(i32, String)> {
    let Ok(dir) = fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let tid: i32 = e.file_name().to_str()?.parse().ok()?;
        let comm = fs::read_to_string(e.path().join("comm")).ok()?;
        Some((tid, comm.trim_end().to_owned()))
    })
    .collect()
}

/// Number of the process's threads whose name satisfies `pred`.
pub fn count_threads(pred: impl Fn(&str) -> bool) -> usize {
    threads().iter().filter(|(_, n)| pred(n)).count()
}

/// Thread ids of the threads whose name satisfies `pred`.
pub fn tids(pred: impl Fn(&str) -> bool) -> Vec<i32> {
    threads()
        .into_iter()
        .filter(|(_, n)| pred(n))
        .map(|(t, _)| t)
        .collect()
}

/// CPU time of thread `tid`, ns: `schedstat`'s first field, or `stat`'s
/// utime + stime (clock ticks) where schedstat is missing.
pub fn task_cpu_ns(tid: i32) -> Option<u64> {
    if let Ok(s) = fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")) {
        if let Some(v) = s.split_whitespace().next().and_then(|x| x.parse().ok()) {
            return Some(v);
        }
    }
    let s = fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are
    // fields 14 and 15 of the whole line, so 12 and 13 after the `)`.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1_000_000_000 / hz)
}

/// Voluntary + involuntary context switches of thread `tid`.
pub fn task_ctx_switches(tid: i32) -> Option<u64> {
    let p = format!("/proc/self/task/{tid}/status");
    Some(
        status_field(&p, "voluntary_ctxt_switches:")?
            + status_field(&p, "nonvoluntary_ctxt_switches:")?,
    )
}

/// Read and write system calls of thread `tid` (`io`'s syscr + syscw).
pub fn task_rw_syscalls(tid: i32) -> Option<u64> {
    let p = format!("/proc/self/task/{tid}/io");
    Some(status_field(&p, "syscr:")? + status_field(&p, "syscw:")?)
}

// ------------------------------------------------------------- machines

/// Possible CPUs as the process sees them (`nproc`).
/// The CPUs this process may run on (its affinity mask, which `--cpus`
/// narrows), in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the
    // calling thread.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return (0..nproc()).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// How many CPUs this process may use (its affinity mask): what the
/// scenarios size themselves by (one producer, runtime worker or
/// connection batch per CPU). `cmwq::nr_cpus()` counts every possible CPU.
pub fn ncpu() -> usize {
    allowed_cpus().len().max(1)
}

/// Restrict this process to `cpus` (`--cpus`): called first thing, before
/// any other thread exists, so every thread and child process inherits it.
pub fn restrict_to(cpus: &[usize]) -> Result<(), String> {
    let allowed = allowed_cpus();
    if let Some(c) = cpus.iter().find(|c| !allowed.contains(c)) {
        return Err(format!(
            "--cpus: CPU {c} is not in this process's mask {allowed:?}"
        ));
    }
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: `c` is an allowed CPU, below CPU_SETSIZE.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the
    // calling thread.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(format!(
            "--cpus: sched_setaffinity: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Parse a CPU list (`0-3,5`, the kernel's cpulist format).
pub fn parse_cpulist(s: &str) -> Result<Vec<usize>, String> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |x: &str| {
            x.trim()
                .parse::<usize>()
                .map_err(|_| format!("--cpus {s}: {x:?} is not a CPU number"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("--cpus {s}: {a}-{b} is empty"));
                }
                v.extend(a..=b);
            }
            None => v.push(num(part)?),
        }
    }
    v.sort_unstable();
    v.dedup();
    if v.is_empty() || v.iter().any(|&c| c >= libc::CPU_SETSIZE as usize) {
        return Err(format!("--cpus {s}: no CPUs, or one out of range"));
    }
    Ok(v)
}

/// A CPU list in the kernel's cpulist format (`0-3,5`).
pub fn cpulist(cpus: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            cpus[i].to_string()
        } else {
            format!("{}-{}", cpus[i], cpus[j])
        });
        i = j + 1;
    }
    out.join(",")
}

pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPU model from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// `uname -srm`.
pub fn kernel() -> String {
    // SAFETY: an all-zero utsname is a valid value of this plain C struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!(
        "{} {} {}",
        field(&u.sysname),
        field(&u.release),
        field(&u.machine)
    )
}

/// Pin the calling thread to `cpu` (ignored if the CPU is not allowed).
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes inside `set`; `cpu` is below CPU_SETSIZE for
    // any machine this harness runs on (checked by the caller's nr_cpus).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is the
    // calling thread.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}

// ------------------------------------------------------- synchronisation

/// Counts down to zero; `wait` returns once it got there.
pub struct Latch {
    left: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Latch {
    pub fn new(n: usize) -> Latch {
        Latch {
            left: AtomicUsize::new(n),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }
    }

    pub fn count_down(&self) {
        if self.left.fetch_sub(1, AcqRel) == 1 {
            // Taking the lock orders this notification after a waiter's
            // check of `left`.
            let _g = self.lock.lock().unwrap();
            self.cv.notify_all();
        }
    }

    pub fn wait(&self) {
        let mut g = self.lock.lock().unwrap();
        while self.left.load(Acquire) > 0 {
            g = self.cv.wait(g).unwrap();
        }
    }
}

/// A gate threads wait at until it is opened.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
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

/// Wait until `c` reaches `target`, polling; false after `timeout`.
pub fn wait_count(c: &AtomicU64, target: u64, timeout: Duration) -> bool {
    let t = Instant::now();
    while c.load(Acquire) < target {
        if t.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_micros(20));
    }
    true
}

/// Number of threads of the process (`Threads` of `/proc/self/status`):
/// one small read, cheap enough to sample every millisecond even with
/// hundreds of threads.
pub fn thread_total() -> usize {
    status_field("/proc/self/status", "Threads:").unwrap_or(0) as usize
}

/// Samples the process's thread count in a thread of its own and keeps the
/// peak. The threads of one system are `peak - (threads that are not its
/// own)`, taken when sampling starts: see [`ThreadSampler::start`].
pub struct ThreadSampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<usize>,
    others: usize,
}

impl ThreadSampler {
    /// Start sampling every `every`; `own` tells a system's threads by name
    /// (the others, counted now, are assumed not to change meanwhile).
    pub fn start(every: Duration, own: impl Fn(&str) -> bool) -> ThreadSampler {
        // The threads that are not the system's, plus the sampler itself.
        let others = count_threads(|n| !own(n)) + 1;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name("bench-sampler".into())
            .spawn(move || {
                let mut peak = 0;
                loop {
                    peak = peak.max(thread_total());
                    if s.load(Relaxed) {
                        return peak;
                    }
                    std::thread::sleep(every);
                }
            })
            .expect("spawn the sampler thread");
        ThreadSampler {
            stop,
            handle,
            others,
        }
    }

    /// Stop and return the peak number of the system's own threads.
    pub fn stop(self) -> usize {
        self.stop.store(true, Relaxed);
        let peak = self.handle.join().expect("sampler thread");
        peak.saturating_sub(self.others)
    }
}

/// Tracks how many items run at once, and the most seen.
#[derive(Default)]
pub struct Concurrency {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Concurrency {
    pub fn enter(&self) {
        let n = self.now.fetch_add(1, AcqRel) + 1;
        self.peak.fetch_max(n, AcqRel);
    }

    pub fn leave(&self) {
        self.now.fetch_sub(1, AcqRel);
    }

    pub fn peak(&self) -> usize {
        self.peak.load(Acquire)
    }
}

/// `--traced`: turn this process's control socket on and keep a tracer
/// attached to it for the whole run (`cmwq trace` without the file), so
/// the figures show what recording costs. Children inherit it through
/// `CMWQ_BENCH_TRACED`. Returns whether tracing is on.
pub fn start_self_tracer() -> bool {
    if std::env::var_os("CMWQ_BENCH_TRACED").is_none() {
        return false;
    }
    if cmwq::Config::default().control(true).apply().is_err() {
        eprintln!("cmwq-bench: --traced: the pools had started already");
        return false;
    }
    cmwq::system_wq(); // start the pools, and with them the socket
    let Some(path) = cmwq::control::socket_path() else {
        eprintln!("cmwq-bench: --traced: no control socket");
        return false;
    };
    std::thread::Builder::new()
        .name("bench-tracer".into())
        .spawn(move || loop {
            use std::io::BufRead;
            let Ok(r) = cmwq::control::open(&path, "trace 3600000") else {
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            };
            // Read and drop, as fast as a real client writing a file.
            for _ in r.lines() {}
        })
        .expect("tracer thread");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert!(percentile(&[], 50.0).is_nan());
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn burn_uses_cpu_time() {
        let c = thread_cpu_ns();
        burn_cpu(Duration::from_millis(2));
        assert!(thread_cpu_ns() - c >= 2_000_000);
    }

    #[test]
    fn cpulists_parse_and_print() {
        assert_eq!(parse_cpulist("0-3,5").unwrap(), vec![0, 1, 2, 3, 5]);
        assert_eq!(parse_cpulist("2, 0,1").unwrap(), vec![0, 1, 2]);
        assert!(parse_cpulist("").is_err());
        assert!(parse_cpulist("3-1").is_err());
        assert!(parse_cpulist("x").is_err());
        assert_eq!(cpulist(&[0, 1, 2, 3, 5, 7, 8]), "0-3,5,7-8");
        assert_eq!(cpulist(&[4]), "4");
        assert!(allowed_cpus().len() == ncpu());
    }

    #[test]
    fn proc_readers_see_this_thread() {
        assert!(rss_kib() > 0);
        assert!(!threads().is_empty());
        let me = tids(|_| true);
        assert!(me.iter().any(|&t| task_cpu_ns(t).is_some()));
    }
}
