//! Unit tests of `cpumask` (in a file of their own, beside the code).

use super::*;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

fn mask(s: &str) -> CpuMask {
    CpuMask::parse_list(s).unwrap_or_else(|| panic!("bad cpulist {s:?}"))
}

fn hash_of(m: &CpuMask) -> u64 {
    let mut h = DefaultHasher::new();
    m.hash(&mut h);
    h.finish()
}

#[test]
fn parse_list_accepts_kernel_format() {
    assert_eq!(
        mask("0-3,8,10-11\n"),
        CpuMask::from_cpus([0, 1, 2, 3, 8, 10, 11])
    );
    assert_eq!(mask("5"), CpuMask::from_cpus([5]));
    assert_eq!(mask("0"), CpuMask::from_cpus([0]));
    assert_eq!(mask("7-7"), CpuMask::from_cpus([7]));
    assert_eq!(mask("  1, 3 ,64-65 \n"), CpuMask::from_cpus([1, 3, 64, 65]));
    // Overlaps and unsorted items are fine.
    assert_eq!(mask("4,0-2,1"), CpuMask::from_cpus([0, 1, 2, 4]));
    assert_eq!(mask("127"), CpuMask::from_cpus([127]));
    assert_eq!(mask("0-199").count(), 200);
}

#[test]
fn parse_list_empty() {
    assert!(mask("").is_empty());
    assert!(mask("\n").is_empty());
    assert!(mask("   ").is_empty());
    assert_eq!(mask(""), CpuMask::new());
}

#[test]
fn parse_list_stride() {
    assert_eq!(
        mask("0-15:2/4"),
        CpuMask::from_cpus([0, 1, 4, 5, 8, 9, 12, 13])
    );
    assert_eq!(mask("1-9:1/3,20"), CpuMask::from_cpus([1, 4, 7, 20]));
    assert_eq!(mask("0-3:4/4"), mask("0-3"));
    assert!(mask("0-3:0/4").is_empty());
}

#[test]
fn parse_list_rejects_malformed() {
    for bad in [
        "x",
        "1,",
        ",1",
        "1,,2",
        "3-1",
        "-1",
        "1-",
        "1-2-3",
        "+1",
        "0x3",
        "1 2",
        "1.5",
        "0-3:2",
        "0-3:5/4",
        "0-3:1/0",
        "3:1/2",
        "0-3:a/4",
        "99999999999999999999999",
        "0-4294967295",
    ] {
        assert_eq!(CpuMask::parse_list(bad), None, "{bad:?} should be rejected");
    }
}

#[test]
fn basic_queries() {
    let m = mask("3,64-66,200");
    assert!(!m.is_empty());
    assert_eq!(m.count(), 5);
    assert_eq!(m.first(), Some(3));
    assert_eq!(m.last(), Some(200));
    assert!(m.contains(65) && m.contains(200) && !m.contains(4) && !m.contains(100_000));
    assert_eq!(m.iter().collect::<Vec<_>>(), vec![3, 64, 65, 66, 200]);
    assert_eq!(CpuMask::new().first(), None);
    assert_eq!(CpuMask::new().last(), None);
    assert_eq!(CpuMask::new().count(), 0);
    assert_eq!(m.iter().collect::<CpuMask>(), m);
}

#[test]
fn to_list_round_trips() {
    for s in [
        "",
        "0",
        "0-3,8",
        "0-3,8,10-11",
        "1,3,5",
        "0-63",
        "63-64",
        "0-127,129",
    ] {
        assert_eq!(mask(s).to_list(), s);
    }
    assert_eq!(format!("{:?}", mask("0-3,8")), "{0-3,8}");
    assert_eq!(format!("{:?}", CpuMask::new()), "{}");
}

#[test]
fn to_hex_matches_wq_dump() {
    // Expected strings computed with wq_dump.py's cpumask_str().
    assert_eq!(CpuMask::new().to_hex(), "");
    assert_eq!(mask("0-1").to_hex(), "00000003");
    assert_eq!(mask("0").to_hex(), "00000001");
    assert_eq!(mask("4").to_hex(), "00000010");
    assert_eq!(mask("0-31").to_hex(), "ffffffff");
    assert_eq!(mask("0-7").to_hex(), "000000ff");
    assert_eq!(mask("0,40").to_hex(), "0x1 00000100");
    assert_eq!(mask("32").to_hex(), "0x0 00000001");
    assert_eq!(mask("0-63").to_hex(), "0xffffffff ffffffff");
    assert_eq!(mask("0-31,64").to_hex(), "0xffffffff 0x0 00000001");
    assert_eq!(mask("8-15,32-39,96").to_hex(), "0xff00 0xff 0x0 00000001");
    assert_eq!(
        mask("0-127").to_hex(),
        "0xffffffff 0xffffffff 0xffffffff ffffffff"
    );
}

#[test]
fn and_or_subset() {
    let a = mask("0-3,64");
    let b = mask("2-5");
    assert_eq!(a.and(&b), mask("2-3"));
    assert_eq!(b.and(&a), mask("2-3"));
    assert_eq!(a.or(&b), mask("0-5,64"));
    assert_eq!(b.or(&a), mask("0-5,64"));
    // `and` dropping the high words must still be equal to a short mask.
    assert_eq!(a.and(&mask("0,100")), mask("0"));
    assert_eq!(hash_of(&a.and(&mask("0,100"))), hash_of(&mask("0")));
    assert!(a.and(&mask("100")).is_empty());
    assert_eq!(a.and(&mask("100")), CpuMask::new());

    assert!(mask("2-3").is_subset(&a));
    assert!(CpuMask::new().is_subset(&a));
    assert!(CpuMask::new().is_subset(&CpuMask::new()));
    assert!(a.is_subset(&a));
    assert!(!a.is_subset(&b));
    assert!(!mask("64").is_subset(&mask("0-63")));
    assert!(!mask("0,200").is_subset(&mask("0")));
}

#[test]
fn eq_and_hash_ignore_trailing_zero_words() {
    // Same CPUs reached through masks of different word lengths.
    let short = mask("1");
    let long = mask("1,300").and(&mask("0-10"));
    assert_eq!(short, long);
    assert_eq!(hash_of(&short), hash_of(&long));
    // A mask that had a high CPU and lost it through `and`.
    let emptied = mask("500").and(&mask("0-1"));
    assert_eq!(emptied, CpuMask::default());
    assert_eq!(hash_of(&emptied), hash_of(&CpuMask::new()));
    assert_ne!(mask("1"), mask("1,64"));
}

#[test]
fn to_rustix_sets_cpus_below_max() {
    let max = CpuSet::MAX_CPU;
    let set = CpuMask::from_cpus([0, 3, max - 1, max, max + 5]).to_rustix();
    for cpu in 0..max {
        assert_eq!(set.is_set(cpu), [0, 3, max - 1].contains(&cpu), "cpu {cpu}");
    }
}
