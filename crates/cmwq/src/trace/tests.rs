//! Unit tests of `trace` (in a file of their own, beside the code).

use super::*;

#[test]
fn blocked_spans_are_kept_closed_and_clipped() {
    let mut b = Blocked::default();
    b.change(true, 5);
    b.change(false, 15);
    b.change(false, 20); // not blocked: nothing
    b.change(true, 30);
    let mut r = Record {
        start_ns: 10,
        end_ns: 40,
        ..Record::default()
    };
    b.take_into(&mut r);
    assert_eq!(r.nspans, 2);
    assert_eq!(&r.spans[..2], &[(10, 15), (30, 40)]);
    assert_eq!(r.blocked_ns, 20);
    // Reset for the next execution.
    let mut r2 = Record {
        start_ns: 50,
        end_ns: 60,
        ..Record::default()
    };
    b.take_into(&mut r2);
    assert_eq!((r2.nspans, r2.blocked_ns), (0, 0));
}

#[test]
fn more_spans_than_kept_still_count_in_the_total() {
    let mut b = Blocked::default();
    for i in 0..10u64 {
        b.change(true, 100 + i * 10);
        b.change(false, 105 + i * 10);
    }
    let mut r = Record {
        start_ns: 100,
        end_ns: 200,
        ..Record::default()
    };
    b.take_into(&mut r);
    assert_eq!(r.nspans as usize, MAX_SPANS);
    assert_eq!(r.blocked_ns, 50);
}
