//! The watched process: checking that a PID is a live process of ours,
//! and sampling its cmwq threads from `/proc` (and from its control
//! socket, when it has one). The I/O half of `top`; the parsing is in
//! `proc.rs`.

use std::collections::HashMap;
use std::io;
use std::time::Instant;

use super::model::{parse_workers, Exact, Sample, TaskSample};
use super::proc::{
    classify_name, parse_stat, parse_syscall, status_field, Stat, SyscallInfo, FUTEX_NR,
};
use super::TopError;

/// The process being watched: its PID and start time (a PID reused by a
/// new process is not it).
#[derive(Debug, Clone, Copy)]
pub(super) struct Target {
    pub(super) pid: u32,
    pub(super) start: u64,
}

/// The system's clock ticks per second (the unit of `utime`, `stime`).
pub(super) fn clk_tck() -> u64 {
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

/// Check that `pid` is a live process of ours and find its start time.
pub(super) fn open(pid: u32) -> Result<Target, TopError> {
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
pub(super) fn sample(target: Target) -> Result<Sample, TopError> {
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
        cpu_limit: cmwq::dump::cpu_limit_of(pid),
    })
}

/// Open `pid` and take a first sample; an error if it has no cmwq
/// threads.
pub(super) fn first_sample(pid: u32) -> Result<(Target, Sample), TopError> {
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

/// The exact worker states of `pid` over its control socket, if it has
/// one that answers (quietly `None` otherwise: /proc alone is the default).
fn exact_states(pid: u32) -> Option<HashMap<u32, Exact>> {
    let path = cmwq::control::find(pid)?;
    let r = cmwq::control::request(&path, "workers").ok()?;
    Some(parse_workers(&r.body))
}
