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
//! `--once` (and a stdout that is not a terminal) takes two samples
//! 500 ms apart and prints a plain-text snapshot; `--json` prints it as
//! one JSON object (`json.rs`). Otherwise a full-screen view refreshes every second until
//! `q`, Esc or Ctrl-C; when the watched process exits, the view says
//! "process exited" and quits at the next key press or after 2 s.
//!
//! One file per concern: `proc.rs` parses `/proc` text and classifies
//! threads and their states (pure functions, with the per-architecture
//! system call tables); `model.rs` holds the samples and builds a
//! snapshot from the latest one (CPU figures over the interval since the
//! one before); `text.rs` turns a snapshot into text (the cells both views
//! show, and the `--once` output); `json.rs` into `--json`'s object; `target.rs` opens and samples the
//! watched process (the I/O); `tui.rs` is the live view. This file holds
//! the entry point and the error type.

use std::fmt;
use std::io::{self, IsTerminal};
use std::process::ExitCode;

mod json;
mod model;
mod proc;
mod target;
mod text;
mod tui;

use text::run_once;
use tui::run_live;

/// Look at process `pid`'s cmwq threads: one plain-text snapshot on stdout
/// with `once` or when stdout is not a terminal (a JSON object with
/// `json`), else a live full-screen view until `q`. The exit status is 0,
/// or 1 after a message on stderr starting with `cmwq top: ` (no such
/// process, not ours, no cmwq threads, ...).
pub fn run(pid: u32, once: bool, json: bool) -> ExitCode {
    let once = once || json || !io::stdout().is_terminal();
    let result = if once {
        run_once(pid, json)
    } else {
        run_live(pid)
    };
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
            TopError::Io(msg) => f.write_str(msg),
        }
    }
}

impl From<io::Error> for TopError {
    fn from(e: io::Error) -> TopError {
        TopError::Io(format!("terminal: {e}"))
    }
}

#[cfg(test)]
mod tests;
