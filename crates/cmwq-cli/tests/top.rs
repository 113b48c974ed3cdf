//! End to end: `cmwq top PID` looks at a running `cmwq demo` that never
//! enabled its control socket (`CMWQ_CONTROL=0`), from `/proc` alone: the
//! `--once` snapshot, its errors, and the live view driven in tmux.

use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cmwq")
}

/// One demo at a time: they share the machine's CPUs.
fn serial() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

/// A child process, killed and reaped on drop (whatever the test did).
struct Reaped(Child);

impl Reaped {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The names of process `pid`'s threads.
fn thread_names(pid: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|c| c.trim_end().to_string())
        .collect()
}

/// The CPU of a bound worker's name, `kworker/C:N` or `kworker/C:NH`.
fn bound_cpu(name: &str) -> Option<u32> {
    let (cpu, id) = name.strip_prefix("kworker/")?.split_once(':')?;
    id.trim_end_matches('H').parse::<u32>().ok()?;
    cpu.parse().ok()
}

/// `cmwq demo --seconds 20`, once it has a bound worker and a library
/// thread (up to 10 s); the CPU of one of its bound workers.
fn start_demo() -> (Reaped, u32) {
    let demo = Reaped(
        Command::new(bin())
            .args(["demo", "--seconds", "20"])
            .env("CMWQ_CONTROL", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cmwq demo"),
    );
    let t = Instant::now();
    loop {
        let names = thread_names(demo.pid());
        let cpu = names.iter().find_map(|n| bound_cpu(n));
        let library = names
            .iter()
            .any(|n| n == "cmwq-monitor" || n == "cmwq-timer");
        if let (Some(cpu), true) = (cpu, library) {
            return (demo, cpu);
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the demo has no kworker threads after 10 s: {names:?}"
        );
        sleep(Duration::from_millis(50));
    }
}

/// `cmwq top ARGS` with stdout a pipe (not a terminal).
fn top(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("top")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run cmwq top")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn top_once_shows_pools_of_a_running_process() {
    let _l = serial();
    let (demo, cpu) = start_demo();
    let pid = demo.pid().to_string();
    assert_eq!(
        cmwq::control::find(demo.pid()),
        None,
        "the demo has a socket"
    );
    let t = Instant::now();
    let out = top(&[&pid, "--once"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    // Two samples 500 ms apart.
    assert!(t.elapsed() >= Duration::from_millis(500));
    let header = stdout.lines().next().unwrap_or_default();
    assert!(
        header.contains(&format!("(pid {pid})")) && header.contains("cmwq threads"),
        "{stdout}"
    );
    assert!(header.contains("CPU ") && header.contains('%'), "{stdout}");
    assert!(stdout.contains("POOL"), "{stdout}");
    let pool = format!("cpu{cpu}");
    assert!(
        stdout.lines().any(|l| l.starts_with(&format!("{pool} "))),
        "no {pool} row in:\n{stdout}"
    );
    assert!(stdout.contains(&format!("kworker/{cpu}:")), "{stdout}");
    assert!(
        stdout.contains("cmwq-monitor") || stdout.contains("cmwq-timer"),
        "{stdout}"
    );
    assert!(stdout.contains("library ("), "{stdout}");
    // Every worker has a state.
    assert!(
        ["running", "idle", "blocked", "sleeping"]
            .iter()
            .any(|s| stdout.contains(s)),
        "{stdout}"
    );
}

#[test]
fn top_rejects_missing_and_foreign_processes() {
    for args in [&["999999999", "--once"][..], &["999999999"][..]] {
        let out = top(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with("cmwq top: "), "{stderr}");
        assert!(stderr.contains("no process"), "{stderr}");
    }

    let plain = Reaped(
        Command::new("sleep")
            .arg("30")
            .stdout(Stdio::null())
            .spawn()
            .expect("start sleep"),
    );
    let pid = plain.pid().to_string();
    for args in [&[pid.as_str(), "--once"][..], &[pid.as_str()][..]] {
        let out = top(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with("cmwq top: "), "{stderr}");
        assert!(stderr.contains("no cmwq threads"), "{stderr}");
        assert!(stderr.contains("(sleep)"), "{stderr}");
    }
}

/// A private tmux server (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .stdin(Stdio::null())
            .output()
            .expect("run tmux")
    }

    /// A detached 120x40 session `session` running `command`, its pane
    /// kept when the command ends (in the same tmux call, so a pane that
    /// dies at once is still there to look at).
    fn start(&self, session: &str, command: &str) {
        let out = self.cmd(&[
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "120",
            "-y",
            "40",
            command,
            ";",
            "set-option",
            "-t",
            session,
            "remain-on-exit",
            "on",
        ]);
        assert!(out.status.success(), "tmux: {}", text(&out.stderr));
    }

    fn capture(&self, session: &str) -> String {
        text(&self.cmd(&["capture-pane", "-p", "-t", session]).stdout)
    }

    /// `pane_dead pane_dead_status` of the session's pane.
    fn pane(&self, session: &str) -> String {
        let out = self.cmd(&[
            "list-panes",
            "-t",
            session,
            "-F",
            "#{pane_dead} #{pane_dead_status}",
        ]);
        text(&out.stdout).trim().to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// Whether tmux can be run.
fn have_tmux() -> bool {
    Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn top_tui_runs_in_tmux_and_quits_on_q() {
    if !have_tmux() {
        println!("tmux not found: TUI test skipped");
        return;
    }
    let _l = serial();
    let (demo, _) = start_demo();
    let session = format!("cmwq-top-{}", std::process::id());
    let tmux = Tmux {
        socket: format!("cmwq-top-test-{}", std::process::id()),
    };
    tmux.start(&session, &format!("'{}' top {}", bin(), demo.pid()));

    // The view is up (its first screen comes at once, the CPU figures
    // after a second).
    let t = Instant::now();
    let mut screen = String::new();
    while t.elapsed() < Duration::from_secs(10) {
        sleep(Duration::from_millis(250));
        screen = tmux.capture(&session);
        if screen.contains("kworker") && screen.contains("q quit") && t.elapsed().as_millis() > 1500
        {
            break;
        }
    }
    assert!(
        screen.contains("kworker") && screen.contains("q quit"),
        "pane {}:\n{screen}",
        tmux.pane(&session)
    );
    assert!(screen.contains("pools"), "{screen}");
    assert_eq!(tmux.pane(&session), "0", "top died early:\n{screen}");

    let out = tmux.cmd(&["send-keys", "-t", &session, "q"]);
    assert!(out.status.success(), "tmux: {}", text(&out.stderr));
    let t = Instant::now();
    let mut pane = tmux.pane(&session);
    while !pane.starts_with('1') && t.elapsed() < Duration::from_secs(3) {
        sleep(Duration::from_millis(50));
        pane = tmux.pane(&session);
    }
    // tmux records the exit status a moment after it marks the pane dead,
    // and now and then not at all (an empty status, no signal): a known
    // status must be 0.
    sleep(Duration::from_millis(200));
    pane = tmux.pane(&session);
    assert!(
        pane == "1 0" || pane == "1",
        "top still running (or failed) 3 s after q: pane {pane:?}\n{}",
        tmux.capture(&session)
    );
    // The alternate screen was left: the pane shows the normal screen.
    let after = tmux.capture(&session);
    assert!(
        !after.contains("q quit") && !after.contains("kworker"),
        "the TUI is still on the screen after exit:\n{after}"
    );
}

/// `--json`: one object with the snapshot's tables.
#[test]
fn top_json_is_one_object() {
    let _l = serial();
    let (demo, cpu) = start_demo();
    let out = top(&[&demo.pid().to_string(), "--once", "--json"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["schema"], 2);
    assert_eq!(v["pid"], demo.pid());
    assert!(v["cpu_limit"].get("quota_us").is_some(), "{v}");
    assert!(v["interval_s"].as_f64() > Some(0.4), "{v}");
    let pool = format!("cpu{cpu}");
    assert!(
        v["pools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pool"] == pool.as_str()),
        "no {pool} in {v}"
    );
    let threads = v["threads"].as_array().unwrap();
    assert!(
        threads.iter().any(|t| t["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("kworker/"))),
        "{v}"
    );
    assert!(threads
        .iter()
        .all(|t| t["tid"].is_u64() && t["state"].is_string()));
}

/// Without a terminal on stdout (a pipe), `top PID` prints what `--once`
/// prints and exits 0.
#[test]
fn top_without_a_terminal_prints_one_snapshot() {
    let _l = serial();
    let (demo, _) = start_demo();
    let pid = demo.pid().to_string();
    let out = top(&[&pid]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let header = stdout.lines().next().unwrap_or_default();
    assert!(header.contains(&format!("(pid {pid})")), "{stdout}");
    assert!(
        stdout.contains("POOL") && stdout.contains("kworker/"),
        "{stdout}"
    );
    assert!(!stdout.contains('\x1b'), "escapes in a pipe: {stdout:?}");
}

/// The SGR parameters of every `ESC [ ... m` sequence in `s`.
fn sgr_params(s: &str) -> Vec<u32> {
    let mut params = Vec::new();
    for seq in s.split("\x1b[").skip(1) {
        let Some(end) = seq.find(|c: char| !(c.is_ascii_digit() || c == ';')) else {
            continue;
        };
        if seq[end..].starts_with('m') {
            params.extend(seq[..end].split(';').filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    params
}

/// A colour SGR parameter: foreground or background, 8, 16, 256 or RGB
/// colours (not 39/49, back to the default).
fn is_colour(p: u32) -> bool {
    matches!(p, 30..=38 | 40..=48 | 90..=97 | 100..=107)
}

#[test]
fn sgr_parameters_parse() {
    let s = "a\x1b[1mb\x1b[32;1mc\x1b[0m\x1b[7m\x1b[90m";
    assert_eq!(sgr_params(s), [1, 32, 1, 0, 7, 90]);
    assert!(is_colour(32) && is_colour(90) && !is_colour(1) && !is_colour(39));
}

/// With `NO_COLOR=1` the live view uses no colour; it still uses bold and
/// reverse video (the footer).
#[test]
fn top_tui_honours_no_color() {
    if !have_tmux() {
        println!("tmux not found: NO_COLOR TUI test skipped");
        return;
    }
    let _l = serial();
    let (demo, _) = start_demo();
    let session = format!("cmwq-nocolor-{}", std::process::id());
    let tmux = Tmux {
        socket: format!("cmwq-nocolor-test-{}", std::process::id()),
    };
    tmux.start(
        &session,
        &format!("NO_COLOR=1 '{}' top {}", bin(), demo.pid()),
    );
    let t = Instant::now();
    let mut screen = String::new();
    while t.elapsed() < Duration::from_secs(10) {
        sleep(Duration::from_millis(250));
        // -e: with the attributes, as escape sequences.
        screen = text(
            &tmux
                .cmd(&["capture-pane", "-e", "-p", "-t", &session])
                .stdout,
        );
        if screen.contains("kworker") && screen.contains("q quit") && t.elapsed().as_millis() > 1500
        {
            break;
        }
    }
    assert!(
        screen.contains("kworker") && screen.contains("q quit"),
        "pane {}:\n{screen}",
        tmux.pane(&session)
    );
    let params = sgr_params(&screen);
    assert!(params.contains(&7), "no reverse video captured: {screen:?}");
    assert!(
        !params.iter().any(|&p| is_colour(p)),
        "colour with NO_COLOR=1: {params:?}\n{screen:?}"
    );
    let _ = tmux.cmd(&["send-keys", "-t", &session, "q"]);
}
