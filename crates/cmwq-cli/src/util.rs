//! Small helpers shared by the subcommands: CPU work that cannot be
//! optimised away, a concurrency tracker, a look at this process's worker
//! threads, and whether output may be coloured.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// Whether output may use colour: not when `NO_COLOR` is set to anything
/// but the empty string (<https://no-color.org>).
pub fn colour_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Pure CPU work: `rounds` steps of an FNV-1a style mix. The result depends
/// on every step, and `black_box` keeps the optimiser from skipping it.
pub fn burn(rounds: u64, seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64 ^ seed;
    for i in 0..black_box(rounds) {
        h ^= i;
        h = h.wrapping_mul(0x0000_0100_0000_01b3).rotate_left(7);
    }
    black_box(h)
}

/// How many [`burn`] rounds take about `target` on this machine, measured
/// on the calling thread.
pub fn calibrate(target: Duration) -> u64 {
    // Run a growing number of rounds until one run lasts long enough to be
    // timed reliably, then scale.
    let mut rounds = 1u64 << 14;
    loop {
        let t = Instant::now();
        burn(rounds, rounds);
        let took = t.elapsed();
        if took >= Duration::from_millis(20) || rounds >= 1 << 34 {
            let per_round = took.as_secs_f64() / rounds as f64;
            return ((target.as_secs_f64() / per_round) as u64).max(1);
        }
        rounds *= 2;
    }
}

/// Number of threads of this process whose name starts with `kworker/`:
/// the library's workers and rescuers (G28). Reads
/// `/proc/self/task/*/comm`; 0 where `/proc` is not mounted.
pub fn kworker_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("kworker/"))
        .count()
}

/// Whether this process has a thread named `name`.
pub fn thread_named(name: &str) -> bool {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return false;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .any(|comm| comm.trim_end() == name)
}

/// Counts how many executions of a group of work items are in their
/// function at once, and remembers the peak.
#[derive(Debug, Default)]
pub struct Concurrency {
    running: AtomicUsize,
    peak: AtomicUsize,
}

impl Concurrency {
    /// Mark the start of an execution; the returned guard marks its end
    /// when dropped. `Running::now` is the count including this one.
    pub fn enter(&self) -> Running<'_> {
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.peak.fetch_max(now, SeqCst);
        Running { of: self, now }
    }

    /// The most executions seen at once.
    pub fn peak(&self) -> usize {
        self.peak.load(SeqCst)
    }
}

/// An execution in progress, see [`Concurrency::enter`].
pub struct Running<'a> {
    of: &'a Concurrency,
    /// Executions in progress when this one started, itself included.
    pub now: usize,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.of.running.fetch_sub(1, SeqCst);
    }
}

/// `480 ms`, `5.23 s`: a duration for humans.
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.0} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_tracks_peak() {
        let c = Concurrency::default();
        {
            let a = c.enter();
            let b = c.enter();
            assert_eq!((a.now, b.now), (1, 2));
        }
        assert_eq!(c.enter().now, 1);
        assert_eq!(c.peak(), 2);
    }

    #[test]
    fn burn_depends_on_rounds() {
        assert_ne!(burn(1000, 1), burn(1001, 1));
        assert!(calibrate(Duration::from_millis(1)) > 0);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_millis(480)), "480 ms");
        assert_eq!(human(Duration::from_millis(5230)), "5.23 s");
    }
}
