//! A counting global allocator: every allocation (and reallocation) is
//! counted, with its size, in counters private to the calling thread, so a
//! scenario can ask "how many allocations did *this* thread make during
//! these calls" without other threads' allocations mixing in, and without a
//! shared atomic that would slow every allocation of the peers down.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The allocator installed in `main.rs`: the system allocator plus
/// per-thread counts.
pub struct CountingAlloc;

thread_local! {
    // `const` initialisation and no destructor: using these from inside the
    // allocator never allocates nor registers a destructor.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

#[inline]
fn note(size: usize) {
    // `try_with`: during thread teardown the slots may be gone already.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
    let _ = BYTES.try_with(|c| c.set(c.get() + size as u64));
}

// SAFETY: every method forwards to `System` with the caller's arguments,
// unchanged; counting has no effect on the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded under the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded under the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded under the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded under the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations made by the calling thread since the scope was opened.
pub struct Scope {
    allocs: u64,
    bytes: u64,
}

impl Scope {
    pub fn new() -> Scope {
        Scope {
            allocs: ALLOCS.with(Cell::get),
            bytes: BYTES.with(Cell::get),
        }
    }

    /// Number of allocations since `new`.
    pub fn allocs(&self) -> u64 {
        ALLOCS.with(Cell::get) - self.allocs
    }

    /// Bytes asked for since `new`.
    pub fn bytes(&self) -> u64 {
        BYTES.with(Cell::get) - self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_this_threads_allocations() {
        let s = Scope::new();
        let b = std::hint::black_box(Box::new([0u8; 100]));
        assert_eq!(s.allocs(), 1);
        assert_eq!(s.bytes(), 100);
        drop(b);
        let s = Scope::new();
        std::thread::spawn(|| drop(std::hint::black_box(vec![1u8; 1000])))
            .join()
            .unwrap();
        // Spawning allocates on this thread, the vector does not count here.
        assert!(s.bytes() < 1000);
    }
}
