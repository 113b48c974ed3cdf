//! B10, async offload: a tokio server on loopback answers requests, each
//! of which does 100 us of CPU and a real 1 ms blocking read (a pipe whose
//! writer fires after the delay, as in B12) off the runtime's threads,
//! with `tokio::task::spawn_blocking`, `blocking::unblock` or
//! `cmwq::unblock`. Clients keep 100 connections per CPU busy (closed
//! loop: each sends its next request when the reply to the last one
//! came). Requests/s, p50/p99 latency as the client sees it, and the peak
//! number of threads the offloading system started. Each measurement in a
//! fresh child.
//!
//! The harness grows with the CPUs so that it does not become the limit
//! (B13): one client thread and one pipe-writer thread per 4 CPUs, each
//! client driving its share of the connections, each connection served by
//! one writer. A row whose client or writer thread was over 80% busy is
//! marked harness-bound (`harness` = `bound`): its figure is the
//! harness's, not the offloading system's.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::b12::Writer;
use super::{child_medians, ratio_str, Ctx};
use crate::child::emit_row;
use crate::report::{Row, Table, Value};
use crate::util::{self, ThreadSampler};

const TARGET: &str = ">= tokio's throughput at <= 1/4 of its threads, p99 <= 1.2x";

/// CPU per request.
const CPU_PART: Duration = Duration::from_micros(100);
/// The blocking read per request.
const READ_DELAY: Duration = Duration::from_millis(1);
/// Connections per CPU the clients keep busy: enough requests in flight
/// to keep every CPU busy through the reads (1.1 ms of wall time per 0.1
/// ms of CPU needs 11 per CPU) with room to spare.
const CONNECTIONS_PER_CPU: usize = 100;

/// CPUs per client thread and per pipe-writer thread.
const CPUS_PER_SHARD: usize = 4;

/// A harness thread busier than this (CPU time / wall time over the timed
/// run) makes its row harness-bound.
const HARNESS_BOUND: f64 = 0.8;

/// Connections for `ncpu` CPUs.
fn connections(ncpu: usize) -> usize {
    CONNECTIONS_PER_CPU * ncpu.max(1)
}

/// Client threads and writer threads for `ncpu` CPUs.
fn shards(ncpu: usize) -> usize {
    ncpu.div_ceil(CPUS_PER_SHARD).max(1)
}

const SYSTEMS: &[&str] = &["tokio", "blocking", "cmwq"];

fn label(sys: &str) -> &'static str {
    match sys {
        "tokio" => "tokio spawn_blocking",
        "blocking" => "blocking::unblock",
        _ => "cmwq::unblock",
    }
}

pub fn run(ctx: &Ctx) -> Table {
    let requests = ctx.pick(2_000, 20_000);
    let mut t = Table::new(
        "B10",
        &format!(
            "async offload: a tokio loopback server, {requests} requests of 100 us CPU + a 1 ms pipe read, {} connections, {} client and writer thread(s), on {} CPUs",
            connections(ctx.ncpu),
            shards(ctx.ncpu),
            ctx.ncpu
        ),
        TARGET,
    );
    t.ratio_of = Some("requests_per_s".into());
    let rows = child_medians(
        &mut t,
        ctx.reps,
        SYSTEMS,
        |sys| vec!["b10".into(), sys.into(), requests.to_string()],
        Duration::from_secs(120),
    );
    for mut r in rows {
        if r.get("harness_busy_pct")
            .is_some_and(|b| b > HARNESS_BOUND * 100.0)
        {
            r.set("harness", Value::Text("bound".into()));
        }
        t.rows.push(r);
    }
    // The most the CPUs allow: every request's CPU part spread over every
    // CPU, nothing else.
    t.rows.push(
        Row::new("ceiling: CPU bound")
            .num("requests_per_s", ctx.ncpu as f64 / CPU_PART.as_secs_f64()),
    );
    let get = |t: &Table, p: &str, k: &str| t.row(p, None).and_then(|r| r.get(k));
    let (c, k) = (label("cmwq"), label("tokio"));
    let fig = |t: &Table, key: &str| (get(t, c, key), get(t, k, key));
    if let (Some(cr), Some(kr)) = fig(&t, "requests_per_s") {
        t.check(
            "cmwq::unblock requests/s >= tokio spawn_blocking's",
            ratio_str(cr / kr),
            cr >= kr,
        );
    }
    if let (Some(ct), Some(kt)) = fig(&t, "peak_threads") {
        t.check(
            "cmwq::unblock peak threads <= 1/4 of tokio spawn_blocking's",
            format!("{ct:.0} vs {kt:.0}"),
            ct * 4.0 <= kt,
        );
    }
    if let (Some(cp), Some(kp)) = fig(&t, "p99_ms") {
        t.check(
            "cmwq::unblock p99 <= 1.2x tokio spawn_blocking's",
            ratio_str(cp / kp),
            cp <= 1.2 * kp,
        );
    }
    if t.rows.iter().any(|r| {
        r.get("harness_busy_pct")
            .is_some_and(|b| b > HARNESS_BOUND * 100.0)
    }) {
        t.note(format!("a row marked harness=bound had a client or writer thread over {:.0}% busy: its figure is the harness's limit", HARNESS_BOUND * 100.0));
    }
    t.note(format!("the server is a tokio multi-thread runtime with one worker per CPU; each connection's task reads an 8-byte request, offloads the request's work and awaits it, then writes the reply; the clients are current-thread runtimes on threads of their own, one per {CPUS_PER_SHARD} CPUs, {CONNECTIONS_PER_CPU} connections per CPU in all"));
    t.note(format!("the read is real: the offloaded closure makes a pipe and blocks reading it; a writer thread (one per {CPUS_PER_SHARD} CPUs, each serving a share of the connections) writes the byte 1 ms after it asked; cmwq is given no hint"));
    t.note("latency: from the client's write of a request to its read of the reply, after an untimed warm-up of two requests per connection; peak_threads: threads the offloading system started (tokio's blocking pool, the blocking crate's pool, cmwq's workers and its own threads), sampled every ms from before the warm-up; cpu_util_pct: process CPU time / (wall time x nr_cpus); cpu_us_per_request: process CPU time / requests (100 us of it is the request's own work); both count the server, the client and the writer too");
    t
}

/// Child: `b10 SYSTEM REQUESTS`.
pub fn child(args: &[String]) -> Result<(), String> {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let sys = arg(0).to_string();
    if !SYSTEMS.contains(&sys.as_str()) {
        return Err(format!("b10: unknown system {sys}"));
    }
    let requests: usize = arg(1).parse().map_err(|_| "b10: how many requests?")?;
    let ncpu = util::ncpu();
    let (nconn, nshards) = (connections(ncpu), shards(ncpu));
    let writers: Vec<Arc<Writer>> = (0..nshards).map(|_| Writer::start()).collect();
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(ncpu)
        .thread_name("b10-server")
        .enable_io()
        .build()
        .map_err(|e| format!("b10: server runtime: {e}"))?;
    let listener = server
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| format!("b10: bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let sys2 = sys.clone();
    server.spawn(async move {
        // Each connection is served by one writer, in turn.
        for i in 0.. {
            let Ok((conn, _)) = listener.accept().await else {
                return;
            };
            let _ = conn.set_nodelay(true);
            let w = writers[i % writers.len()].clone();
            tokio::spawn(serve(conn, sys2.clone(), w));
        }
    });

    // The clients: each connects its share first; the clock starts after.
    let clients = (0..nshards)
        .map(|i| Client::start(addr, nconn / nshards + usize::from(i < nconn % nshards)))
        .collect::<Result<Vec<_>, String>>()?;
    std::thread::sleep(Duration::from_millis(50));

    // Every thread that exists now is not the offloading system's. The
    // sampler runs from before the warm-up, which starts the system's
    // threads (tokio makes its blocking threads for the first wave).
    let sampler = ThreadSampler::start(Duration::from_millis(1), |_| false);
    // Warm-up, not timed: two requests per connection, so that neither the
    // first wave's thread creation nor the system's start-up is in the
    // latencies.
    run_clients(&clients, 2 * nconn)?;
    let writer_tids = util::tids(|n| n == "bench-writer");
    let writer_cpu0: Vec<u64> = writer_tids
        .iter()
        .map(|&t| util::task_cpu_ns(t).unwrap_or(0))
        .collect();
    let cpu0 = util::process_cpu_ns();
    let t0 = Instant::now();
    let (lat, client_cpu) = run_clients(&clients, requests)?;
    let wall = t0.elapsed();
    let cpu = util::process_cpu_ns() - cpu0;
    let peak = sampler.stop();
    // The busiest harness thread over the timed run.
    let writer_cpu = writer_tids
        .iter()
        .zip(&writer_cpu0)
        .map(|(&t, &c0)| util::task_cpu_ns(t).unwrap_or(c0).saturating_sub(c0));
    let busiest = client_cpu.into_iter().chain(writer_cpu).max().unwrap_or(0);
    emit_row(
        &Row::new(label(&sys))
            .num("requests_per_s", requests as f64 / wall.as_secs_f64())
            .num("p50_ms", util::percentile(&lat, 50.0))
            .num("p99_ms", util::percentile(&lat, 99.0))
            .num("peak_threads", peak as f64)
            .num(
                "cpu_util_pct",
                100.0 * cpu as f64 / (wall.as_nanos() as f64 * ncpu as f64),
            )
            .num("cpu_us_per_request", cpu as f64 / 1e3 / requests as f64)
            .num(
                "harness_busy_pct",
                100.0 * busiest as f64 / wall.as_nanos() as f64,
            ),
    );
    drop(clients);
    // Without waiting for the blocking pool's idle threads.
    server.shutdown_background();
    Ok(())
}

/// One phase of the clients: send requests until `next` reaches `total`.
struct Phase {
    next: Arc<AtomicUsize>,
    total: usize,
}

/// A client thread: a current-thread runtime driving its connections.
/// Dropping it ends the thread.
struct Client {
    phases: mpsc::Sender<Phase>,
    /// Each phase's latencies (ms) and the thread's CPU time during it.
    results: mpsc::Receiver<Result<(Vec<f64>, u64), String>>,
}

impl Client {
    fn start(addr: std::net::SocketAddr, conns: usize) -> Result<Client, String> {
        let (phases, phase_rx) = mpsc::channel::<Phase>();
        let (result_tx, results) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        std::thread::Builder::new()
            .name("b10-client".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => return ready_tx.send(Err(format!("b10: client runtime: {e}"))),
                };
                let conns = rt.block_on(async {
                    let mut v = Vec::with_capacity(conns);
                    for _ in 0..conns {
                        let c = TcpStream::connect(addr).await?;
                        c.set_nodelay(true)?;
                        v.push(c);
                    }
                    Ok::<_, std::io::Error>(v)
                });
                let mut conns = match conns {
                    Ok(c) => c,
                    Err(e) => return ready_tx.send(Err(format!("b10: connect: {e}"))),
                };
                let _ = ready_tx.send(Ok(()));
                while let Ok(p) = phase_rx.recv() {
                    let cpu0 = util::thread_cpu_ns();
                    let r = drive(&rt, std::mem::take(&mut conns), &p);
                    let cpu = util::thread_cpu_ns() - cpu0;
                    let r = r.map(|(back, lat)| {
                        conns = back;
                        (lat, cpu)
                    });
                    if result_tx.send(r).is_err() {
                        break;
                    }
                }
                Ok(())
            })
            .map_err(|e| format!("b10: client thread: {e}"))?;
        ready
            .recv()
            .map_err(|_| "b10: a client thread died".to_string())??;
        Ok(Client { phases, results })
    }
}

/// Run `requests` requests over every client; the latencies (ms) and each
/// client thread's CPU time.
fn run_clients(clients: &[Client], requests: usize) -> Result<(Vec<f64>, Vec<u64>), String> {
    let next = Arc::new(AtomicUsize::new(0));
    for c in clients {
        c.phases
            .send(Phase {
                next: next.clone(),
                total: requests,
            })
            .map_err(|_| "b10: a client thread died")?;
    }
    let mut lat = Vec::with_capacity(requests);
    let mut cpu = Vec::with_capacity(clients.len());
    for c in clients {
        let (l, t) = c
            .results
            .recv()
            .map_err(|_| "b10: a client thread died".to_string())??;
        lat.extend(l);
        cpu.push(t);
    }
    if lat.len() != requests {
        return Err(format!("b10: {} of {requests} replies", lat.len()));
    }
    Ok((lat, cpu))
}

/// A client's phase: every connection sends its next request once the
/// reply to the last came, until the phase's requests were all sent; the
/// latency of each, ms.
fn drive(
    client: &tokio::runtime::Runtime,
    conns: Vec<TcpStream>,
    phase: &Phase,
) -> Result<(Vec<TcpStream>, Vec<f64>), String> {
    let requests = phase.total;
    let lat = Arc::new(Mutex::new(Vec::new()));
    let conns = client.block_on(async {
        let mut tasks = Vec::new();
        for mut c in conns {
            let (next, lat) = (phase.next.clone(), lat.clone());
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut buf = [0u8; 8];
                loop {
                    let id = next.fetch_add(1, Relaxed);
                    if id >= requests {
                        break;
                    }
                    let t = Instant::now();
                    c.write_all(&(id as u64).to_le_bytes()).await?;
                    c.read_exact(&mut buf).await?;
                    if u64::from_le_bytes(buf) != id as u64 {
                        return Err(std::io::Error::other("b10: a reply for another request"));
                    }
                    mine.push(t.elapsed().as_secs_f64() * 1e3);
                }
                lat.lock().unwrap().extend(mine);
                Ok::<_, std::io::Error>(c)
            }));
        }
        let mut back = Vec::with_capacity(tasks.len());
        for t in tasks {
            back.push(
                t.await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?,
            );
        }
        Ok::<_, String>(back)
    })?;
    let lat = std::mem::take(&mut *lat.lock().unwrap());
    Ok((conns, lat))
}

/// One connection of the server: request in, offloaded work, reply out.
async fn serve(mut conn: TcpStream, sys: String, writer: Arc<Writer>) {
    let mut buf = [0u8; 8];
    while conn.read_exact(&mut buf).await.is_ok() {
        let w = writer.clone();
        let work = move || {
            util::burn_cpu(CPU_PART);
            w.read_after(READ_DELAY);
            buf
        };
        let reply = match sys.as_str() {
            "tokio" => match tokio::task::spawn_blocking(work).await {
                Ok(r) => r,
                Err(_) => return,
            },
            "blocking" => blocking::unblock(work).await,
            _ => cmwq::unblock(work).await,
        };
        if conn.write_all(&reply).await.is_err() {
            return;
        }
    }
}
