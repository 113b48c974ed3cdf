//! End-to-end tests of the `cmwq` binary.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn cmwq(args: &[&str]) -> (Output, Duration) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_cmwq"))
        .args(args)
        .output()
        .expect("run the cmwq binary");
    (out, t.elapsed())
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The short demo passes its self-checks and prints the monitor table
/// (G29), the dump (G30) and the summary.
#[test]
fn demo_short_run_succeeds() {
    let (out, took) = cmwq(&["demo", "--seconds", "2"]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "exit status {:?}\nstdout:\n{text}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&cmwq::WqStats::header()), "{text}");
    assert!(text.contains("Worker Pools"), "{text}");
    for needle in [
        ".. live:",
        "in queueing order",
        "speed-up",
        "set_max_active(6)",
        "self-check: OK",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    for wq in [
        "demo_cpu",
        "demo_io",
        "demo_ordered",
        "demo_throttled",
        "demo_unbound",
    ] {
        assert!(text.contains(wq), "no {wq} in:\n{text}");
    }
    // Generous: a 2-core machine running other tests at the same time.
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn dump_prints_the_report() {
    let (out, _) = cmwq(&["dump"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{out:?}");
    for needle in ["Affinity Scopes", "Worker Pools", "events"] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
}

#[test]
fn monitor_prints_the_table_every_interval() {
    let (out, _) = cmwq(&["monitor", "--interval-ms", "200", "--seconds", "0.5"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{out:?}");
    // At 0.2 s, 0.4 s and the end, 0.5 s.
    assert_eq!(text.matches(&cmwq::WqStats::header()).count(), 3, "{text}");
    assert!(text.contains("monitor_load"), "{text}");
}

#[test]
fn help_and_usage_errors() {
    let (out, _) = cmwq(&["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    for needle in [
        "demo",
        "dump",
        "monitor",
        "top",
        "trace",
        "ps",
        "CMWQ_CONTROL",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    let (out, _) = cmwq(&["help"]);
    assert!(out.status.success());

    let (out, _) = cmwq(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let (out, _) = cmwq(&["demo", "--seconds", "soon"]);
    assert_eq!(out.status.code(), Some(2));
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn version_comes_from_cargo() {
    for flag in ["--version", "-V"] {
        let (out, _) = cmwq(&[flag]);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            stdout(&out),
            format!("cmwq {}\n", env!("CARGO_PKG_VERSION")),
            "{flag}"
        );
    }
}

/// `cmwq help COMMAND` and `cmwq COMMAND --help` show that command's help.
#[test]
fn help_per_command() {
    for args in [&["help", "trace"][..], &["trace", "--help"]] {
        let (out, _) = cmwq(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        let text = stdout(&out);
        for needle in [
            "Chrome Trace Event JSON",
            "--svg",
            "--seconds",
            "Usage: cmwq trace",
        ] {
            assert!(text.contains(needle), "{args:?}: no {needle:?} in:\n{text}");
        }
        assert!(
            !text.contains("wq_dump.py"),
            "{args:?}: the whole usage:\n{text}"
        );
    }
    let (out, _) = cmwq(&["help", "monitor"]);
    let text = stdout(&out);
    assert!(
        text.contains("\"schema\": 2") && text.contains("\"totals\""),
        "{text}"
    );
}

/// A usage error: a short message and the command's usage line, exit 2,
/// nothing on stdout.
#[test]
fn usage_errors_are_short() {
    for (args, usage) in [
        (&["demo", "--seconds", "soon"][..], "cmwq demo"),
        (&["monitor", "--bogus"], "Usage: cmwq monitor"),
        (
            &["monitor", "3", "--once", "--seconds", "2"],
            "Usage: cmwq monitor",
        ),
        (&["trace", "5", "--seconds", "1"], "Usage: cmwq trace"),
        (&["top"], "Usage: cmwq top"),
    ] {
        let (out, _) = cmwq(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(
            err.contains(usage) || err.contains("--help"),
            "{args:?}: {err}"
        );
        assert!(err.lines().count() <= 8, "{args:?}: a long message:\n{err}");
    }
}

#[test]
fn dump_json_has_pools_workqueues_and_sections() {
    let (out, _) = cmwq(&["dump", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "one object: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["schema"], 2);
    assert!(v["pid"].as_u64() > Some(0), "{v}");
    // The CPU limit in force (G34): this machine's quota, if any.
    assert!(v["cpu_limit"].is_object(), "{v}");
    assert!(v["cpu_limit"].get("limit").is_some(), "{v}");
    let pools = v["pools"].as_array().unwrap();
    assert!(!pools.is_empty(), "{v}");
    assert!(pools
        .iter()
        .all(|p| p["id"].is_u64() && p["workers"].is_u64()));
    assert!(pools.iter().any(|p| p["workers"].as_u64() > Some(0)), "{v}");
    let wqs = v["workqueues"].as_array().unwrap();
    let events = wqs.iter().find(|w| w["name"] == "events").expect("events");
    assert!(events["total"].as_u64() >= Some(1), "{events}");
    let titles: Vec<&str> = v["sections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["title"].as_str())
        .collect();
    for t in ["Affinity Scopes", "Worker Pools", "Busy pools"] {
        assert!(titles.contains(&t), "{titles:?}");
    }
}

#[test]
fn monitor_json_prints_one_object_per_interval() {
    let (out, _) = cmwq(&["monitor", "--once", "--interval-ms", "200", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "--once: one object: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["schema"], 2);
    assert_eq!(v["totals"], true);
    assert_eq!(v["interval_ms"], 200);
    assert!(v["detection"].is_string(), "{v}");
    let load = v["workqueues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "monitor_load")
        .unwrap_or_else(|| panic!("no monitor_load in {v}"));
    for key in ["total", "in_flight", "panics"] {
        assert!(load[key].is_u64(), "{key}: {load}");
    }
    assert!(load["cpu_time_s"].is_f64(), "{load}");

    let (out, _) = cmwq(&[
        "monitor",
        "--interval-ms",
        "200",
        "--seconds",
        "0.5",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    // At 0.2 s, 0.4 s and the end, 0.5 s.
    assert_eq!(text.lines().count(), 3, "{text}");
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["schema"], 2, "{line}");
    }
}

/// `cmd`'s first line of output, then its stdout closed: it must end
/// quietly, exit status 0, no panic.
fn ends_quietly_when_the_reader_goes(args: &[&str]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cmwq"))
        .args(args)
        .env("CMWQ_CONTROL", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the cmwq binary");
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(!line.is_empty(), "{args:?}: no output");
    drop(reader);
    let t = Instant::now();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert_eq!(status.code(), Some(0), "{args:?}: {status:?}\n{err}");
    // It ended at its next write, not at the end of its run.
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "{args:?}: {:?}",
        t.elapsed()
    );
}

#[test]
fn a_closed_pipe_ends_monitor_quietly() {
    ends_quietly_when_the_reader_goes(&["monitor", "--interval-ms", "100", "--seconds", "3"]);
    ends_quietly_when_the_reader_goes(&[
        "monitor",
        "--interval-ms",
        "100",
        "--seconds",
        "3",
        "--json",
    ]);
}

#[test]
fn a_closed_pipe_ends_the_demo_quietly() {
    ends_quietly_when_the_reader_goes(&["demo", "--seconds", "2"]);
}

/// Errors (no such process, no control socket, a file that cannot be
/// written) exit 1 with a message, with or without `--json`.
#[test]
fn errors_exit_non_zero() {
    for args in [
        &["dump", "999999999"][..],
        &["dump", "999999999", "--json"],
        &["monitor", "999999999", "--once", "--json"],
        &["monitor", "/nonexistent/1.sock", "--once"],
        &["top", "999999999", "--json"],
        &[
            "trace",
            "/nonexistent/1.sock",
            "--seconds",
            "1",
            "-o",
            "/nonexistent/t.json",
        ],
    ] {
        let (out, _) = cmwq(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.starts_with("cmwq "), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
}
