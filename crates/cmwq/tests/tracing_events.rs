//! With the `tracing` feature, the kernel's workqueue tracepoints are
//! emitted as tracing events (run with `--features tracing`).
#![cfg(feature = "tracing")]

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Event names (tracepoints), span descriptions, and the messages of
/// events without a name (the library's reports) with their level.
#[derive(Default)]
struct Collect(Mutex<Vec<String>>, Mutex<Vec<String>>, Mutex<Vec<String>>);

struct EventName<'a>(&'a mut String, &'a mut String);

impl Visit for EventName<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "event" {
            *self.0 = format!("{value:?}").trim_matches('"').to_string();
        } else if field.name() == "message" {
            *self.1 = format!("{value:?}");
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "event" {
            *self.0 = value.to_string();
        }
    }
}

struct SpanFields(String);

impl Visit for SpanFields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let v = format!("{value:?}");
        self.0
            .push_str(&format!(" {}={}", field.name(), v.trim_matches('"')));
    }
}

struct Sub(Arc<Collect>);

impl Subscriber for Sub {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target() == "cmwq"
    }
    fn new_span(&self, a: &Attributes<'_>) -> Id {
        // Spans: "name workqueue=.. item=.." as recorded.
        let mut f = SpanFields(String::new());
        a.record(&mut f);
        self.0
             .1
            .lock()
            .unwrap()
            .push(format!("{}{}", a.metadata().name(), f.0));
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let (mut name, mut message) = (String::new(), String::new());
        e.record(&mut EventName(&mut name, &mut message));
        if name.is_empty() {
            let level = e.metadata().level();
            self.0 .2.lock().unwrap().push(format!("{level} {message}"));
        }
        self.0 .0.lock().unwrap().push(name);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn kernel_tracepoints_are_emitted() {
    let c = Arc::new(Collect::default());
    tracing::subscriber::set_global_default(Sub(c.clone())).unwrap();
    let wq = cmwq::Workqueue::builder("traced")
        .max_active(1)
        .build()
        .unwrap();
    let a = cmwq::Work::named("a", |_| {});
    let b = cmwq::Work::named("b", |_| {});
    wq.queue_on(0, &a);
    wq.queue_on(0, &b);
    wq.flush();
    let names = c.0.lock().unwrap().clone();
    let count = |n: &str| names.iter().filter(|x| *x == n).count();
    assert_eq!(count("workqueue_queue_work"), 2, "{names:?}");
    assert_eq!(count("workqueue_execute_start"), 2, "{names:?}");
    assert_eq!(count("workqueue_execute_end"), 2, "{names:?}");
    assert!(count("workqueue_activate_work") <= 1, "{names:?}");
    // A span per execution, with the workqueue, item and CPU.
    let spans = c.1.lock().unwrap().clone();
    for item in ["a", "b"] {
        let want = format!("execute workqueue=traced item={item} cpu=");
        assert!(
            spans.iter().any(|s| s.starts_with(&want)),
            "no {want:?} span in {spans:?}"
        );
    }
    // The library's reports go to tracing, a contained panic at level
    // error (stderr gets them only without a facade feature; log_facade.rs
    // checks that stderr stays empty, in a child process).
    std::panic::set_hook(Box::new(|_| {}));
    let p = cmwq::Work::named("boom", |_| panic!("on purpose"));
    wq.queue(&p);
    p.flush();
    let _ = std::panic::take_hook();
    let reports = c.2.lock().unwrap().clone();
    assert!(
        reports
            .iter()
            .any(|r| r.starts_with("ERROR work item boom") && r.contains("panicked: on purpose")),
        "{reports:?}"
    );
}
