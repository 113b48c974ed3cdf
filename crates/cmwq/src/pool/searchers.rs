//! The handshake between a lane group's queuers and its searchers
//! (`README.md`, "Lanes"), stated apart so that loom can check it.
//!
//! A queuer that leaves items behind its lane's busy runner publishes the
//! lane's length, then asks [`Searchers::claim`] whether to wake a worker
//! of an idle sibling to search: only if no searcher is out. A searcher
//! that has looked calls [`Searchers::done`], then looks at the published
//! lengths once more. Both sides put a SeqCst fence between their write
//! and their read, so at least one of them sees the other: either the
//! queuer sees no searcher out and wakes one, or the searcher sees the
//! queuer's items. Without that, a lane could idle while items wait behind
//! a busy runner (`loom_models.rs` finds the interleaving when a fence is
//! taken out).

use crate::loom::sync::atomic::{fence, AtomicU32, Ordering::*};

/// Workers woken to search that have not finished looking (Go's
/// `nmspinning`; at most one here). A: changed by queuers (`claim`,
/// `give_back`) and searchers (`done`).
pub(crate) struct Searchers(AtomicU32);

impl Searchers {
    pub(crate) fn new() -> Searchers {
        Searchers(AtomicU32::new(0))
    }

    /// A queuer has published its lane's length: may it wake a searcher?
    /// Only if none is out; it then counts one, which the woken worker
    /// gives back with [`done`](Self::done) (or the queuer, having found
    /// nobody to wake, with [`give_back`](Self::give_back)).
    #[inline]
    pub(crate) fn claim(&self) -> bool {
        fence(SeqCst);
        self.0.load(Relaxed) == 0 && self.0.compare_exchange(0, 1, SeqCst, Relaxed).is_ok()
    }

    /// After [`claim`](Self::claim): nobody could be woken.
    pub(crate) fn give_back(&self) {
        self.0.fetch_sub(1, SeqCst);
    }

    /// A searcher has looked (or leaves without looking): it stops
    /// counting. The caller looks at the published lengths once more.
    #[inline]
    pub(crate) fn done(&self) {
        self.0.fetch_sub(1, SeqCst);
        fence(SeqCst);
    }

    /// After `fork()`, in the child: no searcher of the parent exists.
    pub(crate) fn reset(&self) {
        self.0.store(0, SeqCst);
    }
}

#[cfg(all(test, loom))]
mod loom_models;
