//! A small RCU for a pointer that is read on every queue and replaced
//! rarely: the pwq table of a workqueue (the kernel protects
//! `wq->cpu_pwq` with RCU for the same reason).
//!
//! Readers announce themselves in one of a few cache-line-sized counters
//! (picked by the caller, normally by CPU, so readers on different CPUs do
//! not share a line), then load the pointer; a writer swaps the pointer,
//! then waits until every counter has been seen at zero, after which no
//! reader can still hold the old value, and frees it.
//!
//! Why that is enough: the reader's increment and load, and the writer's
//! swap and counter loads, are all `SeqCst`, so they fall into one total
//! order. If the reader's load comes after the swap in it, the reader got
//! the new pointer. Otherwise its increment (before its load) also came
//! before the swap, so every counter load of the writer after the swap
//! sees it until the reader's decrement, whose release orders the
//! reader's last use of the old value before the writer frees it. The loom
//! model `loom_rcu_reader_never_sees_freed` checks this (with explicit
//! fences, as loom models `SeqCst` accesses as acquire/release only).
//!
//! A cell made without reader slots costs readers nothing: replaced values
//! are then kept until the cell is dropped. That suits the tables of bound
//! and ordered workqueues, which are replaced once, when the workqueue is
//! destroyed.
//!
//! Fields: `A`: atomic. `W`: changed only by the writer, which callers
//! serialise (see [`Rcu::replace`]).

use std::sync::Mutex;

use crate::loom::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::*};
use crate::loom::{backoff, sc_point};

/// Most reader slots a cell has (readers map onto them modulo this).
pub(crate) const MAX_READER_SLOTS: usize = 64;

/// One reader counter on its own cache line (two lines: adjacent-line
/// prefetch pairs them on x86).
#[repr(align(128))]
struct Slot(AtomicUsize);

/// An RCU-protected pointer to a `T`.
pub(crate) struct Rcu<T> {
    /// A: the current value, from `Box::into_raw`.
    current: AtomicPtr<T>,
    /// A: readers in their section, per slot (empty: an unguarded cell).
    readers: Box<[Slot]>,
    /// W: values replaced in an unguarded cell, freed with the cell.
    #[allow(clippy::vec_box)] // boxes keep their address while the Vec grows
    retired: Mutex<Vec<Box<T>>>,
}

// SAFETY: the cell owns the `T`s it points to and hands out only shared
// references to them, to any thread: it is `Send`/`Sync` exactly when a
// `T` may be shared and sent.
unsafe impl<T: Send + Sync> Send for Rcu<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Rcu<T> {}

impl<T> Rcu<T> {
    /// A cell holding `v`. `slots == 0` makes an unguarded cell (readers
    /// pay nothing, replaced values live as long as the cell).
    pub(crate) fn new(v: T, slots: usize) -> Rcu<T> {
        let slots = slots.min(MAX_READER_SLOTS);
        Rcu {
            current: AtomicPtr::new(Box::into_raw(Box::new(v))),
            readers: (0..slots).map(|_| Slot(AtomicUsize::new(0))).collect(),
            retired: Mutex::new(Vec::new()),
        }
    }

    /// Run `f` on the current value. `slot` spreads readers over the
    /// counters (any number; the CPU the caller runs on is best). `f` must
    /// be short and must not wait for a writer of this cell.
    #[inline]
    pub(crate) fn read<R>(&self, slot: usize, f: impl FnOnce(&T) -> R) -> R {
        if self.readers.is_empty() {
            // SAFETY: an unguarded cell frees values only when it is
            // dropped, which cannot happen while `&self` is borrowed.
            return f(unsafe { &*self.current.load(Acquire) });
        }
        let c = &self.readers[slot % self.readers.len()].0;
        c.fetch_add(1, SeqCst);
        sc_point();
        // Leaves the section even if `f` unwinds.
        struct Leave<'a>(&'a AtomicUsize);
        impl Drop for Leave<'_> {
            #[inline]
            fn drop(&mut self) {
                self.0.fetch_sub(1, Release);
            }
        }
        let _leave = Leave(c);
        // SAFETY: we are counted in `c` since before this load (in the
        // total order of the module docs), so a writer that replaces this
        // value waits for our decrement before freeing it.
        f(unsafe { &*self.current.load(SeqCst) })
    }

    /// After `fork()`, in the child: the readers counted in the parent are
    /// threads that do not exist here.
    pub(crate) fn reset_readers_after_fork(&self) {
        for s in self.readers.iter() {
            s.0.store(0, SeqCst);
        }
    }

    /// Install `v`. Callers serialise writers (one lock around every
    /// `replace`). A guarded cell waits until no reader can hold the old
    /// value and returns it; an unguarded one keeps it and returns `None`.
    /// Must not be called from inside [`read`](Self::read) of this cell.
    pub(crate) fn replace(&self, v: T) -> Option<Box<T>> {
        let new = Box::into_raw(Box::new(v));
        let old = self.current.swap(new, SeqCst);
        sc_point();
        // SAFETY: `old` came from `Box::into_raw` and is no longer
        // reachable through `current`; this writer alone owns it now (it is
        // only freed below, or with the cell).
        let old = unsafe { Box::from_raw(old) };
        if self.readers.is_empty() {
            self.retired
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(old);
            return None;
        }
        for s in self.readers.iter() {
            let mut round = 0;
            while s.0.load(SeqCst) != 0 {
                backoff(round);
                round = round.saturating_add(1);
            }
        }
        Some(old)
    }

    /// Values kept by an unguarded cell (for tests).
    #[cfg(all(test, not(loom)))]
    fn retired_len(&self) -> usize {
        self.retired.lock().unwrap().len()
    }
}

impl<T> Drop for Rcu<T> {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no reader or writer is left; the pointer came
        // from `Box::into_raw`.
        drop(unsafe { Box::from_raw(self.current.load(Acquire)) });
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

/// Loom model of the reader/writer protocol: run with
/// `RUSTFLAGS="--cfg loom" cargo test -p cmwq --lib --release loom_`.
#[cfg(all(test, loom))]
mod loom_models;
