//! Unit tests of `wheel` (in a file of their own, beside the code).

use super::*;

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn levels() {
    assert_eq!(level_for(0, 1), 0);
    assert_eq!(level_for(0, 63), 0);
    assert_eq!(level_for(0, 64), 1);
    assert_eq!(level_for(0, 4095), 1);
    assert_eq!(level_for(0, 4096), 2);
    assert_eq!(level_for(100, 120), 0);
    assert_eq!(level_for(0, MAX_TICKS), LEVELS - 1);
    assert_eq!(level_for(0, u64::MAX), LEVELS - 1);
}

#[test]
fn fires_at_deadline_not_before() {
    let mut w: Wheel<u64> = Wheel::new();
    let a = w.alloc();
    *w.data_mut(a) = 7;
    w.insert(a, 100);
    assert_eq!(w.next_deadline(), Some(64), "level 1 slot starting at 64");
    let mut fired = Vec::new();
    w.expire(99, |id, d| fired.push((id, *d)));
    assert!(fired.is_empty(), "cascaded, not fired");
    assert_eq!(w.next_deadline(), Some(100));
    w.expire(100, |id, d| fired.push((id, *d)));
    assert_eq!(fired, vec![(a, 7)]);
    assert!(!w.is_armed(a));
    assert_eq!(w.armed(), 0);
    assert_eq!(w.next_deadline(), None);
}

#[test]
fn disarm_all_keeps_time_and_empties_the_wheel() {
    let mut w: Wheel<u64> = Wheel::new();
    let ids: Vec<u32> = (0..5).map(|_| w.alloc()).collect();
    for (i, &id) in ids.iter().enumerate() {
        *w.data_mut(id) = i as u64;
        w.insert(id, [0, 5, 70, 5000, 300_000][i]);
    }
    w.expire(10, |_, _| {});
    let mut got = Vec::new();
    w.disarm_all(|_, d| got.push(*d));
    got.sort();
    assert_eq!(got, vec![2, 3, 4], "the not yet fired ones");
    assert_eq!(w.armed(), 0);
    assert_eq!(w.next_deadline(), None);
    // Time did not move: a new timer fires at its own deadline.
    w.insert(ids[0], 20);
    let mut fired = 0;
    w.expire(19, |_, _| fired += 1);
    assert_eq!(fired, 0);
    w.expire(20, |_, _| fired += 1);
    assert_eq!(fired, 1);
}

#[test]
fn remove_and_rearm() {
    let mut w: Wheel<()> = Wheel::new();
    let a = w.alloc();
    w.insert(a, 10);
    assert!(w.remove(a));
    assert!(!w.remove(a));
    w.insert(a, 5000);
    w.insert(a, 20); // moved
    let mut n = 0;
    w.expire(19, |_, _| n += 1);
    assert_eq!(n, 0);
    w.expire(20, |_, _| n += 1);
    assert_eq!(n, 1);
    w.free(a);
    assert_eq!(w.alloc(), a, "slab reuses entries");
}

#[test]
fn a_move_within_its_slot_keeps_the_new_deadline() {
    let mut w: Wheel<u32> = Wheel::new();
    let (a, b) = (w.alloc(), w.alloc());
    *w.data_mut(a) = 1;
    *w.data_mut(b) = 2;
    // Level 2 (slots of 4096 ticks): 70_000 and 70_010 share slot 17.
    w.insert(a, 70_000);
    w.insert(b, 70_005);
    let Loc::Slot(lv, sl) = w.entries[a as usize].loc else {
        panic!("armed in a slot")
    };
    w.insert(a, 70_010);
    // Not relinked: a relink would have put `a` behind `b`.
    let list = w.levels[lv as usize].slots[sl as usize];
    assert_eq!((list.head, list.tail), (a, b), "moved in place");
    assert_eq!(w.armed(), 2);
    let mut fired = Vec::new();
    w.expire(70_004, |_, d| fired.push(*d));
    assert!(fired.is_empty(), "cascaded, nothing due");
    assert_eq!(w.next_deadline(), Some(70_005), "b is next, a later");
    w.expire(70_009, |_, d| fired.push(*d));
    assert_eq!(fired, vec![2], "b at its deadline, a not yet");
    w.expire(70_010, |_, d| fired.push(*d));
    assert_eq!(fired, vec![2, 1], "a at its new deadline");
    // After a cascade to level 0, a move to the next tick fires there.
    w.insert(a, 70_100);
    w.expire(70_080, |_, d| fired.push(*d));
    assert!(matches!(w.entries[a as usize].loc, Loc::Slot(0, _)));
    w.insert(a, 70_101);
    w.expire(70_100, |_, d| fired.push(*d));
    assert_eq!(fired.len(), 2, "not at the old tick");
    w.expire(70_101, |_, d| fired.push(*d));
    assert_eq!(fired, vec![2, 1, 1]);
    // A move back to an earlier tick of the same slot is honoured too.
    w.insert(a, 140_000);
    w.insert(a, 139_990);
    w.expire(139_990, |_, d| fired.push(*d));
    assert_eq!(fired, vec![2, 1, 1, 1]);
}

#[test]
fn past_deadlines_fire_on_the_next_expire() {
    let mut w: Wheel<()> = Wheel::new();
    w.expire(1000, |_, _| {});
    let a = w.alloc();
    w.insert(a, 3);
    assert_eq!(w.next_deadline(), Some(1000));
    let mut n = 0;
    w.expire(1000, |_, _| n += 1);
    assert_eq!(n, 1);
}

#[test]
fn far_deadlines_are_clamped_and_still_never_early() {
    let mut w: Wheel<()> = Wheel::new();
    let a = w.alloc();
    w.insert(a, u64::MAX / 2);
    assert!(w.next_deadline().unwrap() <= MAX_TICKS);
    let mut n = 0;
    w.expire(MAX_TICKS - 1, |_, _| n += 1);
    assert_eq!(n, 0);
    w.expire(MAX_TICKS, |_, _| n += 1);
    assert_eq!(n, 1, "clamped deadline reached: the caller re-arms");
}

/// Random arms, re-arms and removals against a model: every armed
/// entry fires exactly once, never before its deadline, and no later
/// than the first expire at or after it.
#[test]
fn randomized_against_a_model() {
    let mut seed = 0x1234_5678_9abc_def1u64;
    for round in 0..20 {
        let mut w: Wheel<()> = Wheel::new();
        let n = 300;
        let ids: Vec<u32> = (0..n).map(|_| w.alloc()).collect();
        let mut model: Vec<Option<u64>> = vec![None; n];
        let mut now = 0u64;
        for _ in 0..3000 {
            let i = (rng(&mut seed) % n as u64) as usize;
            match rng(&mut seed) % 10 {
                0..=5 => {
                    let span = [70u64, 5000, 300_000, 20_000_000][(rng(&mut seed) % 4) as usize];
                    let t = now + rng(&mut seed) % span;
                    w.insert(ids[i], t);
                    model[i] = Some(t.max(now));
                }
                6 => {
                    assert_eq!(w.remove(ids[i]), model[i].is_some(), "round {round}");
                    model[i] = None;
                }
                _ => {
                    now += rng(&mut seed) % [3u64, 100, 10_000][(rng(&mut seed) % 3) as usize];
                    let mut fired = Vec::new();
                    w.expire(now, |id, _| fired.push(id));
                    for id in fired {
                        let k = ids.iter().position(|&x| x == id).unwrap();
                        let due = model[k].take().expect("fired an unarmed entry");
                        assert!(due <= now, "fired early: due {due} now {now}");
                    }
                    for (k, m) in model.iter().enumerate() {
                        if let Some(due) = m {
                            assert!(*due > now, "entry {k} due {due} not fired at {now}");
                        }
                    }
                    if let Some(d) = w.next_deadline() {
                        let min = model.iter().flatten().min().copied();
                        assert!(d <= min.unwrap(), "next deadline after an armed entry");
                    } else {
                        assert!(model.iter().all(|m| m.is_none()));
                    }
                }
            }
            assert_eq!(w.armed(), model.iter().flatten().count());
        }
    }
}
