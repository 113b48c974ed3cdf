//! Rendering of a recording made by `cmwq trace`: a Chrome Trace Event
//! Format JSON file (opens in Perfetto and `chrome://tracing`) and a static,
//! self-contained SVG timeline.
//!
//! Both are written by hand with `std` only; every name that comes from the
//! traced process (workqueues, items, threads) is escaped.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

/// One worker pool seen in the trace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolInfo {
    /// Pool id, as the library numbers its pools.
    pub id: u32,
    /// Human name, e.g. "cpu0", "cpu0 highpri", "unbound pod0".
    pub name: String,
    /// The CPU of a bound pool; `None` for unbound pools.
    pub cpu: Option<u32>,
}

/// One worker thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Thread id.
    pub tid: i32,
    /// Id of the pool the worker belongs to.
    pub pool: u32,
    /// Thread name, e.g. "kworker/0:1".
    pub name: String,
}

/// One execution of a work item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exec {
    /// Pool that ran it.
    pub pool: u32,
    /// Worker thread that ran it.
    pub tid: i32,
    /// CPU it started on.
    pub cpu: u32,
    /// When it was queued (`CLOCK_MONOTONIC` ns); 0 means unknown.
    pub queued_ns: u64,
    /// When it started (`CLOCK_MONOTONIC` ns).
    pub start_ns: u64,
    /// When it ended (`CLOCK_MONOTONIC` ns).
    pub end_ns: u64,
    /// Total time it was known to be blocked (detected or hinted).
    pub blocked_ns: u64,
    /// Blocked spans `(start_ns, end_ns)`, absolute, within
    /// `[start_ns, end_ns]`; may cover less than `blocked_ns`.
    pub spans: Vec<(u64, u64)>,
    /// Workqueue name.
    pub wq: String,
    /// Item name ("work" if unnamed).
    pub item: String,
}

/// A whole recording.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// Watched process id.
    pub pid: u32,
    /// Watched process name.
    pub process: String,
    /// Start of the recording window (`CLOCK_MONOTONIC` ns).
    pub t0_ns: u64,
    /// End of the recording window (`CLOCK_MONOTONIC` ns).
    pub t1_ns: u64,
    /// Pools seen.
    pub pools: Vec<PoolInfo>,
    /// Workers seen.
    pub workers: Vec<WorkerInfo>,
    /// Executions, in any order.
    pub events: Vec<Exec>,
    /// Events lost (buffers full, slow client).
    pub lost: u64,
}

// ---------------------------------------------------------------- shared

/// Pools in display order: those of `t.pools` in their order, then ids only
/// seen in workers or events, ascending. Each with its name, `None` when
/// unknown.
fn pool_order(t: &Trace) -> Vec<(u32, Option<&str>)> {
    let mut out: Vec<(u32, Option<&str>)> = Vec::new();
    let mut seen = BTreeSet::new();
    for p in &t.pools {
        if seen.insert(p.id) {
            out.push((p.id, Some(p.name.as_str()).filter(|n| !n.is_empty())));
        }
    }
    let extra: BTreeSet<u32> = (t.workers.iter().map(|w| w.pool))
        .chain(t.events.iter().map(|e| e.pool))
        .filter(|id| !seen.contains(id))
        .collect();
    out.extend(extra.into_iter().map(|id| (id, None)));
    out
}

/// Thread name of `tid`, or "tid N" when the trace does not name it.
fn worker_name(t: &Trace, tid: i32) -> String {
    let w = t
        .workers
        .iter()
        .find(|w| w.tid == tid && !w.name.is_empty());
    w.map_or_else(|| format!("tid {tid}"), |w| w.name.clone())
}

/// Human duration: "850 ns", "12.3 us", "4.50 ms", "2.000 s".
fn fmt_dur(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns} ns"),
        1_000..=999_999 => format!("{:.1} us", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.2} ms", ns as f64 / 1e6),
        _ => format!("{:.3} s", ns as f64 / 1e9),
    }
}

// ---------------------------------------------------------------- JSON

/// `s` as a JSON string literal: quotes, backslashes and control characters
/// (as `\u00XX`) escaped.
fn js(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `ns` nanoseconds as an exact decimal number of microseconds ("12.345").
fn us(ns: i128) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let a = ns.unsigned_abs();
    format!("{sign}{}.{:03}", a / 1000, a % 1000)
}

/// A metadata (`"ph":"M"`) event `kind` with one argument `key`, whose
/// value is already JSON.
fn meta(kind: &str, pid: u64, tid: i32, key: &str, value: &str) -> String {
    format!(r#"{{"ph":"M","name":"{kind}","pid":{pid},"tid":{tid},"args":{{"{key}":{value}}}}}"#)
}

/// The trace as a Chrome Trace Event Format JSON object: one "process" per
/// pool (pid = pool id + 1), one thread track per worker, an `X` event per
/// execution and a nested `X` event "blocked" per blocked span. Times are in
/// microseconds relative to `t0_ns`.
pub fn chrome_json(t: &Trace) -> String {
    let mut ev: Vec<String> = Vec::new();
    let rel = |ns: u64| us(ns as i128 - t.t0_ns as i128);

    for (i, (id, name)) in pool_order(t).into_iter().enumerate() {
        let label = match name {
            Some(n) => format!("pool {n}"),
            None => format!("pool {id}"),
        };
        let pid = id as u64 + 1;
        ev.push(meta("process_name", pid, 0, "name", &js(&label)));
        ev.push(meta(
            "process_sort_index",
            pid,
            0,
            "sort_index",
            &i.to_string(),
        ));
    }
    // One track per (pool, tid): a worker's own pool, plus any other pool it
    // ran items for (a rescuer serves the pools of its workqueue).
    let mut seen = BTreeSet::new();
    let pairs = (t.workers.iter().map(|w| (w.pool, w.tid)))
        .chain(t.events.iter().map(|e| (e.pool, e.tid)))
        .filter(|p| seen.insert(*p));
    for (i, (pool, tid)) in pairs.enumerate() {
        let pid = pool as u64 + 1;
        let name = js(&worker_name(t, tid));
        ev.push(meta("thread_name", pid, tid, "name", &name));
        ev.push(meta(
            "thread_sort_index",
            pid,
            tid,
            "sort_index",
            &i.to_string(),
        ));
    }

    // Executions, each followed by its blocked spans (clamped to the item).
    for e in &t.events {
        let (pid, tid) = (e.pool as u64 + 1, e.tid);
        let end = e.end_ns.max(e.start_ns);
        let queued = match e.queued_ns {
            0 => "null".to_string(),
            q => us(e.start_ns.saturating_sub(q) as i128),
        };
        let (wq, item) = (js(&e.wq), js(&e.item));
        ev.push(format!(
            r#"{{"ph":"X","pid":{pid},"tid":{tid},"ts":{},"dur":{},"name":{item},"cat":{wq},"args":{{"workqueue":{wq},"item":{item},"cpu":{},"queued_us":{queued},"blocked_us":{}}}}}"#,
            rel(e.start_ns),
            us((end - e.start_ns) as i128),
            e.cpu,
            us(e.blocked_ns as i128),
        ));
        for &(a, b) in &e.spans {
            let a = a.clamp(e.start_ns, end);
            let b = b.clamp(a, end);
            ev.push(format!(
                r#"{{"ph":"X","pid":{pid},"tid":{tid},"ts":{},"dur":{},"name":"blocked","cat":"blocked"}}"#,
                rel(a),
                us((b - a) as i128)
            ));
        }
    }

    format!(
        "{{\"traceEvents\":[\n{}\n],\"displayTimeUnit\":\"ms\",\"otherData\":{{\"pid\":{},\"process\":{},\"lost\":{},\"events\":{},\"t0_ns\":{},\"t1_ns\":{},\"window_us\":{}}}}}\n",
        ev.join(",\n"),
        t.pid,
        js(&t.process),
        t.lost,
        t.events.len(),
        t.t0_ns,
        t.t1_ns,
        us(t.t1_ns.saturating_sub(t.t0_ns) as i128)
    )
}

// ---------------------------------------------------------------- SVG

/// Width of the pool label column.
const POOL_W: f64 = 100.0;
/// Left edge of the plot (pool column + lane label column).
const X0: f64 = 250.0;
/// Width of the plot area.
const PLOT_W: f64 = 1200.0;
/// Total width.
const WIDTH: f64 = X0 + PLOT_W + 30.0;
/// Height of one worker lane; bars are `LANE_H - 4` high.
const LANE_H: f64 = 18.0;
/// Vertical gap between pool rows.
const POOL_GAP: f64 = 8.0;
/// Items narrower than this (px) are merged with their tiny neighbours.
const MERGE_PX: f64 = 0.5;
/// Workqueue colours, in order of first appearance (Tableau 10); cycles.
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];
/// Colour of a merged segment whose items come from several workqueues.
const MIXED: &str = "#666666";

/// `s` escaped for XML text and attribute values. Characters XML 1.0
/// forbids (most control characters) become U+FFFD.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// `s` cut to at most `max` characters, with an ellipsis when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The "nice" tick interval for an axis spanning `range` (any unit): the
/// smallest 1, 2 or 5 x 10^k that gives at most `target` intervals.
fn nice_step(range: u64, target: u64) -> u64 {
    let raw = range.div_ceil(target.max(1)).max(1);
    let mut pow = 1u64;
    loop {
        for m in [1, 2, 5] {
            let step = m * pow;
            if step >= raw {
                return step;
            }
        }
        match pow.checked_mul(10) {
            Some(p) if p.checked_mul(5).is_some() => pow = p,
            _ => return raw,
        }
    }
}

/// Tick label for `v` ns on an axis with interval `step` ns, in the largest
/// unit that divides the step, so labels are whole numbers ("15 ms").
fn tick_label(v: u64, step: u64) -> String {
    let (unit, name) = [
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ]
    .into_iter()
    .find(|(u, _)| step.is_multiple_of(*u))
    .unwrap_or((1, "ns"));
    format!("{} {name}", v / unit)
}

/// One worker's executions within one pool, sorted by start.
struct Lane<'a> {
    pool: u32,
    name: String,
    execs: Vec<&'a Exec>,
}

/// Lanes of workers that ran anything, keyed by (pool, tid), ordered by
/// pool display order, then the worker's position in `t.workers`, then tid.
fn lanes(t: &Trace) -> Vec<Lane<'_>> {
    let pool_rank: HashMap<u32, usize> = pool_order(t)
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (*id, i))
        .collect();
    let mut worker_rank: HashMap<i32, usize> = HashMap::new();
    for (i, w) in t.workers.iter().enumerate() {
        worker_rank.entry(w.tid).or_insert(i);
    }
    let mut by_key: HashMap<(u32, i32), Vec<&Exec>> = HashMap::new();
    for e in &t.events {
        by_key.entry((e.pool, e.tid)).or_default().push(e);
    }
    let mut keyed: Vec<_> = by_key.into_iter().collect();
    keyed.sort_by_key(|((pool, tid), _)| {
        (
            pool_rank[pool],
            worker_rank.get(tid).copied().unwrap_or(usize::MAX),
            *tid,
        )
    });
    keyed
        .into_iter()
        .map(|((pool, tid), mut execs)| {
            execs.sort_by_key(|e| (e.start_ns, e.end_ns));
            Lane {
                pool,
                name: worker_name(t, tid),
                execs,
            }
        })
        .collect()
}

/// What gets drawn on a lane: one item, or a run of tiny items merged.
#[derive(Debug)]
enum Seg<'a> {
    Item(&'a Exec),
    Merged {
        start: u64,
        end: u64,
        n: usize,
        busy: u64,
        /// The common workqueue, `None` when mixed.
        wq: Option<&'a str>,
    },
}

/// Splits a lane (sorted by start) into segments. An item at least
/// `MERGE_PX` wide is drawn alone; consecutive narrower items separated by
/// gaps narrower than `MERGE_PX` become one merged bar, so a busy lane costs
/// at most a few thousand rects whatever the event count. A run of one
/// stays a plain item (it keeps its own tooltip).
fn segments<'a>(execs: &[&'a Exec], px_per_ns: f64) -> Vec<Seg<'a>> {
    let mut out = Vec::new();
    // The run being merged: its items and the latest end among them.
    let mut run: Vec<&'a Exec> = Vec::new();
    let mut run_end = 0;
    let flush = |run: &mut Vec<&'a Exec>, run_end: u64, out: &mut Vec<Seg<'a>>| {
        match run.len() {
            0 => {}
            1 => out.push(Seg::Item(run[0])),
            n => out.push(Seg::Merged {
                start: run[0].start_ns,
                end: run_end,
                n,
                busy: run
                    .iter()
                    .map(|e| e.end_ns.saturating_sub(e.start_ns))
                    .sum(),
                wq: Some(run[0].wq.as_str()).filter(|w| run.iter().all(|e| e.wq == *w)),
            }),
        }
        run.clear();
    };
    for &e in execs {
        let width = e.end_ns.saturating_sub(e.start_ns) as f64 * px_per_ns;
        let gap = e.start_ns.saturating_sub(run_end) as f64 * px_per_ns;
        if width >= MERGE_PX || gap >= MERGE_PX {
            flush(&mut run, run_end, &mut out);
        }
        if width >= MERGE_PX {
            out.push(Seg::Item(e));
        } else {
            run_end = if run.is_empty() {
                e.end_ns
            } else {
                run_end.max(e.end_ns)
            };
            run.push(e);
        }
    }
    flush(&mut run, run_end, &mut out);
    out
}

/// The trace as a self-contained SVG timeline: a title, a legend of
/// workqueue colours, one row per pool with one lane per worker that ran
/// something, items as bars coloured by workqueue (with a `<title>`
/// tooltip), blocked spans hatched over them, and a time axis with a grid.
/// Runs of items too narrow to see are merged (see `segments`); a merged
/// bar's opacity shows how busy the worker was over it.
pub fn svg(t: &Trace) -> String {
    let lanes = lanes(t);

    // Time range: the recording window, widened to cover every event.
    let min_start = t.events.iter().map(|e| e.start_ns).min().unwrap_or(t.t0_ns);
    let max_end = t
        .events
        .iter()
        .map(|e| e.end_ns.max(e.start_ns))
        .max()
        .unwrap_or(t.t1_ns);
    let lo = if t.t0_ns == 0 {
        min_start
    } else {
        t.t0_ns.min(min_start)
    };
    let hi = t.t1_ns.max(max_end).max(lo + 1);
    let px_per_ns = PLOT_W / (hi - lo) as f64;
    let x = |ns: u64| X0 + ns.saturating_sub(lo) as f64 * px_per_ns;

    // Workqueue colours, in order of first appearance.
    let mut wqs: Vec<&str> = Vec::new();
    for e in &t.events {
        if !wqs.contains(&e.wq.as_str()) {
            wqs.push(&e.wq);
        }
    }
    let colour = |wq: &str| PALETTE[wqs.iter().position(|w| *w == wq).unwrap_or(0) % PALETTE.len()];

    // Legend, laid out (wrapping) first: its height sets where lanes start.
    // The "blocked" swatch is the hatch over a neutral bar, as drawn.
    let mut legend = String::new();
    let (mut lx, mut ly) = (6.0, 40.0);
    let entries = (wqs.iter().map(|w| (colour(w), *w))).chain([("url(#hatch)", "blocked")]);
    for (fill, name) in entries {
        let name = truncate(name, 40);
        let w = 30.0 + 6.5 * name.chars().count() as f64;
        if lx + w > WIDTH && lx > 6.0 {
            (lx, ly) = (6.0, ly + 16.0);
        }
        let sy = ly - 9.0;
        if fill.starts_with("url") {
            let _ = write!(
                legend,
                "<rect x='{lx:.1}' y='{sy:.1}' width='10' height='10' fill='{MIXED}'/>"
            );
        }
        let _ = writeln!(
            legend,
            "<rect x='{lx:.1}' y='{sy:.1}' width='10' height='10' fill='{fill}' stroke='#444444' stroke-width='0.5'/><text x='{:.1}' y='{ly:.1}'>{}</text>",
            lx + 14.0,
            xml(&name)
        );
        lx += w;
    }
    let top = ly + 14.0;

    // Lane positions, pools separated by a gap.
    let mut ys = Vec::with_capacity(lanes.len());
    let mut y = top;
    for (i, lane) in lanes.iter().enumerate() {
        if i > 0 && lanes[i - 1].pool != lane.pool {
            y += POOL_GAP;
        }
        ys.push(y);
        y += LANE_H;
    }
    let bottom = if lanes.is_empty() { top + 30.0 } else { y };
    let height = bottom + 40.0;

    let mut o = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height:.0}' viewBox='0 0 {WIDTH} {height:.0}' font-family='sans-serif' font-size='11'>\n"
    );
    o.push_str("<defs><pattern id='hatch' patternUnits='userSpaceOnUse' width='5' height='5' patternTransform='rotate(45)'><rect width='5' height='5' fill='#ffffff' fill-opacity='0.55'/><line x1='0' y1='0' x2='0' y2='5' stroke='#000000' stroke-opacity='0.55' stroke-width='1.5'/></pattern></defs>\n");
    o.push_str("<rect width='100%' height='100%' fill='#ffffff'/>\n");
    let _ = write!(
        o,
        "<text x='6' y='18' font-size='14' font-weight='bold'>cmwq trace: {} (pid {}), {} window, {} executions",
        xml(&t.process),
        t.pid,
        fmt_dur(t.t1_ns.saturating_sub(t.t0_ns)),
        t.events.len()
    );
    if t.lost > 0 {
        let _ = write!(o, "<tspan fill='#cc0000'>, {} events lost</tspan>", t.lost);
    }
    o.push_str("</text>\n");
    if lanes.is_empty() {
        let _ = writeln!(
            o,
            "<text x='{X0}' y='{:.1}' fill='#666666'>no executions recorded</text>",
            top + 16.0
        );
        o.push_str("</svg>\n");
        return o;
    }
    o.push_str(&legend);

    // Pool rows: an alternating shaded band and the pool's label.
    let pool_names: HashMap<u32, Option<&str>> = pool_order(t).into_iter().collect();
    let (mut i, mut band) = (0, 0);
    while i < lanes.len() {
        let pool = lanes[i].pool;
        let n = lanes[i..].iter().take_while(|l| l.pool == pool).count();
        let fill = ["#f3f3f3", "#e8eef5"][band % 2];
        let label = match pool_names.get(&pool).copied().flatten() {
            Some(name) => truncate(name, 14),
            None => format!("pool {pool}"),
        };
        let _ = writeln!(
            o,
            "<rect x='2' y='{:.1}' width='{:.1}' height='{:.1}' fill='{fill}'/><text x='6' y='{:.1}' font-weight='bold'>{}</text>",
            ys[i] - 1.0,
            WIDTH - 4.0,
            n as f64 * LANE_H + 2.0,
            ys[i] + 13.0,
            xml(&label)
        );
        (i, band) = (i + n, band + 1);
    }

    // Time axis: ticks at a nice interval, each with a faint grid line.
    let step = nice_step(hi - lo, 10);
    let axis = bottom + 4.0;
    let _ = writeln!(
        o,
        "<line x1='{X0}' y1='{axis:.1}' x2='{:.1}' y2='{axis:.1}' stroke='#000000'/>",
        X0 + PLOT_W
    );
    let mut v = 0u64;
    while v <= hi - lo {
        let tx = X0 + v as f64 * px_per_ns;
        let _ = writeln!(
            o,
            "<line x1='{tx:.2}' y1='{top:.1}' x2='{tx:.2}' y2='{axis:.1}' stroke='#000000' stroke-opacity='0.12'/><line x1='{tx:.2}' y1='{axis:.1}' x2='{tx:.2}' y2='{:.1}' stroke='#000000'/><text x='{tx:.2}' y='{:.1}' text-anchor='middle'>{}</text>",
            axis + 5.0,
            axis + 17.0,
            tick_label(v, step)
        );
        let Some(next) = v.checked_add(step) else {
            break;
        };
        v = next;
    }

    // Lanes: the worker's name, then its bars.
    for (lane, &ly) in lanes.iter().zip(&ys) {
        let name = xml(&truncate(&lane.name, 22));
        let _ = writeln!(
            o,
            "<text x='{:.1}' y='{:.1}'>{name}</text>",
            POOL_W + 4.0,
            ly + 13.0
        );
        let (by, bh) = (ly + 2.0, LANE_H - 4.0);
        for seg in segments(&lane.execs, px_per_ns) {
            match seg {
                Seg::Item(e) => {
                    let end = e.end_ns.max(e.start_ns);
                    let (x1, w) = (
                        x(e.start_ns),
                        ((end - e.start_ns) as f64 * px_per_ns).max(1.0),
                    );
                    let waited = match e.queued_ns {
                        0 => String::new(),
                        q => format!("\nwaited {}", fmt_dur(e.start_ns.saturating_sub(q))),
                    };
                    let tip = format!(
                        "{}: {}\nstart +{}\nduration {}\nblocked {}{waited}",
                        e.wq,
                        e.item,
                        fmt_dur(e.start_ns - lo),
                        fmt_dur(end - e.start_ns),
                        fmt_dur(e.blocked_ns)
                    );
                    let _ = writeln!(
                        o,
                        "<rect x='{x1:.2}' y='{by:.1}' width='{w:.2}' height='{bh:.1}' fill='{}'><title>{}</title></rect>",
                        colour(&e.wq),
                        xml(&tip)
                    );
                    for &(a, b) in &e.spans {
                        let a = a.clamp(e.start_ns, end);
                        let b = b.clamp(a, end);
                        if b == a {
                            continue;
                        }
                        // At least 1 px, but never past the item's bar.
                        let sw = ((b - a) as f64 * px_per_ns).max(1.0).min(x1 + w - x(a));
                        let _ = writeln!(
                            o,
                            "<rect x='{:.2}' y='{by:.1}' width='{sw:.2}' height='{bh:.1}' fill='url(#hatch)' pointer-events='none'/>",
                            x(a)
                        );
                    }
                }
                Seg::Merged {
                    start,
                    end,
                    n,
                    busy,
                    wq,
                } => {
                    let span = (end - start).max(1);
                    let w = (span as f64 * px_per_ns).max(1.0);
                    let density = 0.35 + 0.65 * (busy as f64 / span as f64).min(1.0);
                    let tip = format!(
                        "{n} short items merged ({}): busy {} of {}\nstart +{}",
                        wq.unwrap_or("several workqueues"),
                        fmt_dur(busy),
                        fmt_dur(end - start),
                        fmt_dur(start - lo)
                    );
                    let _ = writeln!(
                        o,
                        "<rect x='{:.2}' y='{by:.1}' width='{w:.2}' height='{bh:.1}' fill='{}' fill-opacity='{density:.2}'><title>{}</title></rect>",
                        x(start),
                        wq.map_or(MIXED, colour),
                        xml(&tip)
                    );
                }
            }
        }
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests;
