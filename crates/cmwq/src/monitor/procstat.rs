//! Sampling a thread's scheduler state from `/proc/self/task/TID/stat` and
//! `/proc/self/task/TID/schedstat`.
//!
//! The files are opened once and each sample is a `pread` at offset 0 (the
//! kernel regenerates their contents on every read from the start), so
//! sampling costs no `open`, and a held descriptor keeps referring to the
//! same thread: once that thread has exited, reads fail with `ESRCH` even if
//! its id has been reused.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use rustix::fs::{Mode, OFlags};

/// Scheduler state letter from /proc/.../stat field 3 and cumulative run
/// time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TaskSample {
    /// The state letter: `b'R'` (running or runnable), `b'S'` (sleeping),
    /// `b'D'` (uninterruptible), `b'I'` (idle), `b't'`/`b'T'` (traced or
    /// stopped), ...
    pub(crate) state: u8,
    /// First field of schedstat: nanoseconds spent on a CPU so far. None if
    /// schedstat is unavailable.
    ///
    /// The kernel brings this total up to date when the thread is switched
    /// out and at scheduler ticks, not when it is read, so for a thread that
    /// is on a CPU it can lag by up to a tick (longer on a tickless CPU).
    pub(crate) run_ns: Option<u64>,
}

impl TaskSample {
    /// Whether the thread is not running or runnable: S, D, I (idle), t/T
    /// (traced/stopped), and anything else that is not R.
    pub(crate) fn is_blocked(&self) -> bool {
        self.state != b'R'
    }
}

/// Held file descriptors for one thread of this process; each sample is one
/// pread per file (no open per sample).
#[derive(Debug)]
pub(crate) struct TaskStat {
    /// `/proc/self/task/<tid>/stat`.
    stat: OwnedFd,
    /// `/proc/self/task/<tid>/schedstat`, if the kernel has it
    /// (`CONFIG_SCHED_INFO`).
    schedstat: Option<OwnedFd>,
}

impl TaskStat {
    /// Opens `/proc/self/task/<tid>/stat` (required) and
    /// `/proc/self/task/<tid>/schedstat` (optional).
    ///
    /// Fails if `tid` is not a thread of this process.
    pub(crate) fn open(tid: i32) -> io::Result<TaskStat> {
        let flags = OFlags::RDONLY | OFlags::CLOEXEC;
        let stat = rustix::fs::open(format!("/proc/self/task/{tid}/stat"), flags, Mode::empty())?;
        let schedstat = rustix::fs::open(
            format!("/proc/self/task/{tid}/schedstat"),
            flags,
            Mode::empty(),
        )
        .ok();
        Ok(TaskStat { stat, schedstat })
    }

    /// Reads the thread's current state and run time.
    ///
    /// Fails (with `ESRCH`) once the thread has exited, or with
    /// `UnexpectedEof`/`InvalidData` if a file reads short or malformed.
    pub(crate) fn sample(&self) -> io::Result<TaskSample> {
        let mut buf = [0u8; 1024];
        let n = rustix::io::pread(&self.stat, &mut buf[..], 0)?;
        let state = parse_stat_state(&buf[..n])?;
        let run_ns = match &self.schedstat {
            None => None,
            Some(fd) => {
                let mut buf = [0u8; 128];
                let n = rustix::io::pread(fd, &mut buf[..], 0)?;
                parse_schedstat_run_ns(&buf[..n])?
            }
        };
        Ok(TaskSample { state, run_ns })
    }
}

/// The state letter of a `stat` line (possibly truncated after the state):
/// the first non-space byte after the last `)`, which closes the command
/// name (the name itself may contain spaces and parentheses; the fields
/// after it are numbers).
fn parse_stat_state(line: &[u8]) -> io::Result<u8> {
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "empty stat read",
        ));
    }
    let close = line
        .iter()
        .rposition(|&b| b == b')')
        .ok_or_else(|| invalid("no ')' in stat"))?;
    let state = line[close + 1..]
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stat ends after the command name",
            )
        })?;
    if state.is_ascii_alphabetic() {
        Ok(state)
    } else {
        Err(invalid("stat state is not a letter"))
    }
}

/// The first field of a `schedstat` line (`run_ns wait_ns timeslices`).
///
/// Some kernels print `0 0 0` when scheduler statistics are off; that reads
/// as None (a thread that has run at all has a nonzero run time).
fn parse_schedstat_run_ns(line: &[u8]) -> io::Result<Option<u64>> {
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "empty schedstat read",
        ));
    }
    let mut fields = line
        .split(u8::is_ascii_whitespace)
        .filter(|f| !f.is_empty());
    let run = fields
        .next()
        .and_then(parse_u64)
        .ok_or_else(|| invalid("malformed schedstat"))?;
    if run == 0 && fields.all(|f| f.iter().all(|&b| b == b'0')) {
        return Ok(None);
    }
    Ok(Some(run))
}

/// A nonempty run of ASCII digits as a `u64`, None otherwise or on overflow.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// An `InvalidData` error with a fixed message.
fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The calling thread's id (rustix gettid).
pub(crate) fn gettid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// Whether `/proc/self/task/<own tid>/stat` can be read; cached; Err with the
/// reason.
pub(crate) fn probe() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE
        .get_or_init(|| {
            let tid = gettid();
            TaskStat::open(tid)
                .and_then(|t| t.sample())
                .map(drop)
                .map_err(|e| format!("/proc/self/task/{tid}/stat: {e}"))
        })
        .clone()
}

#[cfg(test)]
mod tests;
