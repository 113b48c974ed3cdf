//! Coming from rayon, tokio, `std::thread` or `threadpool`: each peer's
//! call beside cmwq's. None of cmwq's calls takes a thread count: the
//! pools keep one running worker per CPU while work is pending and start
//! another when one blocks, hinted or not.
//!
//! | you wrote | with cmwq |
//! |---|---|
//! | `rayon::spawn(f)` | [`cmwq::spawn(f)`](crate::spawn) |
//! | `rayon::scope(\|s\| s.spawn(\|_\| ..))` | [`cmwq::scope(\|s\| s.spawn(\|\| ..))`](crate::scope()) |
//! | `rayon::join(a, b)` | `let h = system_dfl_wq().submit(a); let rb = b(); (h.join()?, rb)` |
//! | `std::thread::spawn(f).join()` | [`system_dfl_wq().submit(f).join()`](crate::Workqueue::submit) |
//! | `std::thread::scope(\|s\| ..)` | [`cmwq::scope(\|s\| ..)`](crate::scope()) |
//! | `tokio::task::spawn_blocking(f).await` | [`cmwq::unblock(f).await`](crate::unblock), or `submit(f).await` for a `Result` |
//! | `blocking::unblock(f).await` | [`cmwq::unblock(f).await`](crate::unblock) |
//! | `ThreadPool::new(n).execute(f)` | [`cmwq::spawn(f)`](crate::spawn), or a [`Workqueue`](crate::Workqueue) with `max_active(n)` to bound it |
//! | a thread that sleeps in a loop | a delayed work item re-armed from itself ([`Workqueue::queue_delayed`](crate::Workqueue::queue_delayed)) |
//! | `ThreadPoolBuilder::stack_size(n)` (rayon), `Builder::thread_stack_size(n)` (tokio) | [`Config::worker_stack_size(n)`](crate::Config::worker_stack_size) |
//! | `start_handler` / `exit_handler` (rayon), `on_thread_start` / `on_thread_stop` (tokio) | [`Config::on_worker_start`](crate::Config::on_worker_start) / [`on_worker_stop`](crate::Config::on_worker_stop) |
//!
//! # rayon
//!
//! ```
//! // rayon::spawn(move || work());
//! let w = cmwq::spawn(|| { /* work */ });
//! w.flush(); // rayon has no handle to wait on; a cmwq item has one
//!
//! // rayon::scope(|s| for x in &mut v { s.spawn(move |_| *x += 1) });
//! let mut v = vec![1, 2, 3];
//! cmwq::scope(|s| {
//!     for x in &mut v {
//!         s.spawn(move || *x += 1);
//!     }
//! });
//! assert_eq!(v, [2, 3, 4]);
//!
//! // let (a, b) = rayon::join(|| 1 + 1, || 2 + 2);
//! let h = cmwq::system_dfl_wq().submit(|| 1 + 1);
//! let b = 2 + 2;
//! let a = h.join().unwrap();
//! assert_eq!((a, b), (2, 4));
//! ```
//!
//! The difference that matters: a rayon closure that blocks holds one of
//! rayon's fixed threads; a cmwq closure that blocks makes its pool start
//! another worker, so blocking reads in a scope keep the CPUs busy.
//!
//! # std::thread
//!
//! ```
//! // let t = std::thread::spawn(|| compute()); let v = t.join().unwrap();
//! let v = cmwq::system_dfl_wq().submit(|| 6 * 7).join().unwrap();
//! assert_eq!(v, 42);
//!
//! // std::thread::scope(|s| { s.spawn(|| println!("{}", data.len())); });
//! let data = vec![1u8; 10];
//! cmwq::scope(|s| {
//!     s.spawn(|| assert_eq!(data.len(), 10));
//! });
//!
//! // A panic: std's join returns Err(payload); cmwq's returns
//! // JoinError::Panicked(payload).
//! let e = cmwq::system_dfl_wq().submit(|| -> () { panic!("no") }).join();
//! assert_eq!(e.unwrap_err().panic_message(), Some("no"));
//! ```
//!
//! No thread is created per call: the closures run on the pools' workers.
//!
//! # tokio and blocking
//!
//! ```
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     use std::task::{Context, Poll, Wake, Waker};
//! #     struct T(std::thread::Thread);
//! #     impl Wake for T { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
//! #     let w = Waker::from(std::sync::Arc::new(T(std::thread::current())));
//! #     let mut f = std::pin::pin!(f);
//! #     loop {
//! #         if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&w)) { return v; }
//! #         std::thread::park();
//! #     }
//! # }
//! # block_on(async {
//! // let n = tokio::task::spawn_blocking(|| read_file()).await.unwrap();
//! // let n = blocking::unblock(|| read_file()).await;
//! let n = cmwq::unblock(|| std::fs::read("/proc/self/stat").map(|b| b.len()))
//!     .await
//!     .unwrap();
//! assert!(n > 0);
//!
//! // Need the panic as a value instead of re-raised? Await a Handle.
//! let r = cmwq::system_dfl_wq().submit(|| "value").await;
//! assert_eq!(r.unwrap(), "value");
//! # });
//! ```
//!
//! `spawn_blocking` starts a thread for each blocking call in flight (up
//! to 512 by default); `cmwq::unblock` runs them on `system_dfl_wq`, which
//! adds a worker only when a running one blocks. Both work under any
//! executor; cmwq depends on none.
//!
//! # threadpool
//!
//! ```
//! // let pool = threadpool::ThreadPool::new(4); pool.execute(job); pool.join();
//! let wq = cmwq::Workqueue::builder("jobs").max_active(4).build().unwrap();
//! for i in 0..8 {
//!     wq.spawn(move || { let _ = i * i; });
//! }
//! wq.flush(); // every job queued before the call has finished
//! ```
//!
//! The workqueue spreads its jobs over every CPU, whichever thread queues
//! them, and `max_active(4)` bounds how many run at once, the way a pool of
//! 4 threads would, without fixing a thread count when they block. (A
//! per-CPU workqueue, `.flags(WqFlags::PERCPU)`, would run every job
//! queued from this thread on its CPU.)
