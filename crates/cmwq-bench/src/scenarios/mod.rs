//! The scenarios of BENCHMARKS.md, one module each. Each `run` measures every
//! system of its table in this run and returns the table; scenarios that
//! need a process of their own also have a `child` entry point, reached
//! through the hidden `__child` subcommand.

pub mod b1;
pub mod b10;
pub mod b11;
pub mod b12;
pub mod b13;
pub mod b14;
pub mod b2;
pub mod b3;
pub mod b4;
pub mod b5;
pub mod b6;
pub mod b7;
pub mod b8;
pub mod b9;

use std::time::Duration;

use crate::child;
use crate::report::{median_row, Row, Table};

/// How a run is sized.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    /// `--quick`: shrink everything (CI smoke test).
    pub quick: bool,
    /// Repetitions per measurement (medians are reported).
    pub reps: usize,
    /// The CPUs the process may use (its affinity mask, which `--cpus`
    /// narrows): what scenarios size themselves by.
    pub ncpu: usize,
}

impl Ctx {
    /// `quick` in a quick run, `full` otherwise.
    pub fn pick<T>(&self, quick: T, full: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

/// A scenario: its id and its runner.
pub struct Scenario {
    pub id: &'static str,
    pub run: fn(&Ctx) -> Table,
}

/// Every scenario, in order.
pub const ALL: &[Scenario] = &[
    Scenario {
        id: "B1",
        run: b1::run,
    },
    Scenario {
        id: "B2",
        run: b2::run,
    },
    Scenario {
        id: "B3",
        run: b3::run,
    },
    Scenario {
        id: "B4",
        run: b4::run,
    },
    Scenario {
        id: "B5",
        run: b5::run,
    },
    Scenario {
        id: "B6",
        run: b6::run,
    },
    Scenario {
        id: "B7",
        run: b7::run,
    },
    Scenario {
        id: "B8",
        run: b8::run,
    },
    Scenario {
        id: "B9",
        run: b9::run,
    },
    Scenario {
        id: "B10",
        run: b10::run,
    },
    Scenario {
        id: "B11",
        run: b11::run,
    },
    Scenario {
        id: "B12",
        run: b12::run,
    },
    Scenario {
        id: "B14",
        run: b14::run,
    },
];

/// B13, kept out of `all`: `cmwq-bench scale`.
pub static SCALE: Scenario = Scenario {
    id: "B13",
    run: b13::run,
};

/// The hidden `__child` subcommand: run one scenario's child part.
pub fn child_main(args: &[String]) -> Result<(), String> {
    let (name, rest) = args.split_first().ok_or("__child: which scenario?")?;
    match name.as_str() {
        "b3" => b3::child(rest),
        "b4" => b4::child(rest),
        "b5" => b5::child(rest),
        "b7" => b7::child(rest),
        "b8" => b8::child(rest),
        "b9" => b9::child(rest),
        "b10" => b10::child(rest),
        "b11" => b11::child(rest),
        "b12" => b12::child(rest),
        "b14" => b14::child(rest),
        other => Err(format!("__child: unknown scenario {other:?}")),
    }
}

/// Run each of `systems` in a child `reps` times, interleaved (A, B, C,
/// A, B, C, ...), with the child arguments `args(system)`; one row per
/// system with the median of each figure (systems whose every child failed
/// have none). The children's notes go to `t`.
pub fn child_medians(
    t: &mut Table,
    reps: usize,
    systems: &[&str],
    args: impl Fn(&str) -> Vec<String>,
    timeout: Duration,
) -> Vec<Row> {
    let mut samples: Vec<Vec<Row>> = systems.iter().map(|_| Vec::new()).collect();
    for _ in 0..reps.max(1) {
        for (i, sys) in systems.iter().enumerate() {
            let a = args(sys);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            if let Some(out) = child_rows(t, &a, &[], timeout) {
                samples[i].extend(out.rows);
                t.notes.extend(out.notes);
            }
        }
    }
    samples
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| median_row(s))
        .collect()
}

/// Measure each of `systems` `reps` times, interleaving the repetitions
/// (system A, B, C, A, B, C, ...) so that slow drifts of a noisy machine
/// hit every system alike, and return one row per system with the median
/// of each figure.
pub fn interleaved<S>(reps: usize, systems: &[S], mut measure: impl FnMut(&S) -> Row) -> Vec<Row> {
    let mut samples: Vec<Vec<Row>> = systems.iter().map(|_| Vec::new()).collect();
    for _ in 0..reps.max(1) {
        for (i, s) in systems.iter().enumerate() {
            samples[i].push(measure(s));
        }
    }
    samples.iter().map(|s| median_row(s)).collect()
}

/// Run a child and return its rows; on failure, a note in the table says
/// what went wrong and no rows are returned.
pub fn child_rows(
    t: &mut Table,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Option<child::ChildOut> {
    match child::run(args, env, timeout) {
        Ok(out) => Some(out),
        Err(e) => {
            eprintln!("cmwq-bench: {e}");
            t.note(format!("FAILED: {e}"));
            None
        }
    }
}

/// "1.23x" for a ratio.
pub fn ratio_str(x: f64) -> String {
    format!("{x:.2}x")
}
