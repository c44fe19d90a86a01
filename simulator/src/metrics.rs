//! Counters and per-stage latency histograms shared by every simulated host, and the report
//! built from them (human table and JSON).

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Latency series names: the four stages, the XSRF fetch and whole syncs.
pub const SERIES: [&str; 6] = ["preflight", "eventupload", "ruledownload", "postflight", "xsrf", "full_sync"];

/// Fleet-wide metrics.
pub struct Metrics {
    hist: Vec<Mutex<Histogram<u64>>>,
    /// Full syncs that completed (postflight reached).
    pub syncs_ok: AtomicU64,
    /// Full syncs that failed at preflight or rule download.
    pub syncs_failed: AtomicU64,
    /// HTTP requests sent (including retries).
    pub requests: AtomicU64,
    /// Retried attempts.
    pub retries: AtomicU64,
    /// Request bytes on the wire.
    pub bytes_sent: AtomicU64,
    /// Response bytes.
    pub bytes_received: AtomicU64,
    /// Events accepted by the server.
    pub events_uploaded: AtomicU64,
    /// Standalone (immediate) event uploads.
    pub immediate_uploads: AtomicU64,
    /// Rules applied to local DBs.
    pub rules_applied: AtomicU64,
    /// Faults injected on purpose.
    pub faults_injected: AtomicU64,
    /// Failures not explained by an injected fault, by `stage/kind`.
    errors: Mutex<BTreeMap<String, u64>>,
    /// Failures caused by injected faults, by `stage/kind`.
    expected_errors: Mutex<BTreeMap<String, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            hist: SERIES
                .iter()
                .map(|_| Mutex::new(Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")))
                .collect(),
            syncs_ok: AtomicU64::new(0),
            syncs_failed: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            events_uploaded: AtomicU64::new(0),
            immediate_uploads: AtomicU64::new(0),
            rules_applied: AtomicU64::new(0),
            faults_injected: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            expected_errors: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    /// Records a latency for `series` (one of [`SERIES`]).
    pub fn record(&self, series: &str, micros: u64) {
        if let Some(i) = SERIES.iter().position(|s| *s == series) {
            self.hist[i].lock().expect("histogram lock").saturating_record(micros.max(1));
        }
    }

    /// Counts an error of `kind` at `stage`; `expected` when a fault was injected.
    pub fn error(&self, stage: &str, kind: &str, expected: bool) {
        let map = if expected { &self.expected_errors } else { &self.errors };
        *map.lock().expect("errors lock").entry(format!("{stage}/{kind}")).or_default() += 1;
    }

    /// Unexpected errors so far.
    pub fn error_count(&self) -> u64 {
        self.errors.lock().expect("errors lock").values().sum()
    }

    /// Adds `n` to a counter.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// Builds the JSON report. `elapsed_s` is the measured wall time.
    pub fn report(&self, hosts: usize, elapsed_s: f64, convergence: &Convergence) -> Value {
        let get = |c: &AtomicU64| c.load(Relaxed);
        let syncs = get(&self.syncs_ok);
        let mut stages = serde_json::Map::new();
        for (i, name) in SERIES.iter().enumerate() {
            let h = self.hist[i].lock().expect("histogram lock");
            let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            stages.insert(
                (*name).into(),
                json!({
                    "count": h.len(),
                    "p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99),
                    "max_ms": h.max() as f64 / 1000.0,
                }),
            );
        }
        let secs = elapsed_s.max(1e-9);
        json!({
            "hosts": hosts,
            "elapsed_s": elapsed_s,
            "syncs": syncs,
            "syncs_failed": get(&self.syncs_failed),
            "syncs_per_sec": syncs as f64 / secs,
            "requests": get(&self.requests),
            "requests_per_sec": get(&self.requests) as f64 / secs,
            "retries": get(&self.retries),
            "bytes_sent": get(&self.bytes_sent),
            "bytes_received": get(&self.bytes_received),
            "events_uploaded": get(&self.events_uploaded),
            "immediate_uploads": get(&self.immediate_uploads),
            "rules_applied": get(&self.rules_applied),
            "faults_injected": get(&self.faults_injected),
            "errors": self.error_count(),
            "errors_by_kind": *self.errors.lock().expect("errors lock"),
            "expected_errors_by_kind": *self.expected_errors.lock().expect("errors lock"),
            "converged_hosts": convergence.converged,
            "convergence_checked": convergence.checked,
            "not_converged": convergence.mismatches,
            "stages": stages,
        })
    }
}

/// Convergence result.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Convergence {
    /// Whether convergence was checked at all.
    pub checked: bool,
    /// Hosts whose DB equals the server's effective rules.
    pub converged: usize,
    /// First few that do not: `{machine_id, local, server, why}`.
    pub mismatches: Vec<Value>,
}

/// Renders the report as a terminal table.
pub fn human_table(r: &Value) -> String {
    let mut s = String::new();
    let n = |k: &str| r[k].as_f64().unwrap_or(0.0);
    s.push_str(&format!(
        "hosts {}  syncs {} ({} failed)  {:.1} syncs/s  {:.1} req/s  retries {}  errors {}\n",
        r["hosts"],
        r["syncs"],
        r["syncs_failed"],
        n("syncs_per_sec"),
        n("requests_per_sec"),
        r["retries"],
        r["errors"]
    ));
    s.push_str(&format!(
        "bytes sent {}  received {}  events uploaded {} ({} immediate)  rules applied {}  faults {}\n",
        r["bytes_sent"],
        r["bytes_received"],
        r["events_uploaded"],
        r["immediate_uploads"],
        r["rules_applied"],
        r["faults_injected"]
    ));
    s.push_str(&format!(
        "{:<14}{:>9}{:>10}{:>10}{:>10}{:>10}\n",
        "stage", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
    ));
    for name in SERIES {
        let st = &r["stages"][name];
        s.push_str(&format!(
            "{:<14}{:>9}{:>10.2}{:>10.2}{:>10.2}{:>10.2}\n",
            name,
            st["count"].as_u64().unwrap_or(0),
            st["p50_ms"].as_f64().unwrap_or(0.0),
            st["p90_ms"].as_f64().unwrap_or(0.0),
            st["p99_ms"].as_f64().unwrap_or(0.0),
            st["max_ms"].as_f64().unwrap_or(0.0)
        ));
    }
    if let Some(errs) = r["errors_by_kind"].as_object().filter(|e| !e.is_empty()) {
        s.push_str(&format!("errors: {}\n", Value::Object(errs.clone())));
    }
    if r["convergence_checked"].as_bool() == Some(true) {
        s.push_str(&format!("converged {}/{} hosts\n", r["converged_hosts"], r["hosts"]));
        for m in r["not_converged"].as_array().into_iter().flatten() {
            s.push_str(&format!("  not converged: {m}\n"));
        }
    } else {
        s.push_str("convergence not checked (no --admin-token)\n");
    }
    s
}
