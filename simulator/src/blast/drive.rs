//! The measured phase: `C` keep-alive connections, each owning every C-th host and running its
//! full NORMAL syncs back to back. Each connection keeps its own histograms and counters (no
//! sharing on the hot path); they are merged when the phase ends.

use super::http1::{ClientConn, Http1Error};
use super::prepare::{HostPlan, Prepared};
use crate::client::SimClient;
use dasher_sdk::wire::{Format, PreflightResponse, RuleDownloadResponse, SyncType, WireMessage};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The stages timed, in order; `full_sync` is the whole sync.
pub const STAGES: [&str; 5] = ["preflight", "eventupload", "ruledownload", "postflight", "full_sync"];
/// Failures printed in full (the rest are only counted by kind).
pub const FIRST_ERRORS: usize = 5;
/// Rule-download pages one sync may take before it counts as a cursor loop.
const MAX_PAGES: usize = 100_000;

/// What one phase measured.
pub struct PhaseResult {
    /// Wall time from start until every connection stopped.
    pub elapsed: Duration,
    /// Syncs that completed correctly.
    pub ok: u64,
    /// HTTP requests sent.
    pub requests: u64,
    /// Rules received in rule-download pages (0 in a steady state).
    pub rules_received: u64,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// The first failures, with their reason.
    pub first_errors: Vec<String>,
    /// Latency per stage in µs, indexed like [`STAGES`].
    pub hists: Vec<Histogram<u64>>,
}

impl PhaseResult {
    fn new() -> PhaseResult {
        PhaseResult {
            elapsed: Duration::ZERO,
            ok: 0,
            requests: 0,
            rules_received: 0,
            errors: BTreeMap::new(),
            first_errors: Vec::new(),
            hists: STAGES
                .iter()
                .map(|_| Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"))
                .collect(),
        }
    }

    /// Failed syncs.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn merge(&mut self, o: PhaseResult) {
        self.ok += o.ok;
        self.requests += o.requests;
        self.rules_received += o.rules_received;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for e in o.first_errors {
            if self.first_errors.len() < FIRST_ERRORS {
                self.first_errors.push(e);
            }
        }
        for (a, b) in self.hists.iter_mut().zip(&o.hists) {
            a.add(b).expect("same histogram bounds");
        }
    }

    fn record(&mut self, stage: usize, since: Instant) {
        let us = since.elapsed().as_micros().clamp(1, 3_600_000_000) as u64;
        let _ = self.hists[stage].record(us);
    }

    fn fail(&mut self, f: Failure) {
        *self.errors.entry(f.kind).or_default() += 1;
        if self.first_errors.len() < FIRST_ERRORS {
            self.first_errors.push(f.detail);
        }
    }
}

/// Why one sync did not complete correctly.
struct Failure {
    kind: String,
    detail: String,
}

fn failure(stage: &str, kind: impl Into<String>, detail: impl std::fmt::Display) -> Failure {
    let kind = format!("{stage}: {}", kind.into());
    Failure { detail: format!("{kind} ({detail})"), kind }
}

fn transport(stage: &str, e: Http1Error) -> Failure {
    let kind = match &e {
        Http1Error::Io(_) => "transport",
        Http1Error::Protocol(_) => "protocol",
        Http1Error::Timeout => "timeout",
    };
    failure(stage, kind, e)
}

fn status(stage: &str, status: u16, body: &[u8]) -> Failure {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    failure(stage, format!("HTTP {status}"), if text.is_empty() { "empty body".into() } else { text })
}

/// How long the phase runs.
#[derive(Clone, Copy)]
pub enum Until {
    /// Back-to-back syncs until the deadline (syncs in flight then complete).
    Duration(Duration),
    /// Exactly one sync per host (the unmeasured warm-up).
    OneRound,
}

/// Runs one phase against `addr`.
pub async fn run(
    addr: SocketAddr,
    plan: Arc<Prepared>,
    connections: usize,
    until: Until,
    timeout: Duration,
) -> PhaseResult {
    let started = Instant::now();
    let deadline = match until {
        Until::Duration(d) => Some(started + d),
        Until::OneRound => None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..connections.min(plan.hosts.len()) {
        let plan = plan.clone();
        tasks.spawn(async move {
            let mut conn = ClientConn::new(addr, timeout);
            let mut r = PhaseResult::new();
            let mine: Vec<usize> = (lane..plan.hosts.len()).step_by(connections).collect();
            let mut round = 0usize;
            'outer: loop {
                for &h in &mine {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break 'outer;
                    }
                    let host = &plan.hosts[h];
                    let ev = (!host.events.is_empty()).then(|| &host.events[round % host.events.len()]);
                    match one_sync(&mut conn, &plan, host, ev, &mut r).await {
                        Ok(()) => r.ok += 1,
                        Err(f) => r.fail(f),
                    }
                }
                round += 1;
                if deadline.is_none() {
                    break;
                }
            }
            r
        });
    }
    let mut total = PhaseResult::new();
    while let Some(r) = tasks.join_next().await {
        total.merge(r.expect("blast connection task does not panic"));
    }
    total.elapsed = started.elapsed();
    total
}

/// One full NORMAL sync: preflight (must answer NORMAL), event upload, rule download following
/// cursors, postflight; every status must be 200.
async fn one_sync(
    conn: &mut ClientConn,
    plan: &Prepared,
    host: &HostPlan,
    events: Option<&Vec<u8>>,
    r: &mut PhaseResult,
) -> Result<(), Failure> {
    let g = plan.generation;
    let format = if g.wire().proto_transfer { Format::Protobuf } else { Format::Json };
    let sync_start = Instant::now();

    let t = Instant::now();
    r.requests += 1;
    let resp = conn.round_trip(&host.preflight).await.map_err(|e| transport("preflight", e))?;
    r.record(0, t);
    if resp.status != 200 {
        return Err(status("preflight", resp.status, resp.body));
    }
    let pre = PreflightResponse::decode_from(resp.body, format).map_err(|e| failure("preflight", "parse", e))?;
    let performed = SimClient::resolve_sync_type(g.generation(), SyncType::Normal, &pre);
    if performed != SyncType::Normal {
        return Err(failure(
            "preflight",
            format!("sync type {performed}"),
            "expected NORMAL: the server does not consider this host in sync",
        ));
    }

    if let Some(body) = events {
        let t = Instant::now();
        r.requests += 1;
        let resp = conn.round_trip(body).await.map_err(|e| transport("eventupload", e))?;
        r.record(1, t);
        if resp.status != 200 {
            return Err(status("eventupload", resp.status, resp.body));
        }
    }

    let mut next: Option<Vec<u8>> = None;
    for page in 1.. {
        let t = Instant::now();
        r.requests += 1;
        let req = next.as_deref().unwrap_or(&host.ruledownload[..]);
        let resp = conn.round_trip(req).await.map_err(|e| transport("ruledownload", e))?;
        r.record(2, t);
        if resp.status != 200 {
            return Err(status("ruledownload", resp.status, resp.body));
        }
        let rd =
            RuleDownloadResponse::decode_from(resp.body, format).map_err(|e| failure("ruledownload", "parse", e))?;
        r.rules_received += rd.rules.len() as u64;
        match rd.cursor {
            // Proto-era clients stop on an empty cursor; legacy ones ask again.
            Some(c) if !c.is_empty() || !g.generation().is_proto_era() => next = Some(plan.ruledownload_with(host, &c)),
            _ => break,
        }
        if page >= MAX_PAGES {
            return Err(failure("ruledownload", "cursor loop", format!("more than {MAX_PAGES} pages")));
        }
    }

    let t = Instant::now();
    r.requests += 1;
    let resp = conn.round_trip(&host.postflight).await.map_err(|e| transport("postflight", e))?;
    r.record(3, t);
    if resp.status != 200 {
        return Err(status("postflight", resp.status, resp.body));
    }
    r.record(4, sync_start);
    Ok(())
}
