//! Event export: every stored event streamed to the configured sinks (`[[export.sinks]]`),
//! at least once, across crashes.
//!
//! One task per sink reads the store in event-id order after the sink's durable cursor
//! (key `export-cursor:<sink>` in [`SERVER_KV_NAMESPACE`]), delivers a batch, and advances the
//! cursor only once the sink acknowledged (file synced, HTTP 2xx, rejected records
//! dead-lettered). A crash re-delivers at most the batch in flight; records carry the event
//! id so receivers can de-duplicate.
//!
//! Replicas sharing a PostgreSQL database export each sink from one replica at a time: the
//! sink's task delivers only while it holds the store lease `export:<sink>` (see
//! `export/lease.rs`), renews it every third of `[export] lease_secs`, stops at once when a
//! renewal fails or the lease runs out, and advances the cursor with a write the store makes
//! only for the live holder. Another replica takes the sink over once the lease expired.
//!
//! Must never: deliver without a live lease, slow a sync (exporters only read the store and write their cursor), skip an
//! event (the cursor advances past an id only once it was delivered, filtered out, or
//! dead-lettered), or log a credential.

pub mod config;
mod file;
pub mod http_sink;
mod lease;
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
    /// The replica holding the sink's export lease (exporting it), when known.
    pub holder: Option<String>,
    /// When that lease runs out unless renewed (Unix seconds).
    pub lease_expires: Option<i64>,
    /// Whether this replica is the holder.
    pub held_here: bool,
}

/// Every sink's status, shared between the exporters and the admin API.
#[derive(Clone, Default)]
pub struct ExportStatus(Arc<Mutex<BTreeMap<String, SinkStatus>>>, Arc<std::sync::OnceLock<String>>);

impl ExportStatus {
    /// This replica's lease holder id (set when the exporters start; `None` without sinks).
    pub fn replica(&self) -> Option<&str> {
        self.1.get().map(String::as_str)
    }

    /// Whether any sink is configured.
    pub fn configured(&self) -> bool {
        self.0.lock().is_ok_and(|m| !m.is_empty())
    }

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

/// The store lease of a sink.
pub fn lease_name(sink: &str) -> String {
    format!("export:{sink}")
}

/// This process's lease holder id: the host name and a random id, e.g. `mac-build-3/5f0c9a1e2b7d`.
pub fn replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().chars().filter(|c| c.is_ascii_graphic()).take(64).collect::<String>())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("{host}/{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
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
    if settings.sinks.is_empty() {
        return Ok(tasks);
    }
    let replica = status.1.get_or_init(replica_id).clone();
    let lease_ttl = Duration::from_secs(settings.lease_secs);
    for c in &settings.sinks {
        let out = match c.kind {
            SinkKind::Stdout => Out::Stdout,
            SinkKind::File => Out::File(Arc::new(Mutex::new(file::FileSink::new(
                c.path.clone().unwrap_or_default(),
                c.rotate_bytes,
                c.rotate_secs,
                c.gzip,
            )))),
            SinkKind::Http => Out::Http(Box::new(
                http_sink::HttpSink::new(c, data_dir, &replica)
                    .map_err(|e| anyhow::anyhow!("export.sinks[name = {:?}]: {e}", c.name))?,
            )),
        };
        let kind = serde_json::to_value(c.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        status.update(&c.name, |s| {
            s.name = c.name.clone();
            s.kind = kind;
        });
        let exporter = Exporter {
            replica: replica.clone(),
            lease_ttl,
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
    Http(Box<http_sink::HttpSink>),
}

struct Exporter {
    /// This replica's lease holder id.
    replica: String,
    lease_ttl: Duration,
    c: SinkConfig,
    out: Out,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    status: ExportStatus,
    shutdown: watch::Receiver<bool>,
}

/// Why a batch did not go through.
enum StepError {
    /// Retry after a back-off.
    Failed(String),
    /// This replica no longer surely holds the sink's lease: stop delivering.
    Lost(String),
}

impl From<String> for StepError {
    fn from(e: String) -> Self {
        StepError::Failed(e)
    }
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

    /// Reads the sink's durable cursor (0 when none).
    async fn read_cursor(&self) -> Result<u64, String> {
        let v = self
            .store
            .kv_get(SERVER_KV_NAMESPACE, &cursor_key(&self.c.name))
            .await
            .map_err(|e| format!("reading the cursor: {e}"))?;
        Ok(v.and_then(|b| std::str::from_utf8(&b).ok()?.parse::<u64>().ok()).unwrap_or(0))
    }

    /// Exports while this replica holds the lease; `valid` says until when it surely does.
    /// Returns only when the cursor cannot be read or the lease was lost, saying why.
    async fn export(&mut self, valid: &watch::Receiver<std::time::Instant>) -> Result<(), String> {
        let name = self.c.name.clone();
        let flush = Duration::from_millis(self.c.flush_interval_ms);
        let max_backoff = Duration::from_millis(self.c.max_backoff_ms);
        let mut backoff = Duration::from_millis(100).min(max_backoff);
        // Read after the lease was taken: whatever the previous holder acknowledged is in.
        let mut cursor = self.read_cursor().await?;
        self.status.update(&name, |s| s.cursor = cursor);
        loop {
            let wait = match self.step(cursor, valid).await {
                Ok(Some(next)) => {
                    backoff = Duration::from_millis(100).min(max_backoff);
                    cursor = next;
                    continue;
                }
                Ok(None) => flush,
                Err(StepError::Lost(why)) => return Err(why),
                Err(StepError::Failed(e)) => {
                    self.failed(&e);
                    let w = jitter(backoff);
                    backoff = next_backoff(backoff, max_backoff);
                    w
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One batch after `cursor`: `Ok(Some(new cursor))` when it moved, `Ok(None)` when there
    /// is nothing (settled) to export yet.
    async fn step(
        &mut self,
        cursor: u64,
        valid: &watch::Receiver<std::time::Instant>,
    ) -> Result<Option<u64>, StepError> {
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
        lease::check(valid)?;
        let (sent, dead) = self.deliver(&batch).await?;
        lease::check(valid)?;
        let stored = self
            .store
            .kv_put_leased(
                &lease_name(&name),
                &self.replica,
                SERVER_KV_NAMESPACE,
                &cursor_key(&name),
                next.to_string().as_bytes(),
            )
            .await
            .map_err(|e| format!("storing the cursor: {e}"))?;
        if !stored {
            // The lease ran out under this delivery: the next holder re-sends the batch.
            return Err(StepError::Lost("the export lease was lost before the cursor was stored".into()));
        }
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
