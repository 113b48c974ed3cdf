//! The listener and the request handlers of the control socket (the
//! protocol is in the module docs of [`control`](super)).

use crate::sync::Mutex;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering::*};
use std::time::{Duration, Instant};

use super::{escape, MAX_CLIENTS, MAX_REQUEST, MAX_TRACE, PROTOCOL_VERSION, REQUEST_TIMEOUT};
use super::{STATUS, WRITE_TIMEOUT};

/// A: the listener was started in this process (or its start is in flight).
static STARTED: AtomicBool = AtomicBool::new(false);
/// A: peers refused by the credential check.
static REFUSED: AtomicU64 = AtomicU64::new(0);
/// A: malformed, oversized, unknown or timed-out requests.
static BAD: AtomicU64 = AtomicU64::new(0);
/// A: connections being served.
static CLIENTS: AtomicUsize = AtomicUsize::new(0);
/// A: the listening descriptor (-1: none), closed in a forked child.
static LISTENER_FD: AtomicI32 = AtomicI32::new(-1);
/// The socket's path while listening; removed at exit.
static PATH: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The path of this process's control socket, if it is listening.
pub fn socket_path() -> Option<PathBuf> {
    PATH.lock().clone()
}

/// Connections refused by the credential check so far (a peer of another
/// uid, root aside).
pub fn refused() -> u64 {
    REFUSED.load(Relaxed)
}

/// Malformed, oversized, unknown or timed-out requests so far.
pub fn bad_requests() -> u64 {
    BAD.load(Relaxed)
}

/// Start the listener if the settings ask for it (idempotent).
pub(crate) fn start() {
    if !crate::config::settings().control || STARTED.swap(true, AcqRel) {
        return;
    }
    let (listener, path) = match bind() {
        Ok(x) => x,
        Err((path, e)) => {
            crate::event::report(crate::Event::ControlFailed {
                path: &path.display().to_string(),
                error: &e.to_string(),
            });
            return;
        }
    };
    LISTENER_FD.store(listener.as_raw_fd(), SeqCst);
    *PATH.lock() = Some(path.clone());
    register_atexit();
    let spawned = std::thread::Builder::new()
        .name("cmwq-control".into())
        .stack_size(256 << 10)
        .spawn(move || accept_loop(listener));
    if let Err(e) = spawned {
        remove_socket();
        crate::event::report(crate::Event::ControlFailed {
            path: &path.display().to_string(),
            error: &format!("could not start its thread: {e}"),
        });
    }
}

/// In a forked child: the listener thread is the parent's; close the
/// inherited descriptor (leaving the parent's socket alone) and listen on
/// the child's own PID when the monitor starts again.
pub(crate) fn reset_after_fork() {
    let fd = LISTENER_FD.swap(-1, SeqCst);
    if fd >= 0 {
        // SAFETY: the descriptor was the listener's, whose thread does not
        // exist in this child; nothing else here uses the number.
        unsafe { libc::close(fd) };
    }
    // SAFETY: in the child only the forking thread exists; a held PATH lock
    // belongs to a thread that is gone (the forking thread does not fork
    // while holding it: it is taken only inside this module's functions).
    unsafe {
        if PATH.is_locked() {
            PATH.force_unlock(Default::default());
        }
    }
    *PATH.lock() = None;
    CLIENTS.store(0, SeqCst);
    STARTED.store(false, SeqCst);
}

fn register_atexit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    extern "C" fn at_exit() {
        remove_socket();
    }
    ONCE.call_once(|| {
        // SAFETY: registers a plain `extern "C"` function with no
        // arguments, as atexit expects.
        unsafe { libc::atexit(at_exit) };
    });
}

/// Remove our socket (at exit, or when the listener could not start).
fn remove_socket() {
    // try_lock: at exit another thread may hold the lock (or have died
    // holding it); leaving a stale socket is then the lesser harm.
    if let Some(mut p) = PATH.try_lock() {
        if let Some(p) = p.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The socket directory: `$XDG_RUNTIME_DIR/cmwq` when that is a directory
/// of ours, else `/tmp/cmwq-UID`; made 0700, and refused unless it is a
/// real directory owned by us.
fn socket_dir() -> io::Result<PathBuf> {
    let uid = rustix::process::geteuid().as_raw();
    let xdg = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|x| !x.is_empty())
        .map(PathBuf::from)
        .filter(|x| std::fs::metadata(x).is_ok_and(|m| m.is_dir() && m.uid() == uid));
    let dir = match xdg {
        Some(x) => x.join("cmwq"),
        None => PathBuf::from(format!("/tmp/cmwq-{uid}")),
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let m = std::fs::symlink_metadata(&dir)?;
    if !m.is_dir() || m.uid() != uid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a directory owned by uid {uid}; not using it",
                dir.display()
            ),
        ));
    }
    if m.mode() & 0o777 != 0o700 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(dir)
}

/// Remove sockets of processes that no longer exist.
fn clean_stale(dir: &Path) {
    for (pid, path) in super::sockets_in(dir) {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn bind() -> Result<(UnixListener, PathBuf), (PathBuf, io::Error)> {
    let pid = std::process::id();
    let dir = socket_dir().map_err(|e| (PathBuf::from(format!("{pid}.sock")), e))?;
    clean_stale(&dir);
    let path = dir.join(format!("{pid}.sock"));
    // A socket left by an earlier process that had our PID.
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).map_err(|e| (path.clone(), e))?;
    // The directory is 0700, so nobody reached the socket before this.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| (path.clone(), e))?;
    Ok((l, path))
}

fn accept_loop(l: UnixListener) {
    loop {
        match l.accept() {
            Ok((s, _)) => admit(s),
            Err(e) => match e.raw_os_error() {
                Some(libc::EINTR) | Some(libc::ECONNABORTED) => {}
                // Out of descriptors or memory: wait, do not spin.
                Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS)
                | Some(libc::ENOMEM) => std::thread::sleep(ACCEPT_BACKOFF),
                _ => return, // the listener is gone (closed after a fork)
            },
        }
    }
}

/// How long the accept loop waits when out of descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How long the accept loop waits to write a refusal (permission denied,
/// too many clients), so a client that does not read cannot stall it; a
/// connection that is served gets [`WRITE_TIMEOUT`].
const REFUSE_WRITE_TIMEOUT: Duration = Duration::from_millis(200);

/// The credential check, then a thread for the connection.
fn admit(mut s: UnixStream) {
    let _ = s.set_write_timeout(Some(REFUSE_WRITE_TIMEOUT));
    let me = rustix::process::geteuid().as_raw();
    let uid = rustix::net::sockopt::socket_peercred(&s).map(|c| c.uid.as_raw());
    match uid {
        Ok(u) if u == me || u == 0 => {}
        _ => {
            REFUSED.fetch_add(1, Relaxed);
            let _ = err(&mut s, "permission denied");
            return;
        }
    }
    if CLIENTS.fetch_add(1, AcqRel) >= MAX_CLIENTS {
        CLIENTS.fetch_sub(1, AcqRel);
        let _ = err(&mut s, "busy: too many clients");
        return;
    }
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            CLIENTS.fetch_sub(1, AcqRel);
        }
    }
    let spawned = std::thread::Builder::new()
        .name("cmwq-ctl-client".into())
        .stack_size(256 << 10)
        .spawn(move || {
            let _leave = Leave;
            // A handler never takes the process down.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(s)));
        });
    if spawned.is_err() {
        CLIENTS.fetch_sub(1, AcqRel);
    }
}

fn status_ok(s: &mut UnixStream) -> io::Result<()> {
    writeln!(s, "{STATUS} {PROTOCOL_VERSION} ok")
}

fn err(s: &mut UnixStream, msg: &str) -> io::Result<()> {
    writeln!(s, "{STATUS} {PROTOCOL_VERSION} err {msg}")
}

/// Read one request line within [`REQUEST_TIMEOUT`], at most
/// [`MAX_REQUEST`] bytes.
fn read_request(s: &mut UnixStream) -> Result<String, String> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out waiting for a request line".into());
        }
        let _ = s.set_read_timeout(Some(left));
        let n = match s.read(&mut chunk) {
            Ok(0) => return Err("connection closed before a full request line".into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err("timed out waiting for a request line".into())
            }
            Err(e) => return Err(e.to_string()),
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            if i + 1 > MAX_REQUEST {
                return Err(format!("request longer than {MAX_REQUEST} bytes"));
            }
            buf.truncate(i);
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return match String::from_utf8(buf) {
                Ok(l) if l.is_ascii() => Ok(l),
                _ => Err("request is not ASCII".into()),
            };
        }
        if buf.len() >= MAX_REQUEST {
            return Err(format!("request longer than {MAX_REQUEST} bytes"));
        }
    }
}

/// A parsed request.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Hello,
    Stats,
    Workers,
    Dump,
    Trace(Duration),
}

fn parse(line: &str) -> Result<Request, String> {
    let mut w = line.split_ascii_whitespace();
    let verb = w.next().unwrap_or("");
    let arg = w.next();
    if w.next().is_some() {
        return Err(format!("too many arguments for {verb:?}"));
    }
    let none = |r: Request| match arg {
        None => Ok(r),
        Some(_) => Err(format!("{verb:?} takes no argument")),
    };
    match verb {
        "hello" => none(Request::Hello),
        "stats" => none(Request::Stats),
        "workers" => none(Request::Workers),
        "dump" => none(Request::Dump),
        "trace" => {
            let ms = arg
                .and_then(|a| a.parse::<u64>().ok())
                .filter(|&ms| ms >= 1 && ms <= MAX_TRACE.as_millis() as u64)
                .ok_or_else(|| {
                    format!(
                        "trace needs a duration in milliseconds, 1..={}",
                        MAX_TRACE.as_millis()
                    )
                })?;
            Ok(Request::Trace(Duration::from_millis(ms)))
        }
        "" => Err("empty request".into()),
        v => Err(format!(
            "unknown request {:?} (known: hello, stats, workers, dump, trace MS)",
            v.chars().take(32).collect::<String>()
        )),
    }
}

fn serve(mut s: UnixStream) {
    let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
    let req = read_request(&mut s).and_then(|l| parse(&l));
    let req = match req {
        Ok(r) => r,
        Err(msg) => {
            BAD.fetch_add(1, Relaxed);
            let _ = err(&mut s, &msg);
            let _ = s.shutdown(std::net::Shutdown::Both);
            return;
        }
    };
    let body = match req {
        Request::Hello => hello(),
        Request::Stats => {
            let mut b = String::new();
            for wq in crate::dump::workqueues() {
                b.push_str(&super::stats_line(&wq));
                b.push('\n');
            }
            b
        }
        Request::Workers => workers(),
        Request::Dump => crate::dump::dump(),
        Request::Trace(d) => {
            trace(&mut s, d);
            return;
        }
    };
    let _ = status_ok(&mut s).and_then(|()| s.write_all(body.as_bytes()));
}

fn hello() -> String {
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
    let pools = crate::pool::pools_if_started()
        .map(|p| p.all())
        .unwrap_or_default();
    let workers: u32 = pools.iter().map(|p| p.lock().nr_workers).sum();
    let mut b = String::new();
    let _ = writeln!(b, "version\t{PROTOCOL_VERSION}");
    let _ = writeln!(b, "pid\t{}", std::process::id());
    let _ = writeln!(b, "name\t{}", escape(comm.trim_end()));
    let _ = writeln!(b, "detect\t{}", crate::monitor::mode().name());
    let _ = writeln!(b, "cpus\t{}", crate::topology::topology().online.count());
    let _ = writeln!(b, "workqueues\t{}", crate::dump::workqueues().len());
    let _ = writeln!(b, "pools\t{}", pools.len());
    let _ = writeln!(b, "workers\t{workers}");
    let _ = writeln!(b, "refused\t{}", refused());
    let _ = writeln!(b, "bad_requests\t{}", bad_requests());
    let _ = writeln!(b, "trace_lost\t{}", crate::trace::lost_total());
    b
}

/// `pool` and `worker` lines of every pool.
fn workers() -> String {
    use crate::pool::WORKER_IDLE;
    let mut b = String::new();
    let Some(pools) = crate::pool::pools_if_started() else {
        return b;
    };
    let now = crate::util::coarse_ns();
    let mut lines = Vec::new();
    for p in pools.all() {
        let g = p.lock();
        let pending =
            g.worklist.len() + g.pwqs.iter().map(|(_, s)| s.inactive.len()).sum::<usize>();
        let _ = writeln!(
            b,
            "pool\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{pending}",
            p.id,
            escape(&p.describe()),
            p.cpu.map_or("-".to_string(), |c| c.to_string()),
            p.managed() as u8,
            g.nr_workers,
            g.nr_running,
            g.nr_idle,
        );
        for (_, ws) in g.workers.iter() {
            let (state, since, wq, item) = match ws.current {
                None if ws.flags & WORKER_IDLE != 0 => ("idle", 0, "-".into(), "-".into()),
                // Between items, or before its first.
                None => ("prep", 0, "-".into(), "-".into()),
                Some(c) => {
                    // SAFETY: `current` is valid while recorded and we hold
                    // the pool lock (see `pool::Current`).
                    let (work, pwq) = unsafe { (c.work.as_ref(), &*c.pwq) };
                    (
                        ws.busy_state(),
                        now.saturating_sub(c.since),
                        escape(&pwq.wq.name),
                        escape(work.name.unwrap_or("work")),
                    )
                }
            };
            lines.push(format!(
                "worker\t{}\t{}\t{}\t{state}\t{since}\t{wq}\t{item}",
                p.id,
                ws.worker.tid.load(Relaxed),
                escape(&p.worker_name(ws.worker.id)),
            ));
        }
    }
    for l in lines {
        b.push_str(&l);
        b.push('\n');
    }
    b
}

/// Stream the executions of the next `d`.
fn trace(s: &mut UnixStream, d: Duration) {
    let Some(mut session) = crate::trace::Session::start() else {
        let _ = err(s, "busy: another trace is running");
        return;
    };
    if status_ok(s).is_err() || writeln!(s, "begin\t{}", session.t0_ns).is_err() {
        return;
    }
    let end = Instant::now() + d;
    // A client that reads just fast enough not to trip WRITE_TIMEOUT still
    // cannot keep the recorder on past this.
    let hard_end = end + WRITE_TIMEOUT;
    let mut wqs = WqNames::default();
    let mut seen_pools: Vec<u32> = Vec::new();
    let mut seen_workers: Vec<i32> = Vec::new();
    let mut events = 0u64;
    let mut out = String::new();
    let mut alive = true;
    loop {
        let last = Instant::now() >= end;
        out.clear();
        session.drain(&mut |o, r| {
            if !seen_pools.contains(&o.pool) {
                seen_pools.push(o.pool);
                out.push_str(&pool_line(o.pool));
            }
            if !seen_workers.contains(&o.tid) {
                seen_workers.push(o.tid);
                let _ = writeln!(out, "worker\t{}\t{}\t{}", o.pool, o.tid, escape(&o.name));
            }
            let spans: Vec<String> = r.spans[..r.nspans as usize]
                .iter()
                .map(|(a, z)| format!("{a}-{z}"))
                .collect();
            let _ = writeln!(
                out,
                "ev\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                o.pool,
                o.tid,
                r.cpu,
                r.queued_ns,
                r.start_ns,
                r.end_ns,
                r.blocked_ns,
                if spans.is_empty() {
                    "-".to_string()
                } else {
                    spans.join(",")
                },
                escape(&wqs.name(r.wq)),
                escape(r.item.unwrap_or("work")),
            );
            events += 1;
        });
        if !out.is_empty() && (s.write_all(out.as_bytes()).is_err() || Instant::now() > hard_end) {
            // The client stopped reading (WRITE_TIMEOUT) or went away.
            alive = false;
            break;
        }
        if last {
            break;
        }
        let left = end.saturating_duration_since(Instant::now());
        std::thread::sleep(left.min(Duration::from_millis(crate::trace::DRAIN_INTERVAL_MS)));
    }
    let lost = session.lost();
    let t1 = crate::util::mono_ns();
    drop(session);
    if alive {
        let _ = writeln!(s, "end\t{events}\t{lost}\t{t1}");
    }
}

/// A `pool` line for a trace.
fn pool_line(id: u32) -> String {
    let p =
        crate::pool::pools_if_started().and_then(|ps| ps.all().into_iter().find(|p| p.id == id));
    match p {
        Some(p) => format!(
            "pool\t{id}\t{}\t{}\n",
            escape(&p.describe()),
            p.cpu.map_or("-".to_string(), |c| c.to_string())
        ),
        None => format!("pool\t{id}\tpool {id}\t-\n"),
    }
}

/// Workqueue names by the address a [`Record`](crate::trace::Record)
/// carries, looked up again when an unknown one shows up.
#[derive(Default)]
struct WqNames(Vec<(usize, String)>);

impl WqNames {
    fn name(&mut self, key: usize) -> String {
        if let Some((_, n)) = self.0.iter().find(|(k, _)| *k == key) {
            return n.clone();
        }
        self.0 = crate::workqueue::all_workqueues()
            .iter()
            .map(|wq| {
                (
                    std::sync::Arc::as_ptr(&wq.shared) as usize,
                    wq.shared.name.clone(),
                )
            })
            .collect();
        match self.0.iter().find(|(k, _)| *k == key) {
            Some((_, n)) => n.clone(),
            None => "(destroyed)".into(),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_bad_ones_are_refused() {
        assert_eq!(parse("hello"), Ok(Request::Hello));
        assert_eq!(parse("  stats  "), Ok(Request::Stats));
        assert_eq!(
            parse("trace 250"),
            Ok(Request::Trace(Duration::from_millis(250)))
        );
        for bad in [
            "",
            "hello there",
            "trace",
            "trace 0",
            "trace -5",
            "trace 99999999999",
            "trace 1 2",
            "rm -rf",
            "HELLO",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = "x".repeat(10_000);
        let e = parse(&long).unwrap_err();
        assert!(e.len() < 200, "the reply does not echo a long request");
    }
}
