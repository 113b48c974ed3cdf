//! The command line: its grammar (clap, derived), the help text of each
//! command, and the checks clap cannot express (ranges, the `monitor`
//! span), ending in a [`Command`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, CommandFactory, Parser, Subcommand};

use crate::remote::{Span, Target};

/// Printed after the top-level help.
const AFTER_HELP: &str = "\
PID may also be a control socket's path. The control socket is opt-in:
CMWQ_CONTROL=1 in the watched process's environment, or
cmwq::Config::control(true) in its code.

--json (ps, dump, monitor, top --once) prints JSON objects, one a line,
each with \"schema\": 2; `cmwq help COMMAND` describes each shape.

Environment:
  CMWQ_DETECT=auto|sentinel|perf|proc|progress|hint   block detection mode
  CMWQ_CONTROL=1   start the control socket
  CMWQ_CPU_INTENSIVE_THRESH_US, CMWQ_STALL_WINDOW_US, CMWQ_IDLE_TIMEOUT_S,
  CMWQ_WATCHDOG_THRESH_S, CMWQ_MAYDAY_TIMEOUT_MS   tuning, see the README
  NO_COLOR=1       no colour in any output (https://no-color.org)

Exit status: 0 on success (also when the reader of a pipe goes away
early), 1 on an error, 2 on a usage error.";

/// `cmwq`: the Linux kernel's Concurrency Managed Workqueue, in userspace.
#[derive(Debug, Parser)]
#[command(
    name = "cmwq",
    version,
    long_about = None,
    about = "cmwq: the Linux kernel's Concurrency Managed Workqueue, in userspace",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Run a mixed workload with a live status line, then print the
    /// wq_monitor.py table, the wq_dump.py report and a summary.
    #[command(long_about = "\
Run a mixed workload for about N seconds (default 6): CPU-bound items on a
custom bound workqueue and system_wq; items that block on pipes, fsync,
loopback TCP and sleep with no hint (automatic block detection keeps the
CPUs busy); an ordered workqueue fed from several threads; a
max_active-throttled workqueue raised mid-run; an unbound workqueue.
Prints a live status line every 500 ms, then the wq_monitor.py table, the
wq_dump.py report and a summary. Exits non-zero if a self-check fails
(ordering broken, items lost, ...). Its control socket is on: it prints
the commands to try from a second terminal.")]
    Demo(DemoArgs),
    /// List this user's processes with a cmwq control socket.
    #[command(long_about = "\
List this user's processes with a cmwq control socket: PID, name,
workqueues, pools, workers, block detection mode and socket path.

--json prints one object: {\"schema\": 2, \"processes\": [{\"pid\", \"socket\",
\"name\", \"workqueues\", \"pools\", \"workers\", \"detect\", \"error\"}]};
a process that did not answer has null fields and an \"error\".")]
    Ps(PsArgs),
    /// A live view of process PID's worker pools, from /proc alone.
    #[command(long_about = "\
A live view of process PID's worker pools from /proc alone (no setup in
the process): workers per pool, their states, CPU per pool, rescuers and
the library's threads. q quits. --once prints one plain-text snapshot, as
does a stdout that is not a terminal.

--json prints one snapshot as one object: {\"schema\": 2, \"pid\", \"name\",
\"interval_s\", \"cpu_pct\", \"note\", \"pools\": [{\"pool\", \"threads\",
\"running\", \"blocked\", \"idle\", \"sleeping\", \"cpu_pct\"}], \"threads\":
[{\"pool\", \"tid\", \"name\", \"state\", \"cpu_pct\", \"last_cpu\", \"item\"}],
\"cpu_limit\": {\"quota_us\", \"period_us\", \"limit\"}} (the process's cgroup CPU
quota and the running workers of the spreading pools it allows, G34);
CPU figures are percentages of one CPU over the 500 ms between the two
samples.")]
    Top(TopArgs),
    /// The kernel's wq_monitor.py -i table of process PID, every interval.
    #[command(long_about = "\
The kernel's wq_monitor.py -i table of process PID over its control
socket: each interval (default 1000 ms) what happened in it, until
interrupted or for --seconds N; --once prints the totals since the
process started. Without a PID: the table of a light workload run in this
process. Exits 1 if the process goes away (or any request fails) while it
is watched.

--json prints one object a line per interval (one for --once):
{\"schema\": 2, \"pid\", \"t_s\", \"interval_ms\", \"totals\", \"workqueues\":
[{\"name\", \"flags\", \"ordered\", \"max_active\", \"total\", \"in_flight\",
\"cpu_time_s\", \"cpu_hog\", \"cm_wakeups\", \"mayday\", \"rescued\",
\"panics\"}]}; \"totals\" is true when the counts are since the process
started, false when over the interval; a column the table shows as - is
null. Without a PID the object also has \"detection\".")]
    Monitor(MonitorArgs),
    /// The wq_dump.py report of process PID (or of a freshly started one).
    #[command(long_about = "\
The wq_dump.py report of process PID (over its control socket); without
a PID, of a freshly started process.

--json prints one object: {\"schema\": 2, \"pid\", \"pools\": [{\"id\",
\"refs\", \"nice\", \"idle\", \"workers\", \"cpu\", \"cpus\", \"pod_cpus\",
\"line\"}], \"workqueues\": [rows as monitor --json's, totals since the
process started], \"sections\": [{\"title\", \"lines\"}], \"cpu_limit\":
{\"quota_us\", \"period_us\", \"limit\"}}: the pools parsed
from the report's Worker Pools section, and every section of the report
as its title and text lines.")]
    Dump(DumpArgs),
    /// Record every item execution of process PID for N seconds.
    #[command(long_about = "\
Record every item execution of process PID for N seconds and write it as
Chrome Trace Event JSON (-o; opens in Perfetto and chrome://tracing) and,
with --svg, as an SVG timeline.")]
    Trace(TraceArgs),
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// How long the demo runs, in seconds (0.5 to 3600).
    #[arg(long, value_name = "N", default_value_t = 6.0, value_parser = number_in(0.5, 3600.0))]
    seconds: f64,
}

#[derive(Debug, Args)]
struct PsArgs {
    /// Print JSON (see below).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct TopArgs {
    /// The process to look at.
    #[arg(value_name = "PID", value_parser = pid)]
    pid: u32,
    /// Print one plain-text snapshot and exit.
    #[arg(long)]
    once: bool,
    /// Print one snapshot as JSON and exit (implies --once).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct MonitorArgs {
    /// The process (or control socket path) to watch; none: a workload in
    /// this process.
    #[arg(value_name = "PID", value_parser = Target::parse)]
    target: Option<Target>,
    /// The interval, in milliseconds (10 to 3600000).
    #[arg(long, value_name = "N", default_value_t = 1000.0,
          value_parser = number_in(10.0, 3_600_000.0))]
    interval_ms: f64,
    /// Print the totals since the process started, once.
    #[arg(long, conflicts_with = "seconds")]
    once: bool,
    /// Stop after N seconds (0: until interrupted; without a PID the
    /// default is 5).
    #[arg(long, value_name = "N", value_parser = number_in(0.0, 86_400.0))]
    seconds: Option<f64>,
    /// Print one JSON object a line per interval (see below).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DumpArgs {
    /// The process (or control socket path); none: this process.
    #[arg(value_name = "PID", value_parser = Target::parse)]
    target: Option<Target>,
    /// Print JSON (see below).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("output").required(true).multiple(true).args(["json", "svg"])))]
struct TraceArgs {
    /// The process (or control socket path) to record.
    #[arg(value_name = "PID", value_parser = Target::parse)]
    target: Target,
    /// How long to record, in seconds (0.001 to 3600).
    #[arg(long, value_name = "N", required = true, value_parser = number_in(0.001, 3600.0))]
    seconds: f64,
    /// Write the Chrome Trace Event JSON here.
    #[arg(short = 'o', value_name = "FILE.json")]
    json: Option<PathBuf>,
    /// Write an SVG timeline here.
    #[arg(long, value_name = "FILE.svg")]
    svg: Option<PathBuf>,
}

/// A number from `lo` to `hi`.
fn number_in(lo: f64, hi: f64) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync {
    move |s| {
        let v: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
        if !v.is_finite() || !(lo..=hi).contains(&v) {
            return Err(format!("give {lo} to {hi}"));
        }
        Ok(v)
    }
}

/// A process id: a positive number.
fn pid(s: &str) -> Result<u32, String> {
    s.parse::<u32>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| format!("`{s}` is not a PID"))
}

/// A parsed command line.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// No command: the top-level help.
    Help,
    /// `cmwq demo`.
    Demo { seconds: f64 },
    /// `cmwq dump [PID]`.
    Dump { target: Option<Target>, json: bool },
    /// `cmwq monitor [PID]`.
    Monitor {
        target: Option<Target>,
        interval: Duration,
        span: Span,
        json: bool,
    },
    /// `cmwq ps`.
    Ps { json: bool },
    /// `cmwq top PID`.
    Top { pid: u32, once: bool, json: bool },
    /// `cmwq trace PID`.
    Trace {
        target: Target,
        seconds: f64,
        json: Option<PathBuf>,
        svg: Option<PathBuf>,
    },
}

impl Cli {
    /// The command, from a parsed command line.
    pub fn into_command(self) -> Command {
        let Some(sub) = self.command else {
            return Command::Help;
        };
        match sub {
            Sub::Demo(a) => Command::Demo { seconds: a.seconds },
            Sub::Ps(a) => Command::Ps { json: a.json },
            Sub::Top(a) => Command::Top {
                pid: a.pid,
                once: a.once || a.json,
                json: a.json,
            },
            Sub::Dump(a) => Command::Dump {
                target: a.target,
                json: a.json,
            },
            Sub::Monitor(a) => {
                let span = match (a.once, a.seconds) {
                    (true, _) => Span::Once,
                    (false, Some(s)) if s > 0.0 => Span::Seconds(s),
                    (false, Some(_)) => Span::Forever,
                    // In this process, the old default: 5 s; another: until
                    // interrupted, as wq_monitor.py.
                    (false, None) if a.target.is_none() => Span::Seconds(5.0),
                    (false, None) => Span::Forever,
                };
                Command::Monitor {
                    target: a.target,
                    interval: Duration::from_secs_f64(a.interval_ms / 1e3),
                    span,
                    json: a.json,
                }
            }
            Sub::Trace(a) => Command::Trace {
                target: a.target,
                seconds: a.seconds,
                json: a.json,
                svg: a.svg,
            },
        }
    }
}

/// Print the top-level help (for `cmwq` without a command).
pub fn print_help() {
    crate::outln!("{}", Cli::command().render_long_help());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("cmwq").chain(args.iter().copied()))
            .map(Cli::into_command)
    }

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn commands_and_defaults() {
        assert_eq!(p(&[]).unwrap(), Command::Help);
        assert_eq!(p(&["demo"]).unwrap(), Command::Demo { seconds: 6.0 });
        assert_eq!(
            p(&["demo", "--seconds", "2"]).unwrap(),
            Command::Demo { seconds: 2.0 }
        );
        assert_eq!(
            p(&["demo", "--seconds=2.5"]).unwrap(),
            Command::Demo { seconds: 2.5 }
        );
        assert_eq!(
            p(&["dump"]).unwrap(),
            Command::Dump {
                target: None,
                json: false
            }
        );
        assert_eq!(
            p(&["dump", "12", "--json"]).unwrap(),
            Command::Dump {
                target: Some(Target::Pid(12)),
                json: true
            }
        );
        assert_eq!(
            p(&["monitor", "--interval-ms", "200", "--seconds", "0"]).unwrap(),
            Command::Monitor {
                target: None,
                interval: Duration::from_millis(200),
                span: Span::Forever,
                json: false,
            }
        );
        assert_eq!(
            p(&["monitor", "--interval-ms", "200"]).unwrap(),
            Command::Monitor {
                target: None,
                interval: Duration::from_millis(200),
                span: Span::Seconds(5.0),
                json: false,
            }
        );
        assert_eq!(
            p(&["monitor", "7", "--once", "--json"]).unwrap(),
            Command::Monitor {
                target: Some(Target::Pid(7)),
                interval: Duration::from_millis(1000),
                span: Span::Once,
                json: true,
            }
        );
        assert_eq!(
            p(&["monitor", "7"]).unwrap(),
            Command::Monitor {
                target: Some(Target::Pid(7)),
                interval: Duration::from_millis(1000),
                span: Span::Forever,
                json: false,
            }
        );
        assert_eq!(
            p(&["top", "9", "--once"]).unwrap(),
            Command::Top {
                pid: 9,
                once: true,
                json: false
            }
        );
        assert_eq!(
            p(&["top", "9", "--json"]).unwrap(),
            Command::Top {
                pid: 9,
                once: true,
                json: true
            }
        );
        assert_eq!(p(&["ps"]).unwrap(), Command::Ps { json: false });
        assert_eq!(
            p(&[
                "trace",
                "5",
                "--seconds",
                "2",
                "-o",
                "t.json",
                "--svg=t.svg"
            ])
            .unwrap(),
            Command::Trace {
                target: Target::Pid(5),
                seconds: 2.0,
                json: Some("t.json".into()),
                svg: Some("t.svg".into()),
            }
        );
        assert_eq!(
            p(&["trace", "/tmp/x/5.sock", "--seconds", "1", "--svg", "t.svg"]).unwrap(),
            Command::Trace {
                target: Target::Path("/tmp/x/5.sock".into()),
                seconds: 1.0,
                json: None,
                svg: Some("t.svg".into()),
            }
        );
    }

    #[test]
    fn mistakes_are_errors() {
        for args in [
            &["bogus"][..],
            &["demo", "--seconds"],
            &["demo", "--seconds", "x"],
            &["demo", "--seconds", "0"],
            &["demo", "--seconds", "inf"],
            &["demo", "--interval-ms", "5"],
            &["dump", "extra"],
            &["dump", "1", "2"],
            &["monitor", "--interval-ms", "1"],
            &["monitor", "3", "--once", "--seconds", "2"],
            &["top"],
            &["top", "x"],
            &["top", "0"],
            &["trace", "5", "-o", "t.json"],
            &["trace", "5", "--seconds", "1"],
            &["ps", "3"],
            &["dump", "--once"],
        ] {
            let e = p(args).expect_err(&format!("{args:?}"));
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
    }
}
