//! The peers cmwq is compared with, behind one `spawn`:
//!
//! * `rayon::spawn` on the global pool (nr_cpus threads);
//! * tokio's `spawn_blocking` on a multi-thread runtime (default cap of 512
//!   blocking threads);
//! * `threadpool` with a fixed number of threads (nr_cpus, or as many as the
//!   scenario has items: "the big fixed pool");
//! * a `std::thread` per item;
//! * and, beside them, `cmwq::spawn` (cmwq's call for one-off closures).
//!
//! Each peer's threads get a name prefix so that scenarios can count them
//! in `/proc/self/task`.

use std::sync::Once;

/// Thread name prefixes, for counting each system's threads.
pub const RAYON_THREADS: &str = "rayon-";
pub const TOKIO_THREADS: &str = "tokio-bench";
pub const POOL_THREADS: &str = "tpool";
pub const ITEM_THREADS: &str = "item-thread";
/// cmwq's bound workers are `kworker/C:N`, unbound `kworker/uP:N`.
pub const CMWQ_THREADS: &str = "kworker/";

/// A peer system, ready to run items.
pub enum Peer {
    Rayon,
    Tokio(tokio::runtime::Runtime),
    Pool {
        pool: threadpool::ThreadPool,
        threads: usize,
        big: bool,
    },
    ThreadPerItem,
    /// `cmwq::spawn` (a `Work` per call on `system_dfl_wq`): cmwq's own
    /// "natural call", beside the peers' for one-off closures.
    CmwqSpawn,
}

/// The kinds of peer, for scenarios that list which ones they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Rayon,
    Tokio,
    /// `threadpool` with nr_cpus threads.
    PoolCpus,
    /// `threadpool` with as many threads as items.
    PoolBig,
    ThreadPerItem,
    /// `cmwq::spawn` on `system_dfl_wq`.
    CmwqSpawn,
}

/// Configure rayon's global pool once: nr_cpus threads with our names.
pub fn init_rayon() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only if the global pool was started already, which is fine.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(crate::util::nproc())
            .thread_name(|i| format!("{RAYON_THREADS}{i}"))
            .build_global();
    });
}

impl Peer {
    /// Start a peer of `kind`; `items` sizes the big fixed pool.
    pub fn new(kind: Kind, items: usize) -> Peer {
        let ncpu = crate::util::nproc();
        match kind {
            Kind::Rayon => {
                init_rayon();
                Peer::Rayon
            }
            Kind::Tokio => Peer::Tokio(
                tokio::runtime::Builder::new_multi_thread()
                    .enable_time()
                    .thread_name(TOKIO_THREADS)
                    .build()
                    .expect("tokio runtime"),
            ),
            Kind::PoolCpus | Kind::PoolBig => {
                let big = kind == Kind::PoolBig;
                let threads = if big { items } else { ncpu };
                Peer::Pool {
                    pool: threadpool::Builder::new()
                        .num_threads(threads)
                        .thread_name(POOL_THREADS.into())
                        .build(),
                    threads,
                    big,
                }
            }
            Kind::ThreadPerItem => Peer::ThreadPerItem,
            Kind::CmwqSpawn => Peer::CmwqSpawn,
        }
    }

    /// The name shown in tables.
    pub fn name(&self) -> String {
        match self {
            Peer::Rayon => "rayon::spawn".into(),
            Peer::Tokio(_) => "tokio spawn_blocking".into(),
            Peer::Pool {
                threads, big: true, ..
            } => format!("threadpool({threads}) big fixed pool"),
            Peer::Pool { threads, .. } => format!("threadpool({threads})"),
            Peer::ThreadPerItem => "thread per item".into(),
            Peer::CmwqSpawn => "cmwq::spawn (system_dfl_wq)".into(),
        }
    }

    /// The name prefix of this peer's threads.
    pub fn thread_prefix(&self) -> &'static str {
        match self {
            Peer::Rayon => RAYON_THREADS,
            Peer::Tokio(_) => TOKIO_THREADS,
            Peer::Pool { .. } => POOL_THREADS,
            Peer::ThreadPerItem => ITEM_THREADS,
            Peer::CmwqSpawn => CMWQ_THREADS,
        }
    }

    /// Run `f` on the peer (fire and forget: items signal their own
    /// completion).
    #[inline]
    pub fn spawn<F>(&self, f: F)
    where
        F: FnOnce() + Send + 'static,
    {
        match self {
            Peer::Rayon => rayon::spawn(f),
            Peer::Tokio(rt) => drop(rt.spawn_blocking(f)),
            Peer::Pool { pool, .. } => pool.execute(f),
            Peer::ThreadPerItem => {
                std::thread::Builder::new()
                    .name(ITEM_THREADS.into())
                    .spawn(f)
                    .expect("spawn a thread per item");
            }
            Peer::CmwqSpawn => drop(cmwq::spawn(f)),
        }
    }

    /// Tear the peer down without waiting for idle threads to time out.
    pub fn shutdown(self) {
        match self {
            Peer::Tokio(rt) => rt.shutdown_background(),
            Peer::Pool { pool, .. } => pool.join(),
            Peer::Rayon | Peer::ThreadPerItem | Peer::CmwqSpawn => {}
        }
    }
}
