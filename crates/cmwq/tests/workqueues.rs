//! Workqueue guarantees: G7, G8, G14, G17-G20, G25, G27-G29.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cmwq::{AffinityScope, Error, Work, Workqueue, WqAttrs, WqFlags};
use common::*;

fn setup() {
    setup_log();
}

fn sleeper(ms: u64, c: &Arc<AtomicUsize>) -> Work {
    let c = c.clone();
    Work::new(move |_| {
        cmwq::blocking(|| std::thread::sleep(Duration::from_millis(ms)));
        c.fetch_add(1, SeqCst);
    })
}

#[test]
fn g7_flush_waits_for_every_item_queued_before() {
    setup();
    let wq = Workqueue::builder("g7_before")
        .max_active(2)
        .build()
        .unwrap();
    let c = counter();
    let items: Vec<Work> = (0..10).map(|_| sleeper(15, &c)).collect();
    for (i, w) in items.iter().enumerate() {
        assert!(wq.queue_on(i % cmwq::nr_cpus(), w));
    }
    wq.flush();
    assert_eq!(
        c.load(SeqCst),
        10,
        "flush returned before queued (and throttled) items ran"
    );
}

#[test]
fn g7_flush_does_not_wait_for_items_queued_after() {
    setup();
    let wq = Arc::new(Workqueue::new("g7_after").unwrap());
    let (g1, g2) = (Gate::new(), Gate::new());
    let (a_g, b_g) = (g1.clone(), g2.clone());
    let a = Work::new(move |_| cmwq::blocking(|| a_g.wait()));
    let b = Work::new(move |_| cmwq::blocking(|| b_g.wait()));
    assert!(wq.queue(&a));
    let flushed = Arc::new(AtomicBool::new(false));
    let (wq2, f2) = (wq.clone(), flushed.clone());
    let flusher = std::thread::spawn(move || {
        wq2.flush();
        f2.store(true, SeqCst);
    });
    std::thread::sleep(Duration::from_millis(30));
    assert!(!flushed.load(SeqCst), "flush waits for the earlier item");
    assert!(wq.queue(&b), "queued after the flush began");
    std::thread::sleep(Duration::from_millis(10));
    g1.open();
    assert!(
        wait_until(Duration::from_secs(5), || flushed.load(SeqCst)),
        "flush waited for an item queued after it"
    );
    assert!(b.is_pending() || b.is_running());
    g2.open();
    flusher.join().unwrap();
    wq.flush();
}

#[test]
fn g7_self_requeueing_item_cannot_make_flush_hang() {
    setup();
    let wq = Arc::new(Workqueue::new("g7_requeue").unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let (wq2, s2) = (wq.clone(), stop.clone());
    let w = Work::new(move |w| {
        cmwq::blocking(|| std::thread::sleep(Duration::from_micros(500)));
        if !s2.load(SeqCst) {
            wq2.queue(w);
        }
    });
    assert!(wq.queue(&w));
    std::thread::sleep(Duration::from_millis(10));
    let t = Instant::now();
    for _ in 0..5 {
        wq.flush();
    }
    assert!(t.elapsed() < Duration::from_secs(3));
    // Concurrent flushers all return too.
    let flushers: Vec<_> = (0..4)
        .map(|_| {
            let wq = wq.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    wq.flush();
                }
            })
        })
        .collect();
    for f in flushers {
        f.join().unwrap();
    }
    stop.store(true, SeqCst);
    w.cancel_sync();
}

#[test]
fn g8_drain_waits_for_chains() {
    setup();
    let wq = Arc::new(Workqueue::new("g8_chain").unwrap());
    let c = counter();
    let (wq2, c2) = (wq.clone(), c.clone());
    let w = Work::new(move |w| {
        cmwq::blocking(|| std::thread::sleep(Duration::from_millis(1)));
        if c2.fetch_add(1, SeqCst) < 19 {
            assert!(wq2.queue(w), "chained queue allowed while draining");
        }
    });
    assert!(wq.queue(&w));
    wq.drain();
    assert_eq!(c.load(SeqCst), 20, "drain returned before the chain ended");
    assert!(!w.is_pending());
}

#[test]
fn g8_queues_from_elsewhere_are_refused_counted_and_logged_once() {
    setup();
    let wq = Arc::new(Workqueue::new("g8_refuse").unwrap());
    let gate = Gate::new();
    let g2 = gate.clone();
    let a = Work::new(move |_| cmwq::blocking(|| g2.wait()));
    assert!(wq.queue(&a));
    let wq2 = wq.clone();
    let drainer = std::thread::spawn(move || wq2.drain());
    std::thread::sleep(Duration::from_millis(30));
    let c = counter();
    let b = counting_work(&c);
    let before = events_matching("\"g8_refuse\" refused");
    assert!(!wq.queue(&b), "refused during drain");
    assert!(!wq.queue_on(0, &b));
    assert_eq!(wq.refused(), 2);
    assert_eq!(events_matching("\"g8_refuse\" refused"), before + 1);
    assert!(!b.is_pending());
    gate.open();
    drainer.join().unwrap();
    assert!(wq.queue(&b), "accepted after the drain");
    wq.flush();
    assert_eq!(c.load(SeqCst), 1);
}

#[test]
fn g14_bound_items_run_on_the_queueing_cpu() {
    setup();
    let _s = serial();
    let wq = percpu_wq("g14_local");
    let allowed = own_affinity();
    for &cpu in &allowed {
        let got = Arc::new(Mutex::new(None));
        let g2 = got.clone();
        let w = Work::new(move |_| {
            *g2.lock().unwrap() = Some((current_cpu(), own_affinity()));
        });
        assert!(wq.queue_on(cpu, &w));
        w.flush();
        let (ran_on, aff) = got.lock().unwrap().take().unwrap();
        assert_eq!(ran_on, cpu, "queue_on({cpu}) ran elsewhere");
        assert_eq!(aff, vec![cpu], "worker of CPU {cpu} is not pinned");
        // queue() from a thread running on `cpu` goes to that CPU's pool.
        let (wqr, got2) = (&wq, got.clone());
        std::thread::scope(|s| {
            s.spawn(move || {
                pin_self(&[cpu]);
                let g3 = got2.clone();
                let w = Work::new(move |_| *g3.lock().unwrap() = Some((current_cpu(), vec![])));
                assert!(wqr.queue(&w));
                w.flush();
            });
        });
        assert_eq!(got.lock().unwrap().take().unwrap().0, cpu);
    }
}

#[test]
fn g14_percpu_and_unbound_together_are_invalid() {
    setup();
    for flags in [
        WqFlags::PERCPU | WqFlags::UNBOUND,
        WqFlags::PERCPU | WqFlags::UNBOUND | WqFlags::CPU_INTENSIVE,
    ] {
        assert_eq!(
            Workqueue::builder("g14_both").flags(flags).build().err(),
            Some(Error::InvalidFlags(flags))
        );
    }
}

#[test]
fn g14_the_kind_is_plain_in_flags_and_dump() {
    setup();
    let kind = |wq: &Workqueue| {
        (
            wq.flags().contains(WqFlags::PERCPU),
            wq.flags().contains(WqFlags::UNBOUND),
        )
    };
    let spreading = Workqueue::new("g14_kind_default").unwrap();
    let built = Workqueue::builder("g14_kind_built")
        .max_active(4)
        .build()
        .unwrap();
    let percpu = percpu_wq("g14_kind_percpu");
    let unbound = Workqueue::builder("g14_kind_unbound")
        .flags(WqFlags::UNBOUND)
        .build()
        .unwrap();
    assert_eq!(kind(&spreading), (false, true));
    assert_eq!(kind(&built), (false, true));
    assert_eq!(kind(&percpu), (true, false));
    assert_eq!(kind(&unbound), (false, true));
    // The system workqueues: per-CPU but for events_unbound and events_dfl,
    // as the kernel allocates them; system_percpu_wq is system_wq.
    for wq in [
        cmwq::system_wq(),
        cmwq::system_percpu_wq(),
        cmwq::system_highpri_wq(),
        cmwq::system_long_wq(),
        cmwq::system_freezable_wq(),
    ] {
        assert_eq!(kind(wq), (true, false), "{}", wq.name());
    }
    assert!(std::ptr::eq(cmwq::system_percpu_wq(), cmwq::system_wq()));
    assert_eq!(kind(cmwq::system_dfl_wq()), (false, true));
    assert_eq!(kind(cmwq::system_unbound_wq()), (false, true));
    let dump = cmwq::dump();
    let type_of = |name: &str| {
        dump.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("{name} not in dump:\n{dump}"))
            .to_string()
    };
    assert_eq!(type_of("g14_kind_default"), "spreading");
    assert_eq!(type_of("g14_kind_percpu"), "percpu");
    assert_eq!(type_of("g14_kind_unbound"), "unbound");
    assert_eq!(type_of("events_dfl"), "spreading");
    let info = cmwq::dump::workqueues();
    let find = |n: &str| info.iter().find(|w| w.name == n).unwrap().clone();
    assert!(find("g14_kind_default").spreading && !find("g14_kind_default").unmanaged);
    assert!(!find("g14_kind_unbound").spreading);
}

#[test]
fn g14_a_default_workqueue_spreads_items_queued_from_one_thread() {
    setup();
    let _s = serial();
    let allowed = own_affinity();
    if allowed.len() < 2 {
        eprintln!("skipping: needs two usable CPUs");
        return;
    }
    // The workqueue first: the library reads the process's mask at first
    // use, from the calling thread.
    let wq = Workqueue::builder("g14_spreads")
        .max_active(4)
        .build()
        .unwrap();
    // The trap the default used to be: from one thread, a per-CPU
    // workqueue runs every item on that thread's CPU.
    pin_self(&allowed[..1]);
    let n = allowed.len();
    let mut last = String::new();
    let ok = (0..5).any(|attempt| {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(500));
        }
        // Below the CPU-hog threshold (G16), so every item keeps its
        // runner's slot.
        let (max, cpus) = cpu_spread(8 * n, Duration::from_millis(3), |_, w| {
            assert!(wq.queue(w));
        });
        last = format!("{max} at most at once, CPUs {cpus:?}");
        // Every CPU, and never more than one running item per CPU.
        cpus == allowed && max == n
    });
    pin_self(&allowed);
    assert!(ok, "items queued from one thread did not spread: {last}");
}

#[test]
fn g17_max_active_limits_concurrency_in_fifo_order() {
    setup();
    let _s = serial();
    let wq = Workqueue::builder("g17_limit")
        .flags(WqFlags::PERCPU)
        .max_active(2)
        .build()
        .unwrap();
    let conc = Concurrency::new();
    let order = Arc::new(Mutex::new(Vec::new()));
    let items: Vec<Work> = (0..6)
        .map(|i| {
            let (c, o) = (conc.clone(), order.clone());
            Work::new(move |_| {
                c.enter();
                o.lock().unwrap().push(i);
                cmwq::blocking(|| std::thread::sleep(Duration::from_millis(20)));
                c.exit();
            })
        })
        .collect();
    for w in &items {
        assert!(wq.queue_on(0, w));
    }
    wq.flush();
    assert_eq!(conc.max(), 2, "max_active 2 with blocking items");
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5], "FIFO");
}

#[test]
fn g17_set_max_active_takes_effect_at_once() {
    setup();
    let _s = serial();
    let wq = Workqueue::builder("g17_set").max_active(1).build().unwrap();
    assert_eq!(wq.max_active(), 1);
    let gate = Gate::new();
    let conc = Concurrency::new();
    let items: Vec<Work> = (0..4)
        .map(|_| {
            let (g, c) = (gate.clone(), conc.clone());
            Work::new(move |_| {
                c.enter();
                cmwq::blocking(|| g.wait());
                c.exit();
            })
        })
        .collect();
    for w in &items {
        assert!(wq.queue_on(0, w));
    }
    assert!(wait_until(Duration::from_secs(5), || conc.max() == 1));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(conc.max(), 1);
    assert!(wq.is_congested(0));
    wq.set_max_active(4).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || conc.max() == 4),
        "throttled items were not activated"
    );
    assert!(!wq.is_congested(0));
    gate.open();
    wq.flush();
}

#[test]
fn g17_g27_max_active_out_of_range_is_an_error() {
    setup();
    assert_eq!(
        Workqueue::builder("g17_zero").max_active(0).build().err(),
        Some(Error::InvalidMaxActive(0))
    );
    assert_eq!(
        Workqueue::builder("g17_big").max_active(2049).build().err(),
        Some(Error::InvalidMaxActive(2049))
    );
    let wq = Workqueue::builder("g17_ok")
        .max_active(2048)
        .build()
        .unwrap();
    assert_eq!(wq.set_max_active(0), Err(Error::InvalidMaxActive(0)));
    assert_eq!(wq.set_max_active(4096), Err(Error::InvalidMaxActive(4096)));
    assert_eq!(wq.max_active(), 2048, "no silent clamp");
    let o = Workqueue::ordered("g17_ordered", WqFlags::empty()).unwrap();
    assert!(matches!(o.set_max_active(2), Err(Error::Ordered(_))));
    assert_eq!(cmwq::WQ_DFL_ACTIVE, 1024);
    assert_eq!(Workqueue::new("g17_dfl").unwrap().max_active(), 1024);
}

#[test]
fn g18_ordered_runs_one_at_a_time_in_queue_order() {
    setup();
    let _s = serial();
    let wq = Arc::new(Workqueue::ordered("g18_order", WqFlags::empty()).unwrap());
    assert!(wq.is_ordered());
    let conc = Concurrency::new();
    let ran = Arc::new(Mutex::new(Vec::new()));
    let queued = Arc::new(Mutex::new(Vec::new()));
    let ncpu = cmwq::nr_cpus();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (wq, conc, ran, queued) = (wq.clone(), conc.clone(), ran.clone(), queued.clone());
            std::thread::spawn(move || {
                pin_self(&[own_affinity()[t % own_affinity().len()]]);
                for i in 0..25usize {
                    let id = t * 100 + i;
                    let (c, r) = (conc.clone(), ran.clone());
                    let w = Work::new(move |_| {
                        c.enter();
                        r.lock().unwrap().push(id);
                        if id % 5 == 0 {
                            std::thread::sleep(Duration::from_micros(300));
                        }
                        c.exit();
                    });
                    // Queue order is defined by this lock.
                    let mut q = queued.lock().unwrap();
                    assert!(wq.queue(&w));
                    q.push(id);
                }
                let _ = ncpu;
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    wq.flush();
    assert_eq!(conc.max(), 1);
    assert_eq!(*ran.lock().unwrap(), *queued.lock().unwrap());
}

#[test]
fn g18_g27_ordered_accepts_only_freezable_and_mem_reclaim() {
    setup();
    assert!(Workqueue::ordered("g18_ok", WqFlags::FREEZABLE | WqFlags::MEM_RECLAIM).is_ok());
    for bad in [
        WqFlags::HIGHPRI,
        WqFlags::CPU_INTENSIVE,
        WqFlags::POWER_EFFICIENT,
    ] {
        assert_eq!(
            Workqueue::ordered("g18_bad", bad).err(),
            Some(Error::InvalidFlags(bad))
        );
    }
}

#[test]
fn g19_unbound_has_no_concurrency_management() {
    setup();
    let _s = serial();
    let wq = Workqueue::builder("g19_unbound")
        .flags(WqFlags::UNBOUND)
        .max_active(4)
        .build()
        .unwrap();
    let n = 4usize;
    let arrived = counter();
    let conc = Concurrency::new();
    let items: Vec<Work> = (0..n)
        .map(|_| {
            let (a, c) = (arrived.clone(), conc.clone());
            Work::new(move |_| {
                c.enter();
                a.fetch_add(1, SeqCst);
                // CPU-bound rendezvous: only completes if all run at once.
                let t = Instant::now();
                while a.load(SeqCst) < n && t.elapsed() < Duration::from_secs(5) {
                    std::hint::spin_loop();
                }
                c.exit();
            })
        })
        .collect();
    for w in &items {
        assert!(wq.queue_on(0, w));
    }
    wq.flush();
    assert_eq!(conc.max(), n, "unbound items must start without waiting");
}

#[test]
fn g19_workers_are_confined_to_the_pod() {
    setup();
    let _s = serial();
    let allowed = own_affinity();
    let wq = Workqueue::builder("g19_pod")
        .flags(WqFlags::UNBOUND)
        .attrs(WqAttrs {
            affinity_scope: AffinityScope::Cpu,
            affinity_strict: true,
            ..Default::default()
        })
        .build()
        .unwrap();
    for &cpu in &allowed {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g2 = got.clone();
        let w = Work::new(move |_| *g2.lock().unwrap() = own_affinity());
        assert!(wq.queue_on(cpu, &w));
        w.flush();
        assert_eq!(*got.lock().unwrap(), vec![cpu], "strict CPU pod of {cpu}");
    }
    // A CPU set restricts every pod.
    let first = allowed[0];
    wq.apply_attrs(&WqAttrs {
        cpus: Some(vec![first]),
        affinity_scope: AffinityScope::System,
        ..Default::default()
    })
    .unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g2 = got.clone();
    let w = Work::new(move |_| *g2.lock().unwrap() = own_affinity());
    assert!(wq.queue_on(*allowed.last().unwrap(), &w));
    w.flush();
    assert_eq!(*got.lock().unwrap(), vec![first]);
    assert!(cmwq::dump().contains("g19_pod"));
}

#[test]
fn g19_g27_attrs_are_validated() {
    setup();
    let bound = percpu_wq("g19_bound");
    assert_eq!(
        bound.apply_attrs(&WqAttrs::default()),
        Err(Error::NotUnbound)
    );
    assert_eq!(
        Workqueue::builder("g19_x")
            .flags(WqFlags::PERCPU)
            .attrs(WqAttrs::default())
            .build()
            .err(),
        Some(Error::NotUnbound)
    );
    // A spreading workqueue is unbound: attributes apply.
    let spreading = Workqueue::builder("g19_spreading_attrs")
        .attrs(WqAttrs {
            cpus: Some(vec![own_affinity()[0]]),
            ..Default::default()
        })
        .build()
        .unwrap();
    assert_eq!(spreading.apply_attrs(&WqAttrs::default()), Ok(()));
    let ub = Workqueue::builder("g19_attrs")
        .flags(WqFlags::UNBOUND)
        .build()
        .unwrap();
    assert_eq!(
        ub.apply_attrs(&WqAttrs {
            nice: 20,
            ..Default::default()
        }),
        Err(Error::InvalidNice(20))
    );
    let n = cmwq::nr_cpus();
    assert_eq!(
        ub.apply_attrs(&WqAttrs {
            cpus: Some(vec![n]),
            ..Default::default()
        }),
        Err(Error::InvalidCpu(n))
    );
    assert_eq!(
        ub.apply_attrs(&WqAttrs {
            cpus: Some(vec![]),
            ..Default::default()
        }),
        Err(Error::EmptyCpumask)
    );
}

#[test]
fn g20_highpri_workers_run_at_nice_minus_20() {
    setup();
    // What this process may do: try on a scratch thread.
    let permitted = std::thread::spawn(|| {
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), -20).is_ok()
    })
    .join()
    .unwrap();
    let got = Arc::new(Mutex::new(None));
    let g2 = got.clone();
    let w = Work::new(move |_| *g2.lock().unwrap() = Some((own_nice(), own_thread_name())));
    assert!(cmwq::system_highpri_wq().queue_on(0, &w));
    w.flush();
    let (nice, name) = got.lock().unwrap().take().unwrap();
    if permitted {
        assert_eq!(nice, -20);
    } else {
        assert!(nice <= 0);
        assert!(cmwq::dump().contains("not permitted"));
    }
    assert!(
        name.starts_with("kworker/0:") && name.ends_with('H'),
        "{name}"
    );
    // Normal pools stay at nice 0.
    let w = Work::new(move |_| assert_eq!(own_nice(), 0));
    assert!(cmwq::system_wq().queue_on(0, &w));
    w.flush();
    assert_eq!(cmwq::system_wq().stats().panics, 0);
}

#[test]
fn g25_drop_waits_for_queued_items() {
    setup();
    let c = counter();
    let wq = Workqueue::new("g25_wait").unwrap();
    let items: Vec<Work> = (0..10).map(|_| sleeper(5, &c)).collect();
    for w in &items {
        assert!(wq.queue(w));
    }
    drop(wq);
    assert_eq!(c.load(SeqCst), 10, "Drop returned before the items ran");
    for w in &items {
        assert!(!w.is_pending() && !w.is_running());
    }
}

#[test]
fn g25_drop_from_one_of_its_own_items_does_not_deadlock() {
    setup();
    let slot: Arc<Mutex<Option<Workqueue>>> =
        Arc::new(Mutex::new(Some(Workqueue::new("g25_self").unwrap())));
    let c = counter();
    let others: Vec<Work> = (0..4).map(|_| sleeper(5, &c)).collect();
    let done = Arc::new(AtomicBool::new(false));
    let (s2, d2) = (slot.clone(), done.clone());
    let w = Work::new(move |_| {
        let wq = s2.lock().unwrap().take();
        drop(wq);
        d2.store(true, SeqCst);
    });
    {
        let g = slot.lock().unwrap();
        let wq = g.as_ref().unwrap();
        for o in &others {
            assert!(wq.queue(o));
        }
        assert!(wq.queue(&w));
    }
    assert!(wait_until(Duration::from_secs(5), || done.load(SeqCst)));
    assert!(wait_until(Duration::from_secs(5), || c.load(SeqCst) == 4));
    assert!(
        wait_until(Duration::from_secs(5), || !cmwq::dump()
            .contains("g25_self ")),
        "the deferred destruction completed"
    );
}

#[test]
fn g27_misuse_gives_clear_errors_or_panics() {
    setup();
    let unknown = WqFlags::from_bits_retain(1 << 20);
    assert!(matches!(
        Workqueue::builder("g27_unknown").flags(unknown).build(),
        Err(Error::InvalidFlags(_))
    ));
    let n = cmwq::nr_cpus();
    let w = Work::new(|_| {});
    let err = catch_unwind(AssertUnwindSafe(|| cmwq::system_wq().queue_on(n, &w))).unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains(&format!("CPU {n}")), "{msg}");
    assert!(!w.is_pending());
    let e = Error::InvalidCpu(n).to_string();
    assert!(e.contains(&n.to_string()));
}

#[test]
fn g27_flushing_a_workqueue_from_its_own_item_panics_with_a_clear_message() {
    setup();
    let wq = Arc::new(Workqueue::ordered("g27_selfflush", WqFlags::empty()).unwrap());
    let wq2 = wq.clone();
    let w = Work::named("g27_flusher", move |_| wq2.flush());
    let before = events_matching("own work items");
    assert!(wq.queue(&w));
    assert!(w.flush(), "did not hang");
    assert_eq!(wq.stats().panics, 1);
    assert_eq!(events_matching("own work items"), before + 1);
}

#[test]
fn g28_workers_are_named_like_kworkers() {
    setup();
    let name = |wq: &Workqueue, cpu: usize| {
        let got = Arc::new(Mutex::new(String::new()));
        let g2 = got.clone();
        let w = Work::new(move |_| *g2.lock().unwrap() = own_thread_name());
        assert!(wq.queue_on(cpu, &w));
        w.flush();
        let s = got.lock().unwrap().clone();
        s
    };
    let cpu = cmwq::nr_cpus() - 1;
    let n = name(cmwq::system_wq(), cpu);
    let (head, id) = n.split_at(format!("kworker/{cpu}:").len());
    assert_eq!(head, format!("kworker/{cpu}:"));
    assert!(id.parse::<u32>().is_ok(), "{n}");
    let h = name(cmwq::system_highpri_wq(), cpu);
    assert!(
        h.starts_with(&format!("kworker/{cpu}:")) && h.ends_with('H'),
        "{h}"
    );
    let u = name(cmwq::system_unbound_wq(), 0);
    assert!(u.starts_with("kworker/u") && u.contains(':'), "{u}");
    assert!(u.len() <= 15);
    assert!(thread_names().iter().any(|t| t.starts_with("kworker/")));
}

#[test]
fn g29_stats_count_like_wq_monitor() {
    setup();
    let _s = serial();
    let wq = percpu_wq("g29_stats");
    let gate = Gate::new();
    let g2 = gate.clone();
    let blocker = Work::new(move |_| cmwq::blocking(|| g2.wait()));
    let c = counter();
    let behind: Vec<Work> = (0..3).map(|_| counting_work(&c)).collect();
    let burner = Work::new(|_| burn_cpu(Duration::from_millis(30)));
    assert!(wq.queue_on(0, &blocker));
    assert!(wait_until(Duration::from_secs(5), || blocker.is_running()));
    let s = wq.stats();
    assert_eq!(s.total, 1);
    assert_eq!(s.in_flight, 1);
    for w in &behind {
        assert!(wq.queue_on(0, w));
    }
    gate.open();
    wq.flush();
    assert!(wq.queue_on(0, &burner));
    wq.flush();
    let s = wq.stats();
    assert_eq!(s.total, 5);
    assert_eq!(s.in_flight, 0);
    assert!(s.cpu_time >= Duration::from_millis(25), "{:?}", s.cpu_time);
    assert_eq!(s.cpu_hog, 1, "30 ms of CPU without blocking");
    assert_eq!(s.panics, 0);
    assert_eq!((s.mayday, s.rescued), (0, 0));
    // cm_wakeups: a blocking item with work waiting behind it. It blocks
    // (hinted) only once the others are queued behind it.
    let go = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let go2 = go.clone();
    let blocker2 = Work::new(move |_| {
        while !go2.load(SeqCst) {
            std::hint::spin_loop();
        }
        cmwq::blocking(|| std::thread::sleep(Duration::from_millis(20)));
    });
    let after: Vec<Work> = (0..2).map(|_| counting_work(&c)).collect();
    assert!(wq.queue_on(0, &blocker2));
    assert!(wait_until(Duration::from_secs(5), || blocker2.is_running()));
    for w in &after {
        assert!(wq.queue_on(0, w));
    }
    go.store(true, SeqCst);
    wq.flush();
    assert!(wq.stats().cm_wakeups >= 1);
    let row = wq.stats().row("g29_stats", false, false);
    assert!(row.starts_with("g29_stats"));
    assert!(cmwq::WqStats::header().contains("CPUitsv"));
}

/// Names are any UTF-8: the stats row and the monitor table cut them by
/// characters, never inside one.
#[test]
fn g29_non_ascii_workqueue_names_in_stats_and_tables() {
    setup();
    let name = "очередь-工作队列-émoji-🦀-long-name-ü";
    let wq = Workqueue::new(name).unwrap();
    let w = Work::new(|_| {});
    wq.queue(&w);
    wq.flush();
    let row = wq.stats().row(name, false, false);
    assert!(
        row.starts_with("émoji-🦀-long-name-ü") || row.contains("🦀"),
        "{row}"
    );
    let table = cmwq::dump::monitor_table();
    assert!(table.contains("🦀-long-name-ü"), "{table}");
    assert!(cmwq::dump().contains(name));
    // The second cuts inside a character when counted in bytes.
    for n in ["é", "🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀é"]
    {
        let r = cmwq::WqStats::default().row(n, true, true);
        assert!(r.contains('é') || r.contains('🦀'), "{r}");
    }
}
