//! G32: the control socket. One process (this test binary) turns it on and
//! is both the watched program and its clients.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

mod common;

/// The process's control socket, started once with a workload that keeps
/// a workqueue busy: `(socket, items run so far)`.
fn setup() -> &'static (PathBuf, Arc<AtomicU64>) {
    static S: OnceLock<(PathBuf, Arc<AtomicU64>)> = OnceLock::new();
    S.get_or_init(|| {
        // The socket in /tmp/cmwq-UID, whose parent anyone may traverse
        // (the refusal test opens the directory up to another uid).
        std::env::remove_var("XDG_RUNTIME_DIR");
        cmwq::Config::default().control(true).apply().unwrap();
        let ran = Arc::new(AtomicU64::new(0));
        let wq: &'static cmwq::Workqueue = Box::leak(Box::new(common::percpu_wq("control_load")));
        let r = ran.clone();
        // A self-re-queueing item with a short sleep: about 1000 runs/s.
        let w: &'static cmwq::Work = Box::leak(Box::new(cmwq::Work::named("tick", move |w| {
            r.fetch_add(1, Relaxed);
            std::thread::sleep(Duration::from_micros(500));
            let _ = w;
        })));
        // Per-CPU, always on one CPU's pool: a re-queue while the tick runs then
        // waits behind it there, so detection finds the sleep (with
        // `queue`, the queuer's CPU decided: from another CPU the re-queue
        // woke that CPU's idle worker, which handed it over, and no block
        // was ever detected).
        let cpu = *common::own_affinity().first().expect("a CPU");
        std::thread::spawn(move || loop {
            wq.queue_on(cpu, w);
            std::thread::sleep(Duration::from_micros(200));
        });
        let path = cmwq::control::socket_path().expect("the control socket is listening");
        (path, ran)
    })
}

fn raw(path: &PathBuf, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Items keep running at a fair rate while `f` runs: at least `min` runs.
fn keeps_running(min: u64, f: impl FnOnce()) {
    let (_, ran) = setup();
    let before = ran.load(Relaxed);
    f();
    let after = ran.load(Relaxed);
    assert!(
        after - before >= min,
        "the watched process stalled: {} items ran",
        after - before
    );
}

#[test]
fn g32_socket_is_private_and_answers_the_documented_requests() {
    let _s = common::serial();
    let (path, _) = setup();
    let pid = std::process::id();
    assert!(path.ends_with(format!("{pid}.sock")), "{}", path.display());
    let dir = path.parent().unwrap();
    assert_eq!(
        std::fs::metadata(dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(cmwq::control::find(pid).as_ref(), Some(path));
    assert!(cmwq::control::list().iter().any(|(p, _)| *p == pid));

    let hello = cmwq::control::request(path, "hello").unwrap().body;
    assert!(hello.contains(&format!("pid\t{pid}\n")), "{hello}");
    assert!(hello.contains("version\t1\n"), "{hello}");
    let stats = cmwq::control::request(path, "stats").unwrap().body;
    let wqs = cmwq::control::parse_stats(&stats);
    let load = wqs
        .iter()
        .find(|w| w.name == "control_load")
        .expect("listed");
    assert!(load.stats.total > 0);
    let workers = cmwq::control::request(path, "workers").unwrap().body;
    assert!(
        workers.lines().any(|l| l.starts_with("pool\t")),
        "{workers}"
    );
    assert!(
        workers.lines().any(|l| l.starts_with("worker\t")),
        "{workers}"
    );
    let dump = cmwq::control::request(path, "dump").unwrap().body;
    assert!(dump.contains("Worker Pools"), "{dump}");
}

#[test]
fn g32_trace_records_executions_with_their_blocked_spans() {
    let _s = common::serial();
    let (path, _) = setup();
    let mut r = cmwq::control::open(path, "trace 300").unwrap();
    let mut body = String::new();
    r.read_to_string(&mut body).unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert!(lines[0].starts_with("begin\t"), "{}", lines[0]);
    let end = lines.last().unwrap();
    let f: Vec<&str> = end.split('\t').collect();
    assert_eq!(f[0], "end", "{end}");
    let events: Vec<Vec<&str>> = lines
        .iter()
        .filter(|l| l.starts_with("ev\t"))
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(f[1].parse::<usize>().unwrap(), events.len());
    let ticks: Vec<&Vec<&str>> = events
        .iter()
        .filter(|e| e[9] == "control_load" && e[10] == "tick")
        .collect();
    // About 1000 runs/s for 0.3 s; ask for a fraction of that.
    assert!(ticks.len() >= 30, "{} tick executions", ticks.len());
    for e in &ticks {
        let (start, end): (u64, u64) = (e[5].parse().unwrap(), e[6].parse().unwrap());
        assert!(end >= start + 400_000, "a tick sleeps 500 us: {e:?}");
    }
    // Sleeps are found by detection: most ticks carry a blocked span.
    let blocked = ticks.iter().filter(|e| e[8] != "-").count();
    assert!(
        blocked * 2 >= ticks.len(),
        "{blocked} of {} ticks show a blocked span",
        ticks.len()
    );
    // A second trace is refused while one runs.
    let first = std::thread::spawn({
        let path = path.clone();
        move || {
            let mut r = cmwq::control::open(&path, "trace 500").unwrap();
            let mut b = String::new();
            r.read_to_string(&mut b).unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let e = cmwq::control::open(path, "trace 100").unwrap_err();
    assert!(e.to_string().contains("busy"), "{e}");
    first.join().unwrap();
}

#[test]
fn g32_bad_requests_get_an_error_and_do_not_hurt_the_process() {
    let _s = common::serial();
    let (path, _) = setup();
    let bad0 = cmwq::control::bad_requests();
    keeps_running(100, || {
        for req in [
            &b"bogus\n"[..],
            b"\x00\xff\xfe garbage\n",
            b"trace 0\n",
            b"hello extra\n",
            b"\n",
        ] {
            let r = raw(path, req);
            assert!(r.starts_with("cmwq-control 1 err "), "{req:?} -> {r:?}");
        }
        // A 10 MiB line: refused after MAX_REQUEST bytes, connection closed.
        let t = Instant::now();
        let mut s = UnixStream::connect(path).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let big = vec![b'x'; 10 << 20];
        let _ = s.write_all(&big); // fails once the server closes
        let mut out = String::new();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.read_to_string(&mut out);
        assert!(
            out.is_empty() || out.contains("longer than"),
            "10 MiB line -> {out:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(5));
        // A client that says nothing is timed out.
        let silent = raw(path, b"");
        assert!(silent.contains("err"), "{silent:?}");
    });
    assert!(cmwq::control::bad_requests() >= bad0 + 7);
    // Still serving.
    assert!(cmwq::control::request(path, "hello").is_ok());
}

#[test]
fn g32_a_client_that_never_reads_loses_events_not_the_workers() {
    let _s = common::serial();
    let (path, _) = setup();
    keeps_running(300, || {
        // Ask for a trace and never read: the server's writes block, it
        // gives up after WRITE_TIMEOUT and drops the client.
        let mut s = UnixStream::connect(path).unwrap();
        s.write_all(b"trace 1500\n").unwrap();
        std::thread::sleep(Duration::from_millis(1500) + cmwq::control::WRITE_TIMEOUT);
        drop(s);
    });
    // The recorder is free again.
    let mut r = cmwq::control::open(path, "trace 50").unwrap();
    let mut b = String::new();
    r.read_to_string(&mut b).unwrap();
    assert!(b.lines().last().unwrap().starts_with("end\t"), "{b}");
}

#[test]
fn g32_too_many_clients_are_turned_away() {
    let _s = common::serial();
    let (path, _) = setup();
    // Fill every slot with silent clients, then one more.
    let held: Vec<UnixStream> = (0..cmwq::control::MAX_CLIENTS)
        .map(|_| UnixStream::connect(path).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let r = raw(path, b"hello\n");
    assert!(r.contains("err busy"), "{r:?}");
    drop(held);
    assert!(common::wait_until(Duration::from_secs(5), || {
        cmwq::control::request(path, "hello").is_ok()
    }));
}

/// A peer of another uid is refused by the credential check itself: the
/// directory and socket are opened up for the test so the peer reaches
/// `accept()`. Needs root (to be another uid); skipped otherwise.
#[test]
fn g32_a_peer_of_another_uid_is_refused_by_its_credentials() {
    let _s = common::serial();
    let (path, _) = setup();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: cannot connect as another uid; skipped");
        return;
    }
    let dir = path.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let refused0 = cmwq::control::refused();
    // The client: a forked child that becomes uid 65534 and talks to the
    // socket with raw system calls only.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as _;
    let p = path.as_os_str().as_encoded_bytes();
    for (d, s) in addr.sun_path.iter_mut().zip(p) {
        *d = *s as _;
    }
    // SAFETY: the child uses async-signal-safe calls only (setgid, setuid,
    // socket, connect, write, read, _exit) on memory prepared before the
    // fork.
    let child = unsafe { libc::fork() };
    assert!(child >= 0);
    if child == 0 {
        // SAFETY: see above.
        unsafe {
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                libc::_exit(3);
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if libc::connect(fd, &addr as *const _ as *const libc::sockaddr, len) != 0 {
                libc::_exit(4);
            }
            let req = b"dump\n";
            libc::write(fd, req.as_ptr() as *const _, req.len());
            let mut buf = [0u8; 256];
            let mut n = 0usize;
            loop {
                let r = libc::read(fd, buf[n..].as_mut_ptr() as *mut _, buf.len() - n);
                if r <= 0 {
                    break;
                }
                n += r as usize;
                if n == buf.len() {
                    break;
                }
            }
            let want = b"cmwq-control 1 err permission denied";
            let ok = n >= want.len() && &buf[..want.len()] == want;
            libc::_exit(if ok { 0 } else { 5 });
        }
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(libc::WIFEXITED(status), "child status {status}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "the uid 65534 client was not refused with `permission denied` (3: setuid failed, 4: could not connect, 5: other reply)"
    );
    assert_eq!(cmwq::control::refused(), refused0 + 1);
}

/// Regression: an item that blocked while a trace began (so it was not
/// traced) must not lend its blocked time to the next item of that worker.
/// Before the fix, the next item (pure CPU) read 100% blocked with no span.
#[test]
fn g32_blocked_time_belongs_to_the_execution_it_happened_in() {
    let _s = common::serial();
    let (path, _) = setup();
    let wq = cmwq::Workqueue::new("control_blocked").unwrap();
    // One item, run twice on the same worker (queued again while it runs,
    // it is handed over to the worker running it, G3). First run: spin 100
    // ms, queue itself again, sleep 300 ms (detected as blocked: after the
    // trace began, in an execution that began before it). Second run,
    // traced: spin 30 ms.
    let runs = Arc::new(AtomicU64::new(0));
    let wq_ref: &'static cmwq::Workqueue = Box::leak(Box::new(wq));
    let a = cmwq::Work::named("b_spins", {
        let runs = runs.clone();
        move |w| {
            let spin = |ms| {
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(ms) {
                    std::hint::spin_loop();
                }
            };
            if runs.fetch_add(1, Relaxed) == 0 {
                spin(100);
                wq_ref.queue(w);
                std::thread::sleep(Duration::from_millis(300));
            } else {
                spin(30);
            }
        }
    });
    wq_ref.queue(&a);
    std::thread::sleep(Duration::from_millis(50));
    let mut r = cmwq::control::open(path, "trace 600").unwrap();
    let mut body = String::new();
    r.read_to_string(&mut body).unwrap();
    wq_ref.flush();
    assert_eq!(runs.load(Relaxed), 2);
    let ev: Vec<&str> = body
        .lines()
        .find(|l| l.starts_with("ev\t") && l.ends_with("\tb_spins"))
        .unwrap_or_else(|| panic!("b_spins not traced:\n{body}"))
        .split('\t')
        .collect();
    let blocked: u64 = ev[7].parse().unwrap();
    let spans: u64 = if ev[8] == "-" {
        0
    } else {
        ev[8]
            .split(',')
            .map(|s| {
                let (a, z) = s.split_once('-').unwrap();
                z.parse::<u64>().unwrap() - a.parse::<u64>().unwrap()
            })
            .sum()
    };
    assert_eq!(blocked, spans, "blocked time without spans: {ev:?}");
    assert!(
        blocked < 10_000_000,
        "a CPU-bound item read blocked: {ev:?}"
    );
}

/// Regression: a process forked while a trace runs can be traced itself
/// (the recorder's state is the parent's; before the fix the child
/// answered `busy` forever and recorded into rings nobody drained).
#[test]
fn g26_g32_a_child_forked_during_a_trace_can_be_traced() {
    let _s = common::serial();
    let (path, _) = setup();
    let tracer = std::thread::spawn({
        let path = path.clone();
        move || {
            let mut r = cmwq::control::open(&path, "trace 1500").unwrap();
            let mut b = String::new();
            r.read_to_string(&mut b).unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: the child uses the library, which supports fork (G26), and
    // leaves with _exit.
    let child = unsafe { libc::fork() };
    assert!(child >= 0);
    if child == 0 {
        let code = std::panic::catch_unwind(|| {
            // Using the library starts the child's monitor, which starts
            // the child's own listener.
            let w = cmwq::Work::new(|_| {});
            cmwq::schedule_work(&w);
            w.flush();
            let end = Instant::now() + Duration::from_secs(10);
            let mine = loop {
                if let Some(p) = cmwq::control::socket_path() {
                    break p;
                }
                if Instant::now() > end {
                    return 3;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            if !mine.ends_with(format!("{}.sock", std::process::id())) {
                return 4;
            }
            match cmwq::control::open(&mine, "trace 100") {
                Ok(mut r) => {
                    let mut b = String::new();
                    let _ = r.read_to_string(&mut b);
                    if b.lines().last().is_some_and(|l| l.starts_with("end\t")) {
                        0
                    } else {
                        5
                    }
                }
                Err(_) => 6,
            }
        })
        .unwrap_or(7);
        // SAFETY: leave the child without running the parent's exit code.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    tracer.join().unwrap();
    assert!(libc::WIFEXITED(status), "child status {status}");
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "3: no socket in the child, 4: the parent's, 5: no end line, 6: refused (busy), 7: panicked"
    );
    // The parent's socket is still there and still answers.
    assert!(path.exists());
    assert!(cmwq::control::request(path, "hello").is_ok());
}
