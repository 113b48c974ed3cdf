//! B11, scope: closures that borrow from the caller, in `rayon::scope`,
//! `std::thread::scope` (a thread per closure) and `cmwq::scope`: CPU items
//! (200 us of CPU each) and items that block 2 ms (a sleep, no hint).
//! Each closure writes its result into its own slot of a borrowed slice.
//! Makespan and peak threads; each measurement in a fresh child.

use std::time::{Duration, Instant};

use super::{child_rows, ratio_str, Ctx};
use crate::child::emit_row;
use crate::report::{median_row, Row, Table};
use crate::util::{self, ThreadSampler};

const TARGET: &str =
    "CPU items within 1.05x rayon's makespan; blocking items >= 5x faster than rayon";

const CPU_ITEM: Duration = Duration::from_micros(200);
const BLOCK: Duration = Duration::from_millis(2);

const SYSTEMS: &[&str] = &["cmwq", "rayon", "std"];

pub fn run(ctx: &Ctx) -> Table {
    let cpu_items = ctx.pick(1000, 10_000);
    let block_items = ctx.pick(200, 1000);
    let mut t = Table::new(
        "B11",
        &format!(
            "scope: {cpu_items} borrowed CPU items, {block_items} borrowed items that block, on {} CPUs",
            ctx.ncpu
        ),
        TARGET,
    );
    t.ratio_of = Some("makespan_ms".into());
    for (mix, n) in [("cpu", cpu_items), ("blocking", block_items)] {
        let group = match mix {
            "cpu" => format!("{n} x 200 us CPU"),
            _ => format!("{n} x 2 ms sleep"),
        };
        let mut samples: Vec<Vec<Row>> = SYSTEMS.iter().map(|_| Vec::new()).collect();
        for _ in 0..ctx.reps {
            for (i, sys) in SYSTEMS.iter().enumerate() {
                if let Some(out) = child_rows(
                    &mut t,
                    &["b11", sys, mix, &n.to_string()],
                    &[],
                    Duration::from_secs(120),
                ) {
                    samples[i].extend(out.rows);
                }
            }
        }
        for s in samples.iter().filter(|s| !s.is_empty()) {
            t.rows.push(median_row(s).group(group.as_str()));
        }
        let ideal = match mix {
            "cpu" => n as f64 * CPU_ITEM.as_secs_f64() * 1e3 / ctx.ncpu as f64,
            _ => BLOCK.as_secs_f64() * 1e3,
        };
        t.rows.push(
            Row::new("floor: ideal")
                .group(group.as_str())
                .num("makespan_ms", ideal),
        );
        let get = |p: &str| t.row(p, Some(&group)).and_then(|r| r.get("makespan_ms"));
        if let (Some(c), Some(r)) = (get("cmwq::scope"), get("rayon::scope")) {
            match mix {
                "cpu" => t.check(
                    "CPU items: cmwq::scope within 1.05x rayon::scope's makespan",
                    ratio_str(c / r),
                    c <= 1.05 * r,
                ),
                _ => t.check(
                    "blocking items: cmwq::scope >= 5x faster than rayon::scope",
                    format!("{} faster", ratio_str(r / c)),
                    r >= 5.0 * c,
                ),
            }
        }
    }
    t.note("each closure borrows a slice from the caller and writes its own element; the scope returns when all finished (makespan: from the scope call to its return)");
    t.note("std::thread::scope starts a thread per closure; rayon::scope runs them on rayon's global pool (nr_cpus threads); cmwq::scope on system_dfl_wq, no hint given for the sleeps");
    t.note("peak_threads: threads of the child process besides its main thread, sampled every ms");
    t
}

/// Child: `b11 SYSTEM MIX ITEMS`.
pub fn child(args: &[String]) -> Result<(), String> {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let (sys, mix) = (arg(0), arg(1));
    let n: usize = arg(2).parse().map_err(|_| "b11: how many items?")?;
    let blocking = match mix {
        "cpu" => false,
        "blocking" => true,
        other => return Err(format!("b11: unknown mix {other}")),
    };
    let item = move |slot: &mut u64, i: usize| {
        if blocking {
            std::thread::sleep(BLOCK);
        } else {
            util::burn_cpu(CPU_ITEM);
        }
        *slot = i as u64;
    };
    let mut out = vec![0u64; n];
    // Warm-up: the system's threads exist before the clock starts.
    match sys {
        "cmwq" => cmwq::scope(|s| {
            for _ in 0..util::ncpu() {
                s.spawn(|| {});
            }
        }),
        "rayon" => rayon::scope(|s| {
            for _ in 0..util::ncpu() {
                s.spawn(|_| {});
            }
        }),
        "std" => {}
        other => return Err(format!("b11: unknown system {other}")),
    }
    std::thread::sleep(Duration::from_millis(20));
    let sampler = ThreadSampler::start(Duration::from_millis(1), |_| true);
    let t0 = Instant::now();
    match sys {
        "cmwq" => cmwq::scope(|s| {
            for (i, slot) in out.iter_mut().enumerate() {
                s.spawn(move || item(slot, i));
            }
        }),
        "rayon" => rayon::scope(|s| {
            for (i, slot) in out.iter_mut().enumerate() {
                s.spawn(move |_| item(slot, i));
            }
        }),
        _ => std::thread::scope(|s| {
            for (i, slot) in out.iter_mut().enumerate() {
                s.spawn(move || item(slot, i));
            }
        }),
    }
    let wall = t0.elapsed();
    // The sampler counts every thread but itself; the main thread is not
    // the system's.
    let peak = sampler.stop().saturating_sub(1);
    if out.iter().enumerate().any(|(i, &v)| v != i as u64) {
        return Err("b11: a closure's result is missing".into());
    }
    let name = match sys {
        "cmwq" => "cmwq::scope",
        "rayon" => "rayon::scope",
        _ => "std::thread::scope",
    };
    emit_row(
        &Row::new(name)
            .num("makespan_ms", wall.as_secs_f64() * 1e3)
            .num("peak_threads", peak as f64),
    );
    Ok(())
}
