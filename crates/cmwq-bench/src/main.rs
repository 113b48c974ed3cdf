//! `cmwq-bench`: the benchmark harness of BENCHMARKS.md.
//!
//! ```text
//! cargo run --release -p cmwq-bench -- <scenario|all|scale> [--cpus LIST] [--json FILE] [--md FILE] [--quick] [--reps N]
//! ```
//!
//! Prints one table per scenario (B1..B12, B14) with every system measured side
//! by side in this run, medians of `--reps` repetitions, a ratio column
//! against cmwq, and the BENCHMARKS.md target checked MET or MISSED; `--json`
//! writes the same figures as JSON, `--md` (`--markdown`) as the
//! BENCHMARKS.md page. `--quick` shrinks every scenario (CI smoke test).
//! `--cpus LIST` restricts the whole process (cmwq, the peers, the child
//! processes) to those CPUs before anything starts; `scale` (B13) runs B1,
//! B4, B10 and B12 at 1, 2, 4, ... CPUs that way.

mod alloc;
mod child;
mod peers;
mod report;
mod scenarios;
mod util;

use std::process::ExitCode;
use std::time::Instant;

use scenarios::{Ctx, ALL};

#[global_allocator]
static GLOBAL: alloc::CountingAlloc = alloc::CountingAlloc;

const USAGE: &str = "\
usage: cmwq-bench <scenario|all|scale> [--cpus LIST] [--json FILE] [--md FILE] [--quick] [--reps N] [--traced]

  scenario   B1..B12 or B14, several separated by commas (b1,b3), or all
  scale      B13: B1, B4, B10 and B12 at 1, 2, 4, ... CPUs (not in all)
  --cpus L   restrict the process, peers and children to the CPUs of the
             list L (0-3,5) with sched_setaffinity before anything starts
  --json F   write the figures as JSON to F
  --md F     write a Markdown report (BENCHMARKS.md) to F (also --markdown)
  --quick    shrink every scenario (all --quick takes well under a minute)
  --reps N   repetitions per measurement, medians reported
             (default 3, or 1 with --quick)
  --traced   keep a tracer attached to cmwq (its control socket's trace
             request, read and dropped) for the whole run: the cost of
             `cmwq trace` on the figures";

/// Parsed command line.
struct Args {
    scenarios: Vec<&'static scenarios::Scenario>,
    json: Option<String>,
    md: Option<String>,
    quick: bool,
    reps: Option<usize>,
    traced: bool,
    cpus: Option<Vec<usize>>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        scenarios: Vec::new(),
        json: None,
        md: None,
        quick: false,
        reps: None,
        traced: false,
        cpus: None,
    };
    let mut it = args.iter();
    let mut which: Option<String> = None;
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--json" => a.json = Some(value("--json")?),
            "--md" | "--markdown" => a.md = Some(value("--md")?),
            "--quick" => a.quick = true,
            "--traced" => a.traced = true,
            "--cpus" => a.cpus = Some(util::parse_cpulist(&value("--cpus")?)?),
            "--reps" => {
                let v = value("--reps")?;
                let n: usize = v.parse().map_err(|_| format!("--reps {v}: not a number"))?;
                a.reps = Some(n.max(1));
            }
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if which.is_none() => which = Some(s.to_owned()),
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    let which = which.ok_or("which scenario? (B1..B12, B14, all or scale)")?;
    for name in which.split(',') {
        if name.eq_ignore_ascii_case("all") {
            a.scenarios.extend(ALL.iter());
            continue;
        }
        if name.eq_ignore_ascii_case("scale") || name.eq_ignore_ascii_case("b13") {
            a.scenarios.push(&scenarios::SCALE);
            continue;
        }
        let s = ALL
            .iter()
            .find(|s| s.id.eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("unknown scenario {name:?} (B1..B12, B14, all or scale)"))?;
        a.scenarios.push(s);
    }
    Ok(a)
}

/// The machine line printed above every run and in BENCHMARKS.md.
fn machine_line() -> String {
    format!(
        "nproc {}, cpus {}, cmwq nr_cpus {}, CPU {}, kernel {}, cmwq detection {}{}",
        util::nproc(),
        util::cpulist(&util::allowed_cpus()),
        cmwq::nr_cpus(),
        util::cpu_model(),
        util::kernel(),
        cmwq::detection().name(),
        if std::env::var_os("CMWQ_BENCH_TRACED").is_some() {
            ", traced (a tracer attached throughout)"
        } else {
            ""
        }
    )
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("__child") {
        util::start_self_tracer();
        return match scenarios::child_main(&argv[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cmwq-bench child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = match parse_args(&argv) {
        Ok(a) => match a.cpus.as_deref().map(util::restrict_to) {
            Some(Err(e)) => Err(e),
            _ => Ok(a),
        },
        Err(e) => Err(e),
    };
    let args = match args {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("cmwq-bench: {e}");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    if args.traced {
        // Set before any other thread exists; children inherit it.
        std::env::set_var("CMWQ_BENCH_TRACED", "1");
        util::start_self_tracer();
    }
    let ctx = Ctx {
        quick: args.quick,
        reps: args.reps.unwrap_or(if args.quick { 1 } else { 3 }),
        ncpu: util::ncpu(),
    };
    let command = format!("cargo run --release -p cmwq-bench -- {}", argv.join(" "));
    let machine = machine_line();
    println!("machine: {machine}");
    println!("command: {command}");
    println!(
        "reps: {} (medians){}\n",
        ctx.reps,
        if ctx.quick { ", quick" } else { "" }
    );

    let started = Instant::now();
    let mut tables = Vec::new();
    for s in &args.scenarios {
        let t0 = Instant::now();
        eprintln!("cmwq-bench: running {} ...", s.id);
        let mut table = (s.run)(&ctx);
        table.compute_ratios();
        println!("{}", table.to_text());
        eprintln!(
            "cmwq-bench: {} done in {:.1} s",
            s.id,
            t0.elapsed().as_secs_f64()
        );
        tables.push(table);
    }
    let (met, all) = report::targets_met(&tables);
    println!(
        "targets: {met} of {all} checks met; total {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut ok = true;
    if let Some(path) = &args.json {
        if let Err(e) = std::fs::write(path, report::json(&tables)) {
            eprintln!("cmwq-bench: writing {path}: {e}");
            ok = false;
        }
    }
    if let Some(path) = &args.md {
        // A reading written above the generated part of an existing page
        // is kept.
        let old = std::fs::read_to_string(path).unwrap_or_default();
        let page = report::markdown_page(&old, &tables, &machine, &command);
        if let Err(e) = std::fs::write(path, page) {
            eprintln!("cmwq-bench: writing {path}: {e}");
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
