//! [`MeteredStore`]: a [`Store`] decorator that times every call and counts event-insert
//! outcomes, so the sync stages stay free of metrics code. Pure pass-through otherwise:
//! it must never change a result.

use super::Metrics;
use async_trait::async_trait;
use dasher_sdk::domain::{Rule, RuleKey};
use dasher_store::{
    ActivityBucket, ActivitySeries, AuditEntry, BinaryCursor, BinarySummary, HostMatch, HostSearchCursor,
    NewAuditEntry, ProposalRequest,
};
use dasher_store::{
    ChangeEntry, ChangePos, DecideOutcome, EventFilter, EventRecord, EventTriage, Host, HostInventory, HostSyncState,
    InsertOutcome, Lease, NewEvent, NewProposal, Proposal, ProposalDecision, ProposalStatus, Result, RuleChange,
    RuleSetInfo, Store,
};
use std::sync::Arc;
use std::time::Instant;

/// Wraps a store; every call is timed into `dasher_store_operation_duration_seconds`.
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> MeteredStore {
        MeteredStore { inner, metrics }
    }

    fn done<T>(&self, op: &'static str, started: Instant, r: Result<T>) -> Result<T> {
        self.metrics.record_store(op, started.elapsed(), r.is_ok());
        r
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn put_event_triage(&self, triage: &[(u64, EventTriage)]) -> Result<u64> {
        let started = Instant::now();
        let r = self.inner.put_event_triage(triage).await;
        self.done("put_event_triage", started, r)
    }

    async fn record_proposal(&self, proposal: &NewProposal) -> Result<(Proposal, bool)> {
        let started = Instant::now();
        let r = self.inner.record_proposal(proposal).await;
        self.done("record_proposal", started, r)
    }

    async fn get_proposal(&self, id: u64) -> Result<Option<Proposal>> {
        let started = Instant::now();
        let r = self.inner.get_proposal(id).await;
        self.done("get_proposal", started, r)
    }

    async fn list_proposals(
        &self,
        status: Option<ProposalStatus>,
        before_id: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Proposal>> {
        let started = Instant::now();
        let r = self.inner.list_proposals(status, before_id, limit).await;
        self.done("list_proposals", started, r)
    }

    async fn decide_proposal(&self, id: u64, decision: &ProposalDecision) -> Result<DecideOutcome> {
        let started = Instant::now();
        let r = self.inner.decide_proposal(id, decision).await;
        self.done("decide_proposal", started, r)
    }

    async fn record_user_request(
        &self,
        proposal: &NewProposal,
        user: Option<&str>,
        justification: &str,
    ) -> Result<(Proposal, bool)> {
        let started = Instant::now();
        let r = self.inner.record_user_request(proposal, user, justification).await;
        self.done("record_user_request", started, r)
    }

    async fn proposal_requests(&self, id: u64) -> Result<Vec<ProposalRequest>> {
        let started = Instant::now();
        let r = self.inner.proposal_requests(id).await;
        self.done("proposal_requests", started, r)
    }

    async fn search_hosts(
        &self,
        prefix: &str,
        after: Option<&HostSearchCursor>,
        limit: usize,
    ) -> Result<Vec<HostMatch>> {
        let started = Instant::now();
        let r = self.inner.search_hosts(prefix, after, limit).await;
        self.done("search_hosts", started, r)
    }

    async fn activity(&self, series: ActivitySeries, from_unix: i64, to_unix: i64) -> Result<Vec<ActivityBucket>> {
        let started = Instant::now();
        let r = self.inner.activity(series, from_unix, to_unix).await;
        self.done("activity", started, r)
    }

    async fn record_audit(&self, entry: &NewAuditEntry) -> Result<u64> {
        let started = Instant::now();
        let r = self.inner.record_audit(entry).await;
        self.done("record_audit", started, r)
    }

    async fn list_audit(&self, target: Option<&str>, before_id: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>> {
        let started = Instant::now();
        let r = self.inner.list_audit(target, before_id, limit).await;
        self.done("list_audit", started, r)
    }

    async fn get_binary(&self, sha256: &str) -> Result<Option<BinarySummary>> {
        let started = Instant::now();
        let r = self.inner.get_binary(sha256).await;
        self.done("get_binary", started, r)
    }

    async fn list_binaries(&self, before: Option<&BinaryCursor>, limit: usize) -> Result<Vec<BinarySummary>> {
        let started = Instant::now();
        let r = self.inner.list_binaries(before, limit).await;
        self.done("list_binaries", started, r)
    }

    async fn binary_activity(&self, sha256: &str, from_unix: i64, to_unix: i64) -> Result<Vec<ActivityBucket>> {
        let started = Instant::now();
        let r = self.inner.binary_activity(sha256, from_unix, to_unix).await;
        self.done("binary_activity", started, r)
    }

    async fn put_host_inventory(&self, inventory: &HostInventory) -> Result<()> {
        let started = Instant::now();
        let r = self.inner.put_host_inventory(inventory).await;
        self.done("put_host_inventory", started, r)
    }

    async fn get_host(&self, machine_id: &str) -> Result<Option<Host>> {
        let started = Instant::now();
        let r = self.inner.get_host(machine_id).await;
        self.done("get_host", started, r)
    }

    async fn list_hosts(&self, after: Option<&str>, limit: usize) -> Result<Vec<Host>> {
        let started = Instant::now();
        let r = self.inner.list_hosts(after, limit).await;
        self.done("list_hosts", started, r)
    }

    async fn host_count(&self) -> Result<u64> {
        let started = Instant::now();
        let r = self.inner.host_count().await;
        self.done("host_count", started, r)
    }

    async fn set_host_tags(&self, machine_id: &str, tags: &[String]) -> Result<()> {
        let started = Instant::now();
        let r = self.inner.set_host_tags(machine_id, tags).await;
        self.done("set_host_tags", started, r)
    }

    async fn set_clean_requested(&self, machine_id: &str, requested: bool) -> Result<()> {
        let started = Instant::now();
        let r = self.inner.set_clean_requested(machine_id, requested).await;
        self.done("set_clean_requested", started, r)
    }

    async fn put_sync_state(&self, machine_id: &str, state: &HostSyncState) -> Result<()> {
        let started = Instant::now();
        let r = self.inner.put_sync_state(machine_id, state).await;
        self.done("put_sync_state", started, r)
    }

    async fn record_preflight(&self, inventory: &HostInventory, state: &HostSyncState) -> Result<()> {
        let started = Instant::now();
        let r = self.inner.record_preflight(inventory, state).await;
        self.done("record_preflight", started, r)
    }

    async fn commit_rules(&self, changes: &[RuleChange]) -> Result<u64> {
        let started = Instant::now();
        let r = self.inner.commit_rules(changes).await;
        self.done("commit_rules", started, r)
    }

    async fn commit_rules_at(
        &self,
        expected_head: u64,
        changes: &[RuleChange],
    ) -> Result<std::result::Result<u64, dasher_store::HeadMoved>> {
        let started = Instant::now();
        let r = self.inner.commit_rules_at(expected_head, changes).await;
        self.done("commit_rules", started, r)
    }

    async fn head_version(&self) -> Result<u64> {
        let started = Instant::now();
        let r = self.inner.head_version().await;
        self.done("head_version", started, r)
    }

    async fn history_floor(&self) -> Result<u64> {
        let started = Instant::now();
        let r = self.inner.history_floor().await;
        self.done("history_floor", started, r)
    }

    async fn get_rule(&self, rule_set: &str, key: &RuleKey, at: u64) -> Result<Option<Rule>> {
        let started = Instant::now();
        let r = self.inner.get_rule(rule_set, key, at).await;
        self.done("get_rule", started, r)
    }

    async fn get_rules(&self, rule_set: &str, keys: &[RuleKey], at: u64) -> Result<Vec<Option<Rule>>> {
        let started = Instant::now();
        let r = self.inner.get_rules(rule_set, keys, at).await;
        self.done("get_rules", started, r)
    }

    async fn scan_rules(&self, rule_set: &str, at: u64, after: Option<&RuleKey>, limit: usize) -> Result<Vec<Rule>> {
        let started = Instant::now();
        let r = self.inner.scan_rules(rule_set, at, after, limit).await;
        self.done("scan_rules", started, r)
    }

    async fn scan_changes(&self, after: ChangePos, upto: u64, limit: usize) -> Result<Vec<ChangeEntry>> {
        let started = Instant::now();
        let r = self.inner.scan_changes(after, upto, limit).await;
        self.done("scan_changes", started, r)
    }

    async fn rule_sets(&self) -> Result<Vec<RuleSetInfo>> {
        let started = Instant::now();
        let r = self.inner.rule_sets().await;
        self.done("rule_sets", started, r)
    }

    async fn rule_sets_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<RuleSetInfo>> {
        let started = Instant::now();
        let r = self.inner.rule_sets_after(after, limit).await;
        self.done("rule_sets_after", started, r)
    }

    async fn compact_history(&self, keep_from: u64) -> Result<u64> {
        let started = Instant::now();
        let r = self.inner.compact_history(keep_from).await;
        self.done("compact_history", started, r)
    }

    async fn query_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>> {
        let started = Instant::now();
        let r = self.inner.query_events(filter).await;
        self.done("query_events", started, r)
    }

    async fn prune_events(&self, received_before_unix: Option<i64>, keep_max: Option<u64>) -> Result<u64> {
        let started = Instant::now();
        let r = self.inner.prune_events(received_before_unix, keep_max).await;
        self.done("prune_events", started, r)
    }

    async fn event_count(&self) -> Result<u64> {
        let started = Instant::now();
        let r = self.inner.event_count().await;
        self.done("event_count", started, r)
    }

    async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let started = Instant::now();
        let r = self.inner.kv_get(namespace, key).await;
        self.done("kv_get", started, r)
    }

    async fn kv_put(&self, namespace: &str, key: &str, value: &[u8]) -> Result<()> {
        let started = Instant::now();
        let r = self.inner.kv_put(namespace, key, value).await;
        self.done("kv_put", started, r)
    }

    async fn kv_delete(&self, namespace: &str, key: &str) -> Result<()> {
        let started = Instant::now();
        let r = self.inner.kv_delete(namespace, key).await;
        self.done("kv_delete", started, r)
    }

    async fn kv_put_if_absent(&self, namespace: &str, key: &str, value: &[u8]) -> Result<Vec<u8>> {
        let started = Instant::now();
        let r = self.inner.kv_put_if_absent(namespace, key, value).await;
        self.done("kv_put_if_absent", started, r)
    }

    async fn kv_increment(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
    ) -> Result<std::result::Result<i64, dasher_store::CounterError>> {
        let started = Instant::now();
        let r = self.inner.kv_increment(namespace, key, delta).await;
        self.done("kv_increment", started, r)
    }

    async fn kv_compare_and_swap(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool> {
        let started = Instant::now();
        let r = self.inner.kv_compare_and_swap(namespace, key, expected, new).await;
        self.done("kv_compare_and_swap", started, r)
    }

    async fn kv_put_leased(&self, lease: &str, holder: &str, namespace: &str, key: &str, value: &[u8]) -> Result<bool> {
        let started = Instant::now();
        let r = self.inner.kv_put_leased(lease, holder, namespace, key, value).await;
        self.done("kv_put_leased", started, r)
    }

    async fn lease_acquire(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<Option<Lease>> {
        let started = Instant::now();
        let r = self.inner.lease_acquire(name, holder, ttl_ms).await;
        self.done("lease_acquire", started, r)
    }

    async fn lease_renew(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<Option<Lease>> {
        let started = Instant::now();
        let r = self.inner.lease_renew(name, holder, ttl_ms).await;
        self.done("lease_renew", started, r)
    }

    async fn lease_release(&self, name: &str, holder: &str) -> Result<()> {
        let started = Instant::now();
        let r = self.inner.lease_release(name, holder).await;
        self.done("lease_release", started, r)
    }

    async fn lease_get(&self, name: &str) -> Result<Option<Lease>> {
        let started = Instant::now();
        let r = self.inner.lease_get(name).await;
        self.done("lease_get", started, r)
    }

    async fn insert_events(&self, machine_id: &str, events: &[NewEvent]) -> Result<InsertOutcome> {
        let started = Instant::now();
        let r = self.inner.insert_events(machine_id, events).await;
        if let Ok(outcome) = &r {
            self.metrics.record_events(outcome.stored, outcome.duplicates);
        }
        self.done("insert_events", started, r)
    }
}
