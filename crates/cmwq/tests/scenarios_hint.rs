//! G15, G16: the four "Example Execution Scenarios" of workqueue.rst and
//! the stall window, with block detection forced to `hint`: the scenarios'
//! sleeps are wrapped in `cmwq::blocking`, the only way a worker is known
//! to block in this mode. See `scenarios/mod.rs`.

mod common;
mod scenarios;

use cmwq::Detect;
use scenarios::Kind;

const MODE: Detect = Detect::Hint;

/// Apply this binary's Config (once, before first use); false: skip.
fn ready() -> bool {
    scenarios::setup(MODE)
}

#[test]
fn g15_scenario_a_original_wq_hint() {
    let _s = common::serial();
    if ready() {
        scenarios::check_scenario(Kind::A, MODE);
    }
}

#[test]
fn g15_scenario_b_max_active_3_hint() {
    let _s = common::serial();
    if ready() {
        scenarios::check_scenario(Kind::B, MODE);
    }
}

#[test]
fn g15_scenario_c_max_active_2_hint() {
    let _s = common::serial();
    if ready() {
        scenarios::check_scenario(Kind::C, MODE);
    }
}

#[test]
fn g16_scenario_d_cpu_intensive_hint() {
    let _s = common::serial();
    if ready() {
        scenarios::check_scenario(Kind::D, MODE);
    }
}

#[test]
fn g15_short_blocks_do_not_start_a_worker_hint() {
    let _s = common::serial();
    if ready() {
        scenarios::check_short_blocks(MODE);
    }
}

/// G19 with detection off (hint only): an unbound pool cannot learn that
/// its runners blocked, so it keeps the kernel's unmanaged behaviour and
/// items that wait for each other without the hint still make progress.
/// (Managed with nothing to detect blocks, the waiters took every running
/// slot and the item they waited for started only when they gave up.)
#[test]
fn g19_unbound_items_waiting_on_each_other_progress_in_hint_mode() {
    let _s = common::serial();
    if !ready() {
        return;
    }
    use std::sync::mpsc;
    use std::time::{Duration, Instant};
    let n = 2 * cmwq::nr_cpus();
    let (tx, rx) = mpsc::channel::<()>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let t0 = Instant::now();
    let waiters: Vec<cmwq::Work> = (0..n)
        .map(|_| {
            let rx = rx.clone();
            cmwq::system_unbound_wq().spawn(move || {
                let _ = rx.lock().unwrap().recv_timeout(Duration::from_secs(5));
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    let releaser = cmwq::system_unbound_wq().spawn(move || {
        for _ in 0..n {
            let _ = tx.send(());
        }
    });
    releaser.flush();
    for w in &waiters {
        w.flush();
    }
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "waiters and the item they wait for took {took:?}"
    );
}
