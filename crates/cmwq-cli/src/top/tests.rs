//! Unit tests of `top` (in a file of their own, beside the code).

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;

use super::model::*;
use super::proc::*;
use super::target::*;
use super::text::*;
use super::tui::*;
use super::*;

const STAT: &str = "4242 (kworker/0:1) S 1 4000 4000 0 -1 4194368 10 0 0 0 \
                    150 50 0 0 20 0 12 0 987654 0 0 18446744073709551615 \
                    0 0 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0";

#[test]
fn stat_fields_are_found_after_the_last_paren() {
    let s = parse_stat(STAT).unwrap();
    assert_eq!(s.comm, "kworker/0:1");
    assert_eq!(s.state, 'S');
    assert_eq!(s.ticks, 200);
    assert_eq!(s.start, 987654);
    assert_eq!(s.cpu, Some(3));

    // A name with spaces and parentheses.
    let odd = STAT.replace("(kworker/0:1)", "(a) b) R (c)");
    let s = parse_stat(&odd).unwrap();
    assert_eq!(s.comm, "a) b) R (c");
    assert_eq!(s.state, 'S');
    assert_eq!(s.ticks, 200);
    assert_eq!(s.cpu, Some(3));

    assert_eq!(parse_stat(""), None);
    assert_eq!(parse_stat("12 (x) S 1 2"), None);
    assert_eq!(parse_stat("12 )x( S"), None);
}

#[test]
fn stat_without_the_processor_field_still_parses() {
    let short: Vec<&str> = STAT.split(' ').filter(|s| !s.is_empty()).take(30).collect();
    let s = parse_stat(&short.join(" ")).unwrap();
    assert_eq!(s.cpu, None);
    assert_eq!(s.ticks, 200);
}

#[test]
fn names_map_to_pools() {
    let cpu = |cpu, highpri| Group::Pool(PoolKey::Cpu { cpu, highpri });
    assert_eq!(classify_name("kworker/0:1"), Some((cpu(0, false), Some(1))));
    assert_eq!(
        classify_name("kworker/3:12H"),
        Some((cpu(3, true), Some(12)))
    );
    assert_eq!(
        classify_name("kworker/u7:4"),
        Some((Group::Pool(PoolKey::Unbound(7)), Some(4)))
    );
    assert_eq!(
        classify_name("kworker/R-demo_"),
        Some((Group::Rescuers, None))
    );
    for lib in [
        "cmwq-monitor",
        "cmwq-timer",
        "cmwq-sent/1",
        "cmwq-control",
        "cmwq-x",
    ] {
        assert_eq!(classify_name(lib), Some((Group::Library, None)), "{lib}");
    }
    assert_eq!(classify_name("kworker/odd"), Some((Group::Library, None)));
    assert_eq!(classify_name("kworker/1:x"), Some((Group::Library, None)));
    for other in ["main", "cmwq", "tokio-runtime-w", "kworke/0:1", ""] {
        assert_eq!(classify_name(other), None, "{other}");
    }
}

#[test]
fn groups_sort_and_label_for_display() {
    let mut g = [
        Group::Library,
        Group::Pool(PoolKey::Unbound(2)),
        Group::Rescuers,
        Group::NotWorkers,
        Group::Pool(PoolKey::Cpu {
            cpu: 1,
            highpri: false,
        }),
        Group::Pool(PoolKey::Cpu {
            cpu: 0,
            highpri: true,
        }),
        Group::Pool(PoolKey::Cpu {
            cpu: 0,
            highpri: false,
        }),
        Group::Pool(PoolKey::Cpu {
            cpu: 10,
            highpri: false,
        }),
    ];
    g.sort();
    let labels: Vec<String> = g.iter().map(|g| g.label()).collect();
    assert_eq!(
        labels,
        [
            "cpu0",
            "cpu0 H",
            "cpu1",
            "cpu10",
            "unbound u2",
            "rescuers",
            "library",
            "started by items"
        ]
    );
}

/// A syscall line for a thread parked with `op` and bitset `val3`.
fn futex_line(op: u64, val3: u64) -> String {
    format!(
        "{} 0x7f00000010 {op:#x} 0x0 0x7ffc00000000 0x0 {val3:#x} 0x7ffc0000 0x7f0000",
        FUTEX_NR.unwrap_or(202)
    )
}

#[test]
fn syscall_file_parses() {
    assert_eq!(parse_syscall("running\n"), Some(Syscall::Running));
    assert_eq!(
        parse_syscall("-1 0x7ffc0000 0x7f0000\n"),
        Some(Syscall::Outside)
    );
    assert_eq!(
        parse_syscall("0 0x3 0x7ffd1000 0x1000 0x0 0x0 0x0 0x7ffd0ff8 0x7f12345\n"),
        Some(Syscall::In {
            nr: 0,
            args: [3, 0x7ffd1000, 0x1000, 0, 0, 0]
        })
    );
    assert_eq!(parse_syscall(""), None);
    assert_eq!(parse_syscall("7 0x1"), None);
    assert_eq!(parse_syscall("x 0x1 0x1 0x1 0x1 0x1 0x1"), None);
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn parked_workers_are_idle_and_other_waits_blocked() {
    let known = |s: &str| SyscallInfo::Known(parse_syscall(s).unwrap());
    let futex = FUTEX_NR.unwrap();
    // FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG with "cmwq": idle.
    assert_eq!(
        classify('S', &known(&futex_line(0x89, 0x636d7771))),
        State::Idle
    );
    // Not private, or with FUTEX_CLOCK_REALTIME: still the park.
    assert_eq!(
        classify('S', &known(&futex_line(0x9, 0x636d7771))),
        State::Idle
    );
    assert_eq!(
        classify('S', &known(&futex_line(0x189, 0x636d7771))),
        State::Idle
    );
    // Another bitset (the item's own futex), or a plain FUTEX_WAIT.
    assert_eq!(
        classify('S', &known(&futex_line(0x89, 0xffff_ffff))),
        State::Blocked(Some(futex))
    );
    assert_eq!(
        classify('S', &known(&futex_line(0x80, 0x636d7771))),
        State::Blocked(Some(futex))
    );
    // A read.
    let read = SYSCALL_NAMES.iter().find(|(_, n)| *n == "read").unwrap().0;
    let line = format!("{read} 0x3 0x7ffd1000 0x1000 0x0 0x0 0x0 0x7ffd0ff8 0x7f12345");
    let st = classify('S', &known(&line));
    assert_eq!(st, State::Blocked(Some(read)));
    assert_eq!(st.label(true), "blocked (read)");
    assert_eq!(st.label(false), "sleeping (read)");
    assert_eq!(st.count(true), Count::Blocked);
    assert_eq!(st.count(false), Count::Sleeping);
    assert_eq!(State::Blocked(Some(futex)).label(true), "blocked (futex)");
    assert_eq!(State::Blocked(Some(9999)).label(true), "blocked (sys 9999)");
    // Outside a system call; just woken.
    assert_eq!(classify('S', &known("-1 0x1 0x2")), State::Blocked(None));
    assert_eq!(classify('S', &known("running")), State::Running);
}

#[test]
fn stat_state_decides_first() {
    let idle = SyscallInfo::Known(parse_syscall(&futex_line(0x89, 0x636d7771)).unwrap());
    assert_eq!(classify('R', &idle), State::Running);
    assert_eq!(classify('R', &SyscallInfo::Denied), State::Running);
    assert_eq!(classify('D', &SyscallInfo::Denied), State::BlockedD);
    assert_eq!(State::BlockedD.label(true), "blocked (D)");
    assert_eq!(State::BlockedD.count(false), Count::Blocked);
    assert_eq!(classify('S', &SyscallInfo::Denied), State::Sleeping);
    assert_eq!(classify('S', &SyscallInfo::Unavailable), State::Sleeping);
    assert_eq!(State::Sleeping.count(true), Count::Sleeping);
    assert_eq!(classify('T', &idle).label(true), "stopped");
    assert_eq!(classify('Z', &idle).label(true), "zombie");
    assert_eq!(classify('P', &idle).label(true), "state P");
}

#[test]
fn cpu_percent_is_of_one_cpu() {
    assert_eq!(cpu_percent(100, 100, Duration::from_secs(1)), Some(100.0));
    assert_eq!(
        cpu_percent(50, 100, Duration::from_millis(500)),
        Some(100.0)
    );
    assert_eq!(cpu_percent(300, 100, Duration::from_secs(2)), Some(150.0));
    assert_eq!(cpu_percent(0, 100, Duration::from_secs(1)), Some(0.0));
    assert_eq!(cpu_percent(10, 100, Duration::ZERO), None);
    assert_eq!(cpu_percent(10, 0, Duration::from_secs(1)), None);
}

/// A thread of a sample.
fn task(tid: u32, comm: &str, state: char, ticks: u64, syscall: SyscallInfo) -> TaskSample {
    TaskSample {
        tid,
        stat: Stat {
            comm: comm.into(),
            state,
            ticks,
            start: u64::from(tid) * 10,
            cpu: Some(tid % 2),
        },
        syscall,
    }
}

fn process(ticks: u64) -> Stat {
    Stat {
        comm: "demo".into(),
        state: 'S',
        ticks,
        start: 1,
        cpu: Some(0),
    }
}

/// Two samples 500 ms apart of a process with two CPU pools, an
/// unbound pool, a rescuer and library threads.
fn samples() -> (Sample, Sample) {
    let idle = || SyscallInfo::Known(parse_syscall(&futex_line(0x89, 0x636d7771)).unwrap());
    let in_read = || {
        SyscallInfo::Known(Syscall::In {
            nr: 0,
            args: [3, 0, 0, 0, 0, 0],
        })
    };
    let t0 = Instant::now();
    let first = Sample {
        at: t0,
        process: process(1000),
        tasks: vec![
            task(11, "kworker/0:0", 'R', 100, SyscallInfo::Unavailable),
            task(12, "kworker/0:1", 'S', 10, idle()),
            task(13, "kworker/0:0H", 'S', 0, idle()),
            task(14, "kworker/1:0", 'R', 200, SyscallInfo::Unavailable),
            task(16, "kworker/u2:0", 'S', 5, idle()),
            task(17, "kworker/R-demo_", 'S', 0, idle()),
            task(18, "cmwq-monitor", 'S', 7, in_read()),
            task(19, "cmwq-timer", 'S', 1, idle()),
        ],
        exact: None,
        cpu_limit: Default::default(),
    };
    let second = Sample {
        at: t0 + Duration::from_millis(500),
        process: process(1100),
        tasks: vec![
            task(11, "kworker/0:0", 'R', 150, SyscallInfo::Unavailable),
            task(12, "kworker/0:1", 'S', 10, in_read()),
            task(13, "kworker/0:0H", 'S', 0, idle()),
            task(14, "kworker/1:0", 'R', 240, SyscallInfo::Unavailable),
            // New in the interval: all its time counts.
            task(15, "kworker/1:1", 'D', 5, SyscallInfo::Unavailable),
            task(16, "kworker/u2:0", 'S', 5, idle()),
            task(17, "kworker/R-demo_", 'S', 0, idle()),
            task(18, "cmwq-monitor", 'S', 8, in_read()),
            task(19, "cmwq-timer", 'S', 1, idle()),
        ],
        exact: None,
        cpu_limit: Default::default(),
    };
    (first, second)
}

#[test]
fn the_control_socket_gives_exact_states_and_items() {
    let body = "pool\t0\tcpu 0\t0\t1\t2\t1\t1\t0\n\
                worker\t0\t12\tkworker/0:1\tblocked\t5000\tmy\\twq\tread_it\n\
                worker\t0\t11\tkworker/0:0\tidle\t0\t-\t-\n\
                worker\tjunk\n";
    let m = parse_workers(body);
    assert_eq!(m.len(), 2);
    assert_eq!(m[&12].item.as_deref(), Some("my\twq:read_it"));
    assert_eq!(m[&11].item, None);
    let (a, mut b) = samples();
    // Without ptrace access: /proc says only "sleeping".
    for t in &mut b.tasks {
        if t.tid == 12 || t.tid == 16 {
            t.syscall = SyscallInfo::Denied;
        }
    }
    b.exact = Some(
        [
            (12, m[&12].clone()),
            // /proc says running: it stays running, with its item.
            (
                11,
                Exact {
                    state: "idle".into(),
                    item: Some("w:x".into()),
                },
            ),
            (
                16,
                Exact {
                    state: "idle".into(),
                    item: None,
                },
            ),
        ]
        .into_iter()
        .collect(),
    );
    let s = build(7, Some(&a), &b, 100);
    let row = |tid| s.threads.iter().find(|t| t.tid == tid).unwrap();
    assert_eq!(row(12).state, State::Blocked(None));
    assert_eq!(row(12).item.as_deref(), Some("my\twq:read_it"));
    assert_eq!(row(16).state, State::Idle);
    assert_eq!(row(16).item.as_deref(), Some("-"));
    assert_eq!(row(11).state, State::Running);
    assert_eq!(row(11).item.as_deref(), Some("w:x"));
    // A thread named like a worker that the socket did not list: one
    // an item started, which inherited its worker's name.
    assert_eq!(row(14).item.as_deref(), Some("-"));
    assert_eq!(row(14).group, Group::NotWorkers);
    assert!(s.groups.iter().any(|g| g.group == Group::NotWorkers));
    // Rescuers and the library's threads are never in that list.
    assert_eq!(row(17).group, Group::Rescuers);
    assert_eq!(row(18).group, Group::Library);
    assert!(s.note.unwrap().contains("control socket"));
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn snapshot_groups_counts_and_cpu() {
    let (a, b) = samples();
    let s = build(7, Some(&a), &b, 100);
    assert_eq!(s.name, "demo");
    assert_eq!(s.cmwq_threads(), 9);
    assert_eq!(s.interval, Duration::from_millis(500));
    assert_eq!(s.total_cpu, Some(200.0));
    assert_eq!(s.note, None);
    let labels: Vec<String> = s.groups.iter().map(|g| g.group.label()).collect();
    assert_eq!(
        labels,
        [
            "cpu0",
            "cpu0 H",
            "cpu1",
            "unbound u2",
            "rescuers",
            "library"
        ]
    );
    let cpu0 = &s.groups[0];
    assert_eq!(
        (cpu0.threads, cpu0.running, cpu0.blocked, cpu0.idle),
        (2, 1, 1, 0)
    );
    assert_eq!(cpu0.cpu_pct, Some(100.0));
    let cpu1 = &s.groups[2];
    assert_eq!(
        (cpu1.threads, cpu1.running, cpu1.blocked, cpu1.idle),
        (2, 1, 1, 0)
    );
    assert_eq!(cpu1.cpu_pct, Some(90.0));
    assert_eq!(s.groups[1].idle, 1);
    let lib = &s.groups[5];
    assert_eq!((lib.threads, lib.idle, lib.sleeping), (2, 1, 1));
    assert_eq!(lib.cpu_pct, Some(2.0));

    let names: Vec<&str> = s.threads.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "kworker/0:0",
            "kworker/0:1",
            "kworker/0:0H",
            "kworker/1:0",
            "kworker/1:1",
            "kworker/u2:0",
            "kworker/R-demo_",
            "cmwq-monitor",
            "cmwq-timer"
        ]
    );
    let w = &s.threads[0];
    assert_eq!((w.tid, w.cpu_pct, w.last_cpu), (11, Some(100.0), Some(1)));
    assert_eq!(s.threads[4].state, State::BlockedD);
    assert_eq!(s.threads[4].cpu_pct, Some(10.0));
}

#[test]
fn first_snapshot_has_no_cpu_figures() {
    let (a, _) = samples();
    let s = build(7, None, &a, 100);
    assert_eq!(s.total_cpu, None);
    assert!(s.groups.iter().all(|g| g.cpu_pct.is_none()));
    assert!(s.threads.iter().all(|t| t.cpu_pct.is_none()));
    assert!(s.title().contains("CPU -"), "{}", s.title());
}

#[test]
fn a_reused_tid_starts_from_zero() {
    let (a, mut b) = samples();
    // TID 11 now names a new thread, started during the interval.
    b.tasks[0].stat.start += 1;
    b.tasks[0].stat.ticks = 20;
    let s = build(7, Some(&a), &b, 100);
    let t = s.threads.iter().find(|t| t.tid == 11).unwrap();
    assert_eq!(t.cpu_pct, Some(40.0));
}

#[test]
fn unreadable_syscall_files_are_noted() {
    let (a, mut b) = samples();
    for t in &mut b.tasks {
        t.syscall = SyscallInfo::Denied;
    }
    let s = build(7, Some(&a), &b, 100);
    let note = s.note.as_deref().unwrap();
    assert!(note.contains("ptrace"), "{note}");
    assert!(note.contains("CMWQ_CONTROL=1"), "{note}");
    assert_eq!(s.threads[1].state, State::Sleeping);
    assert_eq!(s.groups[0].sleeping, 1);
    assert_eq!(s.groups[0].idle + s.groups[0].blocked, 0);
    assert_eq!(render_text(&s).matches("note:").count(), 1);
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn a_thread_gone_mid_read_is_not_noted() {
    let (a, mut b) = samples();
    // One syscall file vanished (its thread exited), the others read.
    b.tasks[1].syscall = SyscallInfo::Unavailable;
    let s = build(7, Some(&a), &b, 100);
    assert_eq!(s.note, None);
    assert_eq!(s.threads[1].state, State::Sleeping);
    // None readable at all: noted, without blaming ptrace.
    for t in &mut b.tasks {
        t.syscall = SyscallInfo::Unavailable;
    }
    let s = build(7, Some(&a), &b, 100);
    let note = s.note.as_deref().unwrap();
    assert!(note.contains("not available"), "{note}");
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn text_snapshot_has_header_pools_and_groups() {
    let (a, b) = samples();
    let text = render_text(&build(7, Some(&a), &b, 100));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "demo (pid 7): 9 cmwq threads, CPU 200.0% over the last 0.50 s (100% = one CPU)"
    );
    assert!(lines[2].starts_with("POOL"), "{text}");
    assert!(lines[3].starts_with("cpu0 "), "{text}");
    assert!(lines[3].ends_with("100.0"), "{text}");
    assert!(text.contains("\ncpu0 (2 workers)\n"), "{text}");
    assert!(text.contains("\ncpu0 H (1 worker)\n"), "{text}");
    assert!(text.contains("\nunbound u2 (1 worker)\n"), "{text}");
    assert!(text.contains("\nrescuers (1 thread)\n"), "{text}");
    assert!(text.contains("\nlibrary (2 threads)\n"), "{text}");
    let row = lines.iter().find(|l| l.contains("kworker/0:1")).unwrap();
    assert!(row.contains("blocked (read)"), "{row}");
    let row = lines.iter().find(|l| l.contains("cmwq-monitor")).unwrap();
    assert!(row.contains("sleeping (read)"), "{row}");
    let row = lines.iter().find(|l| l.contains("kworker/u2:0")).unwrap();
    assert!(row.contains("idle"), "{row}");
    // The library threads come last.
    let lib = text.find("library (").unwrap();
    assert!(text.rfind("kworker/").unwrap() < lib, "{text}");
}

#[test]
fn scrolling_stays_in_range() {
    let mut v = View {
        scroll: 0,
        page: 10,
        rows: 25,
    };
    assert!(v.key(KeyCode::Down));
    assert_eq!(v.scroll, 1);
    v.key(KeyCode::PageDown);
    assert_eq!(v.scroll, 11);
    v.key(KeyCode::PageDown);
    assert_eq!(v.scroll, 15);
    v.key(KeyCode::Up);
    assert_eq!(v.scroll, 14);
    v.key(KeyCode::Home);
    assert_eq!(v.scroll, 0);
    v.key(KeyCode::Up);
    assert_eq!(v.scroll, 0);
    v.key(KeyCode::End);
    assert_eq!(v.scroll, 15);
    v.key(KeyCode::PageUp);
    assert_eq!(v.scroll, 5);
    assert!(!v.key(KeyCode::Char('x')));
    let mut short = View {
        scroll: 0,
        page: 10,
        rows: 3,
    };
    short.key(KeyCode::PageDown);
    assert_eq!(short.scroll, 0);
}

#[test]
fn quit_keys() {
    let k = |code, m| KeyEvent::new(code, m);
    assert!(is_quit(&k(KeyCode::Char('q'), KeyModifiers::NONE)));
    assert!(is_quit(&k(KeyCode::Esc, KeyModifiers::NONE)));
    assert!(is_quit(&k(KeyCode::Char('c'), KeyModifiers::CONTROL)));
    assert!(!is_quit(&k(KeyCode::Char('c'), KeyModifiers::NONE)));
    assert!(!is_quit(&k(KeyCode::Down, KeyModifiers::NONE)));
}

/// The screen as text, one line per row.
fn screen(snap: &Snapshot, view: &mut View, w: u16, h: u16) -> String {
    let mut t = Terminal::new(ratatui::backend::TestBackend::new(w, h)).unwrap();
    t.draw(|f| draw(f, snap, view)).unwrap();
    let buf = t.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..h {
        for x in 0..w {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

#[test]
fn live_screen_shows_header_pools_workers_and_footer() {
    let (a, b) = samples();
    let snap = build(7, Some(&a), &b, 100);
    let mut view = View::default();
    let text = screen(&snap, &mut view, 120, 40);
    assert!(text.contains("demo (pid 7): 9 cmwq threads"), "{text}");
    assert!(text.contains("unbound u2"), "{text}");
    assert!(text.contains("kworker/0:0H"), "{text}");
    assert!(text.contains("cmwq-monitor"), "{text}");
    assert!(text.contains("q quit"), "{text}");
    assert!(text.contains("rows 1-9 of 9"), "{text}");

    let mut exited = snap.clone();
    exited.exited = true;
    let text = screen(&exited, &mut View::default(), 120, 40);
    assert!(text.contains("process exited"), "{text}");
}

#[test]
fn live_screen_scrolls_a_long_table() {
    let (a, b) = samples();
    let snap = build(7, Some(&a), &b, 100);
    // Too short for all nine rows.
    let mut view = View::default();
    let text = screen(&snap, &mut view, 100, 20);
    assert!(view.page < 9, "{text}");
    assert!(text.contains("kworker/0:0 "), "{text}");
    assert!(!text.contains("cmwq-timer"), "{text}");
    view.key(KeyCode::End);
    let text = screen(&snap, &mut view, 100, 20);
    assert!(text.contains("cmwq-timer"), "{text}");
    assert!(!text.contains("kworker/0:0 "), "{text}");
    assert!(text.contains(" of 9"), "{text}");
}

#[test]
fn errors_read_well() {
    assert_eq!(TopError::NoProcess(9).to_string(), "no process 9");
    assert_eq!(
        TopError::NoCmwq {
            pid: 9,
            name: "sleep".into()
        }
        .to_string(),
        "process 9 (sleep) has no cmwq threads (kworker/... or cmwq-...)"
    );
    assert!(TopError::NotYours { pid: 9, uid: 0 }
        .to_string()
        .starts_with("process 9 is not yours"));
}

#[test]
fn status_fields() {
    let st = "Name:\tx\nTgid:\t42\nPid:\t43\nUid:\t1000\t1000\t1000\t1000\n";
    assert_eq!(status_field(st, "Tgid:"), [42]);
    assert_eq!(status_field(st, "Uid:"), [1000; 4]);
    assert!(status_field(st, "Gid:").is_empty());
}

#[test]
fn this_process_can_be_sampled() {
    // This test binary has no cmwq threads (the library is not used).
    let pid = std::process::id();
    match first_sample(pid) {
        Err(TopError::NoCmwq { pid: p, .. }) => assert_eq!(p, pid),
        Err(e) => panic!("{e}"),
        Ok((_, s)) => assert!(!s.tasks.is_empty()),
    }
    assert!(matches!(open(u32::MAX), Err(TopError::NoProcess(_))));
    assert!(matches!(open(0), Err(TopError::NoProcess(0))));
}

#[test]
fn no_colour_keeps_bold_and_drops_colours() {
    use ratatui::style::Modifier;
    for s in [
        State::Running,
        State::Idle,
        State::Blocked(None),
        State::BlockedD,
        State::Sleeping,
    ] {
        let plain = state_style(&s, false);
        assert_eq!((plain.fg, plain.bg), (None, None), "{s:?}");
        assert_eq!(plain.add_modifier, state_style(&s, true).add_modifier);
    }
    assert!(state_style(&State::Running, true).fg.is_some());
    assert!(state_style(&State::Running, false)
        .add_modifier
        .contains(Modifier::BOLD));
}

#[test]
fn json_snapshot_has_the_schema_and_the_tables() {
    let (a, b) = samples();
    let snap = build(7, Some(&a), &b, 100);
    let v = serde_json::to_value(super::json::TopJson::from(&snap)).unwrap();
    assert_eq!(v["schema"], 2);
    assert_eq!(v["pid"], 7);
    assert_eq!(v["name"], "demo");
    let pools = v["pools"].as_array().unwrap();
    assert_eq!(pools.len(), snap.groups.len());
    assert!(pools.iter().any(|p| p["pool"] == "unbound u2"), "{v}");
    let threads = v["threads"].as_array().unwrap();
    assert_eq!(threads.len(), snap.threads.len());
    for t in threads {
        assert!(t["tid"].is_u64() && t["state"].is_string(), "{t}");
    }
}
