//! Atomics and helpers that are swapped for [loom]'s under `--cfg loom`.
//!
//! The pattern is tokio's `src/loom/`: code whose interleavings we model
//! imports its atomics from `crate::loom::sync::atomic` instead of
//! `std::sync::atomic`. A normal build re-exports std; a `--cfg loom` build
//! re-exports loom's instrumented types, and the loom models in
//! `pool/work/state.rs` explore every interleaving of the state word's
//! transitions.
//!
//! [loom]: https://docs.rs/loom

#[cfg(not(loom))]
mod std_impl;
#[cfg(not(loom))]
pub(crate) use std_impl::*;

#[cfg(loom)]
mod mocked;
#[cfg(loom)]
pub(crate) use mocked::*;
