//! End-to-end tests of the `cmwq` binary.

use std::process::{Command, Output};
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
