//! B4, CPU bound: items of 1 ms CPU each. Makespan, and the most items
//! running at once (counted inside the items). cmwq spreads them over the
//! CPUs with `queue_on` on `system_wq` (a bound pool per CPU), and also
//! runs them on `system_unbound_wq`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cmwq::Work;

use super::{interleaved, ratio_str, Ctx};
use crate::child::{self, emit_row};
use crate::peers::{Kind, Peer};
use crate::report::{Row, Table};
use crate::util::{self, Concurrency, Latch};

const TARGET: &str =
    "makespan <= 1.05x rayon; never more running workers than CPUs (+1 while handing over)";

const ITEM_CPU: Duration = Duration::from_millis(1);

#[derive(Clone, Copy)]
enum Sys {
    Cmwq {
        unbound: bool,
    },
    /// cmwq system_wq in a child process with automatic block detection
    /// off (`CMWQ_DETECT=hint`): what watching the workers costs.
    CmwqNoWatch,
    Peer(Kind),
}

pub fn run(ctx: &Ctx) -> Table {
    let n = ctx.pick(300, 2000);
    let mut t = Table::new(
        "B4",
        &format!("CPU bound: {n} items of 1 ms CPU on {} CPUs", ctx.ncpu),
        TARGET,
    );
    t.ratio_of = Some("makespan_ms".into());
    let systems = [
        Sys::Cmwq { unbound: false },
        Sys::CmwqNoWatch,
        Sys::Cmwq { unbound: true },
        Sys::Peer(Kind::Rayon),
        Sys::Peer(Kind::PoolCpus),
        Sys::Peer(Kind::Tokio),
    ];
    t.rows = interleaved(ctx.reps, &systems, |s| measure(*s, n, ctx.ncpu));
    let ideal = n as f64 * ITEM_CPU.as_secs_f64() * 1e3 / ctx.ncpu as f64;
    t.rows.push(
        Row::new("floor: ideal")
            .num("makespan_ms", ideal)
            .num("max_running", ctx.ncpu as f64),
    );

    let rayon = t.row("rayon", None).and_then(|r| r.get("makespan_ms"));
    if let (Some(c), Some(r)) = (
        t.row("cmwq system_wq", None)
            .and_then(|r| r.get("makespan_ms")),
        rayon,
    ) {
        t.check(
            "cmwq system_wq makespan <= 1.05x rayon",
            ratio_str(c / r),
            c <= 1.05 * r,
        );
    }
    let limit = (ctx.ncpu + 1) as f64;
    for name in ["cmwq system_wq", "cmwq system_wq (CMWQ_DETECT=hint)"] {
        if let Some(m) = t.row(name, None).and_then(|r| r.get("max_running")) {
            t.check(
                format!("{name}: most items running at once <= nr_cpus + 1 = {limit}"),
                format!("{m}"),
                m <= limit,
            );
        }
    }
    if let Some(m) = t
        .row("cmwq system_unbound_wq", None)
        .and_then(|r| r.get("max_running"))
    {
        t.note(format!("cmwq system_unbound_wq ran up to {m} items at once: unbound workqueues have no concurrency management (G19, as in the kernel), so the limit is checked on the bound pools only"));
    }
    t.note("cmwq system_wq: items spread over the CPUs' pools with queue_on(i % nr_cpus); completion of all systems through one latch counted down by the last line of each item");
    t.note(format!("cmwq rows run in this process (detection mode {}), except 'CMWQ_DETECT=hint', a child process with automatic detection off", cmwq::detection().name()));
    t.note("max_running: the most items inside their function at the same moment (a preempted item still counts)");
    t.note(format!("omitted: thread per item and the big fixed pool ({n} threads burning CPU at once; tokio's row shows what 512 threads do)"));
    t
}

fn measure(sys: Sys, n: usize, ncpu: usize) -> Row {
    if let Sys::CmwqNoWatch = sys {
        let name = "cmwq system_wq (CMWQ_DETECT=hint)";
        let out = child::run(
            &["b4", &n.to_string()],
            &[("CMWQ_DETECT", "hint")],
            Duration::from_secs(120),
        );
        return match out.map(|o| o.rows.into_iter().next()) {
            Ok(Some(mut r)) => {
                r.system = name.into();
                r
            }
            Ok(None) => Row::new(name).text("error", "no row"),
            Err(e) => Row::new(name).text("error", e),
        };
    }
    let latch = Arc::new(Latch::new(n));
    let conc = Arc::new(Concurrency::default());
    let body = {
        let (latch, conc) = (latch.clone(), conc.clone());
        move || {
            conc.enter();
            util::burn_cpu(ITEM_CPU);
            conc.leave();
            latch.count_down();
        }
    };
    let (name, elapsed) = match sys {
        Sys::Cmwq { unbound } => {
            let (wq, name) = if unbound {
                (cmwq::system_unbound_wq(), "cmwq system_unbound_wq")
            } else {
                (cmwq::system_wq(), "cmwq system_wq")
            };
            let works: Vec<Work> = (0..n)
                .map(|_| {
                    let b = body.clone();
                    Work::new(move |_| b())
                })
                .collect();
            let t0 = Instant::now();
            for (i, w) in works.iter().enumerate() {
                if unbound {
                    wq.queue(w);
                } else {
                    wq.queue_on(i % ncpu, w);
                }
            }
            latch.wait();
            (name.to_owned(), t0.elapsed())
        }
        Sys::CmwqNoWatch => unreachable!("measured in a child"),
        Sys::Peer(kind) => {
            let peer = Peer::new(kind, n);
            let t0 = Instant::now();
            for _ in 0..n {
                peer.spawn(body.clone());
            }
            latch.wait();
            let e = t0.elapsed();
            let name = peer.name();
            peer.shutdown();
            (name, e)
        }
    };
    Row::new(name)
        .num("makespan_ms", elapsed.as_secs_f64() * 1e3)
        .num("max_running", conc.peak() as f64)
}

/// Child: `b4 N`, cmwq system_wq only, in this process's detection mode.
pub fn child(args: &[String]) -> Result<(), String> {
    let n: usize = args
        .first()
        .and_then(|s| s.parse().ok())
        .ok_or("b4: how many items?")?;
    emit_row(&measure(Sys::Cmwq { unbound: false }, n, util::ncpu()));
    Ok(())
}
