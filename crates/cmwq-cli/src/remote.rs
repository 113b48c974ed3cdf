//! The commands that look into another process through its control socket
//! (`cmwq::control`): `ps`, `monitor PID`, `dump PID`, `trace PID`.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cmwq::control::{self, unescape, RequestError};

use crate::json::{MonitorTable, PsProcess, WqRow};
use crate::render::{Exec, PoolInfo, Trace, WorkerInfo};
use crate::{out, outln};

/// Where to reach a process: its PID or a socket path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A process id, whose socket is looked for where the library puts it.
    Pid(u32),
    /// A socket path given directly.
    Path(PathBuf),
}

impl Target {
    /// Parse a command-line argument: a number is a PID, anything with a
    /// `/` a socket path.
    pub fn parse(s: &str) -> Result<Target, String> {
        if s.contains('/') {
            return Ok(Target::Path(PathBuf::from(s)));
        }
        s.parse::<u32>()
            .ok()
            .filter(|&p| p > 0)
            .map(Target::Pid)
            .ok_or_else(|| format!("`{s}` is neither a PID nor a socket path"))
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Target::Pid(p) => Some(*p),
            Target::Path(p) => p.file_name()?.to_str()?.strip_suffix(".sock")?.parse().ok(),
        }
    }

    /// The socket, or a message that says why there is none and what to
    /// do.
    fn socket(&self) -> Result<PathBuf, String> {
        match self {
            Target::Path(p) => Ok(p.clone()),
            Target::Pid(pid) => {
                if let Some(p) = control::find(*pid) {
                    return Ok(p);
                }
                let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
                    return Err(format!("no process {pid}"));
                };
                Err(format!(
                    "process {pid} ({}) has no cmwq control socket: start it with \
                     CMWQ_CONTROL=1 in its environment (or cmwq::Config::control(true)); \
                     `cmwq top {pid}` works without one",
                    comm.trim_end()
                ))
            }
        }
    }
}

fn fail(cmd: &str, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("cmwq {cmd}: {msg}");
    ExitCode::FAILURE
}

fn explain(e: RequestError, path: &std::path::Path) -> String {
    match e {
        RequestError::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied => format!(
            "{}: permission denied (the socket belongs to another user)",
            path.display()
        ),
        RequestError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => format!(
            "{}: nobody listens there (the process has exited?)",
            path.display()
        ),
        e => format!("{}: {e}", path.display()),
    }
}

/// `key\tvalue` lines of a `hello` reply.
fn hello(path: &std::path::Path) -> Result<Vec<(String, String)>, RequestError> {
    let r = control::request(path, "hello")?;
    Ok(r.body
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_string(), unescape(v)))
        .collect())
}

fn get<'a>(kv: &'a [(String, String)], k: &str) -> &'a str {
    kv.iter()
        .find(|(key, _)| key == k)
        .map_or("?", |(_, v)| v.as_str())
}

/// `cmwq ps`: the processes of this user with a live control socket (as
/// one JSON object with `json`).
pub fn ps(json: bool) -> ExitCode {
    let list = control::list();
    if json {
        let processes = list
            .into_iter()
            .map(|(pid, path)| ps_process(pid, &path, hello(&path)))
            .collect();
        out::json(&crate::json::Ps {
            schema: crate::json::SCHEMA,
            processes,
        });
        return ExitCode::SUCCESS;
    }
    outln!(
        "{:>8}  {:16} {:>4} {:>7} {:>7} {:9}  SOCKET",
        "PID",
        "NAME",
        "WQS",
        "POOLS",
        "WORKERS",
        "DETECT"
    );
    for (pid, path) in list {
        match hello(&path) {
            Ok(kv) => outln!(
                "{pid:>8}  {:16} {:>4} {:>7} {:>7} {:9}  {}",
                get(&kv, "name"),
                get(&kv, "workqueues"),
                get(&kv, "pools"),
                get(&kv, "workers"),
                get(&kv, "detect"),
                path.display()
            ),
            Err(e) => outln!("{pid:>8}  ({})", explain(e, &path)),
        }
    }
    ExitCode::SUCCESS
}

/// One process of `ps --json`, from its `hello` reply.
fn ps_process(
    pid: u32,
    path: &Path,
    reply: Result<Vec<(String, String)>, RequestError>,
) -> PsProcess {
    let mut p = PsProcess {
        pid,
        socket: path.display().to_string(),
        name: None,
        workqueues: None,
        pools: None,
        workers: None,
        detect: None,
        error: None,
    };
    match reply {
        Ok(kv) => {
            let text = |k: &str| Some(get(&kv, k).to_string()).filter(|v| v != "?");
            let number = |k: &str| get(&kv, k).parse().ok();
            p.name = text("name");
            p.workqueues = number("workqueues");
            p.pools = number("pools");
            p.workers = number("workers");
            p.detect = text("detect");
        }
        Err(e) => p.error = Some(explain(e, path)),
    }
    p
}

/// `cmwq dump PID`: that process's `cmwq::dump()` report (as one JSON
/// object with `json`, its workqueues from a `stats` request).
pub fn dump(target: &Target, json: bool) -> ExitCode {
    let path = match target.socket() {
        Ok(p) => p,
        Err(e) => return fail("dump", e),
    };
    let report = match control::request(&path, "dump") {
        Ok(r) => r.body,
        Err(e) => return fail("dump", explain(e, &path)),
    };
    if !json {
        out!("{report}");
        return ExitCode::SUCCESS;
    }
    let wqs = match control::request(&path, "stats") {
        Ok(r) => control::parse_stats(&r.body),
        Err(e) => return fail("dump", explain(e, &path)),
    };
    out::json(&crate::json::dump(target.pid(), &report, &wqs));
    ExitCode::SUCCESS
}

/// How long `monitor` runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Span {
    /// One table of the totals since the process started, at once.
    Once,
    /// Tables for this many seconds.
    Seconds(f64),
    /// Until interrupted or the process exits.
    Forever,
}

/// Each workqueue of `now` with its counters over the interval since
/// `prev` (in flight: now). With `prev` empty: the totals.
pub fn deltas(prev: &[cmwq::dump::WqInfo], now: &[cmwq::dump::WqInfo]) -> Vec<cmwq::dump::WqInfo> {
    now.iter()
        .map(|wq| {
            let before = prev
                .iter()
                .find(|p| p.name == wq.name)
                .map(|p| p.stats)
                .unwrap_or_default();
            let mut info = wq.clone();
            info.stats = wq.stats.since(&before);
            info
        })
        .collect()
}

/// The `wq_monitor.py -i` table of one interval: per workqueue the
/// executions started, items in flight now, CPU seconds used, hogs,
/// concurrency-management wake-ups, maydays, rescued items and panics,
/// each over the interval (in flight: now). With `prev` empty: the totals.
pub fn monitor_table(prev: &[cmwq::dump::WqInfo], now: &[cmwq::dump::WqInfo]) -> String {
    let mut s = cmwq::WqStats::header();
    s.push('\n');
    for info in deltas(prev, now) {
        s.push_str(&info.row());
        s.push('\n');
    }
    s
}

/// `cmwq monitor PID`: that process's `wq_monitor.py -i` table every
/// `interval` (one JSON object a line with `json`). Exits 1 when a sample
/// fails, the first or a later one (the process exited, ...).
pub fn monitor(target: &Target, interval: Duration, span: Span, json: bool) -> ExitCode {
    let path = match target.socket() {
        Ok(p) => p,
        Err(e) => return fail("monitor", e),
    };
    let sample = || control::request(&path, "stats").map(|r| control::parse_stats(&r.body));
    let mut prev = match sample() {
        Ok(s) => s,
        Err(e) => return fail("monitor", explain(e, &path)),
    };
    let pid = target.pid().map_or("?".to_string(), |p| p.to_string());
    if span == Span::Once {
        if json {
            out::json(&MonitorTable {
                schema: crate::json::SCHEMA,
                pid: target.pid(),
                t_s: None,
                interval_ms: None,
                totals: true,
                detection: None,
                workqueues: prev.iter().map(WqRow::from).collect(),
            });
        } else {
            outln!("--- pid {pid}: totals since it started ---");
            outln!("{}", monitor_table(&[], &prev));
        }
        return ExitCode::SUCCESS;
    }
    let start = Instant::now();
    let deadline = match span {
        Span::Seconds(s) => Some(start + Duration::from_secs_f64(s)),
        _ => None,
    };
    let mut tick = 1u32;
    loop {
        let next = start + interval * tick;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let now = match sample() {
            Ok(s) => s,
            Err(e) => {
                return fail(
                    "monitor",
                    format!(
                        "process {pid} stopped answering after {:.2} s: {}",
                        start.elapsed().as_secs_f64(),
                        explain(e, &path)
                    ),
                )
            }
        };
        let t = start.elapsed().as_secs_f64();
        if json {
            out::json(&MonitorTable {
                schema: crate::json::SCHEMA,
                pid: target.pid(),
                t_s: Some(t),
                interval_ms: Some(interval.as_millis() as u64),
                totals: false,
                detection: None,
                workqueues: deltas(&prev, &now).iter().map(WqRow::from).collect(),
            });
        } else {
            outln!(
                "--- pid {pid}  t={t:.2}s  per {} ms ---",
                interval.as_millis()
            );
            outln!("{}", monitor_table(&prev, &now));
            out::flush();
        }
        prev = now;
        tick += 1;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return ExitCode::SUCCESS;
        }
    }
}

/// Parse a trace stream (the `trace MS` reply body) into a [`Trace`];
/// returns it and whether the `end` line came.
pub fn parse_trace(lines: impl Iterator<Item = String>, t: &mut Trace) -> bool {
    let mut ended = false;
    for l in lines {
        let f: Vec<&str> = l.split('\t').collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        match f[0] {
            "begin" => t.t0_ns = n(1).unwrap_or(0),
            "pool" if f.len() >= 4 => t.pools.push(PoolInfo {
                id: n(1).unwrap_or(0) as u32,
                name: unescape(f[2]),
                cpu: f[3].parse().ok(),
            }),
            "worker" if f.len() >= 4 => t.workers.push(WorkerInfo {
                pool: n(1).unwrap_or(0) as u32,
                tid: f[2].parse().unwrap_or(0),
                name: unescape(f[3]),
            }),
            "ev" if f.len() == 11 => {
                let spans = f[8]
                    .split(',')
                    .filter_map(|s| {
                        let (a, z) = s.split_once('-')?;
                        Some((a.parse().ok()?, z.parse().ok()?))
                    })
                    .collect();
                t.events.push(Exec {
                    pool: n(1).unwrap_or(0) as u32,
                    tid: f[2].parse().unwrap_or(0),
                    cpu: n(3).unwrap_or(0) as u32,
                    queued_ns: n(4).unwrap_or(0),
                    start_ns: n(5).unwrap_or(0),
                    end_ns: n(6).unwrap_or(0),
                    blocked_ns: n(7).unwrap_or(0),
                    spans,
                    wq: unescape(f[9]),
                    item: unescape(f[10]),
                });
            }
            "end" => {
                t.lost = n(2).unwrap_or(0);
                t.t1_ns = n(3).unwrap_or(0);
                ended = true;
            }
            _ => {}
        }
    }
    ended
}

/// `cmwq trace PID --seconds N -o FILE [--svg FILE]`.
pub fn trace(
    target: &Target,
    seconds: f64,
    json: Option<PathBuf>,
    svg: Option<PathBuf>,
) -> ExitCode {
    let path = match target.socket() {
        Ok(p) => p,
        Err(e) => return fail("trace", e),
    };
    let kv = match hello(&path) {
        Ok(kv) => kv,
        Err(e) => return fail("trace", explain(e, &path)),
    };
    let ms = (seconds * 1e3).round().max(1.0) as u64;
    let reader = match control::open(&path, &format!("trace {ms}")) {
        Ok(r) => r,
        Err(e) => return fail("trace", explain(e, &path)),
    };
    eprintln!(
        "cmwq trace: recording {} ({}) for {seconds} s ...",
        get(&kv, "pid"),
        get(&kv, "name")
    );
    let _ = reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs_f64(seconds + 10.0)));
    let mut t = Trace {
        pid: get(&kv, "pid").parse().unwrap_or(0),
        process: get(&kv, "name").to_string(),
        ..Trace::default()
    };
    let ended = parse_trace(reader.lines().map_while(Result::ok), &mut t);
    if t.t1_ns == 0 {
        t.t1_ns = t.events.iter().map(|e| e.end_ns).max().unwrap_or(t.t0_ns);
    }
    if let Some(p) = &json {
        if let Err(e) = std::fs::write(p, crate::render::chrome_json(&t)) {
            return fail("trace", format!("{}: {e}", p.display()));
        }
    }
    if let Some(p) = &svg {
        if let Err(e) = std::fs::write(p, crate::render::svg(&t)) {
            return fail("trace", format!("{}: {e}", p.display()));
        }
    }
    let wqs: std::collections::BTreeSet<&str> = t.events.iter().map(|e| e.wq.as_str()).collect();
    outln!(
        "{} executions on {} workers of {} workqueues ({}){}",
        t.events.len(),
        t.workers.len(),
        wqs.len(),
        wqs.into_iter().collect::<Vec<_>>().join(", "),
        if t.lost > 0 {
            format!(
                "; {} executions lost (buffers full: the reader was too slow)",
                t.lost
            )
        } else {
            String::new()
        }
    );
    for p in json.iter().chain(svg.iter()) {
        outln!("wrote {}", p.display());
    }
    if !ended {
        return fail("trace", "the recording ended early (the process exited?)");
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(Target::parse("42"), Ok(Target::Pid(42)));
        assert_eq!(
            Target::parse("/tmp/cmwq-0/42.sock"),
            Ok(Target::Path("/tmp/cmwq-0/42.sock".into()))
        );
        assert_eq!(
            Target::parse("/tmp/cmwq-0/42.sock").unwrap().pid(),
            Some(42)
        );
        assert!(Target::parse("0").is_err());
        assert!(Target::parse("abc").is_err());
    }

    #[test]
    fn monitor_rows_are_deltas_over_the_interval() {
        let wq = |total, cpu_ms| {
            let mut w = cmwq::dump::WqInfo::default();
            w.name = "w".into();
            w.flags = cmwq::WqFlags::PERCPU;
            w.max_active = 1;
            w.stats.total = total;
            w.stats.in_flight = 3;
            w.stats.cpu_time = Duration::from_millis(cpu_ms);
            w
        };
        let t = monitor_table(&[wq(10, 100)], &[wq(25, 600)]);
        let row = t.lines().nth(1).unwrap();
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cols[..4], &["w", "15", "3", "0.5"], "{t}");
    }

    #[test]
    fn trace_streams_parse() {
        let body = "begin\t100\npool\t2\tcpu 1 (pool 2)\t1\nworker\t2\t77\tkworker/1:0\n\
                    ev\t2\t77\t1\t0\t150\t400\t100\t200-300\tq\\tx\tit\nbad line\nend\t1\t5\t500\n";
        let mut t = Trace::default();
        assert!(parse_trace(body.lines().map(String::from), &mut t));
        assert_eq!((t.t0_ns, t.t1_ns, t.lost), (100, 500, 5));
        assert_eq!(t.pools[0].cpu, Some(1));
        assert_eq!(t.workers[0].name, "kworker/1:0");
        let e = &t.events[0];
        assert_eq!((e.start_ns, e.end_ns, e.blocked_ns), (150, 400, 100));
        assert_eq!(e.spans, vec![(200, 300)]);
        assert_eq!(e.wq, "q\tx");
        let mut t = Trace::default();
        assert!(!parse_trace("begin\t1\n".lines().map(String::from), &mut t));
    }
}
