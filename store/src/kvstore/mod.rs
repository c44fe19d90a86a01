//! [`KvStore`]: the [`Store`] on any ordered key/value engine ([`KvEngine`]).
//!
//! Owns the mapping of the domain onto sorted byte keys (see `kvstore/keys.rs` for prefixes):
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `m:` | `head`, `floor`, `eseq`, `ecnt`, `hcnt`, `pseq` | u64 big-endian counters |
//! | `hr` `hi` `ht` `hc` `hs` | machine id | registry (empty), inventory, tags, clean flag (empty), sync state (JSON) |
//! | `rh` | set · type · identifier · (MAX − version) | rule JSON; empty = tombstone |
//! | `rl` | version · seq | set · type · identifier |
//! | `rs` | set | live rules at head (u64) |
//! | `m:edict` | dictionary id (u32) | event seq at training · zstd dictionary of event bodies |
//! | `ep` | event id | `{machine_id, …event}` JSON, zstd-compressed (the only copy of the body) |
//! | `ed` | machine · dedupe key | event id |
//! | `em` `es` `eb` `ex` | value · event id | empty (indexes) |
//! | `er` | received time · event id | empty (index) |
//! | `ey` | machine · file SHA-256 · event id | empty (index; covers ids from `m:eyfrom` on) |
//! | `eg` | event id ÷ 1,024 | latest received time of the block's events (i64; `m:egbuilt`) |
//! | `et` | event id | triage JSON (separate from the body: written later, replaceable) |
//! | `el` | label · event id | empty (index of triage labels) |
//! | `pp` | proposal id | proposal JSON |
//! | `pk` | rule set · type · identifier | proposal id (de-duplication) |
//! | `pq` | status · proposal id | empty (index) |
//! | `pr` | proposal id · seq | request JSON (the first `MAX_PROPOSAL_REQUESTS`) |
//! | `kv` | namespace · key | plugin value |
//! | `hq` | term · machine id | empty (host search index; `m:hqbuilt` once built) |
//! | `ad` `ah` | day · decision / hour | u64 (events per day and decision, preflights per hour) |
//! | `au` `at` | id / target · id | audit entry JSON / empty (index); ids from `m:aseq` |
//! | `bs` `bh` `bl` | sha / sha · machine / last seen · sha | binary summary JSON / empty / empty |
//! | `bd` | sha · day · decision | u64 (a binary's events per day and decision) |
//!
//! Every write goes through the single writer thread (`kvstore/writer.rs`), which group-commits and
//! answers after the batch is durable; reads run on tokio's blocking pool against the
//! committed data. Must never write to the engine outside the writer or block an async
//! worker on disk I/O.

mod console;
mod event_codec;
mod event_time;
mod events;
mod hosts;
pub(crate) mod keys;
mod proposals;
mod rules;
mod writer;

pub use writer::{MAX_GROUP_BYTES, MAX_GROUP_JOBS, QUEUE_JOBS};

use crate::kv::KvEngine;
use crate::{
    ActivityBucket, ActivitySeries, AuditEntry, BinaryCursor, BinarySummary, ChangeEntry, ChangePos, CounterError,
    DecideOutcome, EventFilter, EventRecord, EventTriage, Host, HostInventory, HostMatch, HostSearchCursor,
    HostSyncState, InsertOutcome, Lease, NewAuditEntry, NewEvent, NewProposal, Proposal, ProposalDecision,
    ProposalRequest, ProposalStatus, RequestSource, Result, RuleChange, RuleSetInfo, Store, StoreError,
};
use async_trait::async_trait;
use dasher_sdk::domain::{Rule, RuleKey};
use event_codec::EventCodec;
use std::sync::Arc;
use writer::Writer;

/// The [`Store`] over an ordered key/value engine.
pub struct KvStore<E: KvEngine> {
    engine: Arc<E>,
    writer: Writer<E>,
    codec: Arc<EventCodec>,
    leases: Arc<crate::lease::LocalLeases>,
}

impl<E: KvEngine> KvStore<E> {
    /// Wraps `engine` and starts its writer thread.
    pub fn new(engine: E) -> Result<Self> {
        hosts::build_terms(&engine)?;
        events::start_machine_sha256_index(&engine)?;
        event_time::build(&engine)?;
        let engine = Arc::new(engine);
        let codec = Arc::new(EventCodec::load(&*engine)?);
        let writer = Writer::start(engine.clone())?;
        Ok(KvStore { engine, writer, codec, leases: Default::default() })
    }

    /// Starts training the next event body dictionary if `seq` calls for one: samples are
    /// read here (one bounded scan), the CPU-heavy training runs on its own thread, and the
    /// next insert stores the result.
    async fn maybe_train(&self, seq: u64) {
        if !self.codec.claim_training(seq) {
            return;
        }
        let codec = self.codec.clone();
        match self.read(move |e| codec.samples(e)).await {
            Ok(samples) => {
                let codec = self.codec.clone();
                let spawned = std::thread::Builder::new()
                    .name("dasher-event-dict".into())
                    .spawn(move || codec.train(&samples, seq));
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "cannot start event dictionary training");
                    self.codec.give_up();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read events to train a compression dictionary");
                self.codec.give_up();
            }
        }
    }

    /// Runs a read on the blocking pool.
    async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&E) -> Result<R> + Send + 'static,
    {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || f(&engine))
            .await
            .map_err(|e| StoreError::Engine(format!("store read task failed: {e}")))?
    }
}

fn kv_key(namespace: &str, key: &str) -> Vec<u8> {
    let mut k = keys::PLUGIN_KV.to_vec();
    keys::push_str(&mut k, namespace);
    k.extend_from_slice(key.as_bytes());
    k
}

#[async_trait]
impl<E: KvEngine> Store for KvStore<E> {
    async fn put_host_inventory(&self, inventory: &HostInventory) -> Result<()> {
        let inv = inventory.clone();
        self.writer.submit(false, move |txn| hosts::put_inventory(txn, &inv)).await
    }

    async fn get_host(&self, machine_id: &str) -> Result<Option<Host>> {
        let id = machine_id.to_owned();
        self.read(move |e| hosts::get(e, &id)).await
    }

    async fn list_hosts(&self, after: Option<&str>, limit: usize) -> Result<Vec<Host>> {
        let after = after.map(str::to_owned);
        self.read(move |e| hosts::list(e, after.as_deref(), limit)).await
    }

    async fn host_count(&self) -> Result<u64> {
        hosts::count(&*self.engine)
    }

    async fn set_host_tags(&self, machine_id: &str, tags: &[String]) -> Result<()> {
        let (id, tags) = (machine_id.to_owned(), tags.to_vec());
        self.writer.submit(false, move |txn| hosts::set_tags(txn, &id, &tags)).await
    }

    async fn set_clean_requested(&self, machine_id: &str, requested: bool) -> Result<()> {
        let id = machine_id.to_owned();
        self.writer.submit(false, move |txn| hosts::set_clean(txn, &id, requested)).await
    }

    async fn put_sync_state(&self, machine_id: &str, state: &HostSyncState) -> Result<()> {
        let (id, state) = (machine_id.to_owned(), state.clone());
        self.writer.submit(false, move |txn| hosts::put_sync(txn, &id, &state)).await
    }

    async fn record_preflight(&self, inventory: &HostInventory, state: &HostSyncState) -> Result<()> {
        let (inv, state) = (inventory.clone(), state.clone());
        self.writer
            .submit(false, move |txn| {
                hosts::put_inventory(txn, &inv)?;
                hosts::put_sync(txn, &inv.machine_id, &state)?;
                console::count_sync(txn, inv.last_seen_unix)
            })
            .await
    }

    async fn commit_rules(&self, changes: &[RuleChange]) -> Result<u64> {
        let changes = changes.to_vec();
        self.writer.submit(false, move |txn| rules::commit(txn, &changes)).await
    }

    async fn commit_rules_at(
        &self,
        expected_head: u64,
        changes: &[RuleChange],
    ) -> Result<std::result::Result<u64, crate::HeadMoved>> {
        let changes = changes.to_vec();
        self.writer
            .submit(false, move |txn| {
                let head = txn.get_u64(keys::META_HEAD)?;
                if head != expected_head {
                    return Ok(Err(crate::HeadMoved { expected: expected_head, head }));
                }
                rules::commit(txn, &changes).map(Ok)
            })
            .await
    }

    async fn head_version(&self) -> Result<u64> {
        rules::head(&*self.engine)
    }

    async fn history_floor(&self) -> Result<u64> {
        rules::floor(&*self.engine)
    }

    async fn get_rule(&self, rule_set: &str, key: &RuleKey, at: u64) -> Result<Option<Rule>> {
        let (set, key) = (rule_set.to_owned(), key.clone());
        self.read(move |e| rules::get(e, &set, &key, at)).await
    }

    async fn get_rules(&self, rule_set: &str, keys: &[RuleKey], at: u64) -> Result<Vec<Option<Rule>>> {
        let (set, keys) = (rule_set.to_owned(), keys.to_vec());
        self.read(move |e| keys.iter().map(|key| rules::get(e, &set, key, at)).collect()).await
    }

    async fn scan_rules(&self, rule_set: &str, at: u64, after: Option<&RuleKey>, limit: usize) -> Result<Vec<Rule>> {
        let (set, after) = (rule_set.to_owned(), after.cloned());
        self.read(move |e| rules::scan(e, &set, at, after.as_ref(), limit)).await
    }

    async fn scan_changes(&self, after: ChangePos, upto: u64, limit: usize) -> Result<Vec<ChangeEntry>> {
        self.read(move |e| rules::changes(e, after, upto, limit)).await
    }

    async fn rule_sets(&self) -> Result<Vec<RuleSetInfo>> {
        self.read(|e| rules::sets(e, None, usize::MAX)).await
    }

    async fn rule_sets_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<RuleSetInfo>> {
        let after = after.map(str::to_owned);
        self.read(move |e| rules::sets(e, after.as_deref(), limit)).await
    }

    async fn compact_history(&self, keep_from: u64) -> Result<u64> {
        self.writer.submit(true, move |txn| rules::compact(txn, keep_from)).await
    }

    async fn insert_events(&self, machine_id: &str, events: &[NewEvent]) -> Result<InsertOutcome> {
        let id = machine_id.to_owned();
        let trained = self.codec.take_trained();
        let events = events::prepare(&self.codec, &id, events, trained.as_deref());
        let record = trained.as_ref().map(|t| t.record());
        let outcome = self
            .writer
            .submit(false, move |txn| {
                if let Some((k, v)) = record {
                    txn.put(k, v); // in the same commit as the first bodies that name it
                }
                events::insert(txn, &id, &events)
            })
            .await;
        if let Some(t) = trained {
            self.codec.settle_trained(t, outcome.is_ok());
        }
        let outcome = outcome?;
        if let Some(last) = outcome.ids.iter().flatten().max() {
            self.maybe_train(*last).await;
        }
        Ok(outcome)
    }

    async fn query_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>> {
        let (filter, codec) = (filter.clone(), self.codec.clone());
        self.read(move |e| events::query(e, &codec, &filter)).await
    }

    async fn prune_events(&self, received_before_unix: Option<i64>, keep_max: Option<u64>) -> Result<u64> {
        let mut deleted = 0;
        loop {
            let codec = self.codec.clone();
            let (n, more) = self
                .writer
                .submit(true, move |txn| events::prune_step(txn, &codec, received_before_unix, keep_max))
                .await?;
            deleted += n;
            if !more {
                return Ok(deleted);
            }
        }
    }

    async fn event_count(&self) -> Result<u64> {
        events::count(&*self.engine)
    }

    async fn put_event_triage(&self, triage: &[(u64, EventTriage)]) -> Result<u64> {
        let triage = triage.to_vec();
        self.writer.submit(false, move |txn| events::put_triage(txn, &triage)).await
    }

    async fn record_proposal(&self, proposal: &NewProposal) -> Result<(Proposal, bool)> {
        let p = proposal.clone();
        let request = ProposalRequest::new(RequestSource::Triage, &p.machine_id, None, &p.reason, p.at_unix);
        self.writer.submit(false, move |txn| proposals::record(txn, &p, &request)).await
    }

    async fn record_user_request(
        &self,
        proposal: &NewProposal,
        user: Option<&str>,
        justification: &str,
    ) -> Result<(Proposal, bool)> {
        let p = proposal.clone();
        let request = ProposalRequest::new(RequestSource::User, &p.machine_id, user, justification, p.at_unix);
        self.writer.submit(false, move |txn| proposals::record(txn, &p, &request)).await
    }

    async fn proposal_requests(&self, id: u64) -> Result<Vec<ProposalRequest>> {
        self.read(move |e| proposals::requests(e, id)).await
    }

    async fn search_hosts(
        &self,
        prefix: &str,
        after: Option<&HostSearchCursor>,
        limit: usize,
    ) -> Result<Vec<HostMatch>> {
        let (prefix, after) = (prefix.to_owned(), after.cloned());
        self.read(move |e| hosts::search(e, &prefix, after.as_ref(), limit)).await
    }

    async fn activity(&self, series: ActivitySeries, from_unix: i64, to_unix: i64) -> Result<Vec<ActivityBucket>> {
        self.read(move |e| console::activity(e, series, from_unix, to_unix)).await
    }

    async fn record_audit(&self, entry: &NewAuditEntry) -> Result<u64> {
        let entry = entry.clone();
        self.writer.submit(false, move |txn| console::record_audit(txn, &entry)).await
    }

    async fn list_audit(&self, target: Option<&str>, before_id: Option<u64>, limit: usize) -> Result<Vec<AuditEntry>> {
        let target = target.map(str::to_owned);
        self.read(move |e| console::list_audit(e, target.as_deref(), before_id, limit)).await
    }

    async fn get_binary(&self, sha256: &str) -> Result<Option<BinarySummary>> {
        let sha = sha256.to_owned();
        self.read(move |e| console::get_binary(e, &sha)).await
    }

    async fn list_binaries(&self, before: Option<&BinaryCursor>, limit: usize) -> Result<Vec<BinarySummary>> {
        let before = before.cloned();
        self.read(move |e| console::list_binaries(e, before.as_ref(), limit)).await
    }

    async fn binary_activity(&self, sha256: &str, from_unix: i64, to_unix: i64) -> Result<Vec<ActivityBucket>> {
        let sha = sha256.to_owned();
        self.read(move |e| console::binary_activity(e, &sha, from_unix, to_unix)).await
    }

    async fn get_proposal(&self, id: u64) -> Result<Option<Proposal>> {
        self.read(move |e| proposals::get(e, id)).await
    }

    async fn list_proposals(
        &self,
        status: Option<ProposalStatus>,
        before_id: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Proposal>> {
        self.read(move |e| proposals::list(e, status, before_id, limit)).await
    }

    async fn decide_proposal(&self, id: u64, decision: &ProposalDecision) -> Result<DecideOutcome> {
        let decision = decision.clone();
        self.writer.submit(false, move |txn| proposals::decide(txn, id, &decision)).await
    }

    async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let k = kv_key(namespace, key);
        self.read(move |e| e.get(&k)).await
    }

    async fn kv_put(&self, namespace: &str, key: &str, value: &[u8]) -> Result<()> {
        let (k, v) = (kv_key(namespace, key), value.to_vec());
        self.writer
            .submit(false, move |txn| {
                txn.put(k, v);
                Ok(())
            })
            .await
    }

    async fn kv_delete(&self, namespace: &str, key: &str) -> Result<()> {
        let k = kv_key(namespace, key);
        self.writer
            .submit(false, move |txn| {
                txn.delete(k);
                Ok(())
            })
            .await
    }

    async fn kv_put_if_absent(&self, namespace: &str, key: &str, value: &[u8]) -> Result<Vec<u8>> {
        let (k, v) = (kv_key(namespace, key), value.to_vec());
        // The single writer runs jobs one at a time and its `get` sees the group's earlier
        // writes, so the check and the put cannot interleave with another caller's.
        self.writer
            .submit(false, move |txn| {
                if let Some(existing) = txn.get(&k)? {
                    return Ok(existing);
                }
                txn.put(k, v.clone());
                Ok(v)
            })
            .await
    }

    async fn kv_increment(
        &self,
        namespace: &str,
        key: &str,
        delta: i64,
    ) -> Result<std::result::Result<i64, CounterError>> {
        let k = kv_key(namespace, key);
        // Read and write in one writer job: jobs run one at a time (see kv_put_if_absent).
        self.writer
            .submit(false, move |txn| {
                let current = txn.get(&k)?;
                let next = dasher_sdk::plugin::kv::next_counter(current.as_deref(), delta);
                if let Ok(n) = next {
                    txn.put(k, dasher_sdk::plugin::kv::encode_counter(n));
                }
                Ok(next)
            })
            .await
    }

    async fn kv_compare_and_swap(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool> {
        let (k, expected, new) = (kv_key(namespace, key), expected.map(<[u8]>::to_vec), new.map(<[u8]>::to_vec));
        self.writer
            .submit(false, move |txn| {
                if txn.get(&k)? != expected {
                    return Ok(false);
                }
                match new {
                    Some(v) => txn.put(k, v),
                    None => txn.delete(k),
                }
                Ok(true)
            })
            .await
    }

    async fn kv_put_leased(&self, lease: &str, holder: &str, namespace: &str, key: &str, value: &[u8]) -> Result<bool> {
        let (k, v) = (kv_key(namespace, key), value.to_vec());
        let (leases, lease, holder) = (self.leases.clone(), lease.to_owned(), holder.to_owned());
        // Checked on the writer thread, right before the put joins the group commit.
        self.writer
            .submit(false, move |txn| {
                if !leases.holds(&lease, &holder) {
                    return Ok(false);
                }
                txn.put(k, v);
                Ok(true)
            })
            .await
    }

    async fn lease_acquire(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<Option<Lease>> {
        crate::lease::check_args(name, holder, ttl_ms)?;
        Ok(self.leases.acquire(name, holder, ttl_ms))
    }

    async fn lease_renew(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<Option<Lease>> {
        crate::lease::check_args(name, holder, ttl_ms)?;
        Ok(self.leases.renew(name, holder, ttl_ms))
    }

    async fn lease_release(&self, name: &str, holder: &str) -> Result<()> {
        self.leases.release(name, holder);
        Ok(())
    }

    async fn lease_get(&self, name: &str) -> Result<Option<Lease>> {
        Ok(self.leases.get(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{Direction, RedbEngine};
    use crate::{EventKind, NewEvent};
    use std::ops::Bound;

    /// Pruning must remove an event's index, dedupe and triage keys with its body (stale index
    /// entries are invisible through `Store`, so this looks at the raw keys).
    #[tokio::test]
    async fn prune_leaves_no_event_keys_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = KvStore::new(RedbEngine::open(&dir.path().join("db")).unwrap()).unwrap();
        // More than two prune steps, so stepping is exercised.
        let n = 2 * events::PRUNE_STEP_EVENTS as i64 + 7;
        let events: Vec<NewEvent> = (0..n)
            .map(|n| NewEvent {
                kind: EventKind::FileAccess,
                dedupe_key: format!("k{n}"),
                decision: "BLOCK_BINARY".into(),
                file_sha256: format!("sha{}", n % 3),
                file_bundle_hash: "b".into(),
                occurred_at_unix: 0.0,
                received_at_unix: n,
                body: serde_json::json!({}),
            })
            .collect();
        let ids = store.insert_events("m", &events).await.unwrap().ids;
        // Triage (with label index entries) on every event, so pruning must remove those too.
        let triage = crate::EventTriage { labels: vec!["l1".into(), "l2".into()], ..Default::default() };
        let triage: Vec<(u64, crate::EventTriage)> = ids.iter().map(|id| (id.unwrap(), triage.clone())).collect();
        assert_eq!(store.put_event_triage(&triage).await.unwrap(), n as u64);
        assert_eq!(store.prune_events(Some(n - 10), Some(7)).await.unwrap(), n as u64 - 7);
        assert_eq!(store.event_count().await.unwrap(), 7);
        let kept = store.query_events(&crate::EventFilter { limit: 100, ..Default::default() }).await.unwrap();
        let received: Vec<i64> = kept.iter().map(|r| r.event.received_at_unix).collect();
        assert_eq!(received, (n - 7..n).rev().collect::<Vec<_>>(), "the newest 7 are kept");
        assert_eq!(store.prune_events(None, Some(0)).await.unwrap(), 7);
        let left = store
            .engine
            .scan_collect((Bound::Included(&b"e"[..]), Bound::Excluded(&b"f"[..])), Direction::Forward, 10)
            .unwrap();
        assert!(left.is_empty(), "event keys left after pruning everything: {left:?}");
    }

    /// A store written before the host search index existed gets it built at open.
    #[tokio::test]
    async fn search_index_is_built_for_older_stores() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = KvStore::new(RedbEngine::open(&path).unwrap()).unwrap();
            let inv = HostInventory { machine_id: "M-1".into(), hostname: "Alice-MBP".into(), ..Default::default() };
            store.put_host_inventory(&inv).await.unwrap();
            store.set_host_tags("M-2", &["lab".into()]).await.unwrap();
        }
        {
            // Back to the layout of a store before the index: no `hq` keys, no marker.
            let engine = RedbEngine::open(&path).unwrap();
            let end = keys::prefix_end(keys::HOST_TERM).unwrap();
            let range = (Bound::Included(keys::HOST_TERM), Bound::Excluded(end.as_slice()));
            let mut batch = crate::kv::WriteBatch::new();
            for (k, _) in engine.scan_collect(range, Direction::Forward, 100).unwrap() {
                batch.delete(k);
            }
            assert_eq!(batch.len(), 3, "two machine ids and a hostname were indexed");
            batch.delete(keys::META_HOST_TERMS_BUILT.to_vec());
            engine.write(&batch).unwrap();
        }
        let store = KvStore::new(RedbEngine::open(&path).unwrap()).unwrap();
        let found = |p: &'static str| {
            let store = &store;
            async move {
                store
                    .search_hosts(p, None, 10)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|m| m.host.machine_id)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(found("alice").await, vec!["M-1"]);
        assert_eq!(found("m-").await, vec!["M-1", "M-2"]);
    }

    fn event(n: u64) -> NewEvent {
        NewEvent {
            kind: EventKind::Execution,
            dedupe_key: format!("k{n}"),
            decision: if n.is_multiple_of(3) { "BLOCK_BINARY" } else { "ALLOW_UNKNOWN" }.into(),
            file_sha256: format!("{:064x}", n % 97),
            file_bundle_hash: String::new(),
            occurred_at_unix: n as f64,
            received_at_unix: n as i64,
            body: serde_json::json!({
                "file_path": format!("/Applications/App{}.app/Contents/MacOS", n % 13),
                "file_sha256": format!("{:064x}", n % 97),
                "pid": n,
            }),
        }
    }

    /// Bodies written before, with, and after a compression dictionary read back intact,
    /// also after a reopen; the dictionary is committed with the first bodies naming it.
    async fn events_survive_dictionary_training<E: KvEngine>(open: impl Fn() -> E) {
        let total = event_codec::FIRST_TRAINING + 2_000;
        {
            let store = KvStore::new(open()).unwrap();
            for from in (0..total).step_by(50) {
                let batch: Vec<NewEvent> = (from..from + 50).map(event).collect();
                assert_eq!(store.insert_events("m", &batch).await.unwrap().stored, 50);
            }
            // Training runs on its own thread; the insert after it finishes stores it. A debug
            // build on two busy cores can take minutes to train: wait up to ten (bounded).
            let mut next = total;
            let dict_key = [keys::META_EVENT_DICT, &1u32.to_be_bytes()].concat();
            for _ in 0..12_000 {
                if store.engine.get(&dict_key).unwrap().is_some() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                store.insert_events("m", &[event(next)]).await.unwrap();
                next += 1;
            }
            assert!(store.engine.get(&dict_key).unwrap().is_some(), "no dictionary was trained within ten minutes");
            let body = store.engine.get(&keys::event_key(next)).unwrap().expect("the last event");
            assert_eq!(body[0], 2, "bodies after training use the dictionary");
            let first = store.engine.get(&keys::event_key(1)).unwrap().expect("the first event");
            assert_eq!(first[0], 1, "bodies before training are compressed without one");
        }
        let store = KvStore::new(open()).unwrap();
        let all = store.query_events(&crate::EventFilter { limit: usize::MAX, ..Default::default() }).await.unwrap();
        assert!(all.len() as u64 > total);
        for r in &all {
            let n = r.event.occurred_at_unix as u64;
            assert_eq!(r.event, event(n), "event {n}");
            assert_eq!(r.machine_id, "m");
        }
        let by_hash = crate::EventFilter { file_sha256: Some(format!("{:064x}", 5)), limit: 10, ..Default::default() };
        assert!(store.query_events(&by_hash).await.unwrap().iter().all(|r| r.event.occurred_at_unix as u64 % 97 == 5));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn redb_events_survive_dictionary_training() {
        let dir = tempfile::tempdir().unwrap();
        events_survive_dictionary_training(|| RedbEngine::open(&dir.path().join("db")).unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sled_events_survive_dictionary_training() {
        let dir = tempfile::tempdir().unwrap();
        events_survive_dictionary_training(|| crate::kv::SledEngine::open(&dir.path().join("sled")).unwrap()).await;
    }
}
