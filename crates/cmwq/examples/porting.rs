//! Porting kernel code: a small "driver" written against the kernel's
//! workqueue API, ported line by line with `cmwq::compat`. Each block
//! quotes the C it replaces.
//!
//! The driver: interrupts arrive (here: a thread), each is acknowledged at
//! once and its data handed to a bottom half on the driver's own ordered
//! workqueue; a watchdog timer re-arms itself every 20 ms while the device
//! is up; teardown cancels the timer, flushes and destroys the workqueue.
//!
//! Run: `cargo run --release -p cmwq --example porting`

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cmwq::compat::*;
use cmwq::Work;

/// `struct mydev { struct workqueue_struct *wq; struct work_struct rx_work;
/// struct delayed_work watchdog; spinlock_t lock; ... }`
struct MyDev {
    wq: Option<cmwq::Workqueue>,
    rx_work: Work,
    watchdog: Work,
    up: Arc<AtomicBool>,
    rx_fifo: Arc<Mutex<Vec<u32>>>,
    handled: Arc<AtomicU64>,
    watchdog_runs: Arc<AtomicU64>,
}

impl MyDev {
    /// `mydev_probe()`
    fn probe() -> Result<Arc<MyDev>, cmwq::Error> {
        // dev->wq = create_singlethread_workqueue("mydev");
        // if (!dev->wq) return -ENOMEM;
        let wq = create_singlethread_workqueue("mydev")?;

        let rx_fifo: Arc<Mutex<Vec<u32>>> = Arc::default();
        let handled = Arc::new(AtomicU64::new(0));
        // INIT_WORK(&dev->rx_work, mydev_rx_work);
        let rx_work = {
            let (fifo, handled) = (rx_fifo.clone(), handled.clone());
            Work::named("mydev_rx_work", move |_| {
                // static void mydev_rx_work(struct work_struct *w) {
                //     spin_lock_irq(&dev->lock); take the fifo; unlock;
                //     process each entry ... }
                let batch = std::mem::take(&mut *fifo.lock().unwrap());
                for _ in batch {
                    handled.fetch_add(1, SeqCst);
                }
            })
        };
        Ok(Arc::new(MyDev {
            wq: Some(wq),
            rx_work,
            watchdog: Work::new(|_| {}), // replaced in start()
            up: Arc::new(AtomicBool::new(false)),
            rx_fifo,
            handled,
            watchdog_runs: Arc::default(),
        }))
    }

    /// `mydev_irq()`: top half, runs in "interrupt context" (must not
    /// block): queue the data and kick the bottom half.
    fn irq(&self, data: u32) {
        self.rx_fifo.lock().unwrap().push(data);
        // queue_work(dev->wq, &dev->rx_work);   /* already pending: no-op */
        queue_work(self.wq.as_ref().unwrap(), &self.rx_work);
    }
}

/// The watchdog is a delayed work that re-arms itself while the device is
/// up: `INIT_DELAYED_WORK(&dev->watchdog, mydev_watchdog)` and, in it,
/// `if (dev->up) schedule_delayed_work(&dev->watchdog, HZ / 50);`
fn make_watchdog(up: Arc<AtomicBool>, runs: Arc<AtomicU64>) -> Work {
    Work::named("mydev_watchdog", move |w| {
        runs.fetch_add(1, SeqCst);
        if up.load(SeqCst) {
            schedule_delayed_work(w, Duration::from_millis(20));
        }
    })
}

fn main() -> Result<(), cmwq::Error> {
    let mut dev = MyDev::probe()?;
    {
        // mydev_open(): dev->up = true; schedule_delayed_work(&dev->watchdog, HZ/50);
        let d = Arc::get_mut(&mut dev).expect("not shared yet");
        d.up.store(true, SeqCst);
        d.watchdog = make_watchdog(d.up.clone(), d.watchdog_runs.clone());
        schedule_delayed_work(&d.watchdog, Duration::from_millis(20));
    }

    // Interrupts: 10,000 of them from another thread.
    let irqs = {
        let dev = dev.clone();
        std::thread::spawn(move || {
            for i in 0..10_000 {
                dev.irq(i);
                if i % 1000 == 0 {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        })
    };
    irqs.join().unwrap();

    // mydev_remove():
    //     dev->up = false;
    //     cancel_delayed_work_sync(&dev->watchdog);
    //     flush_workqueue(dev->wq);
    //     destroy_workqueue(dev->wq);
    let mut dev = Arc::try_unwrap(dev).ok().expect("irq thread is done");
    dev.up.store(false, SeqCst);
    cancel_delayed_work_sync(&dev.watchdog);
    let wq = dev.wq.take().unwrap();
    flush_workqueue(&wq);
    let batches = wq.stats().total;
    destroy_workqueue(wq);

    // Nothing lost, nothing left.
    let handled = dev.handled.load(SeqCst);
    let runs = dev.watchdog_runs.load(SeqCst);
    assert_eq!(handled, 10_000, "every interrupt's data handled once");
    assert!(!work_pending(&dev.watchdog) && !dev.watchdog.is_running());
    assert!(runs >= 1, "the watchdog ran while the device was up");
    println!(
        "mydev: {handled} interrupts handled in {batches} bottom-half runs (a pending item is queued once); watchdog ran {runs} times"
    );
    // Show where each kernel idiom went.
    schedule_on_each_cpu(|| {});
    flush_scheduled_work();
    println!("ported: create_singlethread_workqueue, INIT_WORK, queue_work, INIT_DELAYED_WORK, schedule_delayed_work, cancel_delayed_work_sync, flush_workqueue, destroy_workqueue, schedule_on_each_cpu, flush_scheduled_work");
    Ok(())
}
