//! `cmwq top PID [--once]`: a view of another process's cmwq worker pools
//! from `/proc` alone, without the process's cooperation.
//!
//! Every thread of the process is looked at (`/proc/PID/task/TID/stat`);
//! the cmwq ones are told apart by their names:
//!
//! * `kworker/C:N` and `kworker/C:NH`: workers of CPU C's normal and
//!   high-priority pools (`cpu0`, `cpu0 H`);
//! * `kworker/uP:N`: workers of unbound pool P (`unbound u3`);
//! * `kworker/R-NAME`: rescuers (the `rescuers` group);
//! * `cmwq-*` (monitor, timer, sentinels, control socket, ...) and any
//!   other `kworker/` name: the `library` group.
//!
//! A worker's state comes from the stat's state field: `R` is running,
//! `D` is blocked in the kernel (uninterruptibly). A sleeping worker is
//! *idle* when `/proc/TID/syscall` shows it parked in cmwq's own futex
//! wait (`FUTEX_WAIT_BITSET` with the bitset `0x636d7771`, ASCII "cmwq"),
//! else *blocked* in whatever system call it is in. Reading that file
//! needs ptrace access to the process; where it is refused, sleeping
//! workers are shown as just "sleeping" and the header says so.
//!
//! When the process has a control socket (`CMWQ_CONTROL=1`), its
//! `workers` reply adds what only the library knows: the item each worker
//! runs (ITEM column), and idle or known-blocked where `/proc` cannot say;
//! and, since it lists every worker, threads named like workers that are
//! not (threads an item started inherit its worker's name) go to a group
//! of their own, `started by items`. Without one, `/proc` alone is used
//! (and cannot tell those apart); nothing is asked of the process.
//!
//! CPU% is over the last interval, 100% being one CPU: the delta of the
//! threads' `utime + stime` over the wall-clock delta.
//!
//! `--once` takes two samples 500 ms apart and prints a plain-text
//! snapshot. Otherwise a full-screen view refreshes every second until
//! `q`, Esc or Ctrl-C; when the watched process exits, the view says
//! "process exited" and quits at the next key press or after 2 s.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{cursor, execute};
use ratatui::backend::CrosstermBackend;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};
use ratatui::{Frame, Terminal};

/// The futex bitset an idle cmwq worker parks with: ASCII "cmwq".
const PARK_BITSET: u64 = 0x636d_7771;
/// `FUTEX_WAIT_BITSET`, the futex op of a parked worker.
const FUTEX_WAIT_BITSET: u64 = 9;
/// The futex op's command bits (without `FUTEX_PRIVATE_FLAG` and
/// `FUTEX_CLOCK_REALTIME`).
const FUTEX_CMD_MASK: u64 = 0x7f;

/// The futex system call's number, where known.
#[cfg(target_arch = "x86_64")]
const FUTEX_NR: Option<i64> = Some(202);
#[cfg(target_arch = "aarch64")]
const FUTEX_NR: Option<i64> = Some(98);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const FUTEX_NR: Option<i64> = None;

/// Names of the system calls a blocked worker is most likely in.
#[cfg(target_arch = "x86_64")]
const SYSCALL_NAMES: &[(i64, &str)] = &[
    (0, "read"),
    (1, "write"),
    (7, "poll"),
    (17, "pread64"),
    (18, "pwrite64"),
    (19, "readv"),
    (20, "writev"),
    (23, "select"),
    (35, "nanosleep"),
    (42, "connect"),
    (43, "accept"),
    (44, "sendto"),
    (45, "recvfrom"),
    (46, "sendmsg"),
    (47, "recvmsg"),
    (61, "wait4"),
    (74, "fsync"),
    (75, "fdatasync"),
    (202, "futex"),
    (230, "clock_nanosleep"),
    (232, "epoll_wait"),
    (257, "openat"),
    (270, "pselect6"),
    (271, "ppoll"),
    (281, "epoll_pwait"),
    (288, "accept4"),
    (441, "epoll_pwait2"),
    (449, "futex_waitv"),
];
#[cfg(target_arch = "aarch64")]
const SYSCALL_NAMES: &[(i64, &str)] = &[
    (22, "epoll_pwait"),
    (56, "openat"),
    (63, "read"),
    (64, "write"),
    (65, "readv"),
    (66, "writev"),
    (67, "pread64"),
    (68, "pwrite64"),
    (72, "pselect6"),
    (73, "ppoll"),
    (82, "fsync"),
    (83, "fdatasync"),
    (98, "futex"),
    (101, "nanosleep"),
    (115, "clock_nanosleep"),
    (202, "accept"),
    (203, "connect"),
    (206, "sendto"),
    (207, "recvfrom"),
    (211, "sendmsg"),
    (212, "recvmsg"),
    (242, "accept4"),
    (260, "wait4"),
    (441, "epoll_pwait2"),
    (449, "futex_waitv"),
];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SYSCALL_NAMES: &[(i64, &str)] = &[];

/// How often the live view samples.
const REFRESH: Duration = Duration::from_secs(1);
/// The gap between the two samples of `--once`.
const ONCE_GAP: Duration = Duration::from_millis(500);
/// How long the live view stays up after the watched process exited.
const EXIT_LINGER: Duration = Duration::from_secs(2);

/// Look at process `pid`'s cmwq threads: one plain-text snapshot on stdout
/// with `once`, else a live full-screen view until `q`. The exit status is
/// 0, or 1 after a message on stderr starting with `cmwq top: ` (no such
/// process, not ours, no cmwq threads, no terminal, ...).
pub fn run(pid: u32, once: bool) -> ExitCode {
    let result = if once { run_once(pid) } else { run_live(pid) };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cmwq top: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------
// Errors.

/// Why `cmwq top` cannot go on.
#[derive(Debug)]
enum TopError {
    /// No such process.
    NoProcess(u32),
    /// The PID is a thread of another process.
    Thread { tid: u32, tgid: u32 },
    /// Another user's process.
    NotYours { pid: u32, uid: u32 },
    /// A `/proc` file we may not read.
    Permission { pid: u32, path: String },
    /// The process has no thread named like cmwq's.
    NoCmwq { pid: u32, name: String },
    /// The process exited (or its PID now names another process).
    Exited(u32),
    /// The live view needs a terminal.
    NotATerminal,
    /// Anything else.
    Io(String),
}

impl fmt::Display for TopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopError::NoProcess(pid) => write!(f, "no process {pid}"),
            TopError::Thread { tid, tgid } => write!(
                f,
                "{tid} is a thread of process {tgid}: give the process's PID ({tgid})"
            ),
            TopError::NotYours { pid, uid } => {
                write!(f, "process {pid} is not yours (it belongs to uid {uid})")
            }
            TopError::Permission { pid, path } => write!(
                f,
                "permission denied reading {path}: cannot look inside process {pid}"
            ),
            TopError::NoCmwq { pid, name } => write!(
                f,
                "process {pid} ({name}) has no cmwq threads (kworker/... or cmwq-...)"
            ),
            TopError::Exited(pid) => write!(f, "process {pid} exited"),
            TopError::NotATerminal => write!(
                f,
                "stdout is not a terminal: use --once for a plain-text snapshot"
            ),
            TopError::Io(msg) => f.write_str(msg),
        }
    }
}

impl From<io::Error> for TopError {
    fn from(e: io::Error) -> TopError {
        TopError::Io(format!("terminal: {e}"))
    }
}

// ---------------------------------------------------------------------
// Pure parsing and classification.

/// The fields of `/proc/PID/task/TID/stat` that `top` uses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    /// Field 2, between the first `(` and the last `)`: the thread's name,
    /// the same as `/proc/PID/task/TID/comm`.
    comm: String,
    /// Field 3: `R`, `S`, `D`, `Z`, `T`, ...
    state: char,
    /// Fields 14 + 15, `utime + stime`, in clock ticks.
    ticks: u64,
    /// Field 22, the start time in clock ticks after boot (tells a reused
    /// TID from the thread that had it).
    start: u64,
    /// Field 39, the CPU it last ran on.
    cpu: Option<u32>,
}

/// Parse a `stat` line. The name may hold spaces and `)`, so the fields
/// after it are found after the *last* `)`.
fn parse_stat(s: &str) -> Option<Stat> {
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    if close < open {
        return None;
    }
    let comm = s[open + 1..close].to_string();
    // Field N (1-based) is at index N - 3 from here: field 3 is index 0.
    let f: Vec<&str> = s[close + 1..].split_whitespace().collect();
    let field = |n: usize| f.get(n - 3).copied();
    let state = field(3)?.chars().next()?;
    let utime: u64 = field(14)?.parse().ok()?;
    let stime: u64 = field(15)?.parse().ok()?;
    let start: u64 = field(22)?.parse().ok()?;
    let cpu = field(39).and_then(|c| c.parse().ok());
    Some(Stat {
        comm,
        state,
        ticks: utime.saturating_add(stime),
        start,
        cpu,
    })
}

/// A worker pool, as told by its workers' names. The order is the display
/// order: CPU pools by CPU (normal, then high priority), then unbound
/// pools by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum PoolKey {
    /// A per-CPU pool.
    Cpu { cpu: u32, highpri: bool },
    /// An unbound pool, by pool id.
    Unbound(u32),
}

/// A group of cmwq threads: a pool's workers, the rescuers, or the
/// library's own threads. Ordered for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Group {
    /// The workers of one pool.
    Pool(PoolKey),
    /// `kworker/R-*`.
    Rescuers,
    /// `cmwq-*` and unrecognised `kworker/*`.
    Library,
    /// Named like a pool's worker but not one, by the control socket's
    /// list: a thread a work item started (it inherits the worker's name).
    NotWorkers,
}

impl Group {
    /// `cpu0`, `cpu0 H`, `unbound u3`, `rescuers`, `library`.
    fn label(self) -> String {
        match self {
            Group::Pool(PoolKey::Cpu {
                cpu,
                highpri: false,
            }) => format!("cpu{cpu}"),
            Group::Pool(PoolKey::Cpu { cpu, highpri: true }) => format!("cpu{cpu} H"),
            Group::Pool(PoolKey::Unbound(id)) => format!("unbound u{id}"),
            Group::Rescuers => "rescuers".into(),
            Group::Library => "library".into(),
            Group::NotWorkers => "started by items".into(),
        }
    }

    /// Whether the group's threads are pool workers.
    fn is_pool(self) -> bool {
        matches!(self, Group::Pool(_))
    }
}

/// What a thread's name says about it: its group and, for a worker, its
/// worker id (N in `kworker/C:N`). `None` for a thread that is not
/// cmwq's.
///
/// Names are cut to 15 bytes by the kernel, so a long one may have lost
/// its tail (`H`, digits of the id); what is left is read as it stands.
fn classify_name(comm: &str) -> Option<(Group, Option<u32>)> {
    if let Some(rest) = comm.strip_prefix("kworker/") {
        if rest.starts_with("R-") {
            return Some((Group::Rescuers, None));
        }
        return Some(parse_worker(rest).unwrap_or((Group::Library, None)));
    }
    comm.starts_with("cmwq-").then_some((Group::Library, None))
}

/// `C:N`, `C:NH` or `uP:N` (after `kworker/`).
fn parse_worker(rest: &str) -> Option<(Group, Option<u32>)> {
    let (pool, id) = rest.split_once(':')?;
    let (id, highpri) = match id.strip_suffix('H') {
        Some(id) => (id, true),
        None => (id, false),
    };
    let id: u32 = id.parse().ok()?;
    let key = match pool.strip_prefix('u') {
        Some(p) => PoolKey::Unbound(p.parse().ok()?),
        None => PoolKey::Cpu {
            cpu: pool.parse().ok()?,
            highpri,
        },
    };
    Some((Group::Pool(key), Some(id)))
}

/// The contents of `/proc/TID/syscall`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Syscall {
    /// `running`: on a CPU right now.
    Running,
    /// `-1 sp pc`: blocked, but not in a system call.
    Outside,
    /// `NR arg1 .. arg6 sp pc`: in system call NR.
    In { nr: i64, args: [u64; 6] },
}

/// What could be learnt from `/proc/TID/syscall`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SyscallInfo {
    /// Read and parsed.
    Known(Syscall),
    /// Refused (EACCES, EPERM: ptrace restrictions).
    Denied,
    /// Not there or not understood (no such file, the thread left, an
    /// architecture whose futex number is not known here).
    Unavailable,
}

/// Parse `/proc/TID/syscall`.
fn parse_syscall(s: &str) -> Option<Syscall> {
    let s = s.trim();
    if s == "running" {
        return Some(Syscall::Running);
    }
    let mut f = s.split_whitespace();
    let nr: i64 = f.next()?.parse().ok()?;
    if nr < 0 {
        return Some(Syscall::Outside);
    }
    let mut args = [0u64; 6];
    for a in &mut args {
        let v = f.next()?;
        let v = v
            .strip_prefix("0x")
            .or_else(|| v.strip_prefix("0X"))
            .unwrap_or(v);
        *a = u64::from_str_radix(v, 16).ok()?;
    }
    Some(Syscall::In { nr, args })
}

/// The name of system call `nr`, for the few a blocked worker is likely
/// in; `sys N` for the others.
fn syscall_name(nr: i64) -> String {
    SYSCALL_NAMES
        .iter()
        .find(|(n, _)| *n == nr)
        .map(|(_, name)| (*name).to_string())
        .unwrap_or_else(|| format!("sys {nr}"))
}

/// Whether a thread in this system call is an idle cmwq worker: parked in
/// `FUTEX_WAIT_BITSET` (private or not) with the bitset "cmwq".
fn is_park(nr: i64, args: &[u64; 6]) -> bool {
    FUTEX_NR == Some(nr)
        && args[1] & FUTEX_CMD_MASK == FUTEX_WAIT_BITSET
        && args[5] & 0xffff_ffff == PARK_BITSET
}

/// A thread's state, as far as `/proc` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// `R`: running or runnable.
    Running,
    /// Parked in cmwq's idle wait.
    Idle,
    /// Asleep in system call `Some(nr)`, or outside any (`None`).
    Blocked(Option<i64>),
    /// `D`: uninterruptible sleep.
    BlockedD,
    /// Asleep, but idle or blocked cannot be told (no syscall file).
    Sleeping,
    /// Stopped, traced, zombie, ...: the stat's state letter.
    Other(char),
}

/// A thread's state from its stat state letter and its syscall file.
fn classify(state: char, sys: &SyscallInfo) -> State {
    match state {
        'R' => State::Running,
        'D' => State::BlockedD,
        'S' => match sys {
            SyscallInfo::Known(Syscall::Running) => State::Running,
            SyscallInfo::Known(Syscall::Outside) => State::Blocked(None),
            SyscallInfo::Known(Syscall::In { nr, args }) if is_park(*nr, args) => State::Idle,
            SyscallInfo::Known(Syscall::In { nr, .. }) if FUTEX_NR.is_some() => {
                State::Blocked(Some(*nr))
            }
            _ => State::Sleeping,
        },
        c => State::Other(c),
    }
}

/// How a state is counted in the pools table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Count {
    Running,
    Blocked,
    Idle,
    Sleeping,
}

impl State {
    /// The text of the state column. A library thread or rescuer waiting
    /// in a system call is doing its job, so it is "sleeping", not
    /// "blocked".
    fn label(&self, worker: bool) -> String {
        let waiting = if worker { "blocked" } else { "sleeping" };
        match self {
            State::Running => "running".into(),
            State::Idle => "idle".into(),
            State::Blocked(Some(nr)) => format!("{waiting} ({})", syscall_name(*nr)),
            State::Blocked(None) => waiting.into(),
            State::BlockedD => "blocked (D)".into(),
            State::Sleeping => "sleeping".into(),
            State::Other('T') => "stopped".into(),
            State::Other('t') => "traced".into(),
            State::Other('Z') => "zombie".into(),
            State::Other('X') => "dead".into(),
            State::Other(c) => format!("state {c}"),
        }
    }

    /// The pools-table column this state is counted in.
    fn count(&self, worker: bool) -> Count {
        match self {
            State::Running => Count::Running,
            State::Idle => Count::Idle,
            State::BlockedD => Count::Blocked,
            State::Blocked(_) if worker => Count::Blocked,
            _ => Count::Sleeping,
        }
    }
}

/// CPU use in percent of one CPU: `ticks` clock ticks (of `clk_tck` a
/// second) spent over `wall`. `None` over an empty interval.
fn cpu_percent(ticks: u64, clk_tck: u64, wall: Duration) -> Option<f64> {
    let secs = wall.as_secs_f64();
    if secs <= 0.0 || clk_tck == 0 {
        return None;
    }
    Some(ticks as f64 / clk_tck as f64 / secs * 100.0)
}

// ---------------------------------------------------------------------
// Samples and snapshots.

/// One thread of one sample.
#[derive(Debug, Clone)]
struct TaskSample {
    tid: u32,
    stat: Stat,
    syscall: SyscallInfo,
}

/// One look at the process.
#[derive(Debug, Clone)]
struct Sample {
    /// When it was taken.
    at: Instant,
    /// `/proc/PID/stat`: the process's name and the CPU time of all its
    /// threads, live and gone.
    process: Stat,
    /// The cmwq threads.
    tasks: Vec<TaskSample>,
    /// From the process's control socket, when it has one: each worker's
    /// state as the library knows it and its current item, by TID.
    exact: Option<HashMap<u32, Exact>>,
}

/// A worker as its process's control socket describes it (`workers`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Exact {
    /// `idle`, `running`, `blocked`, `cpu-intensive` or `prep`.
    state: String,
    /// `workqueue:item` of the execution in progress, if any.
    item: Option<String>,
}

/// Parse a `workers` reply body: `worker` lines by TID.
fn parse_workers(body: &str) -> HashMap<u32, Exact> {
    body.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() != 8 || f[0] != "worker" {
                return None;
            }
            let tid = f[2].parse().ok()?;
            let item = (f[6] != "-").then(|| {
                format!(
                    "{}:{}",
                    cmwq::control::unescape(f[6]),
                    cmwq::control::unescape(f[7])
                )
            });
            Some((
                tid,
                Exact {
                    state: f[4].to_string(),
                    item,
                },
            ))
        })
        .collect()
}

/// The exact worker states of `pid` over its control socket, if it has
/// one that answers (quietly `None` otherwise: /proc alone is the default).
fn exact_states(pid: u32) -> Option<HashMap<u32, Exact>> {
    let path = cmwq::control::find(pid)?;
    let r = cmwq::control::request(&path, "workers").ok()?;
    Some(parse_workers(&r.body))
}

/// One row of the threads table.
#[derive(Debug, Clone, PartialEq)]
struct ThreadRow {
    group: Group,
    /// The worker id, for sorting.
    id: Option<u32>,
    tid: u32,
    name: String,
    state: State,
    cpu_pct: Option<f64>,
    last_cpu: Option<u32>,
    /// The item it runs (`workqueue:item`), known from the control socket;
    /// `None` without one.
    item: Option<String>,
}

/// One row of the pools table.
#[derive(Debug, Clone, PartialEq)]
struct GroupRow {
    group: Group,
    threads: usize,
    running: usize,
    blocked: usize,
    idle: usize,
    sleeping: usize,
    cpu_pct: Option<f64>,
}

/// Everything one screen (or `--once`) shows.
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    pid: u32,
    /// The process's name.
    name: String,
    /// The length of the interval the CPU figures are over (zero before
    /// the second sample).
    interval: Duration,
    /// The whole process's CPU use.
    total_cpu: Option<f64>,
    /// By group, in display order.
    groups: Vec<GroupRow>,
    /// By group, then worker id, name and TID.
    threads: Vec<ThreadRow>,
    /// Why idle and blocked cannot be told apart, if they cannot.
    note: Option<String>,
    /// The process has exited (the live view's last screen).
    exited: bool,
}

/// The note shown when `/proc/TID/syscall` cannot be read.
fn syscall_note(denied: bool) -> String {
    let why = if denied {
        "/proc/TID/syscall is not readable here (ptrace restrictions)"
    } else {
        "/proc/TID/syscall is not available here"
    };
    format!(
        "{why}, so idle and blocked workers cannot be told apart (shown as \"sleeping\"); \
         CMWQ_CONTROL=1 in the watched process gives exact states (cmwq monitor/dump PID)"
    )
}

/// The snapshot of `cur`, with CPU figures over the interval since `prev`
/// (none without one).
fn build(pid: u32, prev: Option<&Sample>, cur: &Sample, clk_tck: u64) -> Snapshot {
    let wall = prev.map_or(Duration::ZERO, |p| cur.at.saturating_duration_since(p.at));
    let before: HashMap<(u32, u64), u64> = prev
        .map(|p| {
            p.tasks
                .iter()
                .map(|t| ((t.tid, t.stat.start), t.stat.ticks))
                .collect()
        })
        .unwrap_or_default();
    // A thread not in `prev` started during the interval: all its time is
    // in it.
    let delta = |t: &TaskSample| {
        let b = before.get(&(t.tid, t.stat.start)).copied().unwrap_or(0);
        t.stat.ticks.saturating_sub(b)
    };
    let pct = |ticks: u64| prev.and(cpu_percent(ticks, clk_tck, wall));

    let mut threads = Vec::new();
    let mut groups: BTreeMap<Group, (GroupRow, u64)> = BTreeMap::new();
    let mut denied = false;
    let mut unavailable = false;
    // A thread that left between its stat and its syscall file is not
    // worth a note: only a process where no syscall file could be read.
    let any_known = cur
        .tasks
        .iter()
        .any(|t| matches!(t.syscall, SyscallInfo::Known(_)));
    for t in &cur.tasks {
        let Some((mut group, mut id)) = classify_name(&t.stat.comm) else {
            continue;
        };
        let exact = cur.exact.as_ref().and_then(|m| m.get(&t.tid));
        if group.is_pool() && cur.exact.is_some() && exact.is_none() {
            // Not in the library's list of workers: a thread an item
            // started, named after the worker that started it.
            (group, id) = (Group::NotWorkers, None);
        }
        let mut state = classify(t.stat.state, &t.syscall);
        if let (Some(e), State::Sleeping) = (exact, &state) {
            // /proc could not tell (no syscall file): the library's view,
            // taken a moment later, says which.
            match e.state.as_str() {
                "idle" => state = State::Idle,
                "blocked" => state = State::Blocked(None),
                _ => {}
            }
        }
        // The socket's item, unless /proc saw the worker parked (the two
        // looks are a moment apart).
        let item = cur.exact.as_ref().map(|_| match exact {
            Some(Exact { item: Some(i), .. }) if state != State::Idle => i.clone(),
            _ => "-".into(),
        });
        if state == State::Sleeping {
            match t.syscall {
                SyscallInfo::Denied => denied = true,
                _ => unavailable = true,
            }
        }
        let d = delta(t);
        let (row, ticks) = groups.entry(group).or_insert_with(|| {
            (
                GroupRow {
                    group,
                    threads: 0,
                    running: 0,
                    blocked: 0,
                    idle: 0,
                    sleeping: 0,
                    cpu_pct: None,
                },
                0,
            )
        });
        row.threads += 1;
        *ticks += d;
        match state.count(group.is_pool()) {
            Count::Running => row.running += 1,
            Count::Blocked => row.blocked += 1,
            Count::Idle => row.idle += 1,
            Count::Sleeping => row.sleeping += 1,
        }
        threads.push(ThreadRow {
            group,
            id,
            tid: t.tid,
            name: t.stat.comm.clone(),
            state,
            cpu_pct: pct(d),
            last_cpu: t.stat.cpu,
            item,
        });
    }
    threads.sort_by(|a, b| (a.group, a.id, &a.name, a.tid).cmp(&(b.group, b.id, &b.name, b.tid)));
    let groups = groups
        .into_values()
        .map(|(mut row, ticks)| {
            row.cpu_pct = pct(ticks);
            row
        })
        .collect();
    let total = prev.map_or(0, |p| cur.process.ticks.saturating_sub(p.process.ticks));
    Snapshot {
        pid,
        name: cur.process.comm.clone(),
        interval: wall,
        total_cpu: pct(total),
        groups,
        threads,
        note: if cur.exact.is_some() {
            Some(
                "states and items from the process's control socket, where /proc cannot tell"
                    .into(),
            )
        } else {
            (denied || (unavailable && !any_known)).then(|| syscall_note(denied))
        },
        exited: false,
    }
}

/// A CPU figure for a table: `12.3`, or `-` when there is none yet.
fn fmt_pct(p: Option<f64>) -> String {
    p.map_or_else(|| "-".into(), |p| format!("{p:.1}"))
}

/// The last-CPU column.
fn fmt_cpu(c: Option<u32>) -> String {
    c.map_or_else(|| "-".into(), |c| c.to_string())
}

impl Snapshot {
    /// The number of cmwq threads.
    fn cmwq_threads(&self) -> usize {
        self.threads.len()
    }

    /// The header line: name, PID, thread count, total CPU.
    fn title(&self) -> String {
        let cpu = match self.total_cpu {
            Some(p) => format!(
                "CPU {p:.1}% over the last {:.2} s (100% = one CPU)",
                self.interval.as_secs_f64()
            ),
            None => "CPU -".into(),
        };
        format!(
            "{} (pid {}): {} cmwq threads, {cpu}",
            self.name,
            self.pid,
            self.cmwq_threads()
        )
    }
}

/// The headings of the pools table.
const POOL_HEADINGS: [&str; 7] = [
    "POOL", "THREADS", "RUNNING", "BLOCKED", "IDLE", "SLEEPING", "CPU%",
];
/// The headings of the threads table.
const THREAD_HEADINGS: [&str; 6] = ["TID", "NAME", "STATE", "CPU%", "LAST CPU", "ITEM"];

impl GroupRow {
    /// The cells of its pools-table row.
    fn cells(&self) -> [String; 7] {
        [
            self.group.label(),
            self.threads.to_string(),
            self.running.to_string(),
            self.blocked.to_string(),
            self.idle.to_string(),
            self.sleeping.to_string(),
            fmt_pct(self.cpu_pct),
        ]
    }
}

impl ThreadRow {
    /// The cells of its threads-table row.
    fn cells(&self) -> [String; 6] {
        [
            self.tid.to_string(),
            self.name.clone(),
            self.state.label(self.group.is_pool()),
            fmt_pct(self.cpu_pct),
            fmt_cpu(self.last_cpu),
            self.item.clone().unwrap_or_default(),
        ]
    }
}

/// The `--once` text: header, pools table, then the threads grouped by
/// pool, rescuers and library threads last.
fn render_text(s: &Snapshot) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", s.title());
    if let Some(note) = &s.note {
        let _ = writeln!(out, "note: {note}");
    }
    out.push('\n');
    let pool_row = |out: &mut String, c: &[&str]| {
        let _ = writeln!(
            out,
            "{:<16} {:>7} {:>7} {:>7} {:>5} {:>8} {:>7}",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6]
        );
    };
    pool_row(&mut out, &POOL_HEADINGS);
    for g in &s.groups {
        let c = g.cells();
        pool_row(&mut out, &c.each_ref().map(String::as_str));
    }
    let thread_row = |out: &mut String, c: &[&str]| {
        let _ = writeln!(
            out,
            "  {:>8}  {:<15}  {:<25} {:>6} {:>8}  {}",
            c[0], c[1], c[2], c[3], c[4], c[5]
        );
    };
    let mut current = None;
    for t in &s.threads {
        if current != Some(t.group) {
            current = Some(t.group);
            let n = s.threads.iter().filter(|u| u.group == t.group).count();
            let what = match (t.group.is_pool(), n) {
                (true, 1) => "worker",
                (true, _) => "workers",
                (false, 1) => "thread",
                (false, _) => "threads",
            };
            let _ = writeln!(out, "\n{} ({n} {what})", t.group.label());
            thread_row(&mut out, &THREAD_HEADINGS);
        }
        let c = t.cells();
        thread_row(&mut out, &c.each_ref().map(String::as_str));
    }
    out
}

// ---------------------------------------------------------------------
// Reading /proc.

/// The process being watched: its PID and start time (a PID reused by a
/// new process is not it).
#[derive(Debug, Clone, Copy)]
struct Target {
    pid: u32,
    start: u64,
}

/// The system's clock ticks per second (the unit of `utime`, `stime`).
fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions; it only reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Our effective user id.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A `Uid:`/`Tgid:` style line of `/proc/PID/status`: its numbers.
fn status_field(status: &str, key: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Check that `pid` is a live process of ours and find its start time.
fn open(pid: u32) -> Result<Target, TopError> {
    if pid == 0 {
        return Err(TopError::NoProcess(pid));
    }
    let base = format!("/proc/{pid}");
    let status = match std::fs::read_to_string(format!("{base}/status")) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(TopError::NoProcess(pid)),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(TopError::Permission {
                pid,
                path: format!("{base}/status"),
            })
        }
        Err(e) => return Err(TopError::Io(format!("{base}/status: {e}"))),
    };
    if let Some(&tgid) = status_field(&status, "Tgid:").first() {
        if tgid != pid {
            return Err(TopError::Thread { tid: pid, tgid });
        }
    }
    let uids = status_field(&status, "Uid:");
    let me = euid();
    if me != 0 && !uids.is_empty() && !uids.iter().take(2).any(|&u| u == me) {
        return Err(TopError::NotYours { pid, uid: uids[0] });
    }
    let stat = read_process_stat(pid)?;
    if matches!(stat.state, 'Z' | 'X') && live_tasks(pid) == 0 {
        return Err(TopError::Exited(pid));
    }
    Ok(Target {
        pid,
        start: stat.start,
    })
}

/// `/proc/PID/stat`, parsed.
fn read_process_stat(pid: u32) -> Result<Stat, TopError> {
    let path = format!("/proc/{pid}/stat");
    match std::fs::read_to_string(&path) {
        Ok(s) => parse_stat(&s).ok_or_else(|| TopError::Io(format!("{path}: cannot parse {s:?}"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(TopError::NoProcess(pid)),
        // ESRCH: the process went while being read.
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Err(TopError::NoProcess(pid)),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            Err(TopError::Permission { pid, path })
        }
        Err(e) => Err(TopError::Io(format!("{path}: {e}"))),
    }
}

/// How many of the process's threads are not zombies.
fn live_tasks(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|s| parse_stat(&s))
        .filter(|s| !matches!(s.state, 'Z' | 'X'))
        .count()
}

/// `/proc/PID/task/TID/syscall`.
fn read_syscall(pid: u32, tid: u32) -> SyscallInfo {
    if FUTEX_NR.is_none() {
        return SyscallInfo::Unavailable;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")) {
        Ok(s) => parse_syscall(&s).map_or(SyscallInfo::Unavailable, SyscallInfo::Known),
        Err(e)
            if e.kind() == io::ErrorKind::PermissionDenied
                || e.raw_os_error() == Some(libc::EPERM) =>
        {
            SyscallInfo::Denied
        }
        Err(_) => SyscallInfo::Unavailable,
    }
}

/// Take one sample of the process's cmwq threads. `Exited` once the
/// process is gone, a zombie, or its PID names another process.
fn sample(target: Target) -> Result<Sample, TopError> {
    let pid = target.pid;
    let gone = |e: TopError| match e {
        TopError::NoProcess(_) => TopError::Exited(pid),
        e => e,
    };
    let at = Instant::now();
    let process = read_process_stat(pid).map_err(gone)?;
    if process.start != target.start {
        return Err(TopError::Exited(pid));
    }
    let dir_path = format!("/proc/{pid}/task");
    let dir = match std::fs::read_dir(&dir_path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(TopError::Exited(pid)),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(TopError::Permission {
                pid,
                path: dir_path,
            })
        }
        Err(e) => return Err(TopError::Io(format!("{dir_path}: {e}"))),
    };
    let mut tasks = Vec::new();
    let mut alive = false;
    for entry in dir.filter_map(Result::ok) {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread that left between the listing and the read is skipped.
        let Some(stat) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| parse_stat(&s))
        else {
            continue;
        };
        if matches!(stat.state, 'Z' | 'X') {
            continue;
        }
        alive = true;
        if classify_name(&stat.comm).is_none() {
            continue;
        }
        let syscall = if stat.state == 'S' {
            read_syscall(pid, tid)
        } else {
            SyscallInfo::Unavailable
        };
        tasks.push(TaskSample { tid, stat, syscall });
    }
    if !alive {
        return Err(TopError::Exited(pid));
    }
    let exact = exact_states(pid);
    Ok(Sample {
        at,
        process,
        tasks,
        exact,
    })
}

/// Open `pid` and take a first sample; an error if it has no cmwq
/// threads.
fn first_sample(pid: u32) -> Result<(Target, Sample), TopError> {
    let target = open(pid)?;
    let s = sample(target).map_err(|e| match e {
        TopError::Exited(p) => TopError::NoProcess(p),
        e => e,
    })?;
    if s.tasks.is_empty() {
        return Err(TopError::NoCmwq {
            pid,
            name: s.process.comm,
        });
    }
    Ok((target, s))
}

/// `--once`: two samples `ONCE_GAP` apart, printed as text.
fn run_once(pid: u32) -> Result<(), TopError> {
    let (target, first) = first_sample(pid)?;
    std::thread::sleep(ONCE_GAP);
    let second = sample(target)?;
    let text = render_text(&build(pid, Some(&first), &second, clk_tck()));
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

// ---------------------------------------------------------------------
// The live view.

/// Whether the terminal is in raw mode on the alternate screen, so that
/// exactly one of the drop guard and the panic hook restores it.
static TERM_ACTIVE: AtomicBool = AtomicBool::new(false);

/// Leave the alternate screen, show the cursor, leave raw mode (once).
fn restore_terminal() {
    if TERM_ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
    }
}

/// Restores the terminal when dropped, on every way out of the live view.
struct TermGuard;

impl TermGuard {
    /// Raw mode, alternate screen, hidden cursor; and a panic hook that
    /// restores the terminal before the panic message is printed.
    fn enter() -> io::Result<TermGuard> {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            prev(info);
        }));
        terminal::enable_raw_mode()?;
        TERM_ACTIVE.store(true, Ordering::SeqCst);
        let guard = TermGuard;
        execute!(io::stdout(), EnterAlternateScreen, cursor::Hide)?;
        Ok(guard)
    }
}

impl Drop for TermGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// The threads table's scroll position.
#[derive(Debug, Default)]
struct View {
    /// The first row shown.
    scroll: usize,
    /// Rows that fit, as of the last draw.
    page: usize,
    /// Rows in all, as of the last draw.
    rows: usize,
}

impl View {
    /// The largest useful scroll position.
    fn max_scroll(&self) -> usize {
        self.rows.saturating_sub(self.page.max(1))
    }

    /// Move for a scrolling key; false for other keys.
    fn key(&mut self, code: KeyCode) -> bool {
        let page = self.page.max(1);
        self.scroll = match code {
            KeyCode::Up | KeyCode::Char('k') => self.scroll.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => self.scroll + 1,
            KeyCode::PageUp => self.scroll.saturating_sub(page),
            KeyCode::PageDown | KeyCode::Char(' ') => self.scroll + page,
            KeyCode::Home | KeyCode::Char('g') => 0,
            KeyCode::End | KeyCode::Char('G') => usize::MAX,
            _ => return false,
        };
        self.scroll = self.scroll.min(self.max_scroll());
        true
    }
}

/// `q`, Esc, Ctrl-C (which raw mode delivers as a key).
fn is_quit(k: &KeyEvent) -> bool {
    match k.code {
        KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => true,
        KeyCode::Char('c') | KeyCode::Char('d') => k.modifiers.contains(KeyModifiers::CONTROL),
        _ => false,
    }
}

/// The style of a state cell.
fn state_style(s: &State) -> Style {
    match s {
        State::Running => Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
        State::Blocked(_) | State::BlockedD => Style::new().fg(Color::Yellow),
        State::Idle => Style::new().fg(Color::DarkGray),
        _ => Style::new(),
    }
}

/// A right-aligned cell.
fn right(s: String) -> Cell<'static> {
    Cell::from(Text::from(s).right_aligned())
}

/// Draw one screen: header, pools table, threads table, footer.
fn draw(f: &mut Frame, snap: &Snapshot, view: &mut View) {
    let area = f.area();
    let mut header = vec![Line::from(Span::styled(
        snap.title(),
        Style::new().add_modifier(Modifier::BOLD),
    ))];
    if snap.exited {
        header.push(Line::from(Span::styled(
            "process exited: press any key (quits by itself in 2 s)",
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        )));
    }
    match &snap.note {
        Some(note) => header.push(Line::from(format!("note: {note}"))),
        None => header.push(Line::from(
            "states from /proc: running (R), idle (parked in cmwq's futex wait), \
             blocked (in another system call, or D)",
        )),
    }
    let header_h = header.len() as u16 + 2;
    let pool_h = (snap.groups.len() as u16 + 3).min((area.height / 3).max(4));
    let [h_area, p_area, t_area, f_area] = Layout::vertical([
        Constraint::Length(header_h),
        Constraint::Length(pool_h),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);

    f.render_widget(
        Paragraph::new(header)
            .wrap(ratatui::widgets::Wrap { trim: true })
            .block(Block::bordered().title(" cmwq top ")),
        h_area,
    );

    let bold = Style::new().add_modifier(Modifier::BOLD);
    let pool_rows: Vec<Row> = snap
        .groups
        .iter()
        .map(|g| {
            let c = g.cells();
            let [label, rest @ ..] = c;
            let mut cells = vec![Cell::from(label)];
            cells.extend(rest.into_iter().map(right));
            Row::new(cells)
        })
        .collect();
    let shown = (p_area.height as usize).saturating_sub(3);
    let pools_title = if snap.groups.len() > shown {
        format!(" pools ({} more not shown) ", snap.groups.len() - shown)
    } else {
        " pools ".into()
    };
    let pools = Table::new(
        pool_rows,
        [
            Constraint::Length(16),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(9),
            Constraint::Length(8),
        ],
    )
    .header(
        Row::new(
            POOL_HEADINGS
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    if i == 0 {
                        Cell::from(*h)
                    } else {
                        right((*h).to_string())
                    }
                })
                .collect::<Vec<_>>(),
        )
        .style(bold),
    )
    .block(Block::bordered().title(pools_title));
    f.render_widget(pools, p_area);

    // The threads table: the group's label on its first row only.
    view.page = (t_area.height as usize).saturating_sub(3).max(1);
    view.rows = snap.threads.len();
    view.scroll = view.scroll.min(view.max_scroll());
    let mut prev_group = None;
    let all: Vec<Row> = snap
        .threads
        .iter()
        .map(|t| {
            let label = if prev_group == Some(t.group) {
                String::new()
            } else {
                prev_group = Some(t.group);
                t.group.label()
            };
            let [tid, name, state, cpu, last, item] = t.cells();
            Row::new(vec![
                Cell::from(label).style(bold),
                right(tid),
                Cell::from(name),
                Cell::from(state).style(state_style(&t.state)),
                right(cpu),
                right(last),
                Cell::from(format!(" {item}")),
            ])
        })
        .collect();
    let rows: Vec<Row> = all.into_iter().skip(view.scroll).take(view.page).collect();
    let threads = Table::new(
        rows,
        [
            Constraint::Length(12),
            Constraint::Length(8),
            Constraint::Length(16),
            Constraint::Length(26),
            Constraint::Length(7),
            Constraint::Length(9),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new(vec![
            Cell::from("POOL"),
            right("TID".into()),
            Cell::from("NAME"),
            Cell::from("STATE"),
            right("CPU%".into()),
            right("LAST CPU".into()),
            Cell::from(" ITEM"),
        ])
        .style(bold),
    )
    .block(Block::bordered().title(" workers and threads "));
    f.render_widget(threads, t_area);

    let first = if view.rows == 0 { 0 } else { view.scroll + 1 };
    let last = (view.scroll + view.page).min(view.rows);
    let footer = format!(
        " q quit   Up/Down PgUp/PgDn Home/End scroll   rows {first}-{last} of {}   refresh {} s",
        view.rows,
        REFRESH.as_secs()
    );
    f.render_widget(
        Paragraph::new(footer).style(Style::new().add_modifier(Modifier::REVERSED)),
        f_area,
    );
}

/// Why the live view ended.
enum End {
    /// The user quit.
    Quit,
    /// The watched process exited.
    Exited,
}

/// The live view: sample every `REFRESH`, draw, handle keys.
fn run_live(pid: u32) -> Result<(), TopError> {
    let (target, first) = first_sample(pid)?;
    if !io::stdout().is_terminal() {
        return Err(TopError::NotATerminal);
    }
    let clk = clk_tck();
    let end = {
        let _guard = TermGuard::enter()?;
        let mut term = Terminal::new(CrosstermBackend::new(io::stdout()))?;
        term.clear()?;
        live_loop(&mut term, target, first, clk)?
    };
    if let End::Exited = end {
        eprintln!("cmwq top: process {pid} exited");
    }
    Ok(())
}

/// The refresh loop, on an entered terminal.
fn live_loop(
    term: &mut Terminal<CrosstermBackend<io::Stdout>>,
    target: Target,
    first: Sample,
    clk: u64,
) -> Result<End, TopError> {
    let mut view = View::default();
    let mut snap = build(target.pid, None, &first, clk);
    let mut prev = first;
    let mut next = Instant::now() + REFRESH;
    let mut quit_at: Option<Instant> = None;
    loop {
        term.draw(|f| draw(f, &snap, &mut view))?;
        let wake = quit_at.unwrap_or(next);
        if event::poll(wake.saturating_duration_since(Instant::now()))? {
            if let Event::Key(k) = event::read()? {
                if k.kind != KeyEventKind::Release {
                    if quit_at.is_some() {
                        return Ok(End::Exited);
                    }
                    if is_quit(&k) {
                        return Ok(End::Quit);
                    }
                    view.key(k.code);
                }
            }
            // Resizes and other events: just redraw.
        }
        let now = Instant::now();
        if let Some(at) = quit_at {
            if now >= at {
                return Ok(End::Exited);
            }
            continue;
        }
        if now >= next {
            match sample(target) {
                Ok(s) => {
                    snap = build(target.pid, Some(&prev), &s, clk);
                    prev = s;
                }
                Err(TopError::Exited(_)) => {
                    snap.exited = true;
                    quit_at = Some(now + EXIT_LINGER);
                }
                Err(e) => return Err(e),
            }
            next = now + REFRESH;
        }
    }
}

#[cfg(test)]
mod tests;
