//! Unit tests of `procstat` (in a file of their own, beside the code).

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
