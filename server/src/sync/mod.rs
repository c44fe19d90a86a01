//! The four sync stages. Each handler takes a decoded request and returns the response
//! message; HTTP concerns (bodies, encodings, statuses) live in `crate::http`.
//!
//! Invariants: an event is durably stored before its eventupload gets 200; a host's rules
//! are acknowledged only at the postflight of a sync whose rule download completed; a
//! decision about what to send never depends on the client's wire generation beyond
//! [`ClientCaps`].

pub mod counts;
pub mod cursor;
pub mod deferred;
pub mod error;
pub mod host_rules;
pub mod inventory;
pub mod rules;

use crate::config::LiveConfig;
use crate::policy::{Configured, PolicyEngine, PolicyRejected, Selection};
use cursor::{Cursor, CursorSigner, Position};
use dasher_sdk::domain::{ConfigDecision, GLOBAL_RULE_SET, HostFacts, RuleCounts};
use dasher_sdk::names::MachineId;
use dasher_sdk::version::{ClientCaps, Feature};
use dasher_sdk::wire::{self, ClientMode, Decision, SyncType};
use dasher_store::{
    ChangePos, DecisionProvenance, EventFilter, EventKind, EventRecord, Host, HostInventory, NewEvent, RuleAck, Store,
    SyncOutcome, SyncPlan,
};
pub use error::SyncError;
use rules::Resolver;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Machine id used by `santactl doctor` to probe the server (§1.1).
pub const DOCTOR_MACHINE_ID: &str = "santactl-doctor-test";

/// Everything a sync needs.
pub struct SyncService {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Policy decisions.
    pub policy: Arc<dyn PolicyEngine>,
    /// Triage of stored events, off the request path.
    pub triage: crate::triage::Triager,
    /// Configuration (replaced by a reload; read it once per request).
    pub config: LiveConfig,
    /// Signs and checks rule-download cursors (the key shared through the store).
    pub cursors: CursorSigner,
    /// The rule sets a rules directory owns (GitOps mode; empty otherwise): other writers are
    /// refused ([`crate::actions`]).
    pub rules_owners: crate::rules::dir::Owners,
    /// Preflights that changed nothing but times, stored with their postflight ([`deferred`]).
    pub deferred: deferred::Deferred,
}

/// Current Unix time in seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn is_clean(t: Option<SyncType>) -> bool {
    matches!(t, Some(SyncType::Clean | SyncType::CleanAll))
}

/// Builds the facts policy sees from the stored host.
pub fn host_facts(machine_id: &str, host: Option<&Host>, now: i64) -> HostFacts {
    let mut facts = HostFacts { machine_id: machine_id.to_owned(), now_unix: now, ..Default::default() };
    if let Some(host) = host {
        facts.tags = host.tags.clone();
        if let Some(inv) = &host.inventory {
            facts.serial_number = inv.serial_number.clone();
            facts.hostname = inv.hostname.clone();
            facts.os_version = inv.os_version.clone();
            facts.os_build = inv.os_build.clone();
            facts.model_identifier = inv.model_identifier.clone();
            facts.santa_version = inv.santa_version.clone();
            facts.primary_user = inv.primary_user.clone();
            facts.primary_user_groups = inv.primary_user_groups.clone();
            facts.client_mode = inv.client_mode;
            facts.request_clean_sync = inv.request_clean_sync;
            facts.rule_counts = inv.rule_counts;
            facts.sip_status = inv.sip_status;
            facts.first_seen_unix = inv.first_seen_unix;
        }
    }
    facts
}

impl SyncService {
    fn caps_of(host: Option<&Host>) -> ClientCaps {
        ClientCaps::from_version_str(host.and_then(|h| h.inventory.as_ref()).map_or("", |i| i.santa_version.as_str()))
    }

    /// Preflight: record the host, decide the sync type and the settings.
    pub async fn preflight(
        &self,
        machine_id: &MachineId,
        req: wire::PreflightRequest,
    ) -> Result<wire::PreflightResponse, SyncError> {
        let machine_id = machine_id.as_str();
        let config = self.config.snapshot();
        inventory::check_preflight(&req, &config.limits)?;
        let now = now_unix();
        let existing = self.store.get_host(machine_id).await?;
        let previous = existing.as_ref().and_then(|h| h.inventory.clone());
        let inventory = inventory::build(machine_id, &req, previous.as_ref(), now, &config.limits);
        // Stored with the sync state at the end (or the refusal's): one durable write.
        let mut host = existing.unwrap_or_else(|| Host { machine_id: machine_id.to_owned(), ..Default::default() });
        host.inventory = Some(inventory.clone());
        let facts = host_facts(machine_id, Some(&host), now);
        let configured = match self.policy.configure(&facts).await {
            Ok(c) => c,
            Err(e) => return Err(self.policy_rejected(&inventory, &host, e).await),
        };
        let selection = match self.policy.select_rule_sets(&facts).await {
            Ok(s) => s,
            Err(e) => return Err(self.policy_rejected(&inventory, &host, e).await),
        };
        let host_rules = host_rules::apply(self.store.as_ref(), machine_id, &selection.host_rules).await?;
        let head = self.store.head_version().await?;
        let rule_sets = host_rules::place(
            self.store.as_ref(),
            machine_id,
            &selection.host_rules,
            host.sync.acked.as_ref(),
            selection.rule_sets.clone(),
            head,
        )
        .await?;
        let rule_sets = self.bound_rule_sets(machine_id, rule_sets);
        let floor = self.store.history_floor().await?;
        let decision = &configured.decision;
        let (sync_type, reason) = decide_sync_type(&host, previous.as_ref(), &req, decision, &rule_sets, floor);

        let mut state = host.sync.clone();
        let policy_clean = decision.sync_type.filter(|t| is_clean(Some(*t)));
        if policy_clean.is_none() {
            state.policy_clean_done = None;
        }
        state.plan = Some(SyncPlan { sync_type: Some(sync_type), rule_sets, started_unix: now, policy_clean });
        state.pending = None;
        state.last_sync_type = Some(sync_type);
        state.last_sync_reason = reason.to_owned();
        state.last_preflight_unix = now;
        state.last_outcome = SyncOutcome::InProgress;
        state.decided = Some(provenance(now, &configured, &selection, host_rules));
        // Unchanged but for times: stored with the postflight's write instead (`deferred`).
        let deferred = if deferred::unchanged(previous.as_ref(), &host.sync, &inventory, &state, now) {
            match self.deferred.put(deferred::Record { inventory, state }) {
                Ok(()) => true,
                Err(full) => {
                    self.store.record_preflight(&full.inventory, &full.state).await?;
                    false
                }
            }
        } else {
            self.deferred.forget(machine_id);
            self.store.record_preflight(&inventory, &state).await?;
            false
        };
        tracing::debug!(machine_id, ?sync_type, reason, deferred, "preflight");

        Ok(preflight_response(decision, sync_type, ClientCaps::from_version_str(&req.santa_version)))
    }

    /// Records a refused preflight: the reported inventory, and the refusal in the host's sync
    /// state (nothing else changes: the client keeps its state). Returns the 503 to answer.
    async fn policy_rejected(&self, inventory: &HostInventory, host: &Host, e: PolicyRejected) -> SyncError {
        let machine_id = inventory.machine_id.as_str();
        tracing::warn!(machine_id, "preflight refused: {e}");
        let mut state = host.sync.clone();
        state.last_outcome = SyncOutcome::PolicyRejected { plugins: e.plugins.clone(), hook: e.hook };
        if let Err(store_error) = self.store.record_preflight(inventory, &state).await {
            return store_error.into();
        }
        e.into()
    }

    /// The host's rule sets as a sync would select them now, without writing anything.
    pub async fn current_selection(&self, machine_id: &str, host: Option<&Host>) -> Result<Vec<String>, SyncError> {
        let selection = self.policy.select_rule_sets(&host_facts(machine_id, host, now_unix())).await?;
        let head = self.store.head_version().await?;
        let acked = host.and_then(|h| h.sync.acked.as_ref());
        let sets =
            host_rules::place(self.store.as_ref(), machine_id, &selection.host_rules, acked, selection.rule_sets, head)
                .await?;
        Ok(self.bound_rule_sets(machine_id, sets))
    }

    /// At most `limits.max_rule_sets_per_host` sets, so no selection makes a download walk
    /// without bound: the first ones in precedence order, with `global` (the fleet-wide
    /// baseline) kept last if it was cut. A real fleet never gets here; a warning says so.
    fn bound_rule_sets(&self, machine_id: &str, mut sets: Vec<String>) -> Vec<String> {
        let max = self.config.get().limits.max_rule_sets_per_host;
        if sets.len() <= max {
            return sets;
        }
        let selected = sets.len();
        match sets.iter().position(|s| s == GLOBAL_RULE_SET) {
            Some(global) if global >= max => {
                let global = sets.remove(global);
                sets.truncate(max - 1);
                sets.push(global);
            }
            _ => sets.truncate(max),
        }
        tracing::warn!(
            machine_id,
            selected,
            kept = max,
            "rule-set selection cut to limits.max_rule_sets_per_host: the lowest-precedence sets are not sent"
        );
        sets
    }

    /// The sets a download for this host must walk: the plan its preflight recorded, or (no
    /// preflight since the last postflight) the selection as it would be made now.
    async fn planned_sets(&self, machine_id: &str, host: Option<&Host>) -> Result<Vec<String>, SyncError> {
        match host.and_then(|h| h.sync.plan.as_ref()) {
            Some(p) if !p.rule_sets.is_empty() => Ok(p.rule_sets.clone()),
            _ => self.current_selection(machine_id, host).await,
        }
    }

    /// Event upload: store durably (de-duplicated), then answer.
    pub async fn event_upload(
        &self,
        machine_id: &MachineId,
        req: wire::EventUploadRequest,
    ) -> Result<wire::EventUploadResponse, SyncError> {
        let machine_id = machine_id.as_str();
        let total = req.events.len() + req.file_access_events.len();
        let max_events = self.config.get().limits.max_events_per_upload;
        if total > max_events {
            return Err(SyncError::TooLarge(format!(
                "{total} events in one upload; at most {} are accepted (lower batch_size)",
                max_events
            )));
        }
        let now = now_unix();
        let mut events = Vec::with_capacity(total);
        let mut bundles = BTreeSet::new();
        for e in &req.events {
            let decision = e.decision_value();
            if !e.file_bundle_hash.is_empty() && decision != Decision::BundleBinary {
                bundles.insert(e.file_bundle_hash.clone());
            }
            events.push(NewEvent {
                kind: EventKind::Execution,
                dedupe_key: format!(
                    "{}|{}|{}|{}|{}",
                    e.file_sha256, e.execution_time, e.pid, e.decision, e.file_bundle_hash
                ),
                decision: decision.to_string(),
                file_sha256: e.file_sha256.to_ascii_lowercase(),
                file_bundle_hash: e.file_bundle_hash.to_ascii_lowercase(),
                occurred_at_unix: finite_or_zero(e.execution_time),
                received_at_unix: now,
                body: serde_json::to_value(e).map_err(|e| SyncError::invalid("events", e.to_string()))?,
            });
        }
        for e in &req.file_access_events {
            let sha = e.process_chain.first().map(|p| p.file_sha256.clone()).unwrap_or_default();
            let pid = e.process_chain.first().map_or(0, |p| p.pid);
            events.push(NewEvent {
                kind: EventKind::FileAccess,
                dedupe_key: format!("faa|{}|{}|{}|{}", e.rule_name, e.target, e.access_time, pid),
                decision: wire::FileAccessDecision::try_from(e.decision)
                    .map(|d| d.to_string())
                    .unwrap_or_else(|_| e.decision.to_string()),
                file_sha256: sha,
                file_bundle_hash: String::new(),
                occurred_at_unix: finite_or_zero(e.access_time),
                received_at_unix: now,
                body: serde_json::to_value(e).map_err(|e| SyncError::invalid("events", e.to_string()))?,
            });
        }
        if !events.is_empty() {
            let outcome = self.store.insert_events(machine_id, &events).await?;
            tracing::debug!(machine_id, stored = outcome.stored, duplicates = outcome.duplicates, "events stored");
            // Triage runs after the durable write, off the client's request path, on the
            // newly stored events only (with their ids, so verdicts attach to them).
            let stored: Vec<EventRecord> = events
                .into_iter()
                .zip(outcome.ids)
                .filter_map(|(event, id)| {
                    id.map(|id| EventRecord { id, machine_id: machine_id.to_owned(), event, triage: None })
                })
                .collect();
            self.triage.submit(machine_id, stored);
        }
        let mut resp = wire::EventUploadResponse::default();
        if !bundles.is_empty() {
            let host = self.store.get_host(machine_id).await?;
            // Events are stored already: a refused decision only means no bundle request.
            let bundles_enabled = match self.policy.configure(&host_facts(machine_id, host.as_ref(), now)).await {
                Ok(c) => c.decision.enable_bundles == Some(true),
                Err(e) => {
                    tracing::info!(machine_id, "no bundle hashing requested: {e}");
                    false
                }
            };
            if bundles_enabled {
                for hash in bundles.into_iter().take(16) {
                    let known = self
                        .store
                        .query_events(&EventFilter {
                            file_bundle_hash: Some(hash.to_ascii_lowercase()),
                            decision: Some(Decision::BundleBinary.to_string()),
                            limit: 1,
                            ..Default::default()
                        })
                        .await?;
                    if known.is_empty() {
                        resp.event_upload_bundle_binaries.push(hash);
                    }
                }
            }
        }
        Ok(resp)
    }

    /// Rule download: one page, from the snapshot named by the cursor.
    pub async fn rule_download(
        &self,
        machine_id: &MachineId,
        req: wire::RuleDownloadRequest,
    ) -> Result<wire::RuleDownloadResponse, SyncError> {
        let machine_id = machine_id.as_str();
        let host = self.store.get_host(machine_id).await?;
        let caps = Self::caps_of(host.as_ref());
        let head = self.store.head_version().await?;
        let floor = self.store.history_floor().await?;
        let cursor = if req.cursor.is_empty() {
            self.first_cursor(machine_id, host.as_ref(), head).await?
        } else {
            let bad = |why: &str| SyncError::invalid("cursor", format!("{why}; restart the sync with a new preflight"));
            // Signature first: nothing of an unsigned payload is looked at, let alone stored.
            let c = self.cursors.decode(&req.cursor).map_err(|e| bad(&e.to_string()))?;
            if c.machine != machine_id {
                return Err(bad("cursor was issued to another machine"));
            }
            if c.sets != self.planned_sets(machine_id, host.as_ref()).await? {
                return Err(bad("cursor's rule sets are not this host's current plan (a newer preflight changed it)"));
            }
            if c.at > head {
                return Err(bad("cursor names a rule version this server does not have"));
            }
            if c.at < floor {
                return Err(bad("cursor's snapshot is older than the kept rule history"));
            }
            c
        };
        let (rules, next) = Resolver::new(self.store.as_ref(), caps)
            .page(cursor.clone(), self.config.get().sync.page_size_rules)
            .await?;
        if next.is_none()
            && let Some(host) = host
        {
            // Clients without rulesHash are checked for drift by their rule counts, so
            // remember what they should report (carried forward from the acknowledged counts,
            // see `counts`); newer clients need none.
            let (counts, counts_for) = if caps.supports(Feature::RulesHash) {
                (RuleCounts::default(), None)
            } else {
                let (counts, method) =
                    counts::expected(self.store.as_ref(), caps, host.sync.acked.as_ref(), &cursor.sets, cursor.at)
                        .await?;
                tracing::trace!(machine_id, ?method, "expected rule counts");
                (counts, Some(host.inventory.as_ref().map_or("", |i| i.santa_version.as_str()).to_owned()))
            };
            let mut state = host.sync.clone();
            state.pending = Some(RuleAck {
                version: cursor.at,
                rule_sets: cursor.sets.clone(),
                counts,
                counts_for,
                sync_type: state.plan.as_ref().and_then(|p| p.sync_type),
            });
            self.store.put_sync_state(machine_id, &state).await?;
        }
        Ok(wire::RuleDownloadResponse { rules, cursor: next.map(|c| self.cursors.encode(&c)) })
    }

    async fn first_cursor(&self, machine_id: &str, host: Option<&Host>, head: u64) -> Result<Cursor, SyncError> {
        let plan = host.and_then(|h| h.sync.plan.clone());
        let sets = self.planned_sets(machine_id, host).await?;
        let acked = host.and_then(|h| h.sync.acked.as_ref());
        let pos = match acked {
            Some(ack) if !is_clean(plan.as_ref().and_then(|p| p.sync_type)) && ack.rule_sets == sets => {
                Position::Delta { after: ChangePos { version: ack.version, seq: u32::MAX } }
            }
            _ => Position::Full { set: 0, after: None },
        };
        Ok(Cursor { v: Cursor::VERSION, machine: machine_id.to_owned(), at: head, sets, pos, sent: 0 })
    }

    /// Postflight: acknowledge what the completed download delivered.
    pub async fn postflight(
        &self,
        machine_id: &MachineId,
        req: wire::PostflightRequest,
    ) -> Result<wire::PostflightResponse, SyncError> {
        let machine_id = machine_id.as_str();
        inventory::check_postflight(&req, &self.config.get().limits)?;
        let Some(host) = self.store.get_host(machine_id).await? else {
            tracing::info!(machine_id, "postflight from a machine that never sent a preflight");
            return Ok(wire::PostflightResponse {});
        };
        let deferred = self.deferred.take(machine_id);
        let mut state = host.sync.clone();
        if let Some(d) = &deferred {
            deferred::merge(&mut state, &d.state);
        }
        let plan = state.plan.take();
        state.last_postflight_unix = now_unix();
        state.last_rules_received = req.rules_received;
        state.last_rules_processed = req.rules_processed;
        match state.pending.take() {
            Some(ack) => {
                state.last_outcome = if req.rules_processed < req.rules_received {
                    SyncOutcome::RulesRejected { kept: req.rules_processed, received: req.rules_received }
                } else {
                    SyncOutcome::Ok
                };
                state.acked = Some(ack);
                state.acked_rules_hash = (!req.rules_hash.is_empty()).then(|| req.rules_hash.clone());
                let cleaned = is_clean(plan.as_ref().and_then(|p| p.sync_type));
                if host.clean_requested && cleaned {
                    self.store.set_clean_requested(machine_id, false).await?;
                }
                if let Some(demanded) = plan.as_ref().and_then(|p| p.policy_clean).filter(|_| cleaned) {
                    state.policy_clean_done = Some(demanded);
                }
            }
            None => state.last_outcome = SyncOutcome::Incomplete,
        }
        // A completed NORMAL plan stays, so the next preflight can see it would store the
        // same one (and skip the write, see `deferred`).
        if state.last_outcome == SyncOutcome::Ok && plan.as_ref().is_some_and(|p| p.sync_type == Some(SyncType::Normal))
        {
            state.plan = plan;
        }
        match deferred {
            // One durable write: the deferred preflight's inventory, times and counter too.
            Some(d) => self.store.record_preflight(&d.inventory, &state).await?,
            None => self.store.put_sync_state(machine_id, &state).await?,
        }
        Ok(wire::PostflightResponse {})
    }
}

/// Who made a preflight's decisions, as stored in the host's sync state.
fn provenance(now: i64, c: &Configured, s: &Selection, host_rules: Option<u32>) -> DecisionProvenance {
    let (host_rules_by, host_rules_skipped) = match &s.host_rules {
        crate::policy::HostRules::Desired { by, skipped, .. } => (by.clone(), skipped.clone()),
        _ => (vec![], vec![]),
    };
    DecisionProvenance {
        decided_unix: now,
        settings: c.settings.clone(),
        rule_sets_by: s.rule_sets_by.clone(),
        host_rules_by,
        host_rules,
        host_rules_skipped,
        chain: c.chain.iter().chain(&s.chain).cloned().collect(),
        shadow: c.shadow.iter().chain(&s.shadow).cloned().collect(),
    }
}

/// A client-reported time, or 0 ("unknown") when it is NaN or infinite. JSON cannot carry
/// those (the tolerant parser refuses them), binary protobuf can; stored as is they would
/// serialise as `null` and make the event record unreadable (found by `fuzz/`).
fn finite_or_zero(t: f64) -> f64 {
    if t.is_finite() { t } else { 0.0 }
}

/// The rule counts a preflight reports.
fn reported_counts(req: &wire::PreflightRequest) -> RuleCounts {
    RuleCounts {
        binary: req.binary_rule_count,
        certificate: req.certificate_rule_count,
        compiler: req.compiler_rule_count,
        transitive: req.transitive_rule_count,
        teamid: req.teamid_rule_count,
        signingid: req.signingid_rule_count,
        cdhash: req.cdhash_rule_count,
    }
}

/// Chooses NORMAL, CLEAN or CLEAN_ALL and says why.
fn decide_sync_type(
    host: &Host,
    previous: Option<&HostInventory>,
    req: &wire::PreflightRequest,
    decision: &ConfigDecision,
    rule_sets: &[String],
    history_floor: u64,
) -> (SyncType, &'static str) {
    // Once per change of the demand: a policy that keeps returning CLEAN must not wipe
    // the host at every sync (config files cannot set it, see `Config::validate`).
    if let Some(t @ (SyncType::Clean | SyncType::CleanAll)) = decision.sync_type
        && host.sync.policy_clean_done != Some(t)
    {
        return (t, "policy");
    }
    if req.request_clean_sync {
        return (SyncType::Clean, "client requested");
    }
    if host.clean_requested {
        return (SyncType::Clean, "admin requested");
    }
    let Some(acked) = &host.sync.acked else { return (SyncType::Clean, "first sync") };
    if acked.rule_sets != rule_sets {
        return (SyncType::Clean, "rule-set selection changed");
    }
    if previous.is_some_and(|p| p.santa_version != req.santa_version) {
        return (SyncType::Clean, "Santa version changed");
    }
    if acked.version < history_floor {
        return (SyncType::Clean, "acknowledged version compacted");
    }
    if let Some(expected) = &host.sync.acked_rules_hash
        && !req.rules_hash.is_empty()
        && *expected != req.rules_hash
    {
        return (SyncType::Clean, "rules hash drift");
    }
    let caps = ClientCaps::from_version_str(&req.santa_version);
    if !caps.supports(Feature::RulesHash) && caps.0.is_some() && !reported_counts(req).matches_delivered(&acked.counts)
    {
        return (SyncType::Clean, "rule count drift");
    }
    (SyncType::Normal, "incremental")
}

/// Turns a decision into the response this client generation understands (§6.3).
pub fn preflight_response(d: &ConfigDecision, sync_type: SyncType, caps: ClientCaps) -> wire::PreflightResponse {
    let mut r = wire::PreflightResponse {
        client_mode: d.client_mode.map(|m| match m {
            // Never weaken: clients without STANDALONE get LOCKDOWN.
            ClientMode::Standalone if !caps.supports(Feature::StandaloneMode) => ClientMode::Lockdown as i32,
            m => m as i32,
        }),
        batch_size: d.batch_size.map(|b| b.max(1)),
        full_sync_interval: Some(d.full_sync_interval_seconds.unwrap_or(600).max(60)),
        push_notification_full_sync_interval: d.push_notification_full_sync_interval_seconds.map(|v| v.max(60)),
        enable_bundles: d.enable_bundles,
        enable_transitive_rules: d.enable_transitive_rules,
        enable_all_event_upload: d.enable_all_event_upload,
        disable_unknown_event_upload: d.disable_unknown_event_upload,
        allowed_path_regex: d.allowed_path_regex.clone(),
        blocked_path_regex: d.blocked_path_regex.clone(),
        override_file_access_action: d.override_file_access_action.map(|a| a as i32),
        ..Default::default()
    };
    if caps.supports(Feature::SyncType) {
        r.sync_type = Some(sync_type as i32);
    }
    if is_clean(Some(sync_type)) {
        r.clean_sync = Some(true);
    }
    if caps.supports(Feature::EventDetailSettings) {
        r.event_detail_url = d.event_detail_url.clone();
        r.event_detail_text = d.event_detail_text.clone();
    }
    if let Some(block) = d.block_usb_mount {
        let flags = d.remount_usb_mode.clone().unwrap_or_default();
        if caps.supports(Feature::RemovableMediaPolicy) {
            r.removable_media_policy = Some(match (block, flags.is_empty()) {
                (false, _) => wire::RemovableMediaPolicy { allow: Some(true), ..Default::default() },
                (true, true) => wire::RemovableMediaPolicy { block: Some(true), ..Default::default() },
                (true, false) => wire::RemovableMediaPolicy {
                    remount: Some(wire::RemountFlags { flags: flags.clone() }),
                    ..Default::default()
                },
            });
        }
        r.block_usb_mount = Some(block);
        r.remount_usb_mode = flags;
    }
    r
}
