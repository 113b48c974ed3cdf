//! `cmwq`: the command-line showcase of the cmwq library, the Linux
//! kernel's Concurrency Managed Workqueue in userspace.
//!
//! * `cmwq demo`: a mixed workload with a live view, ending with the
//!   `wq_monitor.py` table, the `wq_dump.py` report and self-checks.
//! * `cmwq ps`, `cmwq top PID`, `cmwq monitor PID`, `cmwq dump PID`,
//!   `cmwq trace PID`: look inside another running process, from `/proc`
//!   (`top`) or through its control socket (the others).
//! * `cmwq dump`, `cmwq monitor` without a PID: the same for this process.
//!
//! `cli.rs` is the command line (clap) and the help text; `out.rs` writes
//! stdout so that a closed pipe ends the command quietly; `json.rs` is the
//! `--json` output of `ps`, `dump` and `monitor`.

mod cli;
mod demo;
mod io;
mod json;
mod monitor;
mod out;
mod remote;
mod render;
mod top;
mod util;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use remote::Span;

fn main() -> ExitCode {
    // clap prints usage errors (a short message and the command's usage
    // line, exit status 2), `--help`, `help COMMAND` and `--version`.
    let args = Cli::parse();
    match args.into_command() {
        Command::Help => {
            cli::print_help();
            ExitCode::SUCCESS
        }
        Command::Demo { seconds } => demo::run(seconds),
        Command::Dump { target: None, json } => dump(json),
        Command::Dump {
            target: Some(t),
            json,
        } => remote::dump(&t, json),
        Command::Monitor {
            target: None,
            interval,
            span,
            json,
        } => monitor::run(
            interval,
            match span {
                Span::Once => Some(interval.as_secs_f64()),
                Span::Seconds(s) => Some(s),
                Span::Forever => None,
            },
            json,
        ),
        Command::Monitor {
            target: Some(t),
            interval,
            span,
            json,
        } => remote::monitor(&t, interval, span, json),
        Command::Ps { json } => remote::ps(json),
        Command::Top { pid, once, json } => top::run(pid, once, json),
        Command::Trace {
            target,
            seconds,
            json,
            svg,
        } => remote::trace(&target, seconds, json, svg),
    }
}

/// `cmwq dump`: start the pools, run one item so they have a worker, and
/// print the report (as JSON with `json`).
fn dump(json: bool) -> ExitCode {
    let hello = cmwq::Work::named("hello", |_| {});
    cmwq::schedule_work(&hello);
    // Unlike `hello.flush()`, this also waits until the pool has ended
    // the execution (its counters updated), so the report shows no item in flight.
    cmwq::system_wq().flush();
    let report = cmwq::dump();
    if json {
        out::json(&json::dump(
            Some(std::process::id()),
            &report,
            &cmwq::dump::workqueues(),
        ));
    } else {
        out!("{report}");
    }
    ExitCode::SUCCESS
}
