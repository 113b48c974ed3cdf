//! Parsing `/proc` text and classifying threads: the pure half of `top`.
//! The `stat` and `status` files' fields, what a thread's name says (which
//! pool a `kworker` belongs to), what `/proc/TID/syscall` says (parked in
//! cmwq's futex wait, or blocked in another system call), and the state a
//! thread is shown in. Nothing here reads a file: `target.rs` does. The
//! system call numbers are per architecture (x86_64 and aarch64; on others
//! idle and blocked cannot be told apart).

use std::time::Duration;

/// The futex bitset an idle cmwq worker parks with: ASCII "cmwq".
const PARK_BITSET: u64 = 0x636d_7771;
/// `FUTEX_WAIT_BITSET`, the futex op of a parked worker.
const FUTEX_WAIT_BITSET: u64 = 9;
/// The futex op's command bits (without `FUTEX_PRIVATE_FLAG` and
/// `FUTEX_CLOCK_REALTIME`).
const FUTEX_CMD_MASK: u64 = 0x7f;

/// The futex system call's number, where known.
#[cfg(target_arch = "x86_64")]
pub(super) const FUTEX_NR: Option<i64> = Some(202);
#[cfg(target_arch = "aarch64")]
pub(super) const FUTEX_NR: Option<i64> = Some(98);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(super) const FUTEX_NR: Option<i64> = None;

/// Names of the system calls a blocked worker is most likely in.
#[cfg(target_arch = "x86_64")]
pub(super) const SYSCALL_NAMES: &[(i64, &str)] = &[
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
pub(super) const SYSCALL_NAMES: &[(i64, &str)] = &[
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
pub(super) const SYSCALL_NAMES: &[(i64, &str)] = &[];

/// The fields of `/proc/PID/task/TID/stat` that `top` uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stat {
    /// Field 2, between the first `(` and the last `)`: the thread's name,
    /// the same as `/proc/PID/task/TID/comm`.
    pub(super) comm: String,
    /// Field 3: `R`, `S`, `D`, `Z`, `T`, ...
    pub(super) state: char,
    /// Fields 14 + 15, `utime + stime`, in clock ticks.
    pub(super) ticks: u64,
    /// Field 22, the start time in clock ticks after boot (tells a reused
    /// TID from the thread that had it).
    pub(super) start: u64,
    /// Field 39, the CPU it last ran on.
    pub(super) cpu: Option<u32>,
}

/// Parse a `stat` line. The name may hold spaces and `)`, so the fields
/// after it are found after the *last* `)`.
pub(super) fn parse_stat(s: &str) -> Option<Stat> {
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

/// A `Uid:`/`Tgid:` style line of `/proc/PID/status`: its numbers.
pub(super) fn status_field(status: &str, key: &str) -> Vec<u32> {
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

/// A worker pool, as told by its workers' names. The order is the display
/// order: CPU pools by CPU (normal, then high priority), then unbound
/// pools by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum PoolKey {
    /// A per-CPU pool.
    Cpu { cpu: u32, highpri: bool },
    /// An unbound pool, by pool id.
    Unbound(u32),
}

/// A group of cmwq threads: a pool's workers, the rescuers, or the
/// library's own threads. Ordered for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Group {
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
    pub(super) fn label(self) -> String {
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
    pub(super) fn is_pool(self) -> bool {
        matches!(self, Group::Pool(_))
    }
}

/// What a thread's name says about it: its group and, for a worker, its
/// worker id (N in `kworker/C:N`). `None` for a thread that is not
/// cmwq's.
///
/// Names are cut to 15 bytes by the kernel, so a long one may have lost
/// its tail (`H`, digits of the id); what is left is read as it stands.
pub(super) fn classify_name(comm: &str) -> Option<(Group, Option<u32>)> {
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
pub(super) enum Syscall {
    /// `running`: on a CPU right now.
    Running,
    /// `-1 sp pc`: blocked, but not in a system call.
    Outside,
    /// `NR arg1 .. arg6 sp pc`: in system call NR.
    In { nr: i64, args: [u64; 6] },
}

/// What could be learnt from `/proc/TID/syscall`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SyscallInfo {
    /// Read and parsed.
    Known(Syscall),
    /// Refused (EACCES, EPERM: ptrace restrictions).
    Denied,
    /// Not there or not understood (no such file, the thread left, an
    /// architecture whose futex number is not known here).
    Unavailable,
}

/// Parse `/proc/TID/syscall`.
pub(super) fn parse_syscall(s: &str) -> Option<Syscall> {
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
pub(super) enum State {
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
pub(super) fn classify(state: char, sys: &SyscallInfo) -> State {
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
pub(super) enum Count {
    Running,
    Blocked,
    Idle,
    Sleeping,
}

impl State {
    /// The text of the state column. A library thread or rescuer waiting
    /// in a system call is doing its job, so it is "sleeping", not
    /// "blocked".
    pub(super) fn label(&self, worker: bool) -> String {
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
    pub(super) fn count(&self, worker: bool) -> Count {
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
pub(super) fn cpu_percent(ticks: u64, clk_tck: u64, wall: Duration) -> Option<f64> {
    let secs = wall.as_secs_f64();
    if secs <= 0.0 || clk_tck == 0 {
        return None;
    }
    Some(ticks as f64 / clk_tck as f64 / secs * 100.0)
}
