//! Tracing events named after the kernel's workqueue tracepoints
//! (`workqueue_queue_work`, `workqueue_activate_work`,
//! `workqueue_execute_start`, `workqueue_execute_end`), emitted through the
//! `tracing` crate at TRACE level under the target `cmwq`, with the `tracing`
//! feature. Without the feature they compile to nothing.

/// `workqueue_queue_work`: an item was queued (`cpu` is the CPU asked for
/// or the caller's).
macro_rules! queue_work {
    ($wq:expr, $work:expr, $cpu:expr, $active:expr) => {
        #[cfg(feature = "tracing")]
        tracing::trace!(
            target: "cmwq",
            event = "workqueue_queue_work",
            workqueue = %$wq,
            work = $work.name().unwrap_or("work"),
            cpu = $cpu,
            active = $active,
        );
    };
}

/// `workqueue_activate_work`: a throttled item became active.
macro_rules! activate_work {
    ($wq:expr, $work:expr) => {
        #[cfg(feature = "tracing")]
        tracing::trace!(
            target: "cmwq",
            event = "workqueue_activate_work",
            workqueue = %$wq,
            work = $work.name().unwrap_or("work"),
        );
    };
}

/// `workqueue_execute_start`.
macro_rules! execute_start {
    ($wq:expr, $work:expr) => {
        #[cfg(feature = "tracing")]
        tracing::trace!(
            target: "cmwq",
            event = "workqueue_execute_start",
            workqueue = %$wq,
            work = $work.name().unwrap_or("work"),
        );
    };
}

/// `workqueue_execute_end`.
macro_rules! execute_end {
    ($wq:expr, $work:expr) => {
        #[cfg(feature = "tracing")]
        tracing::trace!(
            target: "cmwq",
            event = "workqueue_execute_end",
            workqueue = %$wq,
            work = $work.name().unwrap_or("work"),
        );
    };
}

/// A pool sent a mayday for a workqueue's pwq (G22; the kernel has no
/// tracepoint here, `wq_monitor.py` counts them).
macro_rules! mayday {
    ($wq:expr, $pool:expr) => {
        #[cfg(feature = "tracing")]
        tracing::trace!(
            target: "cmwq",
            event = "workqueue_mayday",
            workqueue = %$wq,
            pool = $pool,
        );
    };
}

pub(crate) use {activate_work, execute_end, execute_start, mayday, queue_work};
