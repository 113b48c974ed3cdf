//! With the `log` feature (run with `--features log`), the library's
//! reports go to the `log` facade instead of stderr, environment variables
//! it cannot read included; a hook set with `Config::log` (a closure) gets
//! them instead of the facade. Each case runs in a child process (this
//! binary again) whose stderr is captured: nothing may reach it.
#![cfg(feature = "log")]

use std::process::Command;
use std::sync::{Arc, Mutex};

const CHILD: &str = "CMWQ_LOG_FACADE_CHILD";

/// Prints every record of target `cmwq` to stdout, marked, for the parent
/// to read.
struct StdoutLogger;

impl log::Log for StdoutLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.target() == "cmwq"
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            println!("LOG {} {}", r.level(), r.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: StdoutLogger = StdoutLogger;

/// Run `child_entry` in a child with `scenario`, a bad `CMWQ_IDLE_TIMEOUT_S`
/// and a bad `CMWQ_DETECT`; return its stdout and stderr.
fn run_child(scenario: &str) -> (String, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_entry",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, scenario)
        .env("CMWQ_IDLE_TIMEOUT_S", "soon")
        .env("CMWQ_DETECT", "psychic")
        .output()
        .expect("start the child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && stdout.contains("child scenario ok"),
        "child {scenario} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// A contained panic (G5), reported at level error; the environment
/// variables, reported at warn when the library starts.
fn make_reports() {
    // The standard library's own panic message is not the library's
    // report: keep it off stderr too, to see that nothing else is there.
    std::panic::set_hook(Box::new(|_| {}));
    let wq = cmwq::Workqueue::new("log_facade").unwrap();
    let w = cmwq::Work::named("boom", |_| panic!("on purpose"));
    assert!(wq.queue(&w));
    w.flush();
}

#[test]
fn reports_go_to_the_log_facade_and_not_to_stderr() {
    let (stdout, stderr) = run_child("facade");
    // A record's line may follow the harness's "test child_entry ... ".
    let logged: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.find("LOG ").map(|i| &l[i..]))
        .collect();
    assert!(
        logged.iter().any(
            |l| l.starts_with("LOG ERROR work item boom") && l.contains("panicked: on purpose")
        ),
        "no panic report in the log:\n{stdout}"
    );
    for var in ["CMWQ_IDLE_TIMEOUT_S=\"soon\"", "CMWQ_DETECT=\"psychic\""] {
        assert!(
            logged
                .iter()
                .any(|l| l.starts_with("LOG WARN invalid setting") && l.contains(var)),
            "no report of {var} in the log:\n{stdout}"
        );
    }
    assert!(!stderr.contains("cmwq"), "reports on stderr:\n{stderr}");
    assert!(
        !stderr.contains("invalid setting"),
        "reports on stderr:\n{stderr}"
    );
}

#[test]
fn a_hook_gets_the_reports_instead_of_the_facade() {
    let (stdout, stderr) = run_child("hook");
    assert!(
        !stdout.contains("LOG "),
        "the facade got reports despite the hook:\n{stdout}"
    );
    assert!(stdout.contains("HOOK work item boom"), "{stdout}");
    assert!(
        stdout.contains("HOOK invalid setting CMWQ_IDLE_TIMEOUT_S"),
        "{stdout}"
    );
    assert!(!stderr.contains("cmwq"), "reports on stderr:\n{stderr}");
}

/// The child side: runs inside the test harness of the child process.
#[test]
fn child_entry() {
    let Some(scenario) = std::env::var_os(CHILD) else {
        return;
    };
    log::set_logger(&LOGGER).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let seen = Arc::new(Mutex::new(Vec::new()));
    match scenario.to_str().unwrap() {
        "facade" => {}
        "hook" => {
            let s = seen.clone();
            cmwq::Config::default()
                .log(move |ev: &cmwq::Event| s.lock().unwrap().push(ev.to_string()))
                .apply()
                .expect("before first use");
        }
        s => panic!("unknown scenario {s}"),
    }
    make_reports();
    for r in seen.lock().unwrap().iter() {
        println!("HOOK {r}");
    }
    println!("child scenario ok");
}
