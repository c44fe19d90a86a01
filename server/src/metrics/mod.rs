//! Prometheus metrics (`GET /metrics`, text exposition format, every name prefixed
//! `dasher_`). Owns the counters the request path bumps and the scrape-time export of
//! state that already lives elsewhere: the store's host count and the plugin host's own
//! call statistics ([`dasher_policy::PluginManager::status`]), so there is one source of
//! truth for plugin calls. Must never block a request: recording is a few atomics.

pub mod store;

use dasher_policy::ManagerStatus;
use dasher_sdk::wire::{PreflightResponse, SyncType};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Labels of a handled request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// `preflight`, `eventupload`, `ruledownload`, `postflight`, `admin`, `health`, `metrics`, `other`.
    stage: &'static str,
    /// HTTP status code.
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
    generation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginHookLabels {
    plugin: String,
    hook: String,
    mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginBreakerLabels {
    plugin: String,
    generation: String,
    hook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginQuantileLabels {
    plugin: String,
    generation: String,
    quantile: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginFaultLabels {
    plugin: String,
    generation: String,
    kind: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s.
    Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
}

/// Live counters of one server. Cheap to record from any task.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: HistogramFamily<RequestLabels>,
    syncs: Family<TypeLabel, Counter>,
    rules_sent: Counter,
    events_stored: Counter,
    events_duplicate: Counter,
    store_seconds: HistogramFamily<OpLabel>,
    store_errors: Family<OpLabel, Counter>,
    connections_open: Gauge,
    connections_refused: Counter,
    auth_failures: Family<ReasonLabel, Counter>,
    tls_reloads: Family<ReasonLabel, Counter>,
    rules_dir_errors: Counter,
    export_delivered: Family<SinkLabel, Counter>,
    export_errors: Family<SinkLabel, Counter>,
    export_lag: Family<SinkLabel, Gauge>,
    export_lease_held: Family<SinkLabel, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set, all zero.
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("dasher"),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            syncs: Family::default(),
            rules_sent: Counter::default(),
            events_stored: Counter::default(),
            events_duplicate: Counter::default(),
            store_seconds: Family::new_with_constructor(latency_histogram),
            store_errors: Family::default(),
            connections_open: Gauge::default(),
            connections_refused: Counter::default(),
            auth_failures: Family::default(),
            tls_reloads: Family::default(),
            rules_dir_errors: Counter::default(),
            export_delivered: Family::default(),
            export_errors: Family::default(),
            export_lag: Family::default(),
            export_lease_held: Family::default(),
        };
        let r = &mut m.registry;
        r.register("http_requests", "HTTP requests answered, by stage and status", m.requests.clone());
        r.register(
            "http_request_duration_seconds",
            "Time from routing to response, by stage and status",
            m.request_seconds.clone(),
        );
        r.register("syncs", "Preflights answered, by the sync type handed out", m.syncs.clone());
        r.register("rules_sent", "Rules sent in rule-download pages", m.rules_sent.clone());
        r.register("events_stored", "Events newly stored by uploads", m.events_stored.clone());
        r.register("events_duplicate", "Uploaded events skipped as already stored", m.events_duplicate.clone());
        r.register("store_operation_duration_seconds", "Store call time, by operation", m.store_seconds.clone());
        r.register("store_errors", "Store calls that failed, by operation", m.store_errors.clone());
        r.register("connections_open", "Client connections currently open", m.connections_open.clone());
        r.register(
            "connections_refused",
            "Connections closed at accept: max_connections or max_connections_per_peer open, none idle",
            m.connections_refused.clone(),
        );
        r.register("auth_failures", "Refused credentials, by reason", m.auth_failures.clone());
        r.register("tls_reloads", "TLS certificate reload attempts, by result", m.tls_reloads.clone());
        r.register(
            "rules_dir_errors",
            "Rules-directory applies that failed (broken file, store error); the last good rules stay",
            m.rules_dir_errors.clone(),
        );
        r.register("export_delivered", "Event records an export sink acknowledged", m.export_delivered.clone());
        r.register("export_errors", "Failed deliveries of an export sink (retried)", m.export_errors.clone());
        r.register("export_lag_events", "Stored events an export sink has not reached yet", m.export_lag.clone());
        r.register(
            "export_lease_held",
            "1 while this replica holds the sink's export lease (exports it), else 0",
            m.export_lease_held.clone(),
        );
        m
    }

    /// Counts records an export sink acknowledged.
    pub fn record_export_delivered(&self, sink: &str, n: u64) {
        self.export_delivered.get_or_create(&SinkLabel { sink: sink.to_owned() }).inc_by(n);
    }

    /// Counts a failed export delivery.
    pub fn record_export_error(&self, sink: &str) {
        self.export_errors.get_or_create(&SinkLabel { sink: sink.to_owned() }).inc();
    }

    /// Sets how far an export sink is behind.
    pub fn set_export_lag(&self, sink: &str, lag: u64) {
        self.export_lag.get_or_create(&SinkLabel { sink: sink.to_owned() }).set(i64::try_from(lag).unwrap_or(i64::MAX));
    }

    /// Sets whether this replica holds a sink's export lease.
    pub fn set_export_lease_held(&self, sink: &str, held: bool) {
        self.export_lease_held.get_or_create(&SinkLabel { sink: sink.to_owned() }).set(i64::from(held));
    }

    /// Counts one answered request and its duration.
    pub fn record_request(&self, stage: &'static str, status: u16, elapsed: Duration) {
        let labels = RequestLabels { stage, status };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// Counts a preflight by the sync type it hands out.
    pub fn record_preflight(&self, resp: &PreflightResponse) {
        let kind = match resp.sync_type.and_then(|t| SyncType::try_from(t).ok()) {
            Some(SyncType::Clean) => "clean",
            Some(SyncType::CleanAll) => "clean_all",
            Some(_) => "normal",
            // Pre-2024 clients learn of a clean sync from the deprecated flag (§3.2).
            None if resp.clean_sync == Some(true) => "clean",
            None => "normal",
        };
        self.syncs.get_or_create(&TypeLabel { r#type: kind }).inc();
    }

    /// Counts rules sent in one rule-download page.
    pub fn record_rules_sent(&self, n: usize) {
        self.rules_sent.inc_by(n as u64);
    }

    /// Counts the outcome of one event insert.
    pub fn record_events(&self, stored: u32, duplicates: u32) {
        self.events_stored.inc_by(u64::from(stored));
        self.events_duplicate.inc_by(u64::from(duplicates));
    }

    /// Records one store call.
    pub fn record_store(&self, op: &'static str, elapsed: Duration, ok: bool) {
        self.store_seconds.get_or_create(&OpLabel { op }).observe(elapsed.as_secs_f64());
        if !ok {
            self.store_errors.get_or_create(&OpLabel { op }).inc();
        }
    }

    /// The open-connections gauge (incremented on accept, decremented on close).
    pub fn connections_open(&self) -> &Gauge {
        &self.connections_open
    }

    /// Counts a connection refused at `max_connections` or `max_connections_per_peer`.
    pub fn record_connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Counts refused credentials (`admin_missing`, `admin_unknown`, `admin_role`,
    /// `sync_secret_missing`, `sync_secret_wrong`, `client_cert_mismatch`) and sync requests over
    /// the per-machine budget (`rate_limited`).
    pub fn record_auth_failure(&self, reason: &'static str) {
        self.auth_failures.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts a TLS reload attempt (`ok` or `error`).
    pub fn record_tls_reload(&self, result: &'static str) {
        self.tls_reloads.get_or_create(&ReasonLabel { reason: result }).inc();
    }

    /// Counts a failed rules-directory apply.
    pub fn record_rules_dir_error(&self) {
        self.rules_dir_errors.inc();
    }

    /// The text exposition: live counters, then `hosts` and plugin state read now.
    pub fn render(&self, host_count: Option<u64>, plugins: Option<&ManagerStatus>) -> String {
        let mut scrape = Registry::with_prefix("dasher");
        if let Some(n) = host_count {
            let g: Gauge = Gauge::default();
            g.set(i64::try_from(n).unwrap_or(i64::MAX));
            scrape.register("hosts", "Hosts in the inventory (read from the store at scrape time)", g);
        }
        if let Some(status) = plugins {
            register_plugins(&mut scrape, status);
        }
        let mut out = String::new();
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, &scrape);
        let _ = encode_eof(&mut out);
        out
    }
}

/// Plugin metrics from the plugin host's status. Its statistics are kept per generation
/// (a new file starts from zero), so the counters carry the generation as a label and
/// stay monotonic per series; latency is the host's own p50/p99 of recent calls.
fn register_plugins(r: &mut Registry, status: &ManagerStatus) {
    let swaps: Counter = Counter::default();
    swaps.inc_by(status.generation);
    r.register("plugin_reloads", "Plugin set swaps (loads, reloads, rollbacks, unloads)", swaps);
    let load_errors: Gauge = Gauge::default();
    load_errors.set(status.load_errors.len() as i64);
    r.register("plugin_load_errors", "Plugin files currently failing to load", load_errors);
    let calls = Family::<PluginLabels, Counter>::default();
    let errors = Family::<PluginLabels, Counter>::default();
    let faults = Family::<PluginFaultLabels, Counter>::default();
    let shadow = Family::<PluginLabels, Counter>::default();
    let degraded = Family::<PluginLabels, Gauge>::default();
    let latency = Family::<PluginQuantileLabels, Gauge<f64, AtomicU64>>::default();
    let hooks = Family::<PluginHookLabels, Gauge>::default();
    let breaker_open = Family::<PluginBreakerLabels, Gauge>::default();
    let breaker_until = Family::<PluginBreakerLabels, Gauge<f64, AtomicU64>>::default();
    let skipped = Family::<PluginBreakerLabels, Counter>::default();
    for p in &status.plugins {
        let l = PluginLabels { plugin: p.name.clone(), generation: p.hash.clone() };
        calls.get_or_create(&l).inc_by(p.calls);
        errors.get_or_create(&l).inc_by(p.errors);
        shadow.get_or_create(&l).inc_by(p.shadow_disagreements);
        degraded.get_or_create(&l).set(i64::from(p.degraded));
        for (kind, n) in &p.faults {
            faults
                .get_or_create(&PluginFaultLabels {
                    plugin: p.name.clone(),
                    generation: p.hash.clone(),
                    kind: kind.clone(),
                })
                .inc_by(*n);
        }
        for (quantile, us) in [("0.5", p.p50_us), ("0.99", p.p99_us)] {
            latency
                .get_or_create(&PluginQuantileLabels { plugin: p.name.clone(), generation: p.hash.clone(), quantile })
                .set(us as f64 / 1e6);
        }
        let mode = match p.mode {
            dasher_policy::Mode::Enforce => "enforce",
            dasher_policy::Mode::Shadow => "shadow",
        }
        .to_owned();
        for b in &p.breakers {
            let l =
                PluginBreakerLabels { plugin: p.name.clone(), generation: p.hash.clone(), hook: b.hook.name().into() };
            breaker_open.get_or_create(&l).set(i64::from(b.state != dasher_policy::BreakerState::Closed));
            breaker_until.get_or_create(&l).set(b.open_until_unix_ms.map_or(0.0, |ms| ms as f64 / 1e3));
            skipped.get_or_create(&l).inc_by(b.skipped_calls);
        }
        for hook in &p.hooks {
            let labels = PluginHookLabels { plugin: p.name.clone(), hook: hook.name().to_owned(), mode: mode.clone() };
            hooks.get_or_create(&labels).set(1);
        }
    }
    r.register("plugin_calls", "Calls to a plugin generation (all hooks)", calls);
    r.register("plugin_errors", "Faulted calls to a plugin generation", errors);
    r.register("plugin_faults", "Faulted calls by kind (trap, timeout, oom, …)", faults);
    r.register("plugin_shadow_disagreements", "Shadow decisions that differed from the applied ones", shadow);
    r.register("plugin_degraded", "1 while a breaker of the plugin is open or half-open", degraded);
    r.register(
        "plugin_breaker_open",
        "1 while a hook's circuit breaker is open or half-open (calls skip the plugin)",
        breaker_open,
    );
    r.register(
        "plugin_breaker_open_until_seconds",
        "Unix time when an open breaker's cool-down ends (0 unless open)",
        breaker_until,
    );
    r.register("plugin_calls_skipped", "Calls that skipped a plugin hook because its breaker was open", skipped);
    r.register("plugin_call_duration_seconds", "Recent call time of a plugin generation, by quantile", latency);
    r.register("plugin_hook", "1 for each hook a loaded plugin implements, with its mode", hooks);
}
