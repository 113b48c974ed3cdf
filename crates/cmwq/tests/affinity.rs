//! G14: pools of CPUs outside the process's affinity mask exist and run
//! unpinned. This process restricts itself to one CPU before first use.

mod common;

use std::sync::{Arc, Mutex};

use cmwq::Work;
use common::*;

#[test]
fn g14_pools_of_cpus_outside_the_mask_run_unpinned() {
    let all = own_affinity();
    if all.len() < 2 {
        eprintln!("skipping: needs two usable CPUs");
        return;
    }
    let inside = all[0];
    let outside = all[1];
    // Before the library first looks at the mask; every thread created from
    // now on (workers included) inherits it.
    pin_self(&[inside]);
    assert!(cmwq::nr_cpus() >= 2);
    let run_on = |cpu: usize| {
        let got = Arc::new(Mutex::new(None));
        let g2 = got.clone();
        let w = Work::new(move |_| *g2.lock().unwrap() = Some((own_affinity(), current_cpu())));
        assert!(cmwq::system_wq().queue_on(cpu, &w));
        w.flush();
        let r = got.lock().unwrap().take().unwrap();
        r
    };
    let (aff, cpu) = run_on(inside);
    assert_eq!(aff, vec![inside]);
    assert_eq!(cpu, inside);
    // The pool of `outside` exists and works, without being pinned there.
    let (aff, cpu) = run_on(outside);
    assert_eq!(aff, vec![inside], "pinned outside the process's mask");
    assert_eq!(cpu, inside);
    let dump = cmwq::dump();
    assert!(dump.contains(&format!("cpu={outside:3}")), "{dump}");
}
