//! Repeated plugin faults do not flood the log: the first fault of a plugin's hook and the
//! first of each identical guest line (the guest's panic message) are written in full, later
//! ones only as a count at most once a minute; breaker transitions are always written.
//! Own test binary: it installs a global subscriber that captures every line.

#[allow(dead_code)]
#[path = "it/support.rs"]
mod support;

use dasher_policy::{BreakerConfig, Source};
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Instant;
use support::*;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// (level, `plugin` field, message) of every event.
static LINES: Mutex<Vec<(Level, String, String)>> = Mutex::new(Vec::new());

struct Capture;

#[derive(Default)]
struct Fields {
    plugin: String,
    message: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "plugin" {
            self.plugin = value.to_owned();
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "plugin" => self.plugin = format!("{value:?}"),
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        LINES.lock().unwrap().push((*event.metadata().level(), f.plugin, f.message));
    }
}

/// Warn and error lines about fault-trap.
fn noisy_lines() -> Vec<(Level, String)> {
    LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|(level, plugin, _)| *level <= Level::WARN && plugin == "fault-trap")
        .map(|(level, _, message)| (*level, message.clone()))
        .collect()
}

#[tokio::test]
async fn repeated_faults_are_logged_once_then_summarised() {
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Capture)).unwrap();
    let dir = plugin_dir(&["fault-trap"]);
    let mut cfg = config(dir.path(), &[]);
    cfg.breaker.open_after_faults = 0; // every call enters the guest and traps
    let (m, _) = start(cfg);
    let mut bad = host("bad");
    bad.tags.push("fault".into());

    const FAULTS: u64 = 20;
    let started = Instant::now();
    for _ in 0..FAULTS {
        let d = m.configure(&bad).await;
        assert_eq!(d.faults[0].kind, "trap");
    }
    let lines = noisy_lines();
    // Before aggregation: one guest ERROR (its panic message) and one fault WARN per call.
    // Now the first of each in full, then at most one summary per key and elapsed minute.
    let allowed = 2 + 2 * (started.elapsed().as_secs() / 60 + 1) as usize;
    assert!(lines.len() <= allowed && (lines.len() as u64) < 2 * FAULTS, "{} lines: {lines:#?}", lines.len());
    assert!(
        lines.iter().any(|(l, m)| *l == Level::ERROR && m.contains("deliberate panic")),
        "the guest's first panic line in full: {lines:#?}"
    );
    assert!(
        lines.iter().any(|(l, m)| *l == Level::WARN && m.starts_with("plugin fault: trap")),
        "the first fault in full: {lines:#?}"
    );

    // Breaker transitions are written in full even while faults are being aggregated.
    let mut cfg = config(dir.path(), &[]);
    cfg.breaker = BreakerConfig { open_after_faults: 3, ..BreakerConfig::default() };
    assert!(!m.update_config(cfg).await.swapped);
    for _ in 0..3 {
        assert_eq!(m.configure(&bad).await.faults[0].kind, "trap");
    }
    assert_eq!(m.configure(&host("skipped")).await.made_by[0].source, Source::NoOpinion);
    let opened: Vec<_> =
        noisy_lines().into_iter().filter(|(_, m)| m.contains("hook configure: circuit breaker open")).collect();
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert!(opened[0].1.contains("faults in"), "says why: {opened:?}");
}
