//! A long-running program to look into from outside: `cmwq ps`, `cmwq top
//! PID`, `cmwq monitor PID`, `cmwq dump PID`, `cmwq trace PID`.
//!
//! ```text
//! cargo run --release -p cmwq-cli --example service -- [--batch N] [--seconds S]
//! ```
//!
//! It turns the control socket on (unless `CMWQ_CONTROL` says), runs
//! exactly N items (default 1000) on the workqueue `service_batch` and
//! flushes it, prints `ready PID`, then keeps three workqueues busy until
//! S seconds have passed (default: until killed): `service_cpu` (bound,
//! items of 200 us of CPU), `service_io` (bound, items that block 2 ms in
//! a socket read, no hint) and `service_unbound` (items of 1 ms of CPU).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn main() {
    let mut batch = 1000u64;
    let mut seconds: Option<f64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next();
        match (a.as_str(), v) {
            ("--batch", Some(v)) => batch = v.parse().expect("--batch N"),
            ("--seconds", Some(v)) => seconds = Some(v.parse().expect("--seconds S")),
            _ => {
                eprintln!("usage: service [--batch N] [--seconds S]");
                std::process::exit(2);
            }
        }
    }
    if std::env::var_os("CMWQ_CONTROL").is_none() {
        cmwq::Config::default()
            .control(true)
            .apply()
            .expect("before first use");
    }

    let wq = cmwq::Workqueue::new("service_batch").unwrap();
    let items: Vec<cmwq::Work> = (0..batch)
        .map(|_| cmwq::Work::named("batch_item", |_| spin(Duration::from_micros(20))))
        .collect();
    for w in &items {
        wq.queue(w);
    }
    wq.flush();
    println!("ready {}", std::process::id());
    std::io::stdout().flush().unwrap();

    let cpu = cmwq::Workqueue::new("service_cpu").unwrap();
    let io = cmwq::Workqueue::new("service_io").unwrap();
    let unbound = cmwq::Workqueue::builder("service_unbound")
        .flags(cmwq::WqFlags::UNBOUND)
        .build()
        .unwrap();
    let crunch = cmwq::Work::named("crunch", |_| spin(Duration::from_micros(200)));
    let hash = cmwq::Work::named("hash", |_| spin(Duration::from_millis(1)));
    // Blocking reads: a helper thread writes the byte 2 ms later.
    let reads: Vec<cmwq::Work> = (0..4)
        .map(|_| {
            cmwq::Work::named("socket_read", |_| {
                let (mut r, mut w) = std::os::unix::net::UnixStream::pair().unwrap();
                let writer = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(2));
                    let _ = w.write_all(b"x");
                });
                let mut b = [0u8; 1];
                let _ = r.read_exact(&mut b);
                let _ = writer.join();
            })
        })
        .collect();
    let t0 = Instant::now();
    while seconds.is_none_or(|s| t0.elapsed().as_secs_f64() < s) {
        cpu.queue(&crunch);
        unbound.queue(&hash);
        for r in &reads {
            io.queue(r);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    cpu.flush();
    io.flush();
    unbound.flush();
}
