pub(crate) mod sync {
    pub(crate) mod atomic {
        pub(crate) use std::sync::atomic::{
            fence, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
        };
    }
}

/// Spin hint used by retry loops.
#[inline]
pub(crate) fn spin_loop_hint() {
    std::hint::spin_loop();
}

/// A point that orders with the `SeqCst` operations around it. In a normal
/// build the `SeqCst` read-modify-writes and loads on either side already
/// form the total order the protocol needs, so this is nothing; loom models
/// `SeqCst` accesses as acquire/release only, so under loom it is a
/// `SeqCst` fence, which loom does model.
#[inline(always)]
pub(crate) fn sc_point() {}

/// Wait a little in a retry loop that may have to wait for another thread
/// to finish a short section.
#[inline]
pub(crate) fn backoff(round: u32) {
    if round < 64 {
        std::hint::spin_loop();
    } else if round < 128 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
}

pub(crate) mod cell {
    /// `std::cell::UnsafeCell` with loom's closure interface, so code can
    /// be modelled under `--cfg loom` unchanged.
    #[derive(Debug, Default)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) fn new(v: T) -> UnsafeCell<T> {
            UnsafeCell(std::cell::UnsafeCell::new(v))
        }

        /// Run `f` with a shared pointer to the value.
        #[inline(always)]
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Run `f` with a mutable pointer to the value.
        #[inline(always)]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}
