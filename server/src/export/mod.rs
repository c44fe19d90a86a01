//! Event export: every stored event streamed to the configured sinks (`[[export.sinks]]`),
//! at least once, across crashes.
//!
//! One task per sink reads the store in event-id order after the sink's durable cursor
//! (key `export-cursor:<sink>` in [`SERVER_KV_NAMESPACE`]), delivers a batch, and advances the
//! cursor only once the sink acknowledged (file synced, HTTP 2xx, rejected records
//! dead-lettered). A crash re-delivers at most the batch in flight; records carry the event
//! id so receivers can de-duplicate.
//!
//! Must never: slow a sync (exporters only read the store and write their cursor), skip an
//! event (the cursor advances past an id only once it was delivered, filtered out, or
//! dead-lettered), or log a credential.

pub mod config;
mod file;
pub mod http_sink;
pub mod record;

use crate::metrics::Metrics;
use crate::sync::now_unix;
pub use config::{ExportSettings, HttpFormat, SinkConfig, SinkKind};
use dasher_store::{EventFilter, EventRecord, SERVER_KV_NAMESPACE, Store};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// A delivery that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying (network, 5xx, 429, disk).
    #[error("{0}")]
    Transient(String),
}

/// What `GET /api/v1/export` shows of one sink.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SinkStatus {
    /// Sink name.
    pub name: String,
    /// `stdout`, `file` or `http`.
    pub kind: String,
    /// Last event id delivered (or passed over by the filters).
    pub cursor: u64,
    /// Newest stored event id when last looked at.
    pub head: u64,
    /// `head - cursor`.
    pub lag_events: u64,
    /// Records delivered since start.
    pub delivered: u64,
    /// Records dead-lettered since start.
    pub dead_lettered: u64,
    /// Failed deliveries since start.
    pub errors: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// When it happened (Unix seconds).
    pub last_error_unix: Option<i64>,
    /// When a batch was last acknowledged (Unix seconds).
    pub last_delivery_unix: Option<i64>,
}

/// Every sink's status, shared between the exporters and the admin API.
#[derive(Clone, Default)]
pub struct ExportStatus(Arc<Mutex<BTreeMap<String, SinkStatus>>>);

impl ExportStatus {
    /// The sinks, by name.
    pub fn snapshot(&self) -> Vec<SinkStatus> {
        self.0.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut SinkStatus)) {
        if let Ok(mut m) = self.0.lock() {
            f(m.entry(name.to_owned()).or_default());
        }
    }
}

/// The store key of a sink's cursor.
pub fn cursor_key(sink: &str) -> String {
    format!("export-cursor:{sink}")
}

/// Starts one exporter per sink; they stop when `shutdown` turns true.
pub fn spawn(
    settings: &ExportSettings,
    data_dir: &Path,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    status: ExportStatus,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = vec![];
    for c in &settings.sinks {
        let out = match c.kind {
            SinkKind::Stdout => Out::Stdout,
            SinkKind::File => Out::File(Arc::new(Mutex::new(file::FileSink::new(
                c.path.clone().unwrap_or_default(),
                c.rotate_bytes,
                c.rotate_secs,
                c.gzip,
            )))),
            SinkKind::Http => Out::Http(
                http_sink::HttpSink::new(c, data_dir)
                    .map_err(|e| anyhow::anyhow!("export.sinks[name = {:?}]: {e}", c.name))?,
            ),
        };
        let kind = serde_json::to_value(c.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        status.update(&c.name, |s| {
            s.name = c.name.clone();
            s.kind = kind;
        });
        let exporter = Exporter {
            c: c.clone(),
            out,
            store: store.clone(),
            metrics: metrics.clone(),
            status: status.clone(),
            shutdown: shutdown.clone(),
        };
        tasks.push(tokio::spawn(exporter.run()));
    }
    Ok(tasks)
}

enum Out {
    Stdout,
    File(Arc<Mutex<file::FileSink>>),
    Http(http_sink::HttpSink),
}

struct Exporter {
    c: SinkConfig,
    out: Out,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    status: ExportStatus,
    shutdown: watch::Receiver<bool>,
}

/// Why the loop stopped waiting.
enum Wake {
    Time,
    Shutdown,
}

impl Exporter {
    async fn sleep(&mut self, d: Duration) -> Wake {
        if *self.shutdown.borrow() {
            return Wake::Shutdown;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => Wake::Time,
            _ = self.shutdown.changed() => Wake::Shutdown,
        }
    }

    fn failed(&self, e: &str) {
        tracing::warn!(sink = %self.c.name, error = %e, "export delivery failed; retrying");
        self.metrics.record_export_error(&self.c.name);
        self.status.update(&self.c.name, |s| {
            s.errors += 1;
            s.last_error = Some(e.to_owned());
            s.last_error_unix = Some(now_unix());
        });
    }

    async fn run(mut self) {
        let name = self.c.name.clone();
        let flush = Duration::from_millis(self.c.flush_interval_ms);
        let max_backoff = Duration::from_millis(self.c.max_backoff_ms);
        let mut backoff = Duration::from_millis(100).min(max_backoff);
        let mut cursor = loop {
            match self.store.kv_get(SERVER_KV_NAMESPACE, &cursor_key(&name)).await {
                Ok(v) => break v.and_then(|b| std::str::from_utf8(&b).ok()?.parse::<u64>().ok()).unwrap_or(0),
                Err(e) => {
                    self.failed(&format!("reading the cursor: {e}"));
                    if let Wake::Shutdown = self.sleep(backoff).await {
                        return;
                    }
                    backoff = next_backoff(backoff, max_backoff);
                }
            }
        };
        self.status.update(&name, |s| s.cursor = cursor);
        let mut stop = self.shutdown.clone();
        loop {
            // A shutdown interrupts a delivery in flight (a stalled receiver must not hold
            // the server up); its batch was not acknowledged, so it is sent again next start.
            let step = tokio::select! {
                r = self.step(cursor) => r,
                _ = stop.wait_for(|v| *v) => return,
            };
            let wait = match step {
                Ok(Some(next)) => {
                    backoff = Duration::from_millis(100).min(max_backoff);
                    cursor = next;
                    continue;
                }
                Ok(None) => flush,
                Err(e) => {
                    self.failed(&e);
                    let w = jitter(backoff);
                    backoff = next_backoff(backoff, max_backoff);
                    w
                }
            };
            if let Wake::Shutdown = self.sleep(wait).await {
                return;
            }
        }
    }

    /// One batch after `cursor`: `Ok(Some(new cursor))` when it moved, `Ok(None)` when there
    /// is nothing (settled) to export yet.
    async fn step(&mut self, cursor: u64) -> Result<Option<u64>, String> {
        let name = self.c.name.clone();
        let newest = self
            .store
            .query_events(&EventFilter { limit: 1, ..Default::default() })
            .await
            .map_err(|e| format!("reading events: {e}"))?;
        let head = newest.first().map_or(0, |e| e.id);
        let lag = head.saturating_sub(cursor);
        self.metrics.set_export_lag(&name, lag);
        self.status.update(&name, |s| {
            s.head = head;
            s.lag_events = lag;
            s.cursor = cursor;
        });
        if head <= cursor {
            return Ok(None);
        }
        // Ids increase with insertion: the window (cursor, cursor + batch] holds at most a
        // batch of events; read it whole, oldest first.
        let window = self.c.batch_size as u64;
        let end = cursor.saturating_add(window);
        let mut events = self
            .store
            .query_events(&EventFilter {
                before_id: Some(end.saturating_add(1)),
                limit: self.c.batch_size,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("reading events: {e}"))?;
        events.retain(|e| e.id > cursor);
        events.reverse();
        let settled_before = now_unix() - self.c.settle_secs as i64;
        let mut next = cursor;
        let mut batch: Vec<EventRecord> = vec![];
        let mut all_settled = true;
        for e in events {
            if e.event.received_at_unix > settled_before && e.triage.is_none() {
                all_settled = false;
                break;
            }
            next = e.id;
            if record::wanted(&e, &self.c.decisions, &self.c.labels, self.c.include_dropped) {
                batch.push(e);
            }
        }
        if all_settled && head > end {
            // Ids in the window that are not there were pruned or never used.
            next = end;
        }
        if next == cursor {
            return Ok(None);
        }
        let (sent, dead) = self.deliver(&batch).await?;
        self.store
            .kv_put(SERVER_KV_NAMESPACE, &cursor_key(&name), next.to_string().as_bytes())
            .await
            .map_err(|e| format!("storing the cursor: {e}"))?;
        self.metrics.record_export_delivered(&name, sent);
        let lag = head.saturating_sub(next);
        self.metrics.set_export_lag(&name, lag);
        self.status.update(&name, |s| {
            s.cursor = next;
            s.lag_events = lag;
            s.delivered += sent;
            s.dead_lettered += dead;
            if sent + dead > 0 {
                s.last_delivery_unix = Some(now_unix());
            }
        });
        Ok(Some(next))
    }

    /// Sends `events`; returns (delivered, dead-lettered).
    async fn deliver(&mut self, events: &[EventRecord]) -> Result<(u64, u64), String> {
        if events.is_empty() {
            return Ok((0, 0));
        }
        let mut hosts: HashMap<String, Option<dasher_store::Host>> = HashMap::new();
        let mut items = Vec::with_capacity(events.len());
        for e in events {
            if !hosts.contains_key(&e.machine_id) {
                let h = self.store.get_host(&e.machine_id).await.map_err(|e| format!("reading a host: {e}"))?;
                hosts.insert(e.machine_id.clone(), h);
            }
            let rec = record::build(&self.c.name, e, hosts[&e.machine_id].as_ref());
            let json = serde_json::to_vec(&rec).map_err(|e| e.to_string())?;
            items.push(http_sink::Item { id: e.id, received_at_unix: e.event.received_at_unix, json });
        }
        let n = items.len() as u64;
        match &mut self.out {
            Out::Stdout => {
                let lines: Vec<Vec<u8>> = items.into_iter().map(|i| i.json).collect();
                tokio::task::spawn_blocking(move || file::write_stdout(&lines))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                Ok((n, 0))
            }
            Out::File(f) => {
                let lines: Vec<Vec<u8>> = items.into_iter().map(|i| i.json).collect();
                let f = f.clone();
                tokio::task::spawn_blocking(move || match f.lock() {
                    Ok(mut f) => f.write(&lines),
                    Err(_) => Err(SinkError::Transient("file sink poisoned".into())),
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
                Ok((n, 0))
            }
            Out::Http(h) => {
                let dead = h.deliver(&items).await.map_err(|e| e.to_string())?;
                Ok((n - dead, dead))
            }
        }
    }
}

fn next_backoff(d: Duration, max: Duration) -> Duration {
    (d * 2).min(max)
}

/// `d` scaled by a random factor in [0.5, 1.0] (so failed replicas do not retry in step).
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}
