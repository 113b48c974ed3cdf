//! B14, a contended resource: an axum server whose handlers insert a row
//! into one SQLite database (WAL, `synchronous = FULL`: an fsync per
//! insert) and read it back, offloaded with `cmwq::unblock`,
//! `tokio::task::spawn_blocking` or `blocking::unblock`, loaded by `wrk`
//! (64 connections) on the same machine. Every insert takes SQLite's one
//! write lock: more threads in the database only queue on it and its page
//! cache, which is where exact concurrency should win. Requests/s, p50 and
//! p99 as `wrk` sees them, peak threads. Each measurement in a fresh
//! child. Skipped, with a note, where `wrk` cannot be run.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{child_medians, ratio_str, Ctx};
use crate::child::emit_row;
use crate::report::{Row, Table};
use crate::util::{self, ThreadSampler};

const TARGET: &str = "cmwq::unblock >= 1.3x tokio spawn_blocking's requests/s, p99 <= tokio's";

const SYSTEMS: &[&str] = &["tokio", "blocking", "cmwq"];

/// Connections `wrk` keeps busy.
const CONNECTIONS: usize = 64;

fn label(sys: &str) -> &'static str {
    match sys {
        "tokio" => "tokio spawn_blocking",
        "blocking" => "blocking::unblock",
        _ => "cmwq::unblock",
    }
}

/// Whether `wrk` runs here.
fn have_wrk() -> bool {
    Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok_and(|o| !o.stdout.is_empty() || !o.stderr.is_empty())
}

pub fn run(ctx: &Ctx) -> Table {
    let secs = ctx.pick(2, 8);
    let mut t = Table::new(
        "B14",
        &format!(
            "contended resource: axum + SQLite (WAL, fsync per insert), wrk with {CONNECTIONS} connections for {secs} s, on {} CPUs",
            ctx.ncpu
        ),
        TARGET,
    );
    if !have_wrk() {
        t.note("skipped: `wrk` is not installed here (Debian: apt-get install wrk); .ci/run installs it");
        return t;
    }
    t.ratio_of = Some("requests_per_s".into());
    let rows = child_medians(
        &mut t,
        ctx.reps,
        SYSTEMS,
        |sys| vec!["b14".into(), sys.into(), secs.to_string()],
        Duration::from_secs(120),
    );
    t.rows.extend(rows);
    let get = |t: &Table, k: &str, sys: &str| t.row(label(sys), None).and_then(|r| r.get(k));
    let (cr, kr) = (
        get(&t, "requests_per_s", "cmwq"),
        get(&t, "requests_per_s", "tokio"),
    );
    let (cp, kp) = (get(&t, "p99_ms", "cmwq"), get(&t, "p99_ms", "tokio"));
    if let (Some(c), Some(k)) = (cr, kr) {
        t.check(
            "cmwq::unblock requests/s >= 1.3x tokio spawn_blocking's",
            ratio_str(c / k),
            c >= 1.3 * k,
        );
    }
    if let (Some(c), Some(k)) = (cp, kp) {
        t.check(
            "cmwq::unblock p99 <= tokio spawn_blocking's",
            ratio_str(c / k),
            c <= k,
        );
    }
    t.note("each request: INSERT of a short row and a SELECT of it by id, on the handler thread's own connection (opened on its first request, busy_timeout 5 s); the database lives in the system's temporary directory (its file system decides what an fsync costs)");
    t.note("wrk (-t1 --latency) runs on the same CPUs as the server; latencies are wrk's; peak_threads: threads the offloading system started, sampled every ms");
    t
}

thread_local! {
    /// The handler thread's connection to the database.
    static CONN: RefCell<Option<rusqlite::Connection>> = const { RefCell::new(None) };
}

/// One request's work, on the offloading system's thread: insert, read
/// back. Returns the row's id, or the error's text.
fn handle(db: &Path) -> Result<i64, String> {
    CONN.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            let conn = rusqlite::Connection::open(db).map_err(|e| e.to_string())?;
            conn.busy_timeout(Duration::from_secs(5))
                .map_err(|e| e.to_string())?;
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(|e| e.to_string())?;
            *c = Some(conn);
        }
        let conn = c.as_ref().expect("opened above");
        conn.execute("INSERT INTO kv(v) VALUES (?1)", ["a short value"])
            .map_err(|e| e.to_string())?;
        let id = conn.last_insert_rowid();
        conn.query_row("SELECT id FROM kv WHERE id = ?1", [id], |r| r.get(0))
            .map_err(|e| e.to_string())
    })
}

/// A `wrk` latency figure (`123.45us`, `1.20ms`, `2.00s`) in ms.
fn wrk_ms(s: &str) -> Option<f64> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1e3,
        "ms" => v,
        "s" => v * 1e3,
        "m" => v * 60e3,
        _ => return None,
    })
}

/// What `wrk --latency` printed: requests/s, p50 and p99 (ms), errors.
fn parse_wrk(out: &str) -> Result<(f64, f64, f64, String), String> {
    let mut rps = None;
    let (mut p50, mut p99) = (None, None);
    let mut errors = String::new();
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v] => rps = v.parse().ok(),
            ["50%", v] => p50 = wrk_ms(v),
            ["99%", v] => p99 = wrk_ms(v),
            ["Non-2xx", ..] | ["Socket", "errors:", ..] => {
                errors.push_str(line.trim());
                errors.push(' ');
            }
            _ => {}
        }
    }
    match (rps, p50, p99) {
        (Some(r), Some(a), Some(b)) => Ok((r, a, b, errors)),
        _ => Err(format!("b14: could not read wrk's output:\n{out}")),
    }
}

/// Run `wrk` against `url` for `secs` seconds.
fn wrk(url: &str, secs: u64) -> Result<String, String> {
    let out = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{CONNECTIONS}"),
            &format!("-d{secs}s"),
            "--latency",
            url,
        ])
        .output()
        .map_err(|e| format!("b14: wrk: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "b14: wrk failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A directory of the child's own, removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Child: `b14 SYSTEM SECONDS`.
pub fn child(args: &[String]) -> Result<(), String> {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let sys = arg(0).to_string();
    if !SYSTEMS.contains(&sys.as_str()) {
        return Err(format!("b14: unknown system {sys}"));
    }
    let secs: u64 = arg(1).parse().map_err(|_| "b14: how long?")?;
    let dir = TempDir(std::env::temp_dir().join(format!("cmwq-b14-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).map_err(|e| format!("b14: {e}"))?;
    let db = dir.0.join("b14.db");
    {
        let c = rusqlite::Connection::open(&db).map_err(|e| e.to_string())?;
        c.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| e.to_string())?;
        c.execute_batch("CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .map_err(|e| e.to_string())?;
    }
    let db: &'static Path = Box::leak(db.into_boxed_path());

    let ncpu = util::ncpu();
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(ncpu)
        .thread_name("b14-server")
        .enable_io()
        .build()
        .map_err(|e| format!("b14: server runtime: {e}"))?;
    let listener = server
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| format!("b14: bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let sys2: &'static str = Box::leak(sys.clone().into_boxed_str());
    let app = axum::Router::new().route(
        "/insert",
        axum::routing::get(move || async move {
            let work = move || handle(db);
            let r = match sys2 {
                "tokio" => tokio::task::spawn_blocking(work)
                    .await
                    .unwrap_or_else(|e| Err(e.to_string())),
                "blocking" => blocking::unblock(work).await,
                _ => cmwq::unblock(work).await,
            };
            match r {
                Ok(id) => (axum::http::StatusCode::OK, id.to_string()),
                Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e),
            }
        }),
    );
    server.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let url = format!("http://{addr}/insert");
    // Every thread that exists now is not the offloading system's.
    let sampler = ThreadSampler::start(Duration::from_millis(1), |_| false);
    // Warm-up, not measured: the system starts its threads, the handler
    // threads open their connections.
    wrk(&url, 1)?;
    let cpu0 = util::process_cpu_ns();
    let t0 = std::time::Instant::now();
    let out = wrk(&url, secs)?;
    let wall = t0.elapsed();
    let cpu = util::process_cpu_ns() - cpu0;
    let peak = sampler.stop();
    let (rps, p50, p99, errors) = parse_wrk(&out)?;
    if !errors.is_empty() {
        crate::child::emit_note(&format!("{}: wrk reported {errors}", label(&sys)));
    }
    emit_row(
        &Row::new(label(&sys))
            .num("requests_per_s", rps)
            .num("p50_ms", p50)
            .num("p99_ms", p99)
            .num("peak_threads", peak as f64)
            .num(
                "server_cpu_pct",
                100.0 * cpu as f64 / (wall.as_nanos() as f64 * ncpu as f64),
            ),
    );
    server.shutdown_background();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_read() {
        let out = "Running 2s test @ http://127.0.0.1:1/insert
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    20.01ms    3.10ms  40.00ms   70.00%
  Latency Distribution
     50%   19.50ms
     75%   21.00ms
     90%   24.00ms
     99%  950.00us
  6000 requests in 2.00s, 500.00KB read
  Non-2xx or 3xx responses: 3
Requests/sec:   2999.50
Transfer/sec:    250.00KB
";
        let (rps, p50, p99, errors) = parse_wrk(out).unwrap();
        assert_eq!(rps, 2999.5);
        assert_eq!(p50, 19.5);
        assert_eq!(p99, 0.95);
        assert!(errors.contains("Non-2xx"));
        assert_eq!(wrk_ms("1.5s"), Some(1500.0));
        assert!(parse_wrk("nothing").is_err());
    }
}
