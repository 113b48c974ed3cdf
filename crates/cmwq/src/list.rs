//! An intrusive doubly linked list, the kernel's `list_head`.
//!
//! A pool's worklist and a pool-workqueue's inactive list link work items
//! through a [`LinkCell`] stored inside the item's own allocation, as the
//! kernel links `work_struct::entry`. Queueing therefore never allocates
//! (G1's "no allocation per queue"), and a cancel removes an item from the
//! middle of a list in O(1). The list knows nothing of work items: what it
//! links is any [`Linked`] handle (`work::WorkList` is the list of
//! `Work`s).
//!
//! Ownership: a linked entry holds one strong reference to its allocation,
//! given to the list by [`List::push_back`] and returned by
//! [`List::pop_front`] or [`List::remove`]. The link of an entry is guarded
//! by the lock of the list it is on (for work items, the pool lock; the
//! item's state word says whether it is on a list and the pool id beside
//! it says which pool's lock guards it).

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ptr::NonNull;

/// An owning handle whose node can be linked on a [`List`].
///
/// # Safety
///
/// [`into_raw`](Self::into_raw) gives up one strong reference to the node
/// as a pointer that stays valid until [`from_raw`](Self::from_raw) takes
/// it back; [`as_ptr`](Self::as_ptr) is the pointer `into_raw` would give;
/// [`link`](Self::link) returns the same cell of the node every time.
pub(crate) unsafe trait Linked: Sized {
    /// What the list points to.
    type Node: ?Sized;
    /// Give up this handle's reference as a pointer to its node.
    fn into_raw(self) -> NonNull<Self::Node>;
    /// Take back a reference given up with `into_raw`.
    ///
    /// # Safety
    ///
    /// `p` came from `into_raw` and was not taken back yet.
    unsafe fn from_raw(p: NonNull<Self::Node>) -> Self;
    /// The node of this handle.
    fn as_ptr(&self) -> NonNull<Self::Node>;
    /// The cell inside the node that holds its list pointers.
    fn link(node: &Self::Node) -> &LinkCell<Self::Node>;
}

/// The list pointers inside a node. L: the lock of the list it is on.
pub(crate) struct Link<N: ?Sized> {
    prev: Option<NonNull<N>>,
    next: Option<NonNull<N>>,
}

/// The cell in which a node keeps its [`Link`].
pub(crate) struct LinkCell<N: ?Sized>(UnsafeCell<Link<N>>);

impl<N: ?Sized> LinkCell<N> {
    pub(crate) fn new() -> LinkCell<N> {
        LinkCell(UnsafeCell::new(Link {
            prev: None,
            next: None,
        }))
    }
}

// SAFETY: the link is only read or written by the holder of the lock of the
// list the node is on (see `List`'s method contracts), so sharing the
// cell between threads cannot produce a data race.
unsafe impl<N: ?Sized> Sync for LinkCell<N> {}
// SAFETY: `Link` holds pointers only (with metadata for unsized nodes),
// dereferenced only by the `List` whose lock guards them.
unsafe impl<N: ?Sized> Send for LinkCell<N> {}

/// An intrusive FIFO of `T`s. L: the owner's lock.
pub(crate) struct List<T: Linked> {
    head: Option<NonNull<T::Node>>,
    tail: Option<NonNull<T::Node>>,
    len: usize,
    /// The list owns one reference per entry.
    _own: PhantomData<T>,
}

// SAFETY: the list only stores references to `T`s and their nodes, which
// may be sent and shared (the bounds); it is always accessed under its
// owner's lock.
unsafe impl<T: Linked + Send + Sync> Send for List<T> where T::Node: Send + Sync {}
// SAFETY: as above; shared references only read `len`/`head` and visit
// the nodes (`for_each`), which `T::Node: Sync` allows.
unsafe impl<T: Linked + Send + Sync> Sync for List<T> where T::Node: Send + Sync {}

impl<T: Linked> Default for List<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Linked> List<T> {
    pub(crate) const fn new() -> List<T> {
        List {
            head: None,
            tail: None,
            len: 0,
            _own: PhantomData,
        }
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// # Safety
    ///
    /// `p`'s link must be guarded by the lock this list is under, which the
    /// caller holds (through `&self`/`&mut self` of the list).
    #[inline]
    unsafe fn link<'a>(p: NonNull<T::Node>) -> &'a mut Link<T::Node> {
        // SAFETY: the allocation is alive (the list holds a strong
        // reference) and the caller holds the lock that guards the link, so
        // no other reference to it exists.
        unsafe { &mut *T::link(p.as_ref()).0.get() }
    }

    /// Append `work`, taking over the caller's strong reference.
    ///
    /// # Safety
    ///
    /// The caller holds the lock that guards this list, and `work` is on no
    /// list (its owner holds PENDING and has not linked it yet).
    #[inline]
    pub(crate) unsafe fn push_back(&mut self, work: T) {
        let p = work.into_raw();
        // SAFETY: `p` is on no list, so its link is ours under the lock.
        let l = unsafe { Self::link(p) };
        l.prev = self.tail;
        l.next = None;
        match self.tail {
            // SAFETY: `t` is on this list, guarded by the lock we hold.
            Some(t) => unsafe { Self::link(t).next = Some(p) },
            None => self.head = Some(p),
        }
        self.tail = Some(p);
        self.len += 1;
    }

    /// Take the first item, with the list's strong reference.
    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        let p = self.head?;
        // SAFETY: `p` is on this list: its link is guarded by our lock and
        // the list holds a strong reference to it.
        unsafe {
            self.unlink(p);
            Some(T::from_raw(p))
        }
    }

    /// Remove `work` from the middle of the list and return the list's
    /// strong reference to it.
    ///
    /// # Safety
    ///
    /// `work` is on this list.
    #[inline]
    pub(crate) unsafe fn remove(&mut self, work: &T) -> T {
        let p = work.as_ptr();
        // SAFETY: the caller guarantees `p` is on this list.
        unsafe {
            self.unlink(p);
            T::from_raw(p)
        }
    }

    /// # Safety
    ///
    /// `p` is on this list.
    unsafe fn unlink(&mut self, p: NonNull<T::Node>) {
        // SAFETY: `p` and its neighbours are on this list.
        unsafe {
            let l = Self::link(p);
            let (prev, next) = (l.prev.take(), l.next.take());
            match prev {
                Some(q) => Self::link(q).next = next,
                None => self.head = next,
            }
            match next {
                Some(n) => Self::link(n).prev = prev,
                None => self.tail = prev,
            }
        }
        self.len -= 1;
    }

    /// Move every item of `other` to the end of `self` (same lock).
    pub(crate) fn append(&mut self, other: &mut List<T>) {
        let Some(oh) = other.head.take() else { return };
        match self.tail {
            // SAFETY: both lists are guarded by the lock the caller holds.
            Some(t) => unsafe {
                Self::link(t).next = Some(oh);
                Self::link(oh).prev = Some(t);
            },
            None => self.head = Some(oh),
        }
        self.tail = other.tail.take();
        self.len += std::mem::take(&mut other.len);
    }

    /// Unlink the items for which `pred` holds, first to last, handing each
    /// to `take`; stop after the first if `only_first`.
    fn unlink_matching(
        &mut self,
        only_first: bool,
        mut pred: impl FnMut(&T::Node) -> bool,
        mut take: impl FnMut(T),
    ) {
        let mut cur = self.head;
        while let Some(p) = cur {
            // SAFETY: `p` is on this list, guarded by the lock we hold
            // (through `&mut self`); we read `next` before unlinking it.
            unsafe {
                cur = Self::link(p).next;
                if pred(p.as_ref()) {
                    self.unlink(p);
                    take(T::from_raw(p));
                    if only_first {
                        return;
                    }
                }
            }
        }
    }

    /// Move the items for which `pred` holds to a new list, keeping order.
    pub(crate) fn extract(&mut self, pred: impl FnMut(&T::Node) -> bool) -> List<T> {
        let mut out = List::new();
        // SAFETY: each item was just unlinked from this list and is on no
        // other; `out` is guarded by the same lock.
        self.unlink_matching(false, pred, |w| unsafe { out.push_back(w) });
        out
    }

    /// Unlink and return the first item for which `pred` holds (a rescuer
    /// taking its workqueue's items off a pool's worklist, one at a time so
    /// that the others stay where cancellers look for them).
    pub(crate) fn take_first(&mut self, pred: impl FnMut(&T::Node) -> bool) -> Option<T> {
        let mut got = None;
        self.unlink_matching(true, pred, |w| got = Some(w));
        got
    }

    /// Visit every item, first to last.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&T::Node)) {
        let mut cur = self.head;
        while let Some(p) = cur {
            // SAFETY: `p` is on this list, which we borrow, so it is alive
            // and its link is not being modified.
            unsafe {
                f(p.as_ref());
                cur = (*T::link(p.as_ref()).0.get()).next;
            }
        }
    }
}

impl<T: Linked> Drop for List<T> {
    fn drop(&mut self) {
        while let Some(w) = self.pop_front() {
            drop(w);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::pool::work::{Work, WorkList};

    fn names(l: &WorkList) -> Vec<&'static str> {
        let mut v = Vec::new();
        l.for_each(|w| v.push(w.name.unwrap()));
        v
    }

    #[test]
    fn push_pop_remove_append() {
        let items: Vec<Work> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| Work::named(n, |_| {}))
            .collect();
        let mut l = WorkList::new();
        for w in &items {
            // SAFETY: the test owns the list; items are on no list.
            unsafe { l.push_back(w.clone()) };
        }
        assert_eq!(l.len(), 4);
        assert_eq!(names(&l), ["a", "b", "c", "d"]);
        // SAFETY: "c" is on `l`.
        let c = unsafe { l.remove(&items[2]) };
        assert!(Work::ptr_eq(&c, &items[2]));
        assert_eq!(names(&l), ["a", "b", "d"]);
        // SAFETY: "a" is on `l` (head).
        drop(unsafe { l.remove(&items[0]) });
        // SAFETY: "d" is on `l` (tail).
        drop(unsafe { l.remove(&items[3]) });
        assert_eq!(names(&l), ["b"]);
        let mut m = WorkList::new();
        // SAFETY: items a, c, d are on no list now.
        unsafe {
            m.push_back(items[0].clone());
            m.push_back(c);
            m.push_back(items[3].clone());
        }
        l.append(&mut m);
        assert!(m.is_empty());
        assert_eq!(names(&l), ["b", "a", "c", "d"]);
        let first = l.pop_front().unwrap();
        assert!(Work::ptr_eq(&first, &items[1]));
        assert_eq!(l.len(), 3);
        drop(l); // releases the remaining references
        for w in &items {
            assert_eq!(
                Work::strong_count(w),
                1 + usize::from(Work::ptr_eq(w, &first))
            );
        }
    }

    #[test]
    fn references_are_held_while_linked() {
        let w = Work::new(|_| {});
        let mut l = WorkList::new();
        // SAFETY: `w` is on no list.
        unsafe { l.push_back(w.clone()) };
        assert_eq!(Work::strong_count(&w), 2);
        let back = l.pop_front().unwrap();
        drop(back);
        assert_eq!(Work::strong_count(&w), 1);
        assert!(l.pop_front().is_none());
    }
}
