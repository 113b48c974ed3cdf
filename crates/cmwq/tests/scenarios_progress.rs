//! G15, G16: the four "Example Execution Scenarios" of workqueue.rst and
//! the stall window, with block detection forced to `progress`: plain
//! sleeps, no hint; a pool that completes nothing for a while with work
//! pending starts another worker. See `scenarios/mod.rs`.
//!
//! Only scenario A runs here: in B, C and D an item burns CPU for longer
//! than the progress window while others wait, and a pool that completes
//! nothing looks the same whether its runner burns CPU or sleeps, so
//! progress mode starts the next item early there by design (the mode is
//! the last resort, for processes that may read neither perf records nor
//! `/proc`). For the same reason it does not tell a short block from a
//! long one.

mod common;
mod scenarios;

use cmwq::Detect;
use scenarios::Kind;

const MODE: Detect = Detect::Progress;

/// Apply this binary's Config (once, before first use); false: skip.
fn ready() -> bool {
    scenarios::setup(MODE)
}

#[test]
fn g15_scenario_a_original_wq_progress() {
    let _s = common::serial();
    if ready() {
        scenarios::check_scenario(Kind::A, MODE);
    }
}
