//! The control socket (G32): how `cmwq monitor PID`, `cmwq dump PID`,
//! `cmwq trace PID` and `cmwq ps` look inside a running process.
//!
//! Off unless enabled: `CMWQ_CONTROL=1` in the environment, or
//! [`Config::control(true)`](crate::Config::control). The process then
//! starts one listener thread, `cmwq-control`, on a Unix stream socket at
//! `$XDG_RUNTIME_DIR/cmwq/PID.sock` when `XDG_RUNTIME_DIR` names a
//! directory of ours, else at `/tmp/cmwq-UID/PID.sock`. The directory is
//! made mode 0700 (an existing one must be ours and is set back to 0700),
//! the socket 0600; sockets of processes that no longer exist are removed
//! when a listener starts, and a process removes its own at exit. A
//! forked child that uses the library listens on its own PID's socket.
//!
//! # Who is served
//!
//! Every connection's peer credentials (`SO_PEERCRED`) are checked before
//! anything is read: a peer whose uid is neither ours nor root's gets
//! `err permission denied` and is counted ([`refused`]); the directory's
//! mode is a second fence, not the only one.
//!
//! # Protocol, version 1
//!
//! One request per connection. The client sends one line of ASCII, at most
//! [`MAX_REQUEST`] bytes with its `\n`:
//!
//! | request | reply body |
//! |---|---|
//! | `hello` | `key\tvalue` lines: `version`, `pid`, `name`, `detect`, `cpus`, `workqueues`, `pools`, `workers`, `refused`, `bad_requests`, `trace_lost` |
//! | `stats` | one `wq` line per live workqueue (see below) |
//! | `workers` | one `pool` line per pool, then one `worker` line per worker |
//! | `dump` | the text of [`dump`](crate::dump()) |
//! | `trace MS` | the executions of the next `MS` milliseconds (1..=3600000), streamed |
//!
//! The server answers with a status line, `cmwq-control 1 ok` or
//! `cmwq-control 1 err MESSAGE`, then the body, and closes the connection:
//! the end of the stream is the end of the reply. Every malformed,
//! oversized, unknown or slow request (no full line within
//! [`REQUEST_TIMEOUT`]) gets an `err` reply and the connection is closed;
//! such requests are counted (`bad_requests`). Body lines are fields
//! separated by tabs; names are escaped (`\\`, `\t`, `\n`, `\r`) so that
//! they hold neither:
//!
//! ```text
//! wq  NAME FLAGS ORDERED MAX_ACTIVE TOTAL IN_FLIGHT CPU_NS CPU_HOG CM_WAKEUPS MAYDAY RESCUED PANICS SPREADING UNMANAGED
//! pool ID DESCRIPTION CPU|- MANAGED WORKERS RUNNING IDLE PENDING
//! worker POOL_ID TID THREAD_NAME STATE RUNNING_FOR_NS WORKQUEUE|- ITEM|-
//! begin T0_NS
//! ev  POOL_ID TID CPU QUEUED_NS START_NS END_NS BLOCKED_NS SPANS WORKQUEUE ITEM
//! end EVENTS LOST T1_NS
//! ```
//!
//! `FLAGS` are [`WqFlags`](crate::WqFlags) names joined by `|` (`-` for
//! none); `ORDERED`, `SPREADING` (unbound because `PERCPU` was not asked
//! for) and `UNMANAGED` (an explicit `UNBOUND | CPU_INTENSIVE`) are `0` or
//! `1` (a line without the last two, from an older process, still parses);
//! `STATE` is `idle`, `running`, `blocked` (known blocked, hinted or
//! detected), `cpu-intensive` or `prep` (between items, or starting).
//!
//! A trace starts with `begin` (when recording began), streams `pool` and
//! `worker` lines for the threads it saw and an `ev` line per execution
//! (times are CLOCK_MONOTONIC ns; `QUEUED_NS` is 0 when the item was
//! queued before the trace began; `SPANS` is `-` or the first blocked
//! spans as `start-end` pairs joined by `,`), and ends with `end`: the
//! executions sent, those lost, and when recording ended. `LOST` counts
//! executions not recorded because a worker's buffer was full (a client
//! that reads slowly loses events; the workers never wait for it). A
//! client that stops reading for [`WRITE_TIMEOUT`] is disconnected.
//!
//! At most [`MAX_CLIENTS`] connections are served at once (each on its own
//! short-lived thread, `cmwq-ctl-client`); more get `err busy`. One trace
//! runs at a time.
//!
//! # Client side
//!
//! [`find`], [`list`] and [`request`] are what the `cmwq` command uses;
//! they are here for other tools too:
//!
//! ```no_run
//! let path = cmwq::control::find(1234).expect("no control socket");
//! let reply = cmwq::control::request(&path, "stats").unwrap();
//! for wq in cmwq::control::parse_stats(&reply.body) {
//!     println!("{} ran {} items", wq.name, wq.stats.total);
//! }
//! ```

mod server;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use server::{bad_requests, refused, socket_path};
pub(crate) use server::{reset_after_fork, start};

/// The protocol version, the second word of every status line.
pub const PROTOCOL_VERSION: u32 = 1;
/// The longest request line accepted, `\n` included.
pub const MAX_REQUEST: usize = 4096;
/// How long the server waits for a whole request line.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the server waits for a client to take reply data.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections served at once.
pub const MAX_CLIENTS: usize = 8;
/// The longest trace a request may ask for.
pub const MAX_TRACE: Duration = Duration::from_secs(3600);

/// The status line's prefix.
const STATUS: &str = "cmwq-control";

/// The directories where sockets of processes of user `uid` live:
/// `$XDG_RUNTIME_DIR/cmwq` (this process's environment, for our own uid),
/// `/run/user/UID/cmwq`, and `/tmp/cmwq-UID`, without duplicates.
pub fn socket_dirs(uid: u32) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if uid == rustix::process::geteuid().as_raw() {
        if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
            if !x.is_empty() {
                v.push(Path::new(&x).join("cmwq"));
            }
        }
    }
    for d in [
        PathBuf::from(format!("/run/user/{uid}/cmwq")),
        PathBuf::from(format!("/tmp/cmwq-{uid}")),
    ] {
        if !v.contains(&d) {
            v.push(d);
        }
    }
    v
}

/// The uid owning process `pid` (from `/proc/PID/status`).
fn process_uid(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Whether `dir` is a real directory owned by `uid` that only its owner
/// may write: sockets elsewhere (a directory another user made in `/tmp`)
/// are not trusted.
fn trusted_dir(dir: &Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o022 == 0)
}

/// The control socket of process `pid`, if it has one: looked for in the
/// [`socket_dirs`] of the process's owner, in directories that owner owns.
pub fn find(pid: u32) -> Option<PathBuf> {
    let uid = process_uid(pid)?;
    socket_dirs(uid)
        .into_iter()
        .filter(|d| trusted_dir(d, uid))
        .map(|d| d.join(format!("{pid}.sock")))
        .find(|p| p.exists())
}

/// The live control sockets of the caller's user: `(pid, path)`, by pid.
/// A socket whose process is gone is left out (its owner's next listener
/// removes it).
pub fn list() -> Vec<(u32, PathBuf)> {
    let me = rustix::process::geteuid().as_raw();
    let mut v: Vec<(u32, PathBuf)> = Vec::new();
    for d in socket_dirs(me) {
        if !trusted_dir(&d, me) {
            continue;
        }
        for (pid, path) in sockets_in(&d) {
            if Path::new(&format!("/proc/{pid}")).exists() && !v.iter().any(|(p, _)| *p == pid) {
                v.push((pid, path));
            }
        }
    }
    v.sort();
    v
}

/// The `PID.sock` entries of `dir`: `(pid, path)`.
pub(crate) fn sockets_in(dir: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let pid = e
                .file_name()
                .to_str()?
                .strip_suffix(".sock")?
                .parse::<u32>()
                .ok()?;
            Some((pid, e.path()))
        })
        .collect()
}

/// A whole reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The body (everything after the status line).
    pub body: String,
}

/// A failed request: the connection or the server's `err` reply.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server answered `err MESSAGE`.
    #[error("the process refused: {0}")]
    Refused(String),
    /// The reply was not the protocol's.
    #[error("not a cmwq control reply: {0:?}")]
    Protocol(String),
}

/// How long [`open`] waits to hand its request to the server.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`open`] and the reads of its reply wait for the server's
/// next data: a stopped or stuck process does not hang the client.
const CLIENT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Send `req` (one line, without its `\n`) to the socket at `path` and
/// return the status-checked reply as a stream of body lines.
pub fn open(path: &Path, req: &str) -> Result<BufReader<UnixStream>, RequestError> {
    let mut s = UnixStream::connect(path)?;
    s.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT))?;
    // A process that is stopped or stuck does not hang the client.
    s.set_read_timeout(Some(CLIENT_READ_TIMEOUT))?;
    s.write_all(req.as_bytes())?;
    s.write_all(b"\n")?;
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status)?;
    let status = status.trim_end_matches('\n');
    let mut words = status.splitn(3, ' ');
    let (Some(STATUS), Some(v), rest) = (words.next(), words.next(), words.next()) else {
        return Err(RequestError::Protocol(status.to_string()));
    };
    if v != PROTOCOL_VERSION.to_string() {
        return Err(RequestError::Protocol(format!(
            "protocol version {v}, this client speaks {PROTOCOL_VERSION}"
        )));
    }
    match rest {
        Some("ok") => Ok(r),
        Some(e) if e.starts_with("err") => Err(RequestError::Refused(
            e.trim_start_matches("err").trim().to_string(),
        )),
        _ => Err(RequestError::Protocol(status.to_string())),
    }
}

/// The longest reply body [`request`] accepts.
pub const MAX_REPLY: u64 = 64 << 20;

/// Send `req` and read the whole reply (for every request but `trace`,
/// whose reply [`open`] streams), at most [`MAX_REPLY`] bytes.
pub fn request(path: &Path, req: &str) -> Result<Reply, RequestError> {
    let r = open(path, req)?;
    let mut body = String::new();
    let n = r.take(MAX_REPLY + 1).read_to_string(&mut body)?;
    if n as u64 > MAX_REPLY {
        return Err(RequestError::Protocol(format!(
            "reply longer than {MAX_REPLY} bytes"
        )));
    }
    Ok(Reply { body })
}

/// Escape a name for a body field (no tabs or line breaks).
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\t' => o.push_str("\\t"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            c => o.push(c),
        }
    }
    o
}

/// Undo [`escape`].
pub fn unescape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            o.push(c);
            continue;
        }
        match it.next() {
            Some('t') => o.push('\t'),
            Some('n') => o.push('\n'),
            Some('r') => o.push('\r'),
            Some(c) => o.push(c),
            None => o.push('\\'),
        }
    }
    o
}

/// The workqueues of a `stats` reply body (lines that do not parse are
/// skipped).
pub fn parse_stats(body: &str) -> Vec<crate::dump::WqInfo> {
    body.lines().filter_map(parse_stats_line).collect()
}

fn parse_stats_line(l: &str) -> Option<crate::dump::WqInfo> {
    let f: Vec<&str> = l.split('\t').collect();
    // 15 fields; 13 from a process of before the spreading default, whose
    // unbound workqueues were unmanaged exactly with CPU_INTENSIVE.
    if !(f.len() == 13 || f.len() == 15) || f[0] != "wq" {
        return None;
    }
    let n = |i: usize| f[i].parse::<u64>().ok();
    let mut flags = crate::WqFlags::empty();
    if f[2] != "-" {
        for name in f[2].split('|') {
            flags |= crate::WqFlags::from_name(name)?;
        }
    }
    Some(crate::dump::WqInfo {
        name: unescape(f[1]),
        flags,
        ordered: f[3] == "1",
        spreading: f.get(13).is_some_and(|&v| v == "1"),
        unmanaged: match f.get(14) {
            Some(&v) => v == "1",
            None => flags.contains(crate::WqFlags::UNBOUND | crate::WqFlags::CPU_INTENSIVE),
        },
        max_active: f[4].parse().ok()?,
        stats: crate::WqStats {
            total: n(5)?,
            in_flight: n(6)?,
            cpu_time: Duration::from_nanos(n(7)?),
            cpu_hog: n(8)?,
            cm_wakeups: n(9)?,
            mayday: n(10)?,
            rescued: n(11)?,
            panics: n(12)?,
        },
    })
}

/// A `stats` body line for `wq`.
pub(crate) fn stats_line(wq: &crate::dump::WqInfo) -> String {
    let flags: Vec<&str> = wq.flags.iter_names().map(|(n, _)| n).collect();
    let s = &wq.stats;
    format!(
        "wq\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        escape(&wq.name),
        if flags.is_empty() {
            "-".to_string()
        } else {
            flags.join("|")
        },
        wq.ordered as u8,
        wq.max_active,
        s.total,
        s.in_flight,
        s.cpu_time.as_nanos(),
        s.cpu_hog,
        s.cm_wakeups,
        s.mayday,
        s.rescued,
        s.panics,
        wq.spreading as u8,
        wq.unmanaged as u8
    )
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn escape_round_trips_and_removes_separators() {
        for s in ["plain", "a\tb\nc\rd\\e", "\\t", "", "ünï\u{1F600}", "end\\"] {
            let e = escape(s);
            assert!(!e.contains('\t') && !e.contains('\n') && !e.contains('\r'));
            assert_eq!(unescape(&e), s);
        }
    }

    #[test]
    fn stats_lines_round_trip() {
        let wq = crate::dump::WqInfo {
            name: "odd\tname\n".into(),
            flags: crate::WqFlags::UNBOUND | crate::WqFlags::MEM_RECLAIM,
            ordered: true,
            spreading: true,
            unmanaged: false,
            max_active: 7,
            stats: crate::WqStats {
                total: 1,
                in_flight: 2,
                cpu_time: Duration::from_nanos(3),
                cpu_hog: 4,
                cm_wakeups: 5,
                mayday: 6,
                rescued: 7,
                panics: 8,
            },
        };
        let l = stats_line(&wq);
        let back = parse_stats(&format!("{l}\ngarbage\nwq\tshort\n"));
        assert_eq!(back.len(), 1);
        let b = &back[0];
        assert_eq!(
            (&b.name, b.flags, b.ordered, b.max_active),
            (&wq.name, wq.flags, true, 7)
        );
        assert_eq!(b.stats, wq.stats);
    }

    #[test]
    fn socket_dirs_include_the_tmp_fallback() {
        let d = socket_dirs(12345);
        assert!(d.contains(&PathBuf::from("/tmp/cmwq-12345")));
        assert!(d.contains(&PathBuf::from("/run/user/12345/cmwq")));
    }
}
