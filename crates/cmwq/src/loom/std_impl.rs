pub(crate) mod sync {
    pub(crate) mod atomic {
        pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
    }
}

/// Spin hint used by retry loops.
#[inline]
pub(crate) fn spin_loop_hint() {
    std::hint::spin_loop();
}
