//! Process-wide tuning: defaults, `CMWQ_*` environment variables, and an
//! explicit [`Config`] applied before first use.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::attrs::{AffinityScope, ParseError};
use crate::event::{Event, LogHook};
use crate::topology::Scope;
use crate::Error;

/// How blocked workers are detected (G15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Detect {
    /// The best mode this process may use: `Sentinel`, else `Perf`, else
    /// `Proc`, else `Progress`.
    Auto,
    /// A per-CPU sentinel thread at `SCHED_IDLE` that runs only when its
    /// CPU would otherwise go idle while a pool there has work pending
    /// behind a running worker: it finds the runner blocked and starts the
    /// next worker with a local wake-up. Needs no privilege; `/proc`
    /// sampling backs it up where it is starved by other load or cannot
    /// run on a CPU.
    Sentinel,
    /// Context-switch records from `perf_event_open` (exact: tells blocking
    /// from preemption).
    Perf,
    /// Sampling `/proc/self/task/TID/stat` and `schedstat` of workers that
    /// have run one item longer than the stall window.
    Proc,
    /// No item of a pool finished for a while although work is pending.
    Progress,
    /// Only the explicit hint [`blocking`](crate::blocking).
    Hint,
}

impl Detect {
    /// Every mode.
    const ALL: [Detect; 6] = [
        Detect::Auto,
        Detect::Sentinel,
        Detect::Perf,
        Detect::Proc,
        Detect::Progress,
        Detect::Hint,
    ];

    /// The name used by `CMWQ_DETECT` and `dump()`: `auto`, `sentinel`,
    /// `perf`, `proc`, `progress` or `hint`. What `Display` writes and
    /// `FromStr` reads.
    pub fn name(self) -> &'static str {
        match self {
            Detect::Auto => "auto",
            Detect::Sentinel => "sentinel",
            Detect::Perf => "perf",
            Detect::Proc => "proc",
            Detect::Progress => "progress",
            Detect::Hint => "hint",
        }
    }
}

impl fmt::Display for Detect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The names of [`Detect::name`], any case, surrounding spaces ignored
/// (as `CMWQ_DETECT` is read).
///
/// ```
/// use cmwq::Detect;
/// assert_eq!("Perf".parse::<Detect>(), Ok(Detect::Perf));
/// assert_eq!(Detect::Sentinel.to_string(), "sentinel");
/// assert!("fast".parse::<Detect>().is_err());
/// ```
impl FromStr for Detect {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        ParseError::find(s, "detection mode", &Self::ALL, |d| d.name())
    }
}

/// Process-wide settings, applied before the first workqueue is used.
///
/// Defaults come first, then `CMWQ_*` environment variables, then what is
/// set here:
///
/// ```
/// use std::time::Duration;
/// cmwq::Config::default()
///     .cpu_intensive_thresh(Duration::from_millis(20))
///     .idle_timeout(Duration::from_secs(60))
///     .apply()
///     .expect("before first use");
/// # cmwq::system_wq();
/// assert!(cmwq::Config::default().apply().is_err()); // too late now
/// ```
#[derive(Clone, Default)]
pub struct Config {
    cpu_intensive_thresh: Option<Duration>,
    detect: Option<Detect>,
    stall_window: Option<Duration>,
    watchdog_thresh: Option<Duration>,
    idle_timeout: Option<Duration>,
    mayday_timeout: Option<Duration>,
    affinity_scope: Option<AffinityScope>,
    power_efficient: Option<bool>,
    control: Option<bool>,
    log: Option<LogHook>,
    worker_stack_size: Option<usize>,
    on_worker_start: Option<ThreadHook>,
    on_worker_stop: Option<ThreadHook>,
}

/// A hook run on a worker thread as it starts or before it exits.
pub(crate) type ThreadHook = Arc<dyn Fn() + Send + Sync>;

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("cpu_intensive_thresh", &self.cpu_intensive_thresh)
            .field("detect", &self.detect)
            .field("stall_window", &self.stall_window)
            .field("watchdog_thresh", &self.watchdog_thresh)
            .field("idle_timeout", &self.idle_timeout)
            .field("mayday_timeout", &self.mayday_timeout)
            .field("affinity_scope", &self.affinity_scope)
            .field("power_efficient", &self.power_efficient)
            .field("control", &self.control)
            .field("log", &self.log.is_some())
            .field("worker_stack_size", &self.worker_stack_size)
            .field("on_worker_start", &self.on_worker_start.is_some())
            .field("on_worker_stop", &self.on_worker_stop.is_some())
            .finish()
    }
}

impl Config {
    /// Run time after which an item that does not block counts as a CPU hog
    /// and leaves concurrency management (G16). Zero disables.
    /// Default 10 ms; `CMWQ_CPU_INTENSIVE_THRESH_US`.
    #[must_use = "a Config does nothing until .apply()"]
    pub fn cpu_intensive_thresh(mut self, d: Duration) -> Self {
        self.cpu_intensive_thresh = Some(d);
        self
    }

    /// Block detection mode (G15). Default [`Detect::Auto`]; `CMWQ_DETECT`.
    #[must_use = "a Config does nothing until .apply()"]
    pub fn detect(mut self, mode: Detect) -> Self {
        self.detect = Some(mode);
        self
    }

    /// A block shorter than this does not start another worker. Default
    /// 0 (as in the kernel: a block that leaves the CPU idle starts the
    /// next worker; chosen by measurement, see the monitor's README);
    /// `CMWQ_STALL_WINDOW_US`.
    #[must_use = "a Config does nothing until .apply()"]
    pub fn stall_window(mut self, d: Duration) -> Self {
        self.stall_window = Some(d);
        self
    }

    /// Report a pool that makes no progress for this long (G23). Zero
    /// disables. Default 30 s; `CMWQ_WATCHDOG_THRESH_S`.
    #[must_use = "a Config does nothing until .apply()"]
    pub fn watchdog_thresh(mut self, d: Duration) -> Self {
        self.watchdog_thresh = Some(d);
        self
    }

    /// Idle workers beyond the kernel's rule exit after this long (G21).
    /// Default 300 s; `CMWQ_IDLE_TIMEOUT_S`.
    #[must_use = "a Config does nothing until .apply()"]
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = Some(d);
        self
    }

    /// How long a pool waits for a new worker before calling rescuers
    /// (G22). Default 10 ms; `CMWQ_MAYDAY_TIMEOUT_MS`.
    #[must_use = "a Config does nothing until .apply()"]
    pub fn mayday_timeout(mut self, d: Duration) -> Self {
        self.mayday_timeout = Some(d);
        self
    }

    /// The affinity scope that [`AffinityScope::Default`] stands for.
    /// Default [`AffinityScope::Cache`].
    #[must_use = "a Config does nothing until .apply()"]
    pub fn default_affinity_scope(mut self, scope: AffinityScope) -> Self {
        self.affinity_scope = Some(scope);
        self
    }

    /// Make `POWER_EFFICIENT` workqueues unbound (the kernel's
    /// `workqueue.power_efficient`). Default false.
    #[must_use = "a Config does nothing until .apply()"]
    pub fn power_efficient(mut self, on: bool) -> Self {
        self.power_efficient = Some(on);
        self
    }

    /// Send the library's reports ([`Event`]: contained panics, refused
    /// queues, stalls, unreadable `CMWQ_*` variables...) to `hook`, and
    /// nowhere else. A closure or a `fn`; it may run on any thread,
    /// workers included, and should not block for long.
    ///
    /// Without a hook they go to the `tracing` facade with the `tracing`
    /// feature, else to the `log` facade with the `log` feature (target
    /// `cmwq`), else to stderr: one place, never two.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let s = seen.clone();
    /// cmwq::Config::default()
    ///     .log(move |ev: &cmwq::Event| s.lock().unwrap().push(ev.to_string()))
    ///     .apply()
    ///     .expect("before first use");
    /// cmwq::spawn(|| panic!("oops")).flush(); // contained (G5), reported
    /// assert!(seen.lock().unwrap()[0].contains("panicked: oops"));
    /// ```
    #[must_use = "a Config does nothing until .apply()"]
    pub fn log(mut self, hook: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.log = Some(Arc::new(hook));
        self
    }

    /// Start the control socket (G32) with the first workqueue: a Unix socket at
    /// `$XDG_RUNTIME_DIR/cmwq/PID.sock`, else `/tmp/cmwq-UID/PID.sock`,
    /// through which `cmwq monitor PID`, `cmwq dump PID` and `cmwq trace
    /// PID` look inside this process. Off by default; `CMWQ_CONTROL=1`.
    /// Only peers of the same uid (or root) are served. The protocol is
    /// described in the [`control`](crate::control) module.
    #[must_use = "a Config does nothing until .apply()"]
    pub fn control(mut self, on: bool) -> Self {
        self.control = Some(on);
        self
    }

    /// The stack size, in bytes, of the threads that run work items: the
    /// workers of every pool and the rescuers of `MEM_RECLAIM` workqueues
    /// (not the library's own threads: the monitor, the timer thread, the
    /// sentinels, the control socket's). Default: the standard library's
    /// (`RUST_MIN_STACK`, else 2 MiB), as rayon's and tokio's builders.
    /// Rounded up by the system to its page size and minimum.
    ///
    /// ```
    /// cmwq::Config::default()
    ///     .worker_stack_size(8 << 20) // deep recursion in items
    ///     .apply()
    ///     .expect("before first use");
    /// ```
    #[must_use = "a Config does nothing until .apply()"]
    pub fn worker_stack_size(mut self, bytes: usize) -> Self {
        self.worker_stack_size = Some(bytes);
        self
    }

    /// Run `f` on each thread that runs work items (workers and rescuers)
    /// when it starts, before its first item: to set up thread-local
    /// state, register the thread with a profiler, and the like. A worker
    /// may start at any time (a pool grows when its items block). A panic
    /// in `f` is contained and reported ([`Event::Misuse`]).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// static STARTED: AtomicUsize = AtomicUsize::new(0);
    /// cmwq::Config::default()
    ///     .on_worker_start(|| {
    ///         STARTED.fetch_add(1, Ordering::Relaxed);
    ///     })
    ///     .apply()
    ///     .expect("before first use");
    /// cmwq::spawn(|| {}).flush();
    /// assert!(STARTED.load(Ordering::Relaxed) >= 1);
    /// ```
    #[must_use = "a Config does nothing until .apply()"]
    pub fn on_worker_start(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_worker_start = Some(Arc::new(f));
        self
    }

    /// Run `f` on each thread that runs work items (workers and rescuers)
    /// before it exits: an idle worker leaving after the idle timeout
    /// (G21) or giving way to another pool, a rescuer whose workqueue is
    /// destroyed. Threads still running when the process exits do not run
    /// it. A panic in `f` is contained and reported ([`Event::Misuse`]).
    #[must_use = "a Config does nothing until .apply()"]
    pub fn on_worker_stop(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_worker_stop = Some(Arc::new(f));
        self
    }

    /// Install these settings. An error once the pools have started.
    pub fn apply(self) -> Result<(), Error> {
        if let Some(AffinityScope::Default) = self.affinity_scope {
            return Err(Error::InvalidSetting {
                name: "default_affinity_scope",
                value: "Default".into(),
            });
        }
        let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        if SETTINGS.get().is_some() {
            return Err(Error::AlreadyStarted("Config"));
        }
        *pending = Some(self);
        Ok(())
    }
}

// The defaults, one named constant each: what a setting is when neither
// `Config` nor its `CMWQ_*` variable gives it.

/// Default CPU-hog threshold (G16): 10 ms, the kernel's
/// `wq_cpu_intensive_thresh_us`.
pub(crate) const DEFAULT_CPU_INTENSIVE_THRESH: Duration = Duration::from_millis(10);

/// Default block detection mode (G15).
pub(crate) const DEFAULT_DETECT: Detect = Detect::Auto;

/// Default stall window (G15): 0, the kernel's behaviour. Measured at 0,
/// 20, 50 and 200 us (`monitor/README.md`): with the sentinels, any window
/// adds itself plus a timer wake-up to every detected block.
pub(crate) const DEFAULT_STALL_WINDOW: Duration = Duration::ZERO;

/// Default watchdog threshold (G23): 30 s, the kernel's
/// `workqueue.watchdog_thresh`.
pub(crate) const DEFAULT_WATCHDOG_THRESH: Duration = Duration::from_secs(30);

/// Default idle timeout (G21): how long an idle worker beyond the kernel's
/// rule stays (the kernel's `IDLE_WORKER_TIMEOUT` is 300 s).
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Default mayday timeout (G22): the kernel's `MAYDAY_INITIAL_TIMEOUT`
/// (10 ms).
pub(crate) const DEFAULT_MAYDAY_TIMEOUT: Duration = Duration::from_millis(10);

/// Default for what [`AffinityScope::Default`] stands for: the kernel's
/// `WQ_AFFN_CACHE`.
pub(crate) const DEFAULT_AFFINITY_SCOPE: Scope = Scope::Cache;

/// Default for `POWER_EFFICIENT` workqueues: they stay per-CPU.
pub(crate) const DEFAULT_POWER_EFFICIENT: bool = false;

/// Default for the control socket (G32): off unless `CMWQ_CONTROL` is on.
pub(crate) const DEFAULT_CONTROL: bool = false;

/// Wait after a failed worker creation: the kernel's `CREATE_COOLDOWN`
/// (100 ms). Not a setting.
pub(crate) const CREATE_COOLDOWN: Duration = Duration::from_millis(100);

/// The resolved settings.
pub(crate) struct Settings {
    pub(crate) cpu_intensive_thresh: Option<Duration>,
    pub(crate) detect: Detect,
    pub(crate) stall_window: Duration,
    pub(crate) watchdog_thresh: Option<Duration>,
    pub(crate) idle_timeout: Duration,
    pub(crate) mayday_timeout: Duration,
    pub(crate) affinity_scope: Scope,
    pub(crate) power_efficient: bool,
    /// Start the control socket (G32).
    pub(crate) control: bool,
    /// Where reports go (`None`: the facade or stderr).
    pub(crate) log: Option<LogHook>,
    /// `CMWQ_*` variables that could not be read, with their values:
    /// reported (through `log`) once the settings are in place.
    pub(crate) rejected: Vec<(&'static str, String)>,
    /// Stack size of workers and rescuers (`None`: std's default).
    pub(crate) worker_stack_size: Option<usize>,
    /// Run on a worker or rescuer as it starts.
    pub(crate) on_worker_start: Option<ThreadHook>,
    /// Run on a worker or rescuer before it exits.
    pub(crate) on_worker_stop: Option<ThreadHook>,
    /// Wait after a failed worker creation (the kernel's CREATE_COOLDOWN).
    pub(crate) create_cooldown: Duration,
}

static PENDING: Mutex<Option<Config>> = Mutex::new(None);
static SETTINGS: OnceLock<Settings> = OnceLock::new();

pub(crate) fn settings() -> &'static Settings {
    match SETTINGS.get() {
        Some(s) => s,
        None => init_settings(),
    }
}

/// Resolve the settings (once), then report the environment variables
/// that could not be read, through the configured hook: after the
/// settings are in place, so that a hook calling into the library finds
/// them.
#[cold]
fn init_settings() -> &'static Settings {
    let mut first = false;
    let s = SETTINGS.get_or_init(|| {
        first = true;
        let cfg = PENDING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default();
        let s = resolve(cfg, |k| std::env::var(k).ok());
        crate::event::set_hook(s.log.clone());
        s
    });
    if first {
        for (name, value) in &s.rejected {
            crate::event::report(Event::InvalidSetting { name, value });
        }
    }
    s
}

/// A thread that runs work items (worker or rescuer) named `name`, with
/// the configured stack size.
pub(crate) fn item_thread(name: String) -> std::thread::Builder {
    let b = std::thread::Builder::new().name(name);
    match settings().worker_stack_size {
        Some(bytes) => b.stack_size(bytes),
        None => b,
    }
}

/// On a thread that runs work items: its start hook (`start`) or its stop
/// hook, if configured. A panic in it is contained and reported.
pub(crate) fn run_thread_hook(start: bool) {
    let s = settings();
    let (hook, which) = if start {
        (&s.on_worker_start, "on_worker_start")
    } else {
        (&s.on_worker_stop, "on_worker_stop")
    };
    let Some(hook) = hook else { return };
    if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook())) {
        crate::event::report(Event::Misuse {
            message: &format!(
                "the {which} hook panicked: {}",
                crate::util::panic_message(&*p)
            ),
        });
        // The payload may run user code when dropped; contain that too.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(p)));
    }
}

/// A number from the environment; a value that is not one is recorded in
/// `rejected` (and ignored).
fn env_num(
    get: &impl Fn(&str) -> Option<String>,
    rejected: &mut Vec<(&'static str, String)>,
    name: &'static str,
) -> Option<u64> {
    let v = get(name)?;
    match v.trim().parse::<u64>() {
        Ok(n) => Some(n),
        Err(_) => {
            rejected.push((name, v));
            None
        }
    }
}

/// An on/off environment value: `1`, `true`, `yes`, `on` are on.
fn env_flag(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

fn resolve(cfg: Config, get: impl Fn(&str) -> Option<String>) -> Settings {
    let mut rejected = Vec::new();
    let detect = cfg.detect.unwrap_or_else(|| match get("CMWQ_DETECT") {
        None => DEFAULT_DETECT,
        // Set but empty: the default.
        Some(v) if v.trim().is_empty() => DEFAULT_DETECT,
        Some(v) => v.parse().unwrap_or_else(|_| {
            rejected.push(("CMWQ_DETECT", v));
            DEFAULT_DETECT
        }),
    });
    let mut num = |name| env_num(&get, &mut rejected, name);
    let thresh = cfg
        .cpu_intensive_thresh
        .or_else(|| num("CMWQ_CPU_INTENSIVE_THRESH_US").map(Duration::from_micros))
        .unwrap_or(DEFAULT_CPU_INTENSIVE_THRESH);
    let watchdog = cfg
        .watchdog_thresh
        .or_else(|| num("CMWQ_WATCHDOG_THRESH_S").map(Duration::from_secs))
        .unwrap_or(DEFAULT_WATCHDOG_THRESH);
    Settings {
        cpu_intensive_thresh: (!thresh.is_zero()).then_some(thresh),
        detect,
        stall_window: cfg
            .stall_window
            .or_else(|| num("CMWQ_STALL_WINDOW_US").map(Duration::from_micros))
            .unwrap_or(DEFAULT_STALL_WINDOW),
        watchdog_thresh: (!watchdog.is_zero()).then_some(watchdog),
        idle_timeout: cfg
            .idle_timeout
            .or_else(|| num("CMWQ_IDLE_TIMEOUT_S").map(Duration::from_secs))
            .unwrap_or(DEFAULT_IDLE_TIMEOUT),
        mayday_timeout: cfg
            .mayday_timeout
            .or_else(|| num("CMWQ_MAYDAY_TIMEOUT_MS").map(Duration::from_millis))
            .unwrap_or(DEFAULT_MAYDAY_TIMEOUT),
        affinity_scope: cfg
            .affinity_scope
            .and_then(AffinityScope::scope)
            .unwrap_or(DEFAULT_AFFINITY_SCOPE),
        power_efficient: cfg.power_efficient.unwrap_or(DEFAULT_POWER_EFFICIENT),
        control: cfg
            .control
            .unwrap_or_else(|| get("CMWQ_CONTROL").map_or(DEFAULT_CONTROL, |v| env_flag(&v))),
        log: cfg.log,
        rejected,
        worker_stack_size: cfg.worker_stack_size,
        on_worker_start: cfg.on_worker_start,
        on_worker_stop: cfg.on_worker_stop,
        create_cooldown: CREATE_COOLDOWN,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_defaults_and_config_overrides_env() {
        let env = |k: &str| match k {
            "CMWQ_CPU_INTENSIVE_THRESH_US" => Some("5000".to_string()),
            "CMWQ_DETECT" => Some("proc".to_string()),
            "CMWQ_STALL_WINDOW_US" => Some("bogus".to_string()),
            "CMWQ_WATCHDOG_THRESH_S" => Some("0".to_string()),
            _ => None,
        };
        let s = resolve(Config::default(), env);
        assert_eq!(s.cpu_intensive_thresh, Some(Duration::from_millis(5)));
        assert_eq!(s.detect, Detect::Proc);
        assert_eq!(s.stall_window, DEFAULT_STALL_WINDOW, "bad value ignored");
        assert_eq!(
            s.rejected,
            [("CMWQ_STALL_WINDOW_US", "bogus".to_string())],
            "and reported"
        );
        let bad = |k: &str| (k == "CMWQ_DETECT").then(|| "fast".to_string());
        let b = resolve(Config::default(), bad);
        assert_eq!(b.detect, DEFAULT_DETECT);
        assert_eq!(b.rejected, [("CMWQ_DETECT", "fast".to_string())]);
        let empty = |k: &str| (k == "CMWQ_DETECT").then(String::new);
        assert!(resolve(Config::default(), empty).rejected.is_empty());
        assert_eq!(s.watchdog_thresh, None, "0 disables");
        assert_eq!(s.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert!(!s.control, "the control socket is off by default");
        let on = |k: &str| (k == "CMWQ_CONTROL").then(|| "1".to_string());
        assert!(resolve(Config::default(), on).control);
        assert!(!resolve(Config::default().control(false), on).control);
        let off = |k: &str| (k == "CMWQ_CONTROL").then(|| "0".to_string());
        assert!(!resolve(Config::default(), off).control);
        let s = resolve(
            Config::default()
                .detect(Detect::Hint)
                .cpu_intensive_thresh(Duration::ZERO),
            env,
        );
        assert_eq!(s.detect, Detect::Hint);
        assert_eq!(s.cpu_intensive_thresh, None);
    }

    /// The guarantees (`docs/guarantees.md`) tell users the defaults they rely on: a
    /// default changed here fails this test until the guarantee says it.
    #[test]
    fn guarantees_state_the_defaults() {
        let doc = include_str!("../docs/guarantees.md");
        let doc = doc.split_whitespace().collect::<Vec<_>>().join(" ");
        for stated in [
            format!("(default {} ms;", DEFAULT_CPU_INTENSIVE_THRESH.as_millis()),
            format!("(default {} s;", DEFAULT_IDLE_TIMEOUT.as_secs()),
            format!("default {} ms)", DEFAULT_MAYDAY_TIMEOUT.as_millis()),
            format!(
                "default {} s, 0 disables",
                DEFAULT_WATCHDOG_THRESH.as_secs()
            ),
        ] {
            assert!(
                doc.contains(&stated),
                "docs/guarantees.md does not say {stated:?}"
            );
        }
    }
}
