//! Unit tests of `perf` (in a file of their own, beside the code).

use super::*;
use rustix::event::{PollFd, PollFlags};
use rustix::time::Timespec;
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::Instant;

const MS: u64 = 1_000_000;

/// Whether the tests can run here; prints why not.
fn available() -> bool {
    match probe() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipping: switch rings unavailable: {e}");
            false
        }
    }
}

fn collect(ring: &mut SwitchRing) -> Vec<SwitchRecord> {
    let mut v = Vec::new();
    ring.drain(|r| v.push(r));
    v
}

fn time_of(r: &SwitchRecord) -> Option<u64> {
    match *r {
        SwitchRecord::Out { time_ns, .. } | SwitchRecord::In { time_ns } => Some(time_ns),
        SwitchRecord::Lost => None,
    }
}

/// Times are nondecreasing and Out and In strictly alternate except
/// across a Lost (the thread is either on a CPU or not). `out` is the
/// state carried over from the previous batch: Some(true) after an Out,
/// Some(false) after an In, None when unknown. Returns the number of
/// non-preempt (blocking) Outs.
fn check_sequence(recs: &[SwitchRecord], last_time: &mut u64, out: &mut Option<bool>) -> usize {
    let mut blocks = 0;
    for r in recs {
        if let Some(t) = time_of(r) {
            assert!(
                t >= *last_time,
                "time went back: {t} < {last_time} in {recs:?}"
            );
            *last_time = t;
        }
        match *r {
            SwitchRecord::Out { preempt, .. } => {
                assert_ne!(*out, Some(true), "two Outs without an In: {recs:?}");
                *out = Some(true);
                blocks += usize::from(!preempt);
            }
            SwitchRecord::In { .. } => {
                assert_ne!(*out, Some(false), "two Ins without an Out: {recs:?}");
                *out = Some(false);
            }
            SwitchRecord::Lost => *out = None,
        }
    }
    blocks
}

#[test]
fn open_geometry_and_bad_page_counts() {
    // A switch record is the header plus the sample_id trailer, which
    // with PERF_SAMPLE_TIME alone is one u64.
    let r = SwitchRing::open_current_thread(DEFAULT_DATA_PAGES, true);
    let Ok(ring) = r else {
        eprintln!("skipping: {r:?}");
        return;
    };
    assert_eq!(ring.id_len, 8);
    assert_eq!(
        ring.data_size,
        DEFAULT_DATA_PAGES * rustix::param::page_size()
    );
    assert_eq!(ring.data_offset, rustix::param::page_size());
    assert!(SwitchRing::open_current_thread(3, true).is_err());
    assert!(SwitchRing::open_current_thread(0, true).is_err());
}

#[test]
fn raw_record_layout() {
    if !available() {
        return;
    }
    // Checks the bytes themselves: a PERF_RECORD_SWITCH is the header and
    // the sample_id trailer, whose fields come in the documented order
    // (pid and tid before the time) and whose last 8 bytes are the time.
    for (sample_type, len) in [
        (PERF_SAMPLE_TIME, 16),
        (PERF_SAMPLE_TID | PERF_SAMPLE_TIME, 24),
    ] {
        let t0 = crate::util::mono_ns();
        let (mut ring, tid) = thread::spawn(move || {
            let mut ring = open_ring(DEFAULT_DATA_PAGES, sample_type, false).unwrap();
            let _ = collect(&mut ring);
            thread::sleep(Duration::from_millis(1));
            (ring, rustix::thread::gettid().as_raw_nonzero().get() as u32)
        })
        .join()
        .unwrap();
        let t1 = crate::util::mono_ns();
        let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
        let head = ring.data_head().load(Ordering::Acquire);
        let (mut pos, mut n) = (ring.tail, 0);
        while pos < head {
            let mut rec = [0u8; 24];
            ring.copy_out(pos, &mut rec[..len]);
            let u32_at = |i: usize| u32::from_ne_bytes(rec[i..i + 4].try_into().unwrap());
            assert_eq!(u32_at(0), PERF_RECORD_SWITCH);
            assert_eq!(u16::from_ne_bytes([rec[6], rec[7]]) as usize, len);
            if len == 24 {
                assert_eq!((u32_at(8), u32_at(12)), (pid, tid));
            }
            let time = u64::from_ne_bytes(rec[len - 8..len].try_into().unwrap());
            assert!(time + MS >= t0 && time <= t1 + MS, "{t0} <= {time} <= {t1}");
            pos += len as u64;
            n += 1;
        }
        assert_eq!(pos, head);
        assert!(n >= 2, "{n} records");
        ring.consume_to(head);
    }
}

#[test]
fn sleep_gives_out_then_in() {
    if !available() {
        return;
    }
    let (mut ring, t0, t1) = thread::spawn(|| {
        let mut ring = SwitchRing::open_current_thread(DEFAULT_DATA_PAGES, true).unwrap();
        let _ = collect(&mut ring);
        let t0 = crate::util::mono_ns();
        thread::sleep(Duration::from_millis(20));
        let t1 = crate::util::mono_ns();
        (ring, t0, t1)
    })
    .join()
    .unwrap();
    let recs = collect(&mut ring);
    assert!(!recs.contains(&SwitchRecord::Lost), "{recs:?}");
    check_sequence(&recs, &mut 0, &mut None);
    // Every block in [t0, t1] (give or take clock skew) with the time
    // until the thread was back on a CPU; the sleep must be one of them
    // (there may be other, short ones, e.g. under a tracer).
    let slack = MS;
    let mut blocks = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        if let SwitchRecord::Out {
            time_ns: out,
            preempt: false,
        } = *r
        {
            let inn = recs[i + 1..].iter().find_map(|r| match *r {
                SwitchRecord::In { time_ns } => Some(time_ns),
                _ => None,
            });
            if out + slack >= t0 && out <= t1 + slack {
                let inn = inn.unwrap_or_else(|| panic!("no In after {r:?}: {recs:?}"));
                assert!(inn <= t1 + slack, "t1={t1}: {recs:?}");
                blocks.push(inn - out);
            }
        }
    }
    assert!(
        blocks.iter().any(|d| (15 * MS..=200 * MS).contains(d)),
        "t0={t0} t1={t1} blocked for {blocks:?} ns: {recs:?}"
    );
}

#[test]
fn disabled_rings_record_nothing_until_enabled() {
    if !available() {
        return;
    }
    use std::sync::mpsc::channel;
    // The ring travels between its thread (which sleeps) and this one
    // (which reads it and switches it on and off).
    let (to_main, from_thread) = channel::<SwitchRing>();
    let (to_thread, from_main) = channel::<Option<SwitchRing>>();
    let h = thread::spawn(move || {
        let ring = SwitchRing::open_current_thread(DEFAULT_DATA_PAGES, false).unwrap();
        thread::sleep(Duration::from_millis(5));
        to_main.send(ring).unwrap();
        let ring = from_main.recv().unwrap().unwrap();
        thread::sleep(Duration::from_millis(5));
        to_main.send(ring).unwrap();
        let _ = from_main.recv().unwrap();
        thread::sleep(Duration::from_millis(5));
    });
    let mut ring = from_thread.recv().unwrap();
    assert!(collect(&mut ring).is_empty(), "opened off: no records");
    ring.set_enabled(true).unwrap();
    to_thread.send(Some(ring)).unwrap();
    let mut ring = from_thread.recv().unwrap();
    let recs = collect(&mut ring);
    assert!(
        recs.iter()
            .any(|r| matches!(r, SwitchRecord::Out { preempt: false, .. })),
        "on: the sleep is recorded: {recs:?}"
    );
    ring.set_enabled(false).unwrap();
    // What the thread wrote before it was switched off (it may have
    // blocked in `recv` only now).
    let _ = collect(&mut ring);
    to_thread.send(None).unwrap();
    h.join().unwrap();
    let after = collect(&mut ring);
    assert!(after.is_empty(), "switched off: no records: {after:?}");
}

#[test]
fn preemption_is_flagged() {
    if !available() {
        return;
    }
    let allowed = rustix::thread::sched_getaffinity(None).unwrap();
    let cpu = (0..rustix::thread::CpuSet::MAX_CPU)
        .find(|&c| allowed.is_set(c))
        .unwrap();
    for attempt in 0..5 {
        let barrier = Arc::new(Barrier::new(2));
        let spinners: Vec<_> = (0..2)
            .map(|_| {
                let barrier = barrier.clone();
                thread::spawn(move || {
                    let mut set = rustix::thread::CpuSet::new();
                    set.set(cpu);
                    rustix::thread::sched_setaffinity(None, &set).unwrap();
                    let mut ring =
                        SwitchRing::open_current_thread(DEFAULT_DATA_PAGES, true).unwrap();
                    barrier.wait();
                    let _ = collect(&mut ring);
                    let end = crate::util::mono_ns() + 60 * MS;
                    while crate::util::mono_ns() < end {
                        std::hint::spin_loop();
                    }
                    ring
                })
            })
            .collect();
        let mut preempted = false;
        for s in spinners {
            let mut ring = s.join().unwrap();
            let recs = collect(&mut ring);
            check_sequence(&recs, &mut 0, &mut None);
            preempted |= recs
                .iter()
                .any(|r| matches!(r, SwitchRecord::Out { preempt: true, .. }));
        }
        if preempted {
            return;
        }
        eprintln!("attempt {attempt}: no preemption seen");
    }
    panic!("two spinners on one CPU were never preempted");
}

#[test]
fn poll_wakes_on_block() {
    if !available() {
        return;
    }
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let ring = SwitchRing::open_current_thread(DEFAULT_DATA_PAGES, true).unwrap();
        tx.send(ring).unwrap();
        let end = crate::util::mono_ns() + 20 * MS;
        while crate::util::mono_ns() < end {
            std::hint::spin_loop();
        }
        thread::sleep(Duration::from_millis(100));
    });
    let mut ring = rx.recv().unwrap();
    let give_up = crate::util::mono_ns() + 2_000 * MS;
    let mut woke = None;
    'wait: while crate::util::mono_ns() < give_up {
        let ready = poll_readable(&[ring.as_fd()], Some(Duration::from_millis(500)));
        let now = crate::util::mono_ns();
        let mut recs = Vec::new();
        ring.drain(|r| recs.push(r));
        if ready.is_empty() {
            continue;
        }
        assert_eq!(ready, [0]);
        for r in recs {
            if let SwitchRecord::Out {
                time_ns,
                preempt: false,
            } = r
            {
                woke = Some(now.saturating_sub(time_ns));
                break 'wait;
            }
        }
    }
    worker.join().unwrap();
    let late = woke.expect("poll never reported the block");
    assert!(late < 50 * MS, "woken {late} ns after the block");
}

#[test]
fn poll_times_out_and_reports_exit() {
    if !available() {
        return;
    }
    let (tx, rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let worker = thread::spawn(move || {
        let ring = SwitchRing::open_current_thread(DEFAULT_DATA_PAGES, true).unwrap();
        tx.send(ring).unwrap();
        go_rx.recv().unwrap();
    });
    let mut ring = rx.recv().unwrap();
    // Wait for the worker to block in recv, then drain: nothing new.
    // (Time-bounded: on a busy CPU each record written by the worker
    // wakes this thread, which may preempt the worker again at once, so
    // the worker can take milliseconds to get there.)
    let give_up = crate::util::mono_ns() + 2_000 * MS;
    let mut blocked = false;
    while !blocked && crate::util::mono_ns() < give_up {
        poll_readable(&[ring.as_fd()], Some(Duration::from_millis(20)));
        blocked = matches!(
            ring.drain_last(),
            (Some(SwitchRecord::Out { preempt: false, .. }), _)
        );
    }
    assert!(blocked, "the worker never blocked");
    // Nothing runs the worker now, so a poll must time out. The channel
    // may still wake it once (a spurious futex wake-up, the end of a
    // spin-then-park), which writes records; such a poll is retried,
    // but one quiet 30 ms window must come within a few tries.
    let mut quiet = false;
    for _ in 0..10 {
        let start = Instant::now();
        if poll_readable(&[ring.as_fd()], Some(Duration::from_millis(30))).is_empty() {
            assert!(start.elapsed() >= Duration::from_millis(25));
            quiet = true;
            break;
        }
        let _ = ring.drain_last();
    }
    assert!(
        quiet,
        "the blocked worker's ring never stayed quiet for 30 ms"
    );
    assert!(poll_readable(&[], Some(Duration::ZERO)).is_empty());
    go_tx.send(()).unwrap();
    worker.join().unwrap();
    // The thread is gone: the fd hangs up, which counts as readable.
    assert_eq!(
        poll_readable(&[ring.as_fd()], Some(Duration::from_secs(1))),
        [0]
    );
    let _ = collect(&mut ring);
}

#[test]
fn overflow_reports_lost_then_recovers() {
    if !available() {
        return;
    }
    thread::spawn(|| {
        let mut ring = SwitchRing::open_current_thread(1, true).unwrap();
        let _ = collect(&mut ring);
        for _ in 0..600 {
            thread::sleep(Duration::from_micros(1));
        }
        let (mut last, mut state) = (0, None);
        let recs = collect(&mut ring);
        assert_eq!(
            recs.last(),
            Some(&SwitchRecord::Lost),
            "ring should have been full"
        );
        assert!(recs.len() > 200, "{}", recs.len());
        check_sequence(&recs, &mut last, &mut state);
        // The kernel accounts for the dropped records on its next write.
        let mut kernel_lost = false;
        for round in 0..5 {
            for _ in 0..20 {
                thread::sleep(Duration::from_micros(1));
            }
            let recs = collect(&mut ring);
            if round == 0 {
                kernel_lost = recs.first() == Some(&SwitchRecord::Lost);
            } else {
                assert!(!recs.contains(&SwitchRecord::Lost), "{recs:?}");
            }
            let blocks = check_sequence(&recs, &mut last, &mut state);
            assert!(blocks >= 5, "{recs:?}");
        }
        assert!(kernel_lost, "no PERF_RECORD_LOST after the overflow");
    })
    .join()
    .unwrap();
}

#[test]
fn records_wrap_around() {
    if !available() {
        return;
    }
    // With PERF_SAMPLE_TID | PERF_SAMPLE_TIME the records are 24 bytes,
    // which does not divide the data size, so they regularly straddle
    // the end of the data area. The worker sleeps in bursts of 50 (about
    // 100 records, 2400 bytes) and waits for the reader between bursts,
    // so the 4 KiB ring cannot overflow however slow the reader is.
    let (tx, rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<bool>();
    let worker = thread::spawn(move || {
        let ring = open_ring(1, PERF_SAMPLE_TID | PERF_SAMPLE_TIME, false).unwrap();
        tx.send(ring).unwrap();
        while go_rx.recv().unwrap() {
            for _ in 0..50 {
                thread::sleep(Duration::from_micros(1));
            }
            done_tx.send(()).unwrap();
        }
    });
    let mut ring = rx.recv().unwrap();
    assert_eq!(ring.id_len, 16);
    let size = ring.data_size as u64;
    let (mut last, mut state, mut blocks, mut straddled) = (0, None, 0, 0);
    let mut recs = Vec::new();
    let mut drain = |ring: &mut SwitchRing| {
        let before = ring.tail;
        recs.clear();
        ring.drain(|r| recs.push(r));
        assert!(!recs.contains(&SwitchRecord::Lost), "{recs:?}");
        let mut pos = before;
        for _ in &recs {
            straddled += u64::from(pos % size + 24 > size);
            pos += 24;
        }
        assert_eq!(pos, ring.tail);
        blocks += check_sequence(&recs, &mut last, &mut state);
    };
    while ring.tail < 20 * size {
        go_tx.send(true).unwrap();
        // Read while the worker writes, until its burst is over.
        loop {
            poll_readable(&[ring.as_fd()], Some(Duration::from_millis(1)));
            let done = done_rx.try_recv().is_ok();
            drain(&mut ring);
            if done {
                break;
            }
        }
    }
    go_tx.send(false).unwrap();
    worker.join().unwrap();
    drain(&mut ring);
    assert!(straddled >= 10, "only {straddled} wrapped records");
    assert!(blocks >= 10, "{blocks}");
}

#[test]
fn drain_last_is_newest() {
    if !available() {
        return;
    }
    let (tx, rx) = mpsc::channel();
    let (ack_tx, ack_rx) = mpsc::channel::<u64>();
    let (go_tx, go_rx) = mpsc::channel::<bool>();
    let worker = thread::spawn(move || {
        let ring = SwitchRing::open_current_thread(DEFAULT_DATA_PAGES, true).unwrap();
        tx.send(ring).unwrap();
        loop {
            // Everything before this time is older than the block in recv.
            ack_tx.send(crate::util::mono_ns()).unwrap();
            if !go_rx.recv().unwrap() {
                break;
            }
            thread::sleep(Duration::from_millis(2));
        }
    });
    let mut ring = rx.recv().unwrap();
    for _ in 0..3 {
        let acked = ack_rx.recv().unwrap();
        // Each drain_last sees the sleep's Out and In, the ack, and
        // finally the block in recv: only that last one may come out.
        let give_up = crate::util::mono_ns() + 2_000 * MS;
        let mut newest = None;
        while crate::util::mono_ns() < give_up {
            poll_readable(&[ring.as_fd()], Some(Duration::from_millis(20)));
            let (last, lost) = ring.drain_last();
            assert!(!lost);
            newest = last.or(newest);
            if matches!(newest, Some(SwitchRecord::Out { preempt: false, time_ns }) if time_ns >= acked)
            {
                break;
            }
        }
        assert!(
            matches!(newest, Some(SwitchRecord::Out { preempt: false, time_ns }) if time_ns >= acked),
            "{newest:?}, acked at {acked}"
        );
        // Blocked: nothing new.
        assert_eq!(ring.drain_last(), (None, false));
        go_tx.send(true).unwrap();
    }
    ack_rx.recv().unwrap();
    go_tx.send(false).unwrap();
    worker.join().unwrap();
}

/// Writes one record at ring position `pos` into a fake data area and
/// returns the position after it.
fn put(data: &mut [u8], pos: u64, kind: u32, misc: u16, body: &[u8]) -> u64 {
    let mut rec = Vec::new();
    rec.extend_from_slice(&kind.to_ne_bytes());
    rec.extend_from_slice(&misc.to_ne_bytes());
    rec.extend_from_slice(&((8 + body.len()) as u16).to_ne_bytes());
    rec.extend_from_slice(body);
    let n = data.len() as u64;
    for (i, b) in rec.iter().enumerate() {
        data[((pos + i as u64) % n) as usize] = *b;
    }
    pos + rec.len() as u64
}

/// Writes switch records with times `times` from `pos`, alternating Out
/// and In starting with `first_misc`; returns the position after them.
fn put_switches(data: &mut [u8], mut pos: u64, first_misc: u16, times: &[u64]) -> u64 {
    let mut misc = first_misc;
    for t in times {
        pos = put(data, pos, PERF_RECORD_SWITCH, misc, &t.to_ne_bytes());
        misc = if misc == 0 {
            PERF_RECORD_MISC_SWITCH_OUT
        } else {
            0
        };
    }
    pos
}

/// A ring over an anonymous mapping that the test writes as the kernel
/// would, with a 128-byte data area placed by data_offset/data_size.
fn fake_ring() -> SwitchRing {
    let page = rustix::param::page_size();
    let map_len = 2 * page;
    // SAFETY: a fresh private anonymous mapping, aliasing nothing.
    let ptr = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            map_len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )
    }
    .unwrap();
    let base = NonNull::new(ptr.cast::<u8>()).unwrap();
    // SAFETY: both fields are 8-byte aligned inside the first page of the
    // mapping, which nothing else uses yet.
    unsafe {
        base.as_ptr()
            .add(DATA_OFFSET_OFFSET)
            .cast::<u64>()
            .write(page as u64 + 128);
        base.as_ptr().add(DATA_SIZE_OFFSET).cast::<u64>().write(128);
    }
    let fd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
    // SAFETY: the mapping is page aligned, read/write, 1 + 1 pages, and
    // handed over to the ring, which unmaps it.
    unsafe { SwitchRing::from_mapping(fd, base, map_len, page, 8) }
}

/// Runs `f` on the fake data area, then publishes `head`.
fn publish(ring: &mut SwitchRing, f: impl FnOnce(&mut [u8]) -> u64) {
    // SAFETY: the data area lies inside the mapping and no other
    // reference to it exists while `ring` is mutably borrowed.
    let data = unsafe {
        std::slice::from_raw_parts_mut(ring.base.as_ptr().add(ring.data_offset), ring.data_size)
    };
    let head = f(data);
    ring.data_head().store(head, Ordering::Release);
}

#[test]
fn fake_ring_wraps_and_skips() {
    use SwitchRecord::{In, Lost, Out};
    let mut ring = fake_ring();
    assert_eq!(
        (ring.data_offset, ring.data_size),
        (rustix::param::page_size() + 128, 128)
    );
    assert_eq!(ring.drain_last(), (None, false));
    // 0..40: a preempted Out, an In, a record of another type.
    publish(&mut ring, |d| {
        let p = put_switches(d, 0, 0x6000, &[100, 150]);
        put(d, p, 99, 0, &[])
    });
    assert_eq!(
        collect(&mut ring),
        [
            Out {
                time_ns: 100,
                preempt: true
            },
            In { time_ns: 150 }
        ]
    );
    assert_eq!(ring.data_tail().load(Ordering::Relaxed), 40);
    assert_eq!(collect(&mut ring), []);
    // 40..120, then a lost record straddling the end of the data area
    // (120..152 is 120..128 and 0..24), then two more switches.
    publish(&mut ring, |d| {
        put_switches(d, 40, 0x2000, &[160, 170, 180, 190, 200])
    });
    assert_eq!(
        ring.drain_last(),
        (
            Some(Out {
                time_ns: 200,
                preempt: false
            }),
            false
        )
    );
    publish(&mut ring, |d| {
        let lost = [7u64, 3, 205].map(u64::to_ne_bytes).concat();
        let p = put(d, 120, PERF_RECORD_LOST, 0, &lost);
        put_switches(d, p, 0x2000, &[210, 220])
    });
    assert_eq!(
        collect(&mut ring),
        [
            Lost,
            Out {
                time_ns: 210,
                preempt: false
            },
            In { time_ns: 220 }
        ]
    );
    // 184..264: the last record's header is at 120..128 and its time
    // wraps to 0..8.
    publish(&mut ring, |d| {
        put_switches(d, 184, 0x2000, &[300, 310, 320, 330, 340])
    });
    let recs = collect(&mut ring);
    assert_eq!(recs.len(), 5);
    assert_eq!(
        recs[4],
        Out {
            time_ns: 340,
            preempt: false
        }
    );
    assert_eq!(ring.tail, 264);
    // A full ring (112 of 128 bytes used: the kernel keeps a byte free, so
    // no 16-byte record fits) is reported as possibly lossy, last.
    publish(&mut ring, |d| {
        put_switches(d, 264, 0, &[400, 410, 420, 430, 440, 450, 460])
    });
    let (last, lost) = ring.drain_last();
    assert_eq!((last, lost), (Some(Lost), true));
    // Garbage (a zero size) is reported as Lost and skipped.
    publish(&mut ring, |d| {
        let p = put_switches(d, 376, 0, &[500, 510]);
        d[(376 % 128) + 6] = 0;
        d[(376 % 128) + 7] = 0;
        p
    });
    assert_eq!(collect(&mut ring), [Lost]);
    assert_eq!(ring.tail, 408);
    // A record claiming to be larger than what was published, too.
    publish(&mut ring, |d| {
        put_switches(d, 408, 0, &[600]);
        d[(408 % 128) + 6] = 64;
        424
    });
    assert_eq!(collect(&mut ring), [Lost]);
    // And a switch record of an unexpected size.
    publish(&mut ring, |d| put(d, 424, PERF_RECORD_SWITCH, 0, &[0; 16]));
    assert_eq!(collect(&mut ring), [Lost]);
    publish(&mut ring, |d| put_switches(d, 448, 0, &[700]));
    assert_eq!(collect(&mut ring), [In { time_ns: 700 }]);
}

#[test]
fn ring_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<SwitchRing>();
}

/// Wait until any of `fds` is readable or `timeout` passes (poll(2) with
/// POLLIN; EINTR retried). Returns the indices that are readable.
///
/// An fd that reports `POLLHUP` or `POLLERR` counts as readable too (a
/// switch ring's fd hangs up once its thread has exited): reading it is how
/// the caller finds out, and leaving it out would make the next call return
/// at once without reporting anything. With `timeout` None and no fds this
/// waits forever. Any other poll error returns an empty list.
fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> Vec<usize> {
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN))
        .collect();
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let ts = match (timeout, deadline) {
            (None, _) => None,
            (Some(t), None) => Some(duration_to_timespec(t)),
            (Some(_), Some(d)) => Some(duration_to_timespec(
                d.saturating_duration_since(Instant::now()),
            )),
        };
        match rustix::event::poll(&mut pfds, ts.as_ref()) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => {
                for p in &mut pfds {
                    p.clear_revents();
                }
            }
            Err(_) => return Vec::new(),
        }
    }
    pfds.iter()
        .enumerate()
        .filter(|(_, p)| !p.revents().is_empty())
        .map(|(i, _)| i)
        .collect()
}

/// `d` as a poll timeout, saturating at a very long wait.
fn duration_to_timespec(d: Duration) -> Timespec {
    Timespec::try_from(d).unwrap_or(Timespec {
        tv_sec: i64::MAX / 2,
        tv_nsec: 0,
    })
}
