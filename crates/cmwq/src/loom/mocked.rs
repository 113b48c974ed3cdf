pub(crate) mod sync {
    pub(crate) mod atomic {
        pub(crate) use loom::sync::atomic::{
            fence, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
        };
    }
}

/// Under loom a spin must yield so the model can schedule the other thread.
#[inline]
pub(crate) fn spin_loop_hint() {
    loom::thread::yield_now();
}

/// See `std_impl.rs`: loom models `SeqCst` accesses as acquire/release, so
/// the total order they give a normal build is made explicit here.
#[inline]
pub(crate) fn sc_point() {
    loom::sync::atomic::fence(loom::sync::atomic::Ordering::SeqCst);
}

/// Under loom a wait yields to the model's scheduler.
#[inline]
pub(crate) fn backoff(_round: u32) {
    loom::thread::yield_now();
}

pub(crate) mod cell {
    pub(crate) use loom::cell::UnsafeCell;
}
