//! G33 under tokio (a peer, so a dependency of this crate only):
//! `cmwq::unblock` and `Handle` futures awaited on tokio runtimes.

use std::time::{Duration, Instant};

#[test]
fn g33_unblock_and_handles_under_tokio() {
    for multi in [false, true] {
        let rt = if multi {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_time()
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
        }
        .unwrap();
        rt.block_on(async {
            // Eight 100 ms blocking reads overlap on system_dfl_wq while
            // the runtime's own timer keeps ticking.
            let t = Instant::now();
            let futs: Vec<_> = (0..8)
                .map(|i| {
                    cmwq::unblock(move || {
                        std::thread::sleep(Duration::from_millis(100));
                        i
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(10)).await;
            let mut sum = 0;
            for f in futs {
                sum += f.await;
            }
            assert_eq!(sum, 28);
            assert!(
                t.elapsed() < Duration::from_millis(600),
                "not overlapped: {:?}",
                t.elapsed()
            );
            // A Handle is a future too.
            let h = cmwq::system_dfl_wq().submit(|| "from a kworker");
            assert_eq!(h.await.unwrap(), "from a kworker");
        });
    }
}
