//! `cmwq`: the command-line showcase of the cmwq library, the Linux
//! kernel's Concurrency Managed Workqueue in userspace.
//!
//! * `cmwq demo`: a mixed workload with a live view, ending with the
//!   `wq_monitor.py` table, the `wq_dump.py` report and self-checks.
//! * `cmwq dump`: the `wq_dump.py` report of a freshly started process.
//! * `cmwq monitor`: `wq_monitor.py -i` over an in-process workload.

mod demo;
mod io;
mod monitor;
mod util;

use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
cmwq: the Linux kernel's Concurrency Managed Workqueue, in userspace

USAGE:
    cmwq demo [--seconds N]
    cmwq dump
    cmwq monitor [--interval-ms N] [--seconds N]
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
              self-check fails (ordering broken, items lost, ...).
              While it runs, `ps -L -o comm -p PID` shows the kworker threads.
    dump      Start the library, run one item and print cmwq::dump(): affinity
              scopes, worker pools, the workqueue -> pool map, rescuers and
              in-flight items, as the kernel's wq_dump.py does.
    monitor   Run a light background workload in this process and print the
              per-workqueue table of the kernel's wq_monitor.py every
              interval (default 1000 ms) for N seconds (default 5; 0 runs
              until interrupted). Monitoring another process comes in a
              later version.
    help      Print this text.

ENVIRONMENT:
    CMWQ_DETECT=auto|perf|proc|progress|hint   block detection mode
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
    Dump,
    Monitor {
        interval: Duration,
        /// `None`: until interrupted.
        seconds: Option<f64>,
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
        Ok(Command::Dump) => dump(),
        Ok(Command::Monitor { interval, seconds }) => monitor::run(interval, seconds),
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
    // Unlike `hello.flush()`, this also waits until the pool has retired
    // the execution, so the report shows no item in flight.
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
        "dump" => Command::Dump,
        "monitor" => {
            let interval_ms = opts.number("--interval-ms")?.unwrap_or(1000.0);
            if !(10.0..=3_600_000.0).contains(&interval_ms) {
                return Err(format!("--interval-ms {interval_ms}: give 10 to 3600000"));
            }
            let seconds = opts.number("--seconds")?.unwrap_or(5.0);
            if !(0.0..=86_400.0).contains(&seconds) {
                return Err(format!("--seconds {seconds}: give 0 to 86400"));
            }
            Command::Monitor {
                interval: Duration::from_secs_f64(interval_ms / 1e3),
                seconds: (seconds > 0.0).then_some(seconds),
            }
        }
        other => return Err(format!("unknown command `{other}`")),
    };
    opts.finish(sub)?;
    Ok(cmd)
}

/// `--name value` and `--name=value` options, taken one by one.
struct Options(Vec<(String, String)>);

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut opts = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let Some(body) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument `{arg}`"));
            };
            let (name, value) = match body.split_once('=') {
                Some((name, value)) => (name, value.to_owned()),
                None => {
                    let value = it.next().ok_or(format!("{arg} needs a value"))?;
                    (body, value.clone())
                }
            };
            opts.push((format!("--{name}"), value));
        }
        Ok(Options(opts))
    }

    /// Take option `name` as a number (the last one given wins).
    fn number(&mut self, name: &str) -> Result<Option<f64>, String> {
        let mut found = None;
        while let Some(i) = self.0.iter().position(|(n, _)| n == name) {
            let (_, value) = self.0.remove(i);
            let v: f64 = value
                .parse()
                .map_err(|_| format!("{name} {value}: not a number"))?;
            if !v.is_finite() {
                return Err(format!("{name} {value}: not a finite number"));
            }
            found = Some(v);
        }
        Ok(found)
    }

    /// Fail on options that no one took.
    fn finish(self, sub: &str) -> Result<(), String> {
        match self.0.first() {
            Some((name, _)) => Err(format!("`{sub}` has no option {name}")),
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
        assert_eq!(p(&["dump"]), Ok(Command::Dump));
        assert_eq!(
            p(&["monitor", "--interval-ms", "200", "--seconds", "0"]),
            Ok(Command::Monitor {
                interval: Duration::from_millis(200),
                seconds: None
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
    }
}
