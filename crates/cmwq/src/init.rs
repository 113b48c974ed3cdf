//! The start of the library in a process (the kernel's
//! `workqueue_init_early` and `workqueue_init`): the pools, then the
//! services above them, block detection's monitor thread (and the
//! sentinels), the fork handlers and the control socket.
//!
//! It sits at the top because what it starts does: every way of making a
//! workqueue ([`WorkqueueBuilder::build`], and through it
//! `Workqueue::new`, `Workqueue::ordered` and the system workqueues) comes
//! here first, so no layer below needs to name the ones above to start
//! them. The pools reach detection through the hook the monitor installs
//! as it starts (`pool::Detector`).

use std::sync::OnceLock;

use crate::pool;
use crate::workqueue::{Workqueue, WorkqueueBuilder};
use crate::Error;

/// Make the pools, then start the monitor, the fork handlers and the
/// control socket (once per process; a forked child inherits them started).
/// Concurrent first calls wait for the one that starts them; a start that
/// panics leaves them unstarted, and the next call tries again.
pub(crate) fn start() {
    static SERVICES: OnceLock<()> = OnceLock::new();
    pool::pools();
    SERVICES.get_or_init(|| {
        // The container's CPU limit (G34), before any unbound pool exists;
        // the monitor re-reads it while pools are busy.
        pool::apply_cpu_limit(crate::cpu_limit::read_limit());
        crate::monitor::start();
        crate::fork::register();
        crate::control::start();
    });
}

impl WorkqueueBuilder {
    /// Create the workqueue.
    pub fn build(self) -> Result<Workqueue, Error> {
        start();
        self.create()
    }
}
