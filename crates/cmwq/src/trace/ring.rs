//! A worker's ring of execution records: one producer (the worker thread),
//! one consumer (the tracer draining it), no lock.
//!
//! ```text
//!   tail (consumer writes)        head (producer writes)
//!    |                             |
//!    v                             v
//!  [ read ][ read ][ full ][ full ][ free ][ free ] ... (capacity slots)
//! ```
//!
//! `head` and `tail` count records since the ring was made (they only grow;
//! a slot is `index % capacity`). The producer owns the slots in
//! `head..tail + capacity`, the consumer those in `tail..head`:
//!
//! * push: read `tail` (Acquire: the consumer's reads of the slot it
//!   frees happened before); if `head - tail == capacity` the ring is full
//!   and the record is dropped and counted (the worker never waits); else
//!   write slot `head`, then store `head + 1` (Release: publishes the slot).
//! * drain: read `head` (Acquire: the slots up to it are written), copy
//!   slots `tail..head`, then store `tail = head` (Release: hands them back).
//!
//! The loom model at the bottom checks that a drained record is always
//! the one pushed into that slot, and that nothing is lost or duplicated
//! except as counted.

use crate::loom::cell::UnsafeCell;
use crate::loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};

/// Blocked spans kept per execution (more are summed in `blocked_ns`).
pub(crate) const MAX_SPANS: usize = 4;

/// One execution, as the worker saw it. Plain data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Record {
    /// The workqueue (`Arc::as_ptr` of its shared part, as a number):
    /// resolved to a name when drained.
    pub(crate) wq: usize,
    /// The item's name.
    pub(crate) item: Option<&'static str>,
    /// The CPU it started on.
    pub(crate) cpu: u32,
    /// CLOCK_MONOTONIC ns when it was queued (0: before the trace began).
    pub(crate) queued_ns: u64,
    /// When it started and ended.
    pub(crate) start_ns: u64,
    /// When it ended.
    pub(crate) end_ns: u64,
    /// Time its worker was known blocked (hinted or detected).
    pub(crate) blocked_ns: u64,
    /// The first [`MAX_SPANS`] blocked spans, `(start, end)`.
    pub(crate) spans: [(u64, u64); MAX_SPANS],
    /// How many of `spans` are used.
    pub(crate) nspans: u8,
}

/// The ring. `I:` capacity and slots' count; `A:` the indices; slots are
/// owned as described in the module docs.
pub(crate) struct Ring {
    /// Owned by the producer or the consumer, by index (module docs).
    slots: Box<[UnsafeCell<Record>]>,
    /// A (written by the producer only): records pushed.
    head: AtomicUsize,
    /// A (written by the consumer only): records drained.
    tail: AtomicUsize,
    /// A: records dropped because the ring was full.
    lost: AtomicU64,
}

// SAFETY: the slots are plain data (`Record: Copy + Send`); each is
// accessed by one side at a time, as the head/tail protocol of the module
// docs hands it over with Release/Acquire.
unsafe impl Sync for Ring {}
// SAFETY: as above; the ring owns its slots.
unsafe impl Send for Ring {}

impl Ring {
    /// A ring of `capacity` records.
    pub(crate) fn new(capacity: usize) -> Ring {
        assert!(capacity > 0);
        Ring {
            slots: (0..capacity)
                .map(|_| UnsafeCell::new(Record::default()))
                .collect(),
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
            lost: AtomicU64::new(0),
        }
    }

    /// Append `r`, or count it lost if the ring is full. Never waits.
    ///
    /// # Safety
    ///
    /// Only one thread pushes to a ring (its worker).
    pub(crate) unsafe fn push(&self, r: Record) -> bool {
        let head = self.head.load(Relaxed); // only we write it
        let tail = self.tail.load(Acquire);
        if head.wrapping_sub(tail) >= self.slots.len() {
            self.lost.fetch_add(1, Relaxed);
            return false;
        }
        let slot = &self.slots[head % self.slots.len()];
        // SAFETY: slot `head` is in the producer's part (head - tail <
        // capacity) and we are the only producer; the consumer does not
        // touch it until it sees the `head` store below.
        slot.with_mut(|p| unsafe { *p = r });
        self.head.store(head.wrapping_add(1), Release);
        true
    }

    /// Move every record pushed so far into `out`.
    ///
    /// # Safety
    ///
    /// Only one thread drains a ring at a time (the tracer, under its lock).
    pub(crate) unsafe fn drain(&self, out: &mut Vec<Record>) -> usize {
        let tail = self.tail.load(Relaxed); // only we write it
        let head = self.head.load(Acquire);
        let n = head.wrapping_sub(tail);
        for i in 0..n {
            let slot = &self.slots[tail.wrapping_add(i) % self.slots.len()];
            // SAFETY: slots `tail..head` are the consumer's: the producer
            // published them (the Acquire above) and will not write them
            // before the `tail` store below hands them back.
            out.push(slot.with(|p| unsafe { *p }));
        }
        self.tail.store(head, Release);
        n
    }

    /// Records dropped so far because the ring was full.
    pub(crate) fn lost(&self) -> u64 {
        self.lost.load(Relaxed)
    }

    /// Records pushed and not drained yet.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.head
            .load(Acquire)
            .wrapping_sub(self.tail.load(Acquire))
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_models;
