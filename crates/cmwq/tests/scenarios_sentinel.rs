//! G15, G16: the four "Example Execution Scenarios" of workqueue.rst and
//! the stall window, with block detection forced to `sentinel`: plain
//! sleeps, no hint; the per-CPU `SCHED_IDLE` sentinels find the blocks
//! when the CPU goes idle. See `scenarios/mod.rs`.

mod common;
mod scenarios;

use cmwq::Detect;
use scenarios::Kind;

const MODE: Detect = Detect::Sentinel;

/// Apply this binary's Config (once, before first use); false: skip.
fn ready() -> bool {
    scenarios::setup(MODE)
}

#[test]
fn g15_scenario_a_original_wq_sentinel() {
    let _s = common::serial();
    if ready() {
        scenarios::check_scenario(Kind::A, MODE);
    }
}

#[test]
fn g15_scenario_b_max_active_3_sentinel() {
    let _s = common::serial();
    if ready() {
        scenarios::check_scenario(Kind::B, MODE);
    }
}

#[test]
fn g15_scenario_c_max_active_2_sentinel() {
    let _s = common::serial();
    if ready() {
        scenarios::check_scenario(Kind::C, MODE);
    }
}

#[test]
fn g16_scenario_d_cpu_intensive_sentinel() {
    let _s = common::serial();
    if ready() {
        scenarios::check_scenario(Kind::D, MODE);
    }
}

#[test]
fn g15_short_blocks_do_not_start_a_worker_sentinel() {
    let _s = common::serial();
    if ready() {
        scenarios::check_short_blocks(MODE);
    }
}

/// A CPU hog on the spare a sentinel woke (to take over from a runner it
/// found blocked) is flagged near the threshold, although the monitor is
/// not woken at every sentinel mark (`policy::wake_to_follow`).
#[test]
fn g16_a_hog_on_a_worker_woken_for_a_blocked_runner_is_flagged_in_time_sentinel() {
    let _s = common::serial();
    if ready() {
        scenarios::check_hog_on_a_woken_worker();
    }
}
