//! End to end: a real program (the `service` example) started with
//! `CMWQ_CONTROL=1`, looked into with `cmwq ps`, `monitor`, `dump` and
//! `trace` (G32), and fed bad clients while its items keep running.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cmwq")
}

/// One at a time: they share the machine's two CPUs.
fn serial() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `service` example, built beside the `cmwq` binary (cargo builds a
/// package's examples with its tests).
fn service_path() -> PathBuf {
    let p = Path::new(bin()).parent().unwrap().join("examples/service");
    assert!(
        p.exists(),
        "{} missing: run the tests with `cargo test` (which builds the examples)",
        p.display()
    );
    p
}

/// A running `service`, killed on drop.
struct Service {
    child: Child,
    pid: u32,
}

impl Service {
    fn start(batch: u64) -> Service {
        Service::start_for(batch, 60)
    }

    /// A service that exits by itself `seconds` after it is ready.
    fn start_for(batch: u64, seconds: u64) -> Service {
        let mut child = Command::new(service_path())
            .args([
                "--batch",
                &batch.to_string(),
                "--seconds",
                &seconds.to_string(),
            ])
            .env("CMWQ_CONTROL", "1")
            .env_remove("XDG_RUNTIME_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pid: u32 = line
            .strip_prefix("ready ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("service said {line:?}"));
        assert_eq!(pid, child.id());
        Service { child, pid }
    }

    fn socket(&self) -> PathBuf {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(p) = cmwq::control::find(self.pid) {
                return p;
            }
            assert!(Instant::now() < end, "no control socket for {}", self.pid);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Executions started on `wq` so far.
    fn total(&self, wq: &str) -> u64 {
        let body = cmwq::control::request(&self.socket(), "stats")
            .unwrap()
            .body;
        cmwq::control::parse_stats(&body)
            .into_iter()
            .find(|w| w.name == wq)
            .map_or(0, |w| w.stats.total)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cmwq(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn g32_ps_monitor_and_dump_show_the_running_program() {
    let _s = serial();
    let svc = Service::start(1000);
    let pid = svc.pid.to_string();
    let sock = svc.socket();
    assert!(sock.ends_with(format!("{pid}.sock")));

    let (ok, out, err) = cmwq(&["ps"]);
    assert!(ok, "{err}");
    let row = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(pid.as_str()))
        .unwrap_or_else(|| panic!("ps does not list {pid}:\n{out}"));
    assert!(row.contains("service"), "{row}");

    // --once: totals since start; the batch ran exactly 1000 items.
    let (ok, out, err) = cmwq(&["monitor", &pid, "--once"]);
    assert!(ok, "{err}");
    let batch = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some("service_batch"))
        .unwrap_or_else(|| panic!("no service_batch row:\n{out}"));
    let cols: Vec<&str> = batch.split_whitespace().collect();
    assert_eq!(cols[1], "1000", "{batch}");
    assert_eq!(cols[2], "0", "nothing in flight: {batch}");

    // Intervals: what happened in each; the busy workqueues ran items.
    let (ok, out, err) = cmwq(&["monitor", &pid, "--interval-ms", "300", "--seconds", "0.9"]);
    assert!(ok, "{err}");
    let tables = out.matches("--- pid").count();
    assert!((2..=4).contains(&tables), "{tables} tables:\n{out}");
    let last_cpu = out
        .lines()
        .rfind(|l| l.split_whitespace().next() == Some("service_cpu"))
        .unwrap();
    let n: u64 = last_cpu.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(n > 10, "service_cpu ran {n} items in 300 ms: {last_cpu}");
    let last_batch = out
        .lines()
        .rfind(|l| l.split_whitespace().next() == Some("service_batch"))
        .unwrap();
    assert_eq!(
        last_batch.split_whitespace().nth(1),
        Some("0"),
        "{last_batch}"
    );

    let (ok, out, err) = cmwq(&["dump", &pid]);
    assert!(ok, "{err}");
    for want in [
        "Worker Pools",
        "service_batch",
        "service_unbound",
        "detect:",
    ] {
        assert!(out.contains(want), "dump lacks {want}:\n{out}");
    }
    // The socket path works as the target too.
    let (ok, out, _) = cmwq(&["dump", sock.to_str().unwrap()]);
    assert!(ok && out.contains("Worker Pools"));
}

#[test]
fn g32_processes_without_a_socket_get_a_clear_error() {
    let _s = serial();
    let (ok, _, err) = cmwq(&["dump", "999999999"]);
    assert!(!ok && err.contains("no process 999999999"), "{err}");
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = sleeper.id().to_string();
    let (ok, _, err) = cmwq(&["monitor", &pid, "--once"]);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(!ok, "{err}");
    assert!(
        err.contains("no cmwq control socket") && err.contains("CMWQ_CONTROL=1"),
        "{err}"
    );
}

/// Parse the Chrome trace, check it, return the number of executions.
fn check_chrome_json(path: &Path) -> usize {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let evs = v["traceEvents"].as_array().expect("traceEvents");
    let execs: Vec<&serde_json::Value> = evs
        .iter()
        .filter(|e| e["ph"] == "X" && e["cat"] != "blocked")
        .collect();
    for item in ["crunch", "hash", "socket_read"] {
        assert!(
            execs.iter().any(|e| e["name"] == item),
            "no {item} execution in the trace"
        );
    }
    // Socket reads block 2 ms: their blocked spans are in the trace.
    assert!(evs.iter().any(|e| e["ph"] == "X" && e["cat"] == "blocked"));
    assert!(evs
        .iter()
        .any(|e| e["ph"] == "M" && e["name"] == "thread_name"));
    execs.len()
}

/// Render the SVG in headless Chromium and check the picture is not blank.
fn check_svg_renders(svg: &Path) {
    let Some(chrome) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
    else {
        eprintln!("chromium not found (.ci/run installs it): SVG screenshot check skipped");
        return;
    };
    let png = svg.with_extension("png");
    let out = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1500,900",
            &format!("--screenshot={}", png.display()),
            &format!("file://{}", svg.display()),
        ])
        .output()
        .unwrap();
    assert!(
        png.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::fs::File::open(&png).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let data = &buf[..info.buffer_size()];
    let total = data.len() / px;
    // Pixels far from white (bars, text, axis).
    let inked = data
        .chunks(px)
        .filter(|p| p[..3].iter().map(|&c| 255 - c as u32).sum::<u32>() > 120)
        .count();
    // Distinct colours: several workqueues' bars, not one flat fill.
    let mut colours: Vec<[u8; 3]> = data.chunks(px).map(|p| [p[0], p[1], p[2]]).collect();
    colours.sort();
    colours.dedup();
    assert!(
        inked * 100 > total && colours.len() > 8,
        "the screenshot looks blank: {inked} of {total} pixels inked, {} colours",
        colours.len()
    );
}

#[test]
fn g32_trace_writes_a_chrome_trace_and_an_svg_timeline() {
    let _s = serial();
    let svc = Service::start(10);
    let pid = svc.pid.to_string();
    let dir = std::env::temp_dir().join(format!("cmwq-trace-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("t.json");
    let svg = dir.join("t.svg");
    let before = svc.total("service_cpu") + svc.total("service_io") + svc.total("service_unbound");
    let (ok, out, err) = cmwq(&[
        "trace",
        &pid,
        "--seconds",
        "1",
        "-o",
        json.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    let after = svc.total("service_cpu") + svc.total("service_io") + svc.total("service_unbound");
    assert!(ok, "{out}{err}");
    let n = check_chrome_json(&json);
    // Every execution of the second was recorded (none lost at this rate),
    // and no more than ran.
    assert!(!out.contains("lost"), "{out}");
    let ran = after - before;
    assert!(
        n as u64 <= ran + 50 && n as u64 * 10 >= ran * 7,
        "{n} executions traced, {ran} ran around the trace"
    );
    let s = std::fs::read_to_string(&svg).unwrap();
    assert!(s.starts_with("<svg") || s.starts_with("<?xml"));
    assert!(s.contains("service_io") && s.contains("kworker/"));
    check_svg_renders(&svg);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn g32_bad_clients_do_not_slow_the_watched_program() {
    let _s = serial();
    let svc = Service::start(10);
    let sock = svc.socket();
    let t0 = Instant::now();
    let before = svc.total("service_cpu");
    // Garbage, a 10 MiB line, and a tracer that never reads, at once.
    let garbage = {
        let sock = sock.clone();
        std::thread::spawn(move || {
            for _ in 0..50 {
                let mut s = UnixStream::connect(&sock).unwrap();
                let _ = s.write_all(b"\x01\x02 not a request \xff\n");
                let mut r = String::new();
                let _ = s.read_to_string(&mut r);
                assert!(r.starts_with("cmwq-control 1 err"), "{r:?}");
            }
        })
    };
    let big = {
        let sock = sock.clone();
        std::thread::spawn(move || {
            let mut s = UnixStream::connect(&sock).unwrap();
            let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(&vec![b'a'; 10 << 20]);
        })
    };
    let mut stuck = UnixStream::connect(&sock).unwrap();
    stuck.write_all(b"trace 2000\n").unwrap();
    garbage.join().unwrap();
    big.join().unwrap();
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(t0.elapsed()));
    let ran = svc.total("service_cpu") - before;
    let secs = t0.elapsed().as_secs_f64();
    drop(stuck);
    // The service queues a service_cpu item about every 1.1 ms: expect a
    // large part of that rate, not a stall.
    assert!(
        ran as f64 / secs > 200.0,
        "service_cpu ran {ran} items in {secs:.1} s while bad clients were served"
    );
    // And it still answers.
    assert!(cmwq::control::request(&sock, "hello").is_ok());
}

/// A line of JSON.
fn parse(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn ps_dump_and_monitor_print_json() {
    let _s = serial();
    let svc = Service::start(1000);
    let pid = svc.pid.to_string();
    svc.socket();

    let (ok, out, err) = cmwq(&["ps", "--json"]);
    assert!(ok, "{err}");
    let v = parse(&out);
    assert_eq!(v["schema"], 2);
    let me = v["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == svc.pid)
        .unwrap_or_else(|| panic!("ps --json does not list {pid}: {v}"));
    assert_eq!(me["name"], "service", "{me}");
    assert!(me["workqueues"].as_u64() >= Some(4), "{me}");
    assert!(me["socket"].as_str().unwrap().ends_with(".sock"), "{me}");
    assert!(me["error"].is_null(), "{me}");

    let (ok, out, err) = cmwq(&["dump", &pid, "--json"]);
    assert!(ok, "{err}");
    let v = parse(&out);
    assert_eq!(v["schema"], 2);
    assert_eq!(v["pid"], svc.pid);
    assert!(!v["pools"].as_array().unwrap().is_empty(), "{v}");
    let batch = v["workqueues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "service_batch")
        .unwrap_or_else(|| panic!("no service_batch: {v}"));
    assert_eq!(batch["total"], 1000, "{batch}");

    // --once: the totals since start, one object.
    let (ok, out, err) = cmwq(&["monitor", &pid, "--once", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let v = parse(&out);
    assert_eq!(
        (&v["schema"], &v["totals"]),
        (&2.into(), &true.into()),
        "{v}"
    );
    assert_eq!(v["pid"], svc.pid);
    let batch = v["workqueues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "service_batch")
        .unwrap();
    assert_eq!(
        (&batch["total"], &batch["in_flight"]),
        (&1000.into(), &0.into())
    );

    // Intervals: one object a line, counts over the interval.
    let (ok, out, err) = cmwq(&[
        "monitor",
        &pid,
        "--interval-ms",
        "300",
        "--seconds",
        "0.9",
        "--json",
    ]);
    assert!(ok, "{err}");
    let objects: Vec<serde_json::Value> = out.lines().map(parse).collect();
    assert!((2..=4).contains(&objects.len()), "{out}");
    let last = objects.last().unwrap();
    assert_eq!(
        (&last["totals"], &last["interval_ms"]),
        (&false.into(), &300.into())
    );
    let cpu = last["workqueues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "service_cpu")
        .unwrap();
    assert!(cpu["total"].as_u64() > Some(10), "{cpu}");
}

/// A process that goes away while `monitor` watches it: an error, exit
/// status 1 (not a quiet 0).
#[test]
fn monitor_fails_when_the_process_goes_away() {
    let _s = serial();
    // Exits by itself 2 s after `ready`.
    let svc = Service::start_for(10, 2);
    let pid = svc.pid.to_string();
    let out = Command::new(bin())
        .args(["monitor", &pid, "--interval-ms", "200", "--seconds", "20"])
        .output()
        .unwrap();
    drop(svc);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("--- pid"),
        "no table before the end:\n{stdout}"
    );
    assert!(
        stderr.starts_with("cmwq monitor: ") && stderr.contains("stopped answering"),
        "{stderr}"
    );
}

/// `trace` to a file that cannot be written: an error, exit status 1.
#[test]
fn trace_to_an_unwritable_file_fails() {
    let _s = serial();
    let svc = Service::start(10);
    let pid = svc.pid.to_string();
    svc.socket();
    let out = Command::new(bin())
        .args([
            "trace",
            &pid,
            "--seconds",
            "0.2",
            "-o",
            "/nonexistent/dir/t.json",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("/nonexistent/dir/t.json"), "{err}");
}
