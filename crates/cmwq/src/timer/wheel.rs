//! A hierarchical timing wheel (the scheme of the kernel's timer wheel and
//! tokio's `time/wheel`): six levels of 64 slots; a slot of level `L` spans
//! `64^L` ticks, so the wheel covers `64^6` ticks (2.2 years of 1 ms ticks).
//!
//! * insert and remove are O(1): an entry goes to the lowest level whose
//!   current window contains its deadline, into the slot of that deadline,
//!   and unlinks itself from there;
//! * finding the next deadline is O(levels): each level keeps a 64-bit
//!   occupancy map, and any entry of a lower level is due before every entry
//!   of a higher one;
//! * expiring a slot of level `L > 0` moves its entries down a level
//!   (cascading), each entry at most once per level.
//!
//! Entries live in a slab owned by the wheel and are linked by index, so the
//! wheel needs no unsafe code and allocates only when the slab grows (once
//! per work item that is ever armed, never per arm).

/// Bits per level.
const BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << BITS;
/// Levels.
pub(crate) const LEVELS: usize = 6;
/// The farthest deadline, in ticks from `elapsed`, that the wheel can hold;
/// later ones are clamped and re-inserted when reached.
pub(crate) const MAX_TICKS: u64 = (1 << (BITS * LEVELS as u32)) - 1;

const NONE: u32 = u32::MAX;

/// Where an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loc {
    Free,
    Idle,
    /// In `levels[level].slots[slot]`.
    Slot(u8, u8),
    /// In the expired list (deadline already reached when inserted).
    Expired,
}

#[derive(Debug)]
struct Entry<T> {
    loc: Loc,
    prev: u32,
    next: u32,
    /// Deadline in ticks (clamped to the wheel's range).
    tick: u64,
    data: T,
}

#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
}

impl List {
    const EMPTY: List = List {
        head: NONE,
        tail: NONE,
    };
}

struct Level {
    occupied: u64,
    slots: [List; SLOTS],
}

/// The wheel. `T` is the per-entry payload (the timer's target).
pub(crate) struct Wheel<T> {
    /// Current time of the wheel, in ticks: every deadline up to it has been
    /// returned by [`expire`](Self::expire).
    elapsed: u64,
    levels: Box<[Level]>,
    expired: List,
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    armed: usize,
    /// Arms counted so far (see [`next_seq`](Self::next_seq)).
    seq: u64,
}

/// Where the next deadline is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Expiration {
    level: usize,
    slot: usize,
    /// Tick at which the slot is due.
    deadline: u64,
}

impl<T: Default> Wheel<T> {
    pub(crate) fn new() -> Wheel<T> {
        Wheel {
            elapsed: 0,
            levels: (0..LEVELS)
                .map(|_| Level {
                    occupied: 0,
                    slots: [List::EMPTY; SLOTS],
                })
                .collect(),
            expired: List::EMPTY,
            entries: Vec::new(),
            free: Vec::new(),
            armed: 0,
            seq: 0,
        }
    }

    /// A number that grows with every call: callers that keep entries of
    /// one deadline in arming order stamp each arm with it (it needs no
    /// atomic, the wheel's lock already orders the arms).
    #[inline]
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// A new idle entry (not armed). Allocates only when the slab grows.
    pub(crate) fn alloc(&mut self) -> u32 {
        let e = Entry {
            loc: Loc::Idle,
            prev: NONE,
            next: NONE,
            tick: 0,
            data: T::default(),
        };
        match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = e;
                i
            }
            None => {
                self.entries.push(e);
                (self.entries.len() - 1) as u32
            }
        }
    }

    /// Give an entry back. It must not be armed.
    pub(crate) fn free(&mut self, id: u32) {
        let e = &mut self.entries[id as usize];
        debug_assert_eq!(e.loc, Loc::Idle);
        e.loc = Loc::Free;
        e.data = T::default();
        self.free.push(id);
    }

    pub(crate) fn data(&self, id: u32) -> &T {
        &self.entries[id as usize].data
    }

    pub(crate) fn data_mut(&mut self, id: u32) -> &mut T {
        &mut self.entries[id as usize].data
    }

    pub(crate) fn is_armed(&self, id: u32) -> bool {
        matches!(self.entries[id as usize].loc, Loc::Slot(..) | Loc::Expired)
    }

    /// Number of entries in the slab (armed or not).
    pub(crate) fn slab_len(&self) -> usize {
        self.entries.len()
    }

    /// Number of armed entries.
    pub(crate) fn armed(&self) -> usize {
        self.armed
    }

    /// Arm `id` for `tick` (moving it if it is armed already). A move
    /// within the slot the entry is in already (the common case of a
    /// debounce, whose deadline creeps forward by the time between two
    /// re-arms) only updates the deadline.
    pub(crate) fn insert(&mut self, id: u32, tick: u64) {
        let tick = tick.min(self.elapsed + MAX_TICKS);
        if self.is_armed(id) {
            if self.entries[id as usize].loc == self.loc_for(tick) {
                self.entries[id as usize].tick = tick;
                return;
            }
            self.unlink(id);
        } else {
            self.armed += 1;
        }
        self.entries[id as usize].tick = tick;
        self.link(id);
    }

    /// Where an entry due at `tick` belongs now.
    #[inline]
    fn loc_for(&self, tick: u64) -> Loc {
        if tick <= self.elapsed {
            return Loc::Expired;
        }
        let level = level_for(self.elapsed, tick);
        let slot = (tick >> (level as u32 * BITS)) & (SLOTS as u64 - 1);
        Loc::Slot(level as u8, slot as u8)
    }

    /// Disarm `id`; false if it was not armed.
    pub(crate) fn remove(&mut self, id: u32) -> bool {
        if !self.is_armed(id) {
            return false;
        }
        self.unlink(id);
        self.entries[id as usize].loc = Loc::Idle;
        self.armed -= 1;
        true
    }

    fn link(&mut self, id: u32) {
        let loc = self.loc_for(self.entries[id as usize].tick);
        self.entries[id as usize].loc = loc;
        match loc {
            Loc::Slot(level, slot) => {
                let (level, slot) = (level as usize, slot as usize);
                let mut l = self.levels[level].slots[slot];
                self.push(&mut l, id);
                self.levels[level].slots[slot] = l;
                self.levels[level].occupied |= 1 << slot;
            }
            _ => {
                let mut l = self.expired;
                self.push(&mut l, id);
                self.expired = l;
            }
        }
    }

    fn push(&mut self, l: &mut List, id: u32) {
        let e = &mut self.entries[id as usize];
        e.prev = l.tail;
        e.next = NONE;
        if l.tail == NONE {
            l.head = id;
        } else {
            self.entries[l.tail as usize].next = id;
        }
        l.tail = id;
    }

    fn unlink(&mut self, id: u32) {
        let (loc, prev, next) = {
            let e = &self.entries[id as usize];
            (e.loc, e.prev, e.next)
        };
        let mut l = match loc {
            Loc::Slot(lv, s) => self.levels[lv as usize].slots[s as usize],
            Loc::Expired => self.expired,
            _ => unreachable!("unlink of an entry that is not armed"),
        };
        if prev == NONE {
            l.head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NONE {
            l.tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
        match loc {
            Loc::Slot(lv, s) => {
                let level = &mut self.levels[lv as usize];
                level.slots[s as usize] = l;
                if l.head == NONE {
                    level.occupied &= !(1 << s);
                }
            }
            _ => self.expired = l,
        }
        let e = &mut self.entries[id as usize];
        e.prev = NONE;
        e.next = NONE;
    }

    /// The earliest slot holding entries (lower levels are always due
    /// first).
    fn next_expiration(&self) -> Option<Expiration> {
        for (level, lv) in self.levels.iter().enumerate() {
            if lv.occupied == 0 {
                continue;
            }
            let shift = level as u32 * BITS;
            let now_slot = ((self.elapsed >> shift) & (SLOTS as u64 - 1)) as u32;
            let slot = ((lv.occupied.rotate_right(now_slot).trailing_zeros() + now_slot)
                % SLOTS as u32) as usize;
            let level_range = 1u64 << (shift + BITS);
            let level_start = self.elapsed & !(level_range - 1);
            let mut deadline = level_start + ((slot as u64) << shift);
            if deadline <= self.elapsed {
                // Only the top level wraps: its slots act as a ring.
                deadline += level_range;
            }
            return Some(Expiration {
                level,
                slot,
                deadline,
            });
        }
        None
    }

    /// The tick of the next deadline, if anything is armed.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        if self.expired.head != NONE {
            return Some(self.elapsed);
        }
        self.next_expiration().map(|e| e.deadline)
    }

    /// Disarm every armed entry, handing each to `f`, without moving time
    /// (a forked child, where none of the parent's timers may fire).
    pub(crate) fn disarm_all(&mut self, mut f: impl FnMut(u32, &mut T)) {
        for id in 0..self.entries.len() as u32 {
            if self.is_armed(id) {
                self.unlink(id);
                self.entries[id as usize].loc = Loc::Idle;
                self.armed -= 1;
                f(id, &mut self.entries[id as usize].data);
            }
        }
    }

    /// Advance the wheel to `now` (ticks) and hand every entry whose
    /// deadline is at or before it to `fire` (disarmed), in no particular
    /// order within one tick.
    pub(crate) fn expire(&mut self, now: u64, mut fire: impl FnMut(u32, &mut T)) {
        loop {
            while self.expired.head != NONE {
                let id = self.expired.head;
                self.unlink(id);
                self.entries[id as usize].loc = Loc::Idle;
                self.armed -= 1;
                fire(id, &mut self.entries[id as usize].data);
            }
            let Some(exp) = self.next_expiration() else {
                break;
            };
            if exp.deadline > now {
                break;
            }
            self.elapsed = exp.deadline;
            // Take the slot and re-insert its entries: due ones go to the
            // expired list, later ones cascade to a lower level.
            let mut l = std::mem::replace(&mut self.levels[exp.level].slots[exp.slot], List::EMPTY);
            self.levels[exp.level].occupied &= !(1 << exp.slot);
            while l.head != NONE {
                let id = l.head;
                l.head = self.entries[id as usize].next;
                let e = &mut self.entries[id as usize];
                e.prev = NONE;
                e.next = NONE;
                self.link(id);
            }
        }
        if now > self.elapsed {
            self.elapsed = now;
        }
    }
}

/// The level of a deadline `when` seen from `elapsed`: the highest 6-bit
/// group in which they differ.
fn level_for(elapsed: u64, when: u64) -> usize {
    let masked = (elapsed ^ when) | (SLOTS as u64 - 1);
    let masked = masked.min(MAX_TICKS);
    let significant = 63 - masked.leading_zeros();
    (significant / BITS) as usize
}

#[cfg(all(test, not(loom)))]
mod tests;
