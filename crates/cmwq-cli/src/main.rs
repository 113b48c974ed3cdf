//! `cmwq`: the command-line showcase of the cmwq library, the Linux
//! kernel's Concurrency Managed Workqueue in userspace.
//!
//! * `cmwq demo`: a mixed workload with a live view, ending with the
//!   `wq_monitor.py` table, the `wq_dump.py` report and self-checks.
//! * `cmwq ps`, `cmwq top PID`, `cmwq monitor PID`, `cmwq dump PID`,
//!   `cmwq trace PID`: look inside another running process, from `/proc`
//!   (`top`) or through its control socket (the others).
//! * `cmwq dump`, `cmwq monitor` without a PID: the same for this process.

mod demo;
mod io;
mod monitor;
mod remote;
mod render;
mod top;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use remote::{Span, Target};

const USAGE: &str = "\
cmwq: the Linux kernel's Concurrency Managed Workqueue, in userspace

USAGE:
    cmwq demo [--seconds N]
    cmwq ps
    cmwq top PID [--once]
    cmwq monitor [PID] [--interval-ms N] [--once | --seconds N]
    cmwq dump [PID]
    cmwq trace PID --seconds N -o FILE.json [--svg FILE.svg]
    cmwq help | --help | -h

COMMANDS:
    demo      Run a mixed workload for about N seconds (default 6): CPU-bound
              items on a custom bound workqueue and system_wq; items that
              block on pipes, fsync, loopback TCP and sleep with no hint
              (automatic block detection keeps the CPUs busy); an ordered
              workqueue fed from several threads; a max_active-throttled
              workqueue raised mid-run; an unbound workqueue. Prints a live
              status line every 500 ms, then the wq_monitor.py table, the
              wq_dump.py report and a summary. Exits non-zero if a
              self-check fails (ordering broken, items lost, ...). Its
              control socket is on: it prints the commands to try from a
              second terminal.
    ps        List this user's processes with a cmwq control socket.
    top       A live view of process PID's worker pools from /proc alone
              (no setup in the process): workers per pool, their states,
              CPU per pool, rescuers and the library's threads. q quits.
              --once prints one plain-text snapshot.
    monitor   The kernel's wq_monitor.py -i table of process PID over its
              control socket: each interval (default 1000 ms) what happened
              in it, until interrupted or for --seconds N; --once prints
              the totals since the process started. Without a PID: the
              table of a light workload run in this process.
    dump      The wq_dump.py report of process PID (over its control
              socket); without a PID, of a freshly started process.
    trace     Record every item execution of process PID for N seconds and
              write it as Chrome Trace Event JSON (-o; opens in Perfetto and
              chrome://tracing) and, with --svg, as an SVG timeline.
    help      Print this text.

    PID may also be a control socket's path. The control socket is opt-in:
    CMWQ_CONTROL=1 in the watched process's environment, or
    cmwq::Config::control(true) in its code.

ENVIRONMENT:
    CMWQ_DETECT=auto|sentinel|perf|proc|progress|hint   block detection mode
    CMWQ_CONTROL=1   start the control socket
    CMWQ_CPU_INTENSIVE_THRESH_US, CMWQ_STALL_WINDOW_US, CMWQ_IDLE_TIMEOUT_S,
    CMWQ_WATCHDOG_THRESH_S, CMWQ_MAYDAY_TIMEOUT_MS   tuning, see the README
";

/// A parsed command line.
#[derive(Debug, PartialEq)]
enum Command {
    Help,
    Demo {
        seconds: f64,
    },
    Dump(Option<Target>),
    Monitor {
        target: Option<Target>,
        interval: Duration,
        span: Span,
    },
    Ps,
    Top {
        pid: u32,
        once: bool,
    },
    Trace {
        target: Target,
        seconds: f64,
        json: Option<PathBuf>,
        svg: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args) {
        Ok(Command::Help) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Command::Demo { seconds }) => demo::run(seconds),
        Ok(Command::Dump(None)) => dump(),
        Ok(Command::Dump(Some(t))) => remote::dump(&t),
        Ok(Command::Monitor {
            target: None,
            interval,
            span,
        }) => monitor::run(
            interval,
            match span {
                Span::Once => Some(interval.as_secs_f64()),
                Span::Seconds(s) => Some(s),
                Span::Forever => None,
            },
        ),
        Ok(Command::Monitor {
            target: Some(t),
            interval,
            span,
        }) => remote::monitor(&t, interval, span),
        Ok(Command::Ps) => remote::ps(),
        Ok(Command::Top { pid, once }) => top::run(pid, once),
        Ok(Command::Trace {
            target,
            seconds,
            json,
            svg,
        }) => remote::trace(&target, seconds, json, svg),
        Err(msg) => {
            eprintln!("cmwq: {msg}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// `cmwq dump`: start the pools, run one item so they have a worker, and
/// print the report.
fn dump() -> ExitCode {
    let hello = cmwq::Work::named("hello", |_| {});
    cmwq::schedule_work(&hello);
    // Unlike `hello.flush()`, this also waits until the pool has ended
    // the execution (its counters updated), so the report shows no item in flight.
    cmwq::system_wq().flush();
    print!("{}", cmwq::dump());
    ExitCode::SUCCESS
}

/// Parse the arguments after the program name.
fn parse(args: &[String]) -> Result<Command, String> {
    let Some((sub, rest)) = args.split_first() else {
        return Ok(Command::Help);
    };
    if rest.iter().any(|a| a == "-h" || a == "--help") {
        return Ok(Command::Help);
    }
    let mut opts = Options::parse(rest)?;
    let cmd = match sub.as_str() {
        "help" | "-h" | "--help" => Command::Help,
        "demo" => {
            let seconds = opts.number("--seconds")?.unwrap_or(6.0);
            if !(0.5..=3600.0).contains(&seconds) {
                return Err(format!("--seconds {seconds}: give 0.5 to 3600"));
            }
            Command::Demo { seconds }
        }
        "ps" => Command::Ps,
        "dump" => Command::Dump(opts.target()?),
        "top" => {
            let Some(Target::Pid(pid)) = opts.target()? else {
                return Err("`top` needs a PID".into());
            };
            Command::Top {
                pid,
                once: opts.flag("--once"),
            }
        }
        "monitor" => {
            let target = opts.target()?;
            let interval_ms = opts.number("--interval-ms")?.unwrap_or(1000.0);
            if !(10.0..=3_600_000.0).contains(&interval_ms) {
                return Err(format!("--interval-ms {interval_ms}: give 10 to 3600000"));
            }
            let once = opts.flag("--once");
            let seconds = opts.number("--seconds")?;
            if let Some(s) = seconds {
                if !(0.0..=86_400.0).contains(&s) {
                    return Err(format!("--seconds {s}: give 0 to 86400"));
                }
            }
            let span = match (once, seconds) {
                (true, Some(_)) => return Err("give --once or --seconds, not both".into()),
                (true, None) => Span::Once,
                (false, Some(s)) if s > 0.0 => Span::Seconds(s),
                (false, Some(_)) => Span::Forever,
                // In this process, the old default: 5 s; another: until
                // interrupted, as wq_monitor.py.
                (false, None) if target.is_none() => Span::Seconds(5.0),
                (false, None) => Span::Forever,
            };
            Command::Monitor {
                target,
                interval: Duration::from_secs_f64(interval_ms / 1e3),
                span,
            }
        }
        "trace" => {
            let target = opts.target()?.ok_or("`trace` needs a PID")?;
            let seconds = opts
                .number("--seconds")?
                .ok_or("`trace` needs --seconds N")?;
            if !(0.001..=3600.0).contains(&seconds) {
                return Err(format!("--seconds {seconds}: give 0.001 to 3600"));
            }
            let json = opts.value("-o")?.map(PathBuf::from);
            let svg = opts.value("--svg")?.map(PathBuf::from);
            if json.is_none() && svg.is_none() {
                return Err("`trace` needs -o FILE.json (and/or --svg FILE.svg)".into());
            }
            Command::Trace {
                target,
                seconds,
                json,
                svg,
            }
        }
        other => return Err(format!("unknown command `{other}`")),
    };
    opts.finish(sub)?;
    Ok(cmd)
}

/// Options that take no value.
const FLAGS: &[&str] = &["--once"];

/// `--name value`, `--name=value`, `-o value` options and flags, taken one
/// by one, and positional arguments.
struct Options {
    opts: Vec<(String, String)>,
    flags: Vec<String>,
    positional: Vec<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            opts: Vec::new(),
            flags: Vec::new(),
            positional: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if FLAGS.contains(&arg.as_str()) {
                o.flags.push(arg.clone());
                continue;
            }
            let body = if let Some(b) = arg.strip_prefix("--") {
                b
            } else if arg == "-o" {
                "o"
            } else if arg.starts_with('-') && arg.len() > 1 {
                return Err(format!("unknown option `{arg}`"));
            } else {
                o.positional.push(arg.clone());
                continue;
            };
            let prefix = if arg == "-o" { "-" } else { "--" };
            let (name, value) = match body.split_once('=') {
                Some((name, value)) => (name, value.to_owned()),
                None => {
                    let value = it.next().ok_or(format!("{arg} needs a value"))?;
                    (body, value.clone())
                }
            };
            o.opts.push((format!("{prefix}{name}"), value));
        }
        Ok(o)
    }

    /// Take option `name`'s value (the last one given wins).
    fn value(&mut self, name: &str) -> Result<Option<String>, String> {
        let mut found = None;
        while let Some(i) = self.opts.iter().position(|(n, _)| n == name) {
            found = Some(self.opts.remove(i).1);
        }
        Ok(found)
    }

    /// Take option `name` as a number (the last one given wins).
    fn number(&mut self, name: &str) -> Result<Option<f64>, String> {
        let Some(value) = self.value(name)? else {
            return Ok(None);
        };
        let v: f64 = value
            .parse()
            .map_err(|_| format!("{name} {value}: not a number"))?;
        if !v.is_finite() {
            return Err(format!("{name} {value}: not a finite number"));
        }
        Ok(Some(v))
    }

    /// Take flag `name`.
    fn flag(&mut self, name: &str) -> bool {
        let had = self.flags.iter().any(|f| f == name);
        self.flags.retain(|f| f != name);
        had
    }

    /// Take the positional target (a PID or a socket path), if any.
    fn target(&mut self) -> Result<Option<Target>, String> {
        if self.positional.is_empty() {
            return Ok(None);
        }
        Target::parse(&self.positional.remove(0)).map(Some)
    }

    /// Fail on options and arguments that no one took.
    fn finish(self, sub: &str) -> Result<(), String> {
        if let Some((name, _)) = self.opts.first() {
            return Err(format!("`{sub}` has no option {name}"));
        }
        if let Some(f) = self.flags.first() {
            return Err(format!("`{sub}` has no option {f}"));
        }
        match self.positional.first() {
            Some(a) => Err(format!("unexpected argument `{a}`")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn commands_and_defaults() {
        assert_eq!(p(&[]), Ok(Command::Help));
        assert_eq!(p(&["--help"]), Ok(Command::Help));
        assert_eq!(p(&["demo", "-h"]), Ok(Command::Help));
        assert_eq!(p(&["demo"]), Ok(Command::Demo { seconds: 6.0 }));
        assert_eq!(
            p(&["demo", "--seconds", "2"]),
            Ok(Command::Demo { seconds: 2.0 })
        );
        assert_eq!(
            p(&["demo", "--seconds=2.5"]),
            Ok(Command::Demo { seconds: 2.5 })
        );
        assert_eq!(p(&["dump"]), Ok(Command::Dump(None)));
        assert_eq!(p(&["dump", "12"]), Ok(Command::Dump(Some(Target::Pid(12)))));
        assert_eq!(
            p(&["monitor", "--interval-ms", "200", "--seconds", "0"]),
            Ok(Command::Monitor {
                target: None,
                interval: Duration::from_millis(200),
                span: Span::Forever,
            })
        );
        assert_eq!(
            p(&["monitor", "7", "--once"]),
            Ok(Command::Monitor {
                target: Some(Target::Pid(7)),
                interval: Duration::from_millis(1000),
                span: Span::Once,
            })
        );
        assert_eq!(
            p(&["monitor", "7"]),
            Ok(Command::Monitor {
                target: Some(Target::Pid(7)),
                interval: Duration::from_millis(1000),
                span: Span::Forever,
            })
        );
        assert_eq!(
            p(&["top", "9", "--once"]),
            Ok(Command::Top { pid: 9, once: true })
        );
        assert_eq!(p(&["ps"]), Ok(Command::Ps));
        assert_eq!(
            p(&[
                "trace",
                "5",
                "--seconds",
                "2",
                "-o",
                "t.json",
                "--svg=t.svg"
            ]),
            Ok(Command::Trace {
                target: Target::Pid(5),
                seconds: 2.0,
                json: Some("t.json".into()),
                svg: Some("t.svg".into()),
            })
        );
    }

    #[test]
    fn mistakes_are_errors() {
        assert!(p(&["bogus"]).is_err());
        assert!(p(&["demo", "--seconds"]).is_err());
        assert!(p(&["demo", "--seconds", "x"]).is_err());
        assert!(p(&["demo", "--seconds", "0"]).is_err());
        assert!(p(&["demo", "--interval-ms", "5"]).is_err());
        assert!(p(&["dump", "extra"]).is_err());
        assert!(p(&["monitor", "--interval-ms", "1"]).is_err());
        assert!(p(&["monitor", "3", "--once", "--seconds", "2"]).is_err());
        assert!(p(&["top"]).is_err());
        assert!(p(&["top", "x"]).is_err());
        assert!(p(&["trace", "5", "-o", "t.json"]).is_err());
        assert!(p(&["trace", "5", "--seconds", "1"]).is_err());
        assert!(p(&["ps", "3"]).is_err());
        assert!(p(&["dump", "--once"]).is_err());
    }
}
