//! Scenarios that need a process of their own (their own cmwq settings,
//! detection mode, or clean thread and RSS counts) re-execute this binary
//! with a hidden subcommand, `__child <scenario> <args..>`, and read its
//! figures back from its standard output, one record a line:
//!
//! ```text
//! row <TAB> system <TAB> g:group <TAB> n:key=1.5 <TAB> t:key=text ...
//! note <TAB> text
//! ```
//!
//! Anything else on the child's stdout is ignored; its stderr is passed
//! through (cmwq's own reports land there).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::report::{Row, Value};

/// What a child reported.
#[derive(Debug, Default)]
pub struct ChildOut {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

/// Keep a field free of the protocol's separators.
fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

/// Child side: report a row.
pub fn emit_row(r: &Row) {
    let mut s = format!("row\t{}", clean(&r.system));
    if let Some(g) = &r.group {
        s.push_str(&format!("\tg:{}", clean(g)));
    }
    for (k, v) in &r.cells {
        match v {
            Value::Num(x) => s.push_str(&format!("\tn:{}={x}", clean(k))),
            Value::Text(t) => s.push_str(&format!("\tt:{}={}", clean(k), clean(t))),
        }
    }
    println!("{s}");
}

/// Child side: report a note.
pub fn emit_note(s: &str) {
    println!("note\t{}", clean(s));
}

/// Parse a child's standard output.
pub fn parse(out: &str) -> ChildOut {
    let mut c = ChildOut::default();
    for line in out.lines() {
        let mut f = line.split('\t');
        match f.next() {
            Some("row") => {
                let mut r = Row::new(f.next().unwrap_or_default());
                for field in f {
                    if let Some(g) = field.strip_prefix("g:") {
                        r.group = Some(g.to_owned());
                    } else if let Some(kv) = field.strip_prefix("n:") {
                        if let Some((k, v)) = kv.split_once('=') {
                            r.set(k, Value::Num(v.parse().unwrap_or(f64::NAN)));
                        }
                    } else if let Some(kv) = field.strip_prefix("t:") {
                        if let Some((k, v)) = kv.split_once('=') {
                            r.set(k, Value::Text(v.to_owned()));
                        }
                    }
                }
                c.rows.push(r);
            }
            Some("note") => c.notes.push(f.collect::<Vec<_>>().join(" ")),
            _ => {}
        }
    }
    c
}

/// Parent side: run `__child <args>` with `env` added, wait at most
/// `timeout`, and parse what it reported. An error names the child and
/// why it failed (exit status, timeout).
pub fn run(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Result<ChildOut, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("__child").args(args);
    // A child starts from the harness's defaults, not from settings meant
    // for the parent, unless the scenario sets them.
    for var in [
        "CMWQ_DETECT",
        "CMWQ_CPU_INTENSIVE_THRESH_US",
        "CMWQ_STALL_WINDOW_US",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let what = format!("child {args:?} {env:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{what}: spawn: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    // Read on the side so a chatty child cannot fill the pipe and stall.
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let t = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if t.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = reader.join();
                return Err(format!("{what}: timed out after {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(format!("{what}: wait: {e}")),
        }
    };
    let out = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("{what}: {status}"));
    }
    Ok(parse(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip() {
        let out = "junk\nrow\tcmwq x\tg:grp\tn:a=1.25\tt:mode=perf\nnote\thello\n";
        let c = parse(out);
        assert_eq!(c.rows.len(), 1);
        assert_eq!(c.rows[0].system, "cmwq x");
        assert_eq!(c.rows[0].group.as_deref(), Some("grp"));
        assert_eq!(c.rows[0].get("a"), Some(1.25));
        assert_eq!(c.rows[0].cells[1].1, Value::Text("perf".into()));
        assert_eq!(c.notes, ["hello"]);
    }
}
