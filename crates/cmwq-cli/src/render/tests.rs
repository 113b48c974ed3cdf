//! Unit tests of `render` (in a file of their own, beside the code).

use super::*;

const MS: u64 = 1_000_000;
const T0: u64 = 1_000 * MS;

/// An execution on `pool`/`tid` over `[start, end)` ns after `T0`.
fn ex(pool: u32, tid: i32, start: u64, end: u64, wq: &str) -> Exec {
    let (start_ns, end_ns) = (T0 + start, T0 + end);
    Exec {
        pool,
        tid,
        start_ns,
        end_ns,
        wq: wq.into(),
        item: "work".into(),
        ..Default::default()
    }
}

/// The workqueue.rst scenario: three items each burning 5 ms then
/// sleeping 10 ms on cpu0's pool, with concurrency management (each
/// starts on a new worker when the previous one blocks).
fn scenario() -> Trace {
    let item = |i: u64| Exec {
        queued_ns: T0,
        blocked_ns: 10 * MS,
        spans: vec![(T0 + (5 * i + 5) * MS, T0 + (5 * i + 15) * MS)],
        item: format!("w{i}"),
        ..ex(0, 100 + i as i32, 5 * i * MS, (5 * i + 15) * MS, "events")
    };
    let pool = |id, name: &str| PoolInfo {
        id,
        name: name.into(),
        cpu: Some(0),
    };
    let worker = |i| WorkerInfo {
        tid: 100 + i,
        pool: 0,
        name: format!("kworker/0:{i}"),
    };
    Trace {
        pid: 42,
        process: "demo".into(),
        t0_ns: T0,
        t1_ns: T0 + 30 * MS,
        pools: vec![pool(0, "cpu0"), pool(1, "cpu0 highpri")],
        workers: (0..4).map(worker).collect(),
        events: (0..3).map(item).collect(),
        lost: 0,
    }
}

#[test]
fn json_parses_with_expected_events() {
    let mut t = scenario();
    let nasty = "a\"b\\c\n\u{1}<&>é";
    t.events[1].item = nasty.into();
    t.events.push(ex(7, 999, 0, 1500, "x"));
    let s = chrome_json(&t);
    assert!(s.contains(r"\u0001") && s.contains(r"\u000a") && !s.contains(r"\n"));
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    let evs = v["traceEvents"].as_array().unwrap();
    let of = |ph: &str, name: &str| {
        evs.iter()
            .filter(|e| e["ph"] == ph && (name.is_empty() || e["name"] == name))
            .count()
    };
    // Pools 0, 1 and the unknown 7; tracks: 4 workers + tid 999 in pool 7.
    assert_eq!(of("M", "process_name"), 3);
    assert_eq!(of("M", "process_sort_index"), 3);
    assert_eq!(of("M", "thread_name"), 5);
    assert_eq!(of("M", "thread_sort_index"), 5);
    assert_eq!(of("X", ""), 4 + 3);
    assert_eq!(of("X", "blocked"), 3);
    let has = |name: &str, key: &str, id: i64, label: &str| {
        let ok = |e: &&serde_json::Value| e[key] == id && e["args"]["name"] == label;
        evs.iter().filter(|e| e["name"] == name).any(|e| ok(&e))
    };
    assert!(has("process_name", "pid", 1, "pool cpu0"));
    assert!(has("process_name", "pid", 2, "pool cpu0 highpri"));
    assert!(has("process_name", "pid", 8, "pool 7"));
    assert!(has("thread_name", "tid", 101, "kworker/0:1"));
    assert!(has("thread_name", "tid", 999, "tid 999"));
    let num = |e: &serde_json::Value, k: &str| e[k].as_f64().unwrap();
    let find = |f: &dyn Fn(&serde_json::Value) -> bool| evs.iter().find(|e| f(e)).unwrap();
    let w1 = find(&|e| e["ph"] == "X" && e["name"] == nasty);
    assert_eq!((num(w1, "ts"), num(w1, "dur")), (5000.0, 15000.0));
    assert_eq!((num(w1, "pid"), num(w1, "tid")), (1.0, 101.0));
    assert_eq!(w1["cat"], "events");
    assert_eq!(w1["args"]["workqueue"], "events");
    assert_eq!(w1["args"]["item"], nasty);
    assert_eq!(num(&w1["args"], "queued_us"), 5000.0);
    assert_eq!(num(&w1["args"], "blocked_us"), 10000.0);
    assert_eq!(w1["args"]["cpu"], 0);
    let b = find(&|e| e["name"] == "blocked" && e["tid"] == 101);
    assert_eq!((num(b, "ts"), num(b, "dur")), (10000.0, 10000.0));
    assert_eq!(b["cat"], "blocked");
    let short = find(&|e| e["ph"] == "X" && e["tid"] == 999);
    assert_eq!(num(short, "dur"), 1.5);
    assert!(short["args"]["queued_us"].is_null());
    let other = &v["otherData"];
    assert_eq!((num(other, "events"), num(other, "pid")), (4.0, 42.0));
    assert_eq!(
        (num(other, "lost"), num(other, "window_us")),
        (0.0, 30000.0)
    );
    assert_eq!(v["displayTimeUnit"], "ms");
}

#[test]
fn json_of_empty_trace_parses() {
    let v: serde_json::Value = serde_json::from_str(&chrome_json(&Trace::default())).unwrap();
    assert_eq!(v["traceEvents"].as_array().unwrap().len(), 0);
    assert_eq!(
        (us(-1500), us(7), us(2_000_000)),
        ("-1.500".into(), "0.007".into(), "2000.000".into())
    );
}

/// Checks that tags nest and close and that text and attributes hold no
/// raw `<` or stray `&`; returns how many elements each tag name has.
fn check_xml(s: &str) -> HashMap<String, usize> {
    let (mut stack, mut count) = (Vec::new(), HashMap::new());
    let mut rest = s;
    while let Some(lt) = rest.find('<') {
        for (i, _) in rest[..lt].match_indices('&') {
            let ent = &rest[i..];
            let ok = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                .iter()
                .any(|e| ent.starts_with(e));
            assert!(ok, "bad entity at {:?}", &ent[..ent.len().min(20)]);
        }
        let gt = lt + rest[lt..].find('>').expect("unclosed tag");
        let tag = &rest[lt + 1..gt];
        assert!(
            !tag.contains('<') && tag.matches('\'').count().is_multiple_of(2),
            "bad tag {tag:?}"
        );
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name));
        } else {
            let name = tag.split([' ', '/']).next().unwrap().to_string();
            *count.entry(name.clone()).or_insert(0) += 1;
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        rest = &rest[gt + 1..];
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    count
}

#[test]
fn svg_structure_lanes_and_escaping() {
    let mut t = scenario();
    t.process = "<evil & \"co\" 'x'>".into();
    t.events[2].wq = "wq<&>'".into();
    t.lost = 3;
    let s = svg(&t);
    assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
    let count = check_xml(&s);
    // Three item bars with tooltips, three hatched spans.
    assert_eq!(count["title"], 3);
    assert_eq!(s.matches("fill='url(#hatch)' pointer").count(), 3);
    assert!(s.contains("&lt;evil &amp; &quot;co&quot; &apos;x&apos;&gt;"));
    assert!(s.contains("wq&lt;&amp;&gt;&apos;") && !s.contains("wq<&>"));
    assert!(s.contains("3 events lost</tspan>"));
    // One lane per worker with events: 3 of the 4 workers, all in cpu0.
    let labelled = |name: &str| s.contains(&format!(">{name}</text>"));
    assert_eq!(
        (0..4)
            .filter(|i| labelled(&format!("kworker/0:{i}")))
            .count(),
        3
    );
    assert_eq!(lanes(&t).len(), 3);
    assert!(labelled("cpu0") && !labelled("cpu0 highpri"));
    // Two workqueues, two colours; 30 ms axis with 5 ms ticks.
    assert!(s.contains(PALETTE[0]) && s.contains(PALETTE[1]) && !s.contains(PALETTE[2]));
    assert!(labelled("0 ms") && labelled("5 ms") && labelled("30 ms") && !labelled("35 ms"));
}

#[test]
fn svg_of_empty_trace() {
    let s = svg(&Trace {
        process: "idle".into(),
        t1_ns: 5 * MS,
        ..Default::default()
    });
    assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
    assert!(s.contains("no executions recorded") && s.contains("idle"));
    check_xml(&s);
}

#[test]
fn nice_steps_and_labels() {
    assert_eq!(nice_step(30 * MS, 10), 5 * MS);
    assert_eq!(nice_step(15 * MS, 10), 2 * MS);
    assert_eq!(nice_step(10 * MS, 10), MS);
    assert_eq!(nice_step(1_000 * MS, 10), 100 * MS);
    assert_eq!(nice_step(7_000, 10), 1_000);
    assert_eq!(nice_step(0, 10), 1);
    assert_eq!(nice_step(u64::MAX, 10), 2_000_000_000_000_000_000);
    assert_eq!(tick_label(15 * MS, 5 * MS), "15 ms");
    assert_eq!(tick_label(1_500_000, 500_000), "1500 us");
    assert_eq!(tick_label(4_000 * MS, 2_000 * MS), "4 s");
    assert_eq!(tick_label(20, 5), "20 ns");
}

#[test]
fn tiny_items_are_merged() {
    let mut t = Trace {
        t0_ns: T0,
        t1_ns: T0 + 1_000 * MS,
        ..Default::default()
    };
    // 20000 back-to-back 1 us items (0.0012 px each), then a gap, a big
    // item, and one isolated tiny item of another workqueue.
    t.events = (0..20_000u64)
        .map(|i| ex(0, 1, i * 2_000, i * 2_000 + 1_000, "fast"))
        .collect();
    t.events.push(ex(0, 1, 500 * MS, 600 * MS, "slow"));
    t.events.push(ex(0, 1, 800 * MS, 800 * MS + 10, "odd"));
    let lanes = lanes(&t);
    assert_eq!(lanes.len(), 1);
    let segs = segments(&lanes[0].execs, PLOT_W / (1_000 * MS) as f64);
    assert_eq!(segs.len(), 3, "{segs:?}");
    assert!(matches!(
        segs[0],
        Seg::Merged {
            n: 20_000,
            busy: 20_000_000,
            wq: Some("fast"),
            ..
        }
    ));
    assert!(matches!(segs[1], Seg::Item(e) if e.wq == "slow"));
    assert!(matches!(segs[2], Seg::Item(e) if e.wq == "odd"));
    let s = svg(&t);
    assert_eq!(check_xml(&s)["title"], 3);
    assert!(s.len() < 20_000, "{} bytes", s.len());
    // Half busy: the merged bar is drawn at reduced opacity.
    assert!(s.contains("fill-opacity='0.68'"));
    // The isolated tiny item is still at least 1 px wide.
    assert!(s.contains("width='1.00'"));
    // Mixed workqueues in one run are drawn in the neutral colour.
    let mixed: Vec<Exec> = (0..4)
        .map(|i| ex(0, 1, i * 10, i * 10 + 5, ["a", "b"][i as usize % 2]))
        .collect();
    let refs: Vec<&Exec> = mixed.iter().collect();
    assert!(matches!(
        segments(&refs, 1e-6)[..],
        [Seg::Merged { n: 4, wq: None, .. }]
    ));
}
