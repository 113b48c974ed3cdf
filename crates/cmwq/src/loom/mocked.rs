pub(crate) mod sync {
    pub(crate) mod atomic {
        pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
    }
}

/// Under loom a spin must yield so the model can schedule the other thread.
#[inline]
pub(crate) fn spin_loop_hint() {
    loom::thread::yield_now();
}
