//! Per-workqueue statistics (G29): the columns of the kernel's
//! `tools/workqueue/wq_monitor.py`.

use std::time::Duration;

/// `wq_monitor.py`'s columns for one workqueue. Plain data, read from
/// [`Workqueue::stats`](crate::Workqueue::stats); more counters may come
/// (`non_exhaustive`: start from `WqStats::default()` to make one).
///
/// ```
/// let wq = cmwq::Workqueue::new("stats_doc").unwrap();
/// let w = cmwq::Work::new(|_| {});
/// wq.queue(&w);
/// wq.flush();
/// let s = wq.stats();
/// assert_eq!(s.total, 1);
/// assert_eq!(s.in_flight, 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WqStats {
    /// Executions started.
    pub total: u64,
    /// Items queued (active or throttled) or running now.
    pub in_flight: u64,
    /// CPU time spent in its work functions.
    pub cpu_time: Duration,
    /// Executions that crossed `cpu_intensive_thresh` without blocking (G16).
    pub cpu_hog: u64,
    /// Workers woken by concurrency management while its items ran.
    pub cm_wakeups: u64,
    /// Times its rescuer was called for (G22).
    pub mayday: u64,
    /// Items its rescuer ran (G22).
    pub rescued: u64,
    /// Executions that panicked (G5).
    pub panics: u64,
}

impl WqStats {
    /// What happened between `earlier` and `self`, two readings of one
    /// workqueue: each counter's growth (`in_flight` is `self`'s, a level,
    /// not a count), as `wq_monitor.py -i` shows an interval.
    ///
    /// ```
    /// let wq = cmwq::Workqueue::new("since_doc").unwrap();
    /// let before = wq.stats();
    /// wq.spawn(|| {}).flush();
    /// assert_eq!(wq.stats().since(&before).total, 1);
    /// ```
    #[must_use]
    pub fn since(&self, earlier: &WqStats) -> WqStats {
        WqStats {
            total: self.total.saturating_sub(earlier.total),
            in_flight: self.in_flight,
            cpu_time: self.cpu_time.saturating_sub(earlier.cpu_time),
            cpu_hog: self.cpu_hog.saturating_sub(earlier.cpu_hog),
            cm_wakeups: self.cm_wakeups.saturating_sub(earlier.cm_wakeups),
            mayday: self.mayday.saturating_sub(earlier.mayday),
            rescued: self.rescued.saturating_sub(earlier.rescued),
            panics: self.panics.saturating_sub(earlier.panics),
        }
    }

    /// The header of [`row`](Self::row), as `wq_monitor.py` prints it
    /// (plus a panics column).
    pub fn header() -> String {
        format!(
            "{:>24} {:>8} {:>5} {:>8} {:>7} {:>7} {:>7} {:>7} {:>6}",
            "", "total", "infl", "CPUtime", "CPUitsv", "CMW/RPR", "mayday", "rescued", "panics"
        )
    }

    /// One table row for workqueue `name`. Columns that do not apply to the
    /// workqueue's kind print `-` (as `wq_monitor.py` does): `unmanaged`
    /// (no concurrency management: `UNBOUND | CPU_INTENSIVE`) dashes
    /// CPUitsv and CMW, `mem_reclaim` false dashes mayday and rescued.
    pub fn row(&self, name: &str, unmanaged: bool, mem_reclaim: bool) -> String {
        let dash = |apply: bool, v: u64| if apply { v.to_string() } else { "-".into() };
        // The last 24 characters (not bytes: names may be any UTF-8).
        let skip = name.chars().count().saturating_sub(24);
        let tail = match name.char_indices().nth(skip) {
            Some((i, _)) => &name[i..],
            None => name,
        };
        format!(
            "{:24} {:8} {:5} {:8.1} {:>7} {:>7} {:>7} {:>7} {:>6}",
            tail,
            self.total,
            self.in_flight,
            self.cpu_time.as_secs_f64(),
            dash(!unmanaged, self.cpu_hog),
            dash(!unmanaged, self.cm_wakeups),
            dash(mem_reclaim, self.mayday),
            dash(mem_reclaim, self.rescued),
            self.panics
        )
    }
}
