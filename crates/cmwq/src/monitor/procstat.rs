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
    /// Opens /proc/self/task/<tid>/stat (required) and
    /// /proc/self/task/<tid>/schedstat (optional).
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

/// Whether /proc/self/task/<own tid>/stat can be read; cached; Err with the
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
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    use std::thread;
    use std::time::{Duration, Instant};

    /// Whether the tests can run here; prints why not.
    fn available() -> bool {
        match probe() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("skipping: {e}");
                false
            }
        }
    }

    #[test]
    fn parse_stat_lines() {
        let ok = |s: &str| parse_stat_state(s.as_bytes()).unwrap();
        assert_eq!(
            ok("1234 (worker) S 1 1234 1234 0 -1 4194368 95 0 0 0 0 0\n"),
            b'S'
        );
        assert_eq!(ok("42 (a b) c) R 1 2 3\n"), b'R');
        assert_eq!(ok("42 ()) ) D 0"), b'D');
        assert_eq!(ok("42 (x (y) z)\tt 0"), b't');
        assert_eq!(ok("42 ( ) I"), b'I');
        // Only the prefix up to the state is needed.
        assert_eq!(ok("7 (cut) T"), b'T');
        let err = |s: &str| parse_stat_state(s.as_bytes()).unwrap_err().kind();
        assert_eq!(err(""), io::ErrorKind::UnexpectedEof);
        assert_eq!(err("42 (name"), io::ErrorKind::InvalidData);
        assert_eq!(err("42 (name)"), io::ErrorKind::UnexpectedEof);
        assert_eq!(err("42 (name)   "), io::ErrorKind::UnexpectedEof);
        assert_eq!(err("42 (name) 5 1"), io::ErrorKind::InvalidData);
    }

    #[test]
    fn parse_schedstat_lines() {
        let p = |s: &str| parse_schedstat_run_ns(s.as_bytes());
        assert_eq!(p("123456 789 10\n").unwrap(), Some(123456));
        assert_eq!(p("18446744073709551615 0 1\n").unwrap(), Some(u64::MAX));
        assert_eq!(p("0 5 1\n").unwrap(), Some(0));
        assert_eq!(p("0 0 0\n").unwrap(), None);
        assert_eq!(p("").unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(p("\n").unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(p("12a 0 0").unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            p("18446744073709551616 0 0").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn blocked_states() {
        for s in *b"SDItTZXxPK" {
            assert!(
                TaskSample {
                    state: s,
                    run_ns: None
                }
                .is_blocked(),
                "{}",
                s as char
            );
        }
        assert!(!TaskSample {
            state: b'R',
            run_ns: Some(1)
        }
        .is_blocked());
    }

    #[test]
    fn own_thread() {
        if !available() {
            return;
        }
        assert_eq!(gettid(), rustix::thread::gettid().as_raw_nonzero().get());
        let s = TaskStat::open(gettid()).unwrap().sample().unwrap();
        // Reading our own stat: we are running. (Our run time may still read
        // 0: it is only brought up to date at ticks and switches.)
        assert_eq!(s.state, b'R');
    }

    #[test]
    fn missing_tid_is_err() {
        for tid in [i32::MAX, 0, -1] {
            assert!(TaskStat::open(tid).is_err(), "{tid}");
        }
    }

    #[test]
    fn exited_thread_is_err() {
        if !available() {
            return;
        }
        let t = thread::spawn(|| TaskStat::open(gettid()).unwrap());
        let stat = t.join().unwrap();
        let give_up = Instant::now() + Duration::from_secs(1);
        // The kernel releases the task shortly after the join returns.
        while stat.sample().is_ok() {
            assert!(
                Instant::now() < give_up,
                "sampling an exited thread kept working"
            );
            thread::sleep(Duration::from_millis(1));
        }
        let err = stat.sample().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH), "{err}");
    }

    /// Takes two samples 20 ms apart.
    fn two_samples(t: &TaskStat) -> (TaskSample, TaskSample) {
        let a = t.sample().unwrap();
        thread::sleep(Duration::from_millis(20));
        (a, t.sample().unwrap())
    }

    #[test]
    fn sleeping_thread_is_blocked() {
        if !available() {
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let worker = {
            let stop = stop.clone();
            thread::spawn(move || {
                tx.send(gettid()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    thread::park_timeout(Duration::from_millis(200));
                }
            })
        };
        let stat = TaskStat::open(rx.recv().unwrap()).unwrap();
        // A wake-up of the worker may fall between two samples: retry.
        let mut seen = Vec::new();
        let mut ok = false;
        for _ in 0..10 {
            let (a, b) = two_samples(&stat);
            seen.push((a, b));
            if a.state == b'S' && b.state == b'S' && a.run_ns == b.run_ns {
                assert!(a.is_blocked());
                ok = true;
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        worker.thread().unpark();
        worker.join().unwrap();
        assert!(ok, "{seen:?}");
    }

    #[test]
    fn spinning_thread_runs() {
        if !available() {
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let worker = {
            let stop = stop.clone();
            thread::spawn(move || {
                tx.send(gettid()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        };
        let stat = TaskStat::open(rx.recv().unwrap()).unwrap();
        // The worker may not have left recv yet, or may get no CPU for a
        // while on a busy machine: retry.
        let mut seen = Vec::new();
        let mut ok = false;
        for _ in 0..10 {
            let (a, b) = two_samples(&stat);
            seen.push((a, b));
            let grew = match (a.run_ns, b.run_ns) {
                (Some(x), Some(y)) => y > x,
                _ => true,
            };
            if a.state == b'R' && b.state == b'R' && grew {
                assert!(!a.is_blocked());
                ok = true;
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap();
        assert!(ok, "{seen:?}");
    }
}
