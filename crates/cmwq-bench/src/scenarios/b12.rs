//! B12, one producer: a blocking mix (items of 200 us CPU, a real 2 ms
//! pipe read whose writer fires after the delay, 200 us CPU) and a CPU mix
//! (items of 1 ms CPU), all queued from one thread with each system's
//! natural call: `cmwq::spawn`, `rayon::spawn`, tokio's `spawn_blocking`,
//! and `threadpool` with nr_cpus threads. Makespan, peak threads, the CPUs
//! the items ran on, CPU utilisation. Each measurement in a fresh child.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{child_rows, ratio_str, Ctx};
use crate::child::emit_row;
use crate::peers::{Kind, Peer};
use crate::report::{median_row, Row, Table};
use crate::util::{self, Latch, ThreadSampler};

const TARGET: &str = "CPU mix within 1.05x rayon's makespan; blocking mix within 1.1x tokio's makespan at <= 1/10 of its threads";

const CPU_PART: Duration = Duration::from_micros(200);
const READ_DELAY: Duration = Duration::from_millis(2);
const CPU_ITEM: Duration = Duration::from_millis(1);

const SYSTEMS: &[&str] = &["cmwq", "rayon", "tokio", "pool-cpus"];
const MIXES: &[&str] = &["blocking", "cpu", "cold"];
/// Size of each file of the cold-read mix.
const COLD_FILE: usize = 32 * 1024;

pub fn run(ctx: &Ctx) -> Table {
    let items = ctx.pick(400, 2000);
    let mut t = Table::new(
        "B12",
        &format!(
            "one producer: {items} items queued from one thread on {} CPUs",
            ctx.ncpu
        ),
        TARGET,
    );
    t.ratio_of = Some("makespan_ms".into());
    let n = items.to_string();
    for mix in MIXES {
        let group = match *mix {
            "blocking" => "blocking mix: 200 us CPU + 2 ms pipe read + 200 us CPU",
            "cold" => "cold reads: read and hash a 32 KiB file not in the page cache",
            _ => "CPU mix: 1 ms CPU",
        };
        let mut samples: Vec<Vec<Row>> = SYSTEMS.iter().map(|_| Vec::new()).collect();
        for _ in 0..ctx.reps {
            for (i, sys) in SYSTEMS.iter().enumerate() {
                if let Some(out) = child_rows(
                    &mut t,
                    &["b12", sys, mix, &n],
                    &[],
                    Duration::from_secs(120),
                ) {
                    samples[i].extend(out.rows);
                }
            }
        }
        for s in samples.iter().filter(|s| !s.is_empty()) {
            t.rows.push(median_row(s).group(group));
        }
        let ncpu = ctx.ncpu as f64;
        if *mix == "cold" {
            // No floor and no target: the disk sets the pace.
            continue;
        }
        let ideal_ms = match *mix {
            "blocking" => (items as f64 * 2.0 * CPU_PART.as_secs_f64() * 1e3 / ncpu)
                .max((CPU_PART * 2 + READ_DELAY).as_secs_f64() * 1e3),
            _ => items as f64 * CPU_ITEM.as_secs_f64() * 1e3 / ncpu,
        };
        t.rows.push(
            Row::new("floor: ideal")
                .group(group)
                .num("makespan_ms", ideal_ms)
                .num("cpus_used", ncpu),
        );
        let get = |p: &str, k: &str| t.row(p, Some(group)).and_then(|r| r.get(k));
        let cm = (get("cmwq", "makespan_ms"), get("cmwq", "peak_threads"));
        match *mix {
            "cpu" => {
                if let (Some(c), Some(r)) = (cm.0, get("rayon", "makespan_ms")) {
                    t.check(
                        "CPU mix: cmwq::spawn within 1.05x rayon's makespan",
                        ratio_str(c / r),
                        c <= 1.05 * r,
                    );
                }
            }
            _ => {
                if let (Some(c), Some(th), Some(tm), Some(tth)) = (
                    cm.0,
                    cm.1,
                    get("tokio", "makespan_ms"),
                    get("tokio", "peak_threads"),
                ) {
                    t.check(
                        "blocking mix: cmwq::spawn within 1.1x tokio's makespan at <= 1/10 of its threads",
                        format!(
                            "makespan {} of tokio's, threads {} of tokio's ({th} vs {tth})",
                            ratio_str(c / tm),
                            ratio_str(th / tth)
                        ),
                        c <= 1.1 * tm && th * 10.0 <= tth,
                    );
                }
            }
        }
    }
    t.note("one thread queues every item with the system's own call (cmwq::spawn on system_dfl_wq, rayon::spawn, tokio spawn_blocking, threadpool::execute) and waits for all of them; no hint is given to cmwq");
    t.note("the pipe read is real: each item makes a pipe and blocks reading it; a writer thread writes the byte 2 ms after the item asked (a timer heap), so the item blocks in the kernel as on I/O");
    t.note("cold reads: the child writes the files next to the harness's executable (a disk-backed directory, not tmpfs), syncs them and drops them from the page cache with posix_fadvise(DONTNEED), which needs no privilege; each item then opens, reads and hashes one file: blocks of tens of microseconds to a few milliseconds, found by detection alone");
    t.note("peak_threads: the system's own threads, sampled every ms; cpus_used: distinct CPUs the items were seen running on; cpu_util_pct = process CPU time / (makespan x nr_cpus)");
    t
}

/// Writes one byte to each pipe when its time comes (a timer heap served
/// by one thread), then closes the write end.
pub(super) struct Writer {
    due: Mutex<BinaryHeap<Reverse<(Instant, i32)>>>,
    cv: Condvar,
}

impl Writer {
    pub(super) fn start() -> Arc<Writer> {
        let w = Arc::new(Writer {
            due: Mutex::new(BinaryHeap::new()),
            cv: Condvar::new(),
        });
        let w2 = w.clone();
        std::thread::Builder::new()
            .name("bench-writer".into())
            .spawn(move || w2.serve())
            .expect("writer thread");
        w
    }

    fn serve(&self) {
        let mut q = self.due.lock().unwrap();
        loop {
            let now = Instant::now();
            match q.peek().copied() {
                Some(Reverse((at, fd))) if at <= now => {
                    q.pop();
                    // SAFETY: `fd` is the write end of a pipe its item
                    // made and left to us; the buffer is one valid byte.
                    unsafe {
                        libc::write(fd, b"x".as_ptr().cast(), 1);
                        libc::close(fd);
                    }
                }
                Some(Reverse((at, _))) => q = self.cv.wait_timeout(q, at - now).unwrap().0,
                None => q = self.cv.wait(q).unwrap(),
            }
        }
    }

    /// Block reading a pipe whose byte arrives `after` from now.
    pub(super) fn read_after(&self, after: Duration) {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            panic!("bench: pipe2 failed");
        }
        self.due
            .lock()
            .unwrap()
            .push(Reverse((Instant::now() + after, fds[1])));
        self.cv.notify_one();
        let mut b = [0u8; 1];
        // SAFETY: reading one byte into a valid buffer from our own pipe,
        // then closing our read end.
        unsafe {
            libc::read(fds[0], b.as_mut_ptr().cast(), 1);
            libc::close(fds[0]);
        }
    }
}

/// Child: `b12 SYSTEM MIX ITEMS`.
pub fn child(args: &[String]) -> Result<(), String> {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let (sys, mix) = (arg(0), arg(1));
    let items: usize = arg(2).parse().map_err(|_| "b12: how many items?")?;
    let ncpu = util::ncpu();
    let peer = Peer::new(
        match sys {
            "cmwq" => Kind::CmwqSpawn,
            "rayon" => Kind::Rayon,
            "tokio" => Kind::Tokio,
            "pool-cpus" => Kind::PoolCpus,
            other => return Err(format!("b12: unknown system {other}")),
        },
        items,
    );
    let (blocking, cold) = match mix {
        "blocking" => (true, false),
        "cpu" => (false, false),
        "cold" => (false, true),
        other => return Err(format!("b12: unknown mix {other}")),
    };
    let files = if cold {
        Some(Arc::new(ColdFiles::make(items)?))
    } else {
        None
    };
    let writer = Writer::start();
    let latch = Arc::new(Latch::new(items));
    let cpus = Arc::new(Mutex::new(vec![false; ncpu.max(util::nproc())]));
    // Warm-up, not measured: the system has started its threads.
    let warm = Arc::new(Latch::new(ncpu));
    for _ in 0..ncpu {
        let w = warm.clone();
        peer.spawn(move || w.count_down());
    }
    warm.wait();
    std::thread::sleep(Duration::from_millis(20));

    let sampler = ThreadSampler::start(Duration::from_millis(1), |n| {
        n.starts_with(peer.thread_prefix())
    });
    let cpu0 = util::process_cpu_ns();
    let t0 = Instant::now();
    for i in 0..items {
        let (l, w, c, f) = (latch.clone(), writer.clone(), cpus.clone(), files.clone());
        peer.spawn(move || {
            // SAFETY: no preconditions.
            let cpu = unsafe { libc::sched_getcpu() };
            if cpu >= 0 {
                if let Some(s) = c.lock().unwrap().get_mut(cpu as usize) {
                    *s = true;
                }
            }
            if let Some(f) = &f {
                std::hint::black_box(f.read_hash(i));
            } else if blocking {
                util::burn_cpu(CPU_PART);
                w.read_after(READ_DELAY);
                util::burn_cpu(CPU_PART);
            } else {
                util::burn_cpu(CPU_ITEM);
            }
            l.count_down();
        });
    }
    latch.wait();
    let wall = t0.elapsed();
    let cpu = util::process_cpu_ns() - cpu0;
    let peak = sampler.stop();
    let used = cpus.lock().unwrap().iter().filter(|&&b| b).count();
    emit_row(
        &Row::new(peer.name())
            .num("makespan_ms", wall.as_secs_f64() * 1e3)
            .num("peak_threads", peak as f64)
            .num("cpus_used", used as f64)
            .num(
                "cpu_util_pct",
                100.0 * cpu as f64 / (wall.as_nanos() as f64 * ncpu as f64),
            ),
    );
    peer.shutdown();
    drop(files);
    Ok(())
}

/// The files of the cold-read mix, removed on drop.
struct ColdFiles {
    dir: std::path::PathBuf,
}

impl ColdFiles {
    /// Write `n` files, sync them, and drop them from the page cache.
    fn make(n: usize) -> Result<ColdFiles, String> {
        use std::os::fd::AsRawFd;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let dir = exe
            .parent()
            .ok_or("b12: no directory")?
            .join(format!("b12-cold-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let me = ColdFiles { dir };
        let data: Vec<u8> = (0..COLD_FILE).map(|i| (i * 7 + 3) as u8).collect();
        for i in 0..n {
            std::fs::write(me.path(i), &data).map_err(|e| e.to_string())?;
        }
        // SAFETY: no preconditions.
        unsafe { libc::sync() };
        for i in 0..n {
            let f = std::fs::File::open(me.path(i)).map_err(|e| e.to_string())?;
            // SAFETY: a valid descriptor of a file we own.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
        Ok(me)
    }

    fn path(&self, i: usize) -> std::path::PathBuf {
        self.dir.join(format!("f{i}"))
    }

    /// Read file `i` and hash it (FNV-1a).
    fn read_hash(&self, i: usize) -> u64 {
        let data = std::fs::read(self.path(i)).unwrap_or_default();
        data.iter().fold(0xcbf29ce484222325u64, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        })
    }
}

impl Drop for ColdFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
