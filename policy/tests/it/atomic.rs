//! The atomic kv imports through real plugins: concurrent calls lose no increment, and a
//! plugin built against contract 0.2.0 (without them) still loads and runs.

use crate::support::*;
use dasher_policy::{CounterError, KvBackend, KvError, MemoryKv, PluginManager, Source};
use dasher_store::model::{EventKind, EventRecord, NewEvent};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A [`MemoryKv`] whose plain reads are slow, so that any read-then-write of one key by two
/// calls at once would interleave (and lose an update) almost every time. The atomic
/// operations go straight to the inner store, as a backend's own atomic method would.
struct SlowReads(MemoryKv);

impl KvBackend for SlowReads {
    /// The value is read, then delivered late (as over a slow link to the store): a write
    /// based on it lands well after other calls could have changed the key.
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let value = self.0.get(namespace, key);
        std::thread::sleep(Duration::from_millis(3));
        value
    }
    fn put(&self, namespace: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.0.put(namespace, key, value)
    }
    fn delete(&self, namespace: &str, key: &str) -> Result<(), KvError> {
        self.0.delete(namespace, key)
    }
    fn increment(&self, namespace: &str, key: &str, delta: i64) -> Result<Result<i64, CounterError>, KvError> {
        self.0.increment(namespace, key, delta)
    }
    fn compare_and_swap(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, KvError> {
        self.0.compare_and_swap(namespace, key, expected, new)
    }
    fn apply(&self, namespace: &str, writes: &BTreeMap<String, Option<Vec<u8>>>) -> Result<(), KvError> {
        self.0.apply(namespace, writes)
    }
}

fn block(id: u64, machine: &str) -> EventRecord {
    let body = json!({"decision": "BLOCK_SIGNINGID", "team_id": "EQHXZ8M8AV", "signing_id": "EQHXZ8M8AV:com.vendor.app",
                      "file_sha256": "cd".repeat(32)});
    EventRecord {
        id,
        machine_id: machine.into(),
        event: NewEvent {
            kind: EventKind::Execution,
            dedupe_key: format!("k{id}"),
            decision: "BLOCK_SIGNINGID".into(),
            file_sha256: "cd".repeat(32),
            file_bundle_hash: String::new(),
            occurred_at_unix: 1.0,
            received_at_unix: 2,
            body,
        },
        triage: None,
    }
}

/// Many hosts' triage calls at once, on 4 worker threads, each counting its host for the same
/// binary through event-triage's `kv::compare_and_swap` + `kv::increment`: the counter ends at
/// exactly the number of hosts. (Counted with `kv::get` + `kv::set`, as the plugin did before,
/// concurrent calls would read the same count and the slow reads make that near certain.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_triage_calls_lose_no_increment() {
    const HOSTS: u64 = 48;
    let dir = plugin_dir(&["event-triage"]);
    let mut cfg = config(
        dir.path(),
        &[("event-triage", json!({"approved_team_ids": ["EQHXZ8M8AV"], "propose_after_hosts": 1000}))],
    );
    cfg.workers = 4;
    cfg.queue_capacity = 1024;
    cfg.limits.triage_deadline_ms = 20_000;
    let kv = Arc::new(SlowReads(MemoryKv::new()));
    let m = Arc::new(PluginManager::start(cfg, kv.clone()).expect("manager starts"));
    let mut calls = Vec::new();
    for i in 0..HOSTS {
        let m = m.clone();
        calls.push(tokio::spawn(async move {
            let machine = format!("m{i}");
            // Each host reports the binary twice in one batch: counted once.
            let d = m.triage(&host(&machine), &[block(2 * i, &machine), block(2 * i + 1, &machine)]).await;
            assert!(d.faults.is_empty(), "{:?}", d.faults);
            assert_eq!(d.made_by[0].source, Source::Live);
        }));
    }
    for c in calls {
        tokio::time::timeout(NO_HANG * 3, c).await.expect("did not hang").unwrap();
    }
    let ns = kv.0.dump("plugin:event-triage");
    let count = String::from_utf8(ns["hosts:EQHXZ8M8AV:com.vendor.app"].clone()).unwrap();
    assert_eq!(count, HOSTS.to_string(), "every host counted exactly once");
    let seen = ns.keys().filter(|k| k.starts_with("seen:EQHXZ8M8AV:com.vendor.app:")).count();
    assert_eq!(seen as u64, HOSTS);
    // A host reporting again is not counted again.
    m.triage(&host("m0"), &[block(1000, "m0")]).await;
    assert_eq!(kv.0.dump("plugin:event-triage")["hosts:EQHXZ8M8AV:com.vendor.app"], count.as_bytes());
}

/// A store whose atomic operations are slow (each a durable write on a busy disk).
struct SlowAtomic(MemoryKv);

impl KvBackend for SlowAtomic {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.0.get(namespace, key)
    }
    fn put(&self, namespace: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.0.put(namespace, key, value)
    }
    fn delete(&self, namespace: &str, key: &str) -> Result<(), KvError> {
        self.0.delete(namespace, key)
    }
    fn increment(&self, namespace: &str, key: &str, delta: i64) -> Result<Result<i64, CounterError>, KvError> {
        std::thread::sleep(SLOW_ATOMIC);
        self.0.increment(namespace, key, delta)
    }
    fn compare_and_swap(
        &self,
        namespace: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, KvError> {
        std::thread::sleep(SLOW_ATOMIC);
        self.0.compare_and_swap(namespace, key, expected, new)
    }
}

const SLOW_ATOMIC: Duration = Duration::from_millis(300);

/// The time a call waits for the store in atomic operations is not the guest's: four slow
/// operations (1.2 s) in a call with a 500 ms deadline still answer, while a guest that
/// spins past its deadline is still stopped (`faults::infinite_loop_is_stopped_by_the_deadline`).
#[tokio::test]
async fn waiting_for_the_store_in_atomic_operations_does_not_count_against_the_deadline() {
    let dir = plugin_dir(&["event-triage"]);
    let mut cfg = config(dir.path(), &[("event-triage", json!({"approved_team_ids": ["EQHXZ8M8AV"]}))]);
    cfg.limits.triage_deadline_ms = 500;
    let kv = Arc::new(SlowAtomic(MemoryKv::new()));
    let m = PluginManager::start(cfg, kv.clone()).expect("manager starts");
    let mut other = block(2, "m1");
    other.event.body["signing_id"] = json!("EQHXZ8M8AV:com.vendor.other");
    let d = tokio::time::timeout(NO_HANG, m.triage(&host("m1"), &[block(1, "m1"), other])).await.expect("no hang");
    assert!(d.faults.is_empty(), "{:?}", d.faults);
    assert_eq!(d.made_by[0].source, Source::Live);
    let ns = kv.0.dump("plugin:event-triage");
    assert_eq!(ns["hosts:EQHXZ8M8AV:com.vendor.app"], b"1");
    assert_eq!(ns["hosts:EQHXZ8M8AV:com.vendor.other"], b"1");
}

/// fault-invalid-output is built against the frozen contract 0.2.0 WIT: it loads, its calls
/// run (valid answers for healthy hosts) beside a 0.3.0 plugin in one chain.
#[tokio::test]
async fn a_plugin_built_for_contract_0_2_0_still_loads_and_runs() {
    let dir = plugin_dir(&["fault-invalid-output", "staged-rollout"]);
    let (m, _) = start(config(dir.path(), &[]));
    let status = m.status();
    assert!(status.load_errors.is_empty(), "{:?}", status.load_errors);
    let old = status.plugins.iter().find(|p| p.name == "fault-invalid-output").expect("loaded");
    assert_eq!(old.contract, "dasher:plugin@0.2.0", "{old:?}");
    let new = status.plugins.iter().find(|p| p.name == "staged-rollout").expect("loaded");
    assert_eq!(new.contract, dasher_sdk::plugin::CONTRACT);
    let d = m.configure(&host("m1")).await;
    assert!(d.faults.is_empty(), "{:?}", d.faults);
    assert!(d.made_by.iter().any(|c| c.plugin == "fault-invalid-output" && c.source == Source::Live), "{d:?}");
}
