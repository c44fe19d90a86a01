//! The conformance suite, multi-writer checks and schema migrations against PostgreSQL.
//!
//! Needs a server: `DASHER_TEST_POSTGRES_URL` (`.ci/postgres.sh` starts one). Without it these
//! tests skip with a message, except under CI, where they fail. Each test gets a fresh database.

use dasher_sdk::domain::{Rule, RuleSpec};
use dasher_sdk::wire::{Policy, RuleType};
use dasher_store::postgres::testing::{TestDatabase, server_url};
use dasher_store::postgres::{PgStore, SCHEMA_VERSION};
use dasher_store::{
    AppliedSetting, ChangePos, DecideOutcome, Decider, DecisionProvenance, EventFilter, EventKind, EventTriage,
    HostSyncState, NewEvent, NewProposal, ProposalDecision, ProposalScope, ProposalStatus, RuleChange, Store,
    StoreSpec, SyncOutcome, conformance,
};
use std::sync::Arc;

/// SQL undoing migrations 5 (leases), 4 (a proposal's applied rule set) and 3 (console tables), to put a
/// database back to schema 2.
const DROP_SCHEMA_3: &str = "DROP TABLE dasher_leases; ALTER TABLE dasher_proposals DROP COLUMN applied_rule_set;
     DROP TABLE dasher_host_terms, dasher_activity_events, dasher_activity_syncs, dasher_audit,
     dasher_binaries, dasher_binary_hosts, dasher_binary_decisions, dasher_proposal_requests;
     ALTER TABLE dasher_proposals DROP COLUMN requests;";

/// A fresh database and a store on it, or `None` when the test is skipped.
async fn fresh(test: &str) -> Option<(TestDatabase, Arc<dyn Store>)> {
    let server = server_url(test)?;
    let db = TestDatabase::create(&server, test).await;
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&db.url).await.unwrap());
    Some((db, store))
}

macro_rules! check {
    ($name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some((db, store)) = fresh(stringify!($name)).await else { return };
            conformance::$name(&*store).await;
            drop(store);
            db.drop_database().await;
        }
    };
}
check!(hosts);
check!(preflight_writes);
check!(host_paging);
check!(rule_versions);
check!(rule_comments_and_expected_head);
check!(rule_history);
check!(rule_changes);
check!(rule_sets);
check!(events_insert);
check!(events_query);
check!(events_prune);
check!(event_triage);
check!(proposals);
check!(plugin_kv);
check!(compaction);
check!(host_search);
check!(activity_counters);
check!(audit_log);
check!(binary_summaries);
check!(proposal_requests);
check!(leases);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits() {
    let Some((db, store)) = fresh("concurrent_commits").await else { return };
    conformance::concurrent_commits(store).await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_race() {
    let Some((db, store)) = fresh("lease_race").await else { return };
    conformance::lease_race(store).await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_events() {
    let Some((db, store)) = fresh("concurrent_events").await else { return };
    conformance::concurrent_events(store).await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_put_if_absent() {
    let Some((db, store)) = fresh("kv_put_if_absent").await else { return };
    conformance::kv_put_if_absent(store).await;
    db.drop_database().await;
}

/// Two replicas (two pools on one database) racing for the server secret end with one value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_put_if_absent_across_replicas() {
    let Some(server) = server_url("kv_put_if_absent_across_replicas") else { return };
    let db = TestDatabase::create(&server, "kv_put_if_absent_across_replicas").await;
    let a: Arc<dyn Store> = Arc::new(PgStore::connect(&db.url).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PgStore::connect(&db.url).await.unwrap());
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                store.kv_put_if_absent(dasher_store::SERVER_KV_NAMESPACE, "secret", &[i; 32]).await.unwrap()
            })
        })
        .collect();
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    assert!(got.windows(2).all(|w| w[0] == w[1]), "one value for every replica: {got:?}");
    drop((a, b));
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_atomic() {
    let Some((db, store)) = fresh("kv_atomic").await else { return };
    conformance::kv_atomic(store).await;
    db.drop_database().await;
}

/// Two replicas (two pools on one database) incrementing one counter, created by the race
/// itself, lose no increment; their compare-and-swap creations of one key have one winner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_atomic_across_replicas() {
    let Some(server) = server_url("kv_atomic_across_replicas") else { return };
    let db = TestDatabase::create(&server, "kv_atomic_across_replicas").await;
    let a: Arc<dyn Store> = Arc::new(PgStore::connect(&db.url).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PgStore::connect(&db.url).await.unwrap());
    const TASKS: u8 = 8;
    const PER: i64 = 20;
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let mut sums = Vec::new();
                for _ in 0..PER {
                    sums.push(store.kv_increment("plugin:p", "hits", 1).await.unwrap().unwrap());
                }
                let won = store.kv_compare_and_swap("plugin:p", "leader", None, Some(&[i])).await.unwrap();
                (sums, won)
            })
        })
        .collect();
    let (mut sums, mut winners) = (Vec::new(), 0);
    for t in tasks {
        let (s, won) = t.await.unwrap();
        sums.extend(s);
        winners += usize::from(won);
    }
    sums.sort_unstable();
    let want: Vec<i64> = (1..=i64::from(TASKS) * PER).collect();
    assert_eq!(sums, want, "every increment got its own sum");
    assert_eq!(winners, 1, "one replica's task created the key");
    drop((a, b));
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen() {
    let Some(server) = server_url("reopen") else { return };
    let db = TestDatabase::create(&server, "reopen").await;
    let url = db.url.clone();
    conformance::reopen(|| {
        let url = url.clone();
        async move { Arc::new(PgStore::connect(&url).await.unwrap()) as Arc<dyn Store> }
    })
    .await;
    db.drop_database().await;
}

/// `connect` through a parsed `StoreSpec`, as the server does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_through_a_spec() {
    let Some(server) = server_url("connect_through_a_spec") else { return };
    let db = TestDatabase::create(&server, "spec").await;
    let spec: StoreSpec = db.url.as_str().parse().unwrap();
    let store = dasher_store::connect(&spec).await.unwrap();
    assert_eq!(store.head_version().await.unwrap(), 0);
    assert!(dasher_store::open(&spec).is_err(), "the synchronous open names connect() instead");
    drop(store);
    db.drop_database().await;
}

/// An unreachable server is a clear error at connect, not a hang or a later failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_fails_at_connect() {
    // Port 1 on loopback: nothing listens there.
    let url = "postgres://dasher@127.0.0.1:1/dasher?connect_timeout=5".parse().unwrap();
    let err = PgStore::connect(&url).await.err().expect("no server on port 1").to_string();
    assert!(err.contains("127.0.0.1:1"), "error names the server: {err}");
}

/// Replicas starting together on an empty database migrate it once; a later start applies
/// nothing; a schema newer than this build is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_under_concurrent_starts() {
    let Some(server) = server_url("migrations") else { return };
    let db = TestDatabase::create(&server, "migrations").await;
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { PgStore::connect(&url).await.map(|_| ()) })
        })
        .collect();
    for s in starts {
        s.await.unwrap().expect("every concurrent start succeeds");
    }
    let (client, conn) = tokio_postgres::connect(db.url.as_str(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let versions: Vec<i32> = client
        .query("SELECT version FROM dasher_schema_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>(), "each migration recorded once");
    let store = PgStore::connect(&db.url).await.unwrap();
    assert_eq!(store.head_version().await.unwrap(), 0, "the meta rows were inserted once");
    drop(store);

    client
        .execute(
            "INSERT INTO dasher_schema_migrations (version, description) VALUES ($1, 'future')",
            &[&(SCHEMA_VERSION + 1)],
        )
        .await
        .unwrap();
    let err = PgStore::connect(&db.url).await.err().expect("newer schema refused").to_string();
    assert!(err.contains("newer than this Dasher"), "{err}");
    drop(client);
    db.drop_database().await;
}

/// Several stores (separate pools, like separate replicas) commit concurrently while readers
/// follow the change log: versions are gap-free, each reported once, and a reader that saw
/// head `h` always finds exactly the versions up to `h`, so nothing committed later can be
/// skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_across_replicas() {
    const REPLICAS: usize = 3;
    const WRITERS_PER_REPLICA: usize = 4;
    const COMMITS_PER_WRITER: usize = 15;
    const TOTAL: u64 = (REPLICAS * WRITERS_PER_REPLICA * COMMITS_PER_WRITER) as u64;
    let Some(server) = server_url("concurrent_writers_across_replicas") else { return };
    let db = TestDatabase::create(&server, "writers").await;
    let mut replicas: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..REPLICAS {
        replicas.push(Arc::new(PgStore::connect(&db.url).await.unwrap()));
    }

    let mut writers = Vec::new();
    for (r, store) in replicas.iter().enumerate() {
        for w in 0..WRITERS_PER_REPLICA {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                let mut versions = Vec::new();
                for c in 0..COMMITS_PER_WRITER {
                    let rule = Rule {
                        identifier: format!("{r:02}{w:02}{c:04}"),
                        rule_type: RuleType::Binary,
                        policy: Policy::Allowlist,
                        custom_msg: None,
                        custom_url: None,
                        cel_expr: None,
                        notification_app_name: None,
                        event_detail_button_label: None,
                        comment: None,
                    };
                    let change = RuleChange { rule_set: "global".into(), key: rule.key(), rule: Some(rule) };
                    versions.push(store.commit_rules(&[change]).await.unwrap());
                }
                versions
            }));
        }
    }
    let mut readers = Vec::new();
    for store in replicas.clone() {
        readers.push(tokio::spawn(async move {
            let mut seen = 0u64;
            let mut rounds = 0u32;
            while seen < TOTAL {
                let head = store.head_version().await.unwrap();
                assert!(head >= seen, "head went backwards: {head} < {seen}");
                let entries =
                    store.scan_changes(ChangePos { version: seen, seq: u32::MAX }, head, 100_000).await.unwrap();
                let versions: Vec<u64> = entries.iter().map(|e| e.pos.version).collect();
                assert_eq!(versions, (seen + 1..=head).collect::<Vec<_>>(), "reader at head {head} saw a gap");
                for e in &entries {
                    let v = e.pos.version;
                    assert!(
                        store.get_rule("global", &e.key, v).await.unwrap().is_some(),
                        "rule of v{v} visible at v{v}"
                    );
                    assert!(store.get_rule("global", &e.key, v - 1).await.unwrap().is_none(), "not before v{v}");
                }
                seen = head;
                rounds += 1;
                tokio::task::yield_now().await;
            }
            rounds
        }));
    }
    let mut all = Vec::new();
    for w in writers {
        all.extend(w.await.unwrap());
    }
    for r in readers {
        assert!(r.await.unwrap() > 0);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=TOTAL).collect::<Vec<_>>(), "gap-free versions, each reported once");
    for store in &replicas {
        assert_eq!(store.head_version().await.unwrap(), TOTAL);
        let sets = store.rule_sets().await.unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].rules, TOTAL, "live count matches across replicas");
    }
    drop(replicas);
    db.drop_database().await;
}

/// Compaction on one replica while another commits and reads: reads at or above the floor
/// stay correct and commits are not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_while_another_replica_commits() {
    let Some(server) = server_url("compaction_while_another_replica_commits") else { return };
    let db = TestDatabase::create(&server, "compaction_race").await;
    let a: Arc<dyn Store> = Arc::new(PgStore::connect(&db.url).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PgStore::connect(&db.url).await.unwrap());
    let rule = |p: Policy| Rule {
        identifier: "aa".into(),
        rule_type: RuleType::Binary,
        policy: p,
        custom_msg: None,
        custom_url: None,
        cel_expr: None,
        notification_app_name: None,
        event_detail_button_label: None,
        comment: None,
    };
    let flip = |i: u64| if i.is_multiple_of(2) { Policy::Allowlist } else { Policy::Blocklist };
    const N: u64 = 60;
    let committer = {
        let b = b.clone();
        tokio::spawn(async move {
            for i in 1..=N {
                let r = rule(flip(i));
                let v = b.commit_rules(&[RuleChange { rule_set: "s".into(), key: r.key(), rule: Some(r) }]).await;
                assert_eq!(v.unwrap(), i);
            }
        })
    };
    let mut compactions = 0;
    loop {
        let head = a.head_version().await.unwrap();
        if head >= 2 {
            a.compact_history(head - 1).await.unwrap();
            compactions += 1;
            // Every version from the floor up reads the value committed at it.
            let floor = a.history_floor().await.unwrap();
            for v in floor.max(1)..=head {
                let got = a.get_rule("s", &rule(Policy::Allowlist).key(), v).await.unwrap();
                assert_eq!(got, Some(rule(flip(v))), "value at v{v} after compacting to {floor}");
            }
        }
        if head == N {
            break;
        }
        tokio::task::yield_now().await;
    }
    committer.await.unwrap();
    assert!(compactions > 0);
    drop((a, b));
    db.drop_database().await;
}

/// Two replicas decide the same pending proposal at once (one approves, one rejects, many
/// times over): exactly one decision wins per proposal, the other sees it, and a rule
/// version exists exactly for each approval that won.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decisions_across_replicas() {
    const PROPOSALS: usize = 20;
    let Some(server) = server_url("concurrent_decisions_across_replicas") else { return };
    let db = TestDatabase::create(&server, "decisions").await;
    let a: Arc<dyn Store> = Arc::new(PgStore::connect(&db.url).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(PgStore::connect(&db.url).await.unwrap());
    let mut proposals = Vec::new();
    for i in 0..PROPOSALS {
        let spec = RuleSpec {
            identifier: format!("EQHXZ8M8AV:com.vendor.app{i}"),
            rule_type: RuleType::SigningId,
            policy: Policy::Allowlist,
            custom_msg: None,
            custom_url: None,
            cel_expr: None,
            notification_app_name: None,
            event_detail_button_label: None,
            comment: None,
        };
        let (key, _) = spec.validate().unwrap();
        let new = NewProposal {
            scope: ProposalScope::Global,
            rule_set: "global".into(),
            key,
            rule: spec,
            reason: "seen".into(),
            machine_id: format!("m{i}"),
            proposed_by: vec![],
            at_unix: 1,
        };
        // Both replicas record it at once: one proposal, counted twice.
        let (ra, rb) = tokio::join!(a.record_proposal(&new), b.record_proposal(&new));
        let ((pa, ca), (pb, cb)) = (ra.unwrap(), rb.unwrap());
        assert_eq!(pa.id, pb.id, "one proposal per (rule set, key)");
        assert!(ca ^ cb, "exactly one replica created it");
        proposals.push(pa);
    }
    let mut tasks = Vec::new();
    for p in &proposals {
        let (key, rule) = p.rule.validate().unwrap();
        let change = RuleChange { rule_set: "global".into(), key, rule };
        let approve = ProposalDecision::Approve { by: "alice".into(), at_unix: 5, change: Box::new(change) };
        let reject = ProposalDecision::Reject { by: "bob".into(), at_unix: 5 };
        for (store, decision) in [(a.clone(), approve), (b.clone(), reject)] {
            let id = p.id;
            tasks.push(tokio::spawn(async move { (id, store.decide_proposal(id, &decision).await.unwrap()) }));
        }
    }
    let mut approved = 0u64;
    let mut winners = std::collections::HashMap::new();
    for t in tasks {
        let (id, outcome) = t.await.unwrap();
        match outcome {
            DecideOutcome::Decided(p) => {
                assert!(winners.insert(id, p.clone()).is_none(), "proposal {id} decided twice");
                if p.status == ProposalStatus::Approved {
                    approved += 1;
                }
            }
            DecideOutcome::AlreadyDecided(p) => assert_ne!(p.status, ProposalStatus::Pending),
            DecideOutcome::NotFound => panic!("proposal {id} not found"),
        }
    }
    assert_eq!(winners.len(), PROPOSALS, "every proposal decided exactly once");
    assert_eq!(a.head_version().await.unwrap(), approved, "one rule version per approval, none per rejection");
    for (id, won) in &winners {
        let stored = b.get_proposal(*id).await.unwrap().unwrap();
        assert_eq!(&stored, won, "the stored decision is the one that won");
        let rule = a.get_rule("global", &stored.key, approved).await.unwrap();
        assert_eq!(rule.is_some(), stored.status == ProposalStatus::Approved, "rule in place iff approved");
        if let Some(v) = stored.applied_version {
            assert!(a.get_rule("global", &stored.key, v).await.unwrap().is_some());
            assert!(a.get_rule("global", &stored.key, v - 1).await.unwrap().is_none(), "committed at v{v}");
        }
    }
    drop((a, b));
    db.drop_database().await;
}

/// A host's sync state with decision provenance (fields newer than the first schema) is
/// stored and read back whole, and a record written without them still reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_state_provenance_round_trips() {
    let Some((db, store)) = fresh("sync_state_provenance_round_trips").await else { return };
    let mut decided = DecisionProvenance { decided_unix: 7, host_rules: Some(2), ..Default::default() };
    let by = Decider {
        by: "staged-rollout".into(),
        generation: "ab12".into(),
        source: Some(dasher_sdk::plugin::DecisionSource::Live),
    };
    decided.settings.insert("client_mode".into(), AppliedSetting { value: "LOCKDOWN".into(), by: by.clone() });
    decided.rule_sets_by.push(by);
    let state = HostSyncState { last_outcome: SyncOutcome::Ok, decided: Some(decided), ..Default::default() };
    store.put_sync_state("m1", &state).await.unwrap();
    assert_eq!(store.get_host("m1").await.unwrap().unwrap().sync, state);

    // A row written by a build that knew no provenance.
    let (client, conn) = tokio_postgres::connect(db.url.as_str(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "UPDATE dasher_hosts SET sync = '{\"last_outcome\":\"old\",\"plan\":null}'::json WHERE machine_id = $1",
            &[&b"m1".as_slice()],
        )
        .await
        .unwrap();
    let old = store.get_host("m1").await.unwrap().unwrap().sync;
    assert_eq!((old.last_outcome, old.decided), (SyncOutcome::Other("old".into()), None));
    drop((client, store));
    db.drop_database().await;
}

/// A database at schema 1 with events in it (as a build before triage left it) upgrades to
/// the current schema at connect; its events can then be triaged, queried by label and pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_schema_1_keeps_events() {
    let Some((db, store)) = fresh("upgrade_from_schema_1_keeps_events").await else { return };
    let ev = |n: u32| NewEvent {
        kind: EventKind::Execution,
        dedupe_key: format!("d{n}"),
        decision: "BLOCK_BINARY".into(),
        file_sha256: "sha".into(),
        file_bundle_hash: String::new(),
        occurred_at_unix: 0.0,
        received_at_unix: 100 + i64::from(n),
        body: serde_json::json!({ "n": n }),
    };
    store.insert_events("m1", &[ev(1), ev(2)]).await.unwrap();
    drop(store);
    // Back to schema 1: what migration 2 added is gone.
    let (client, conn) = tokio_postgres::connect(db.url.as_str(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "{DROP_SCHEMA_3} DROP TABLE dasher_event_labels, dasher_event_triage, dasher_proposals;
             DELETE FROM dasher_schema_migrations WHERE version > 1;"
        ))
        .await
        .unwrap();
    let store = PgStore::connect(&db.url).await.unwrap();
    let versions: Vec<i32> = client
        .query("SELECT version FROM dasher_schema_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    let all = store.query_events(&EventFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 2, "events survive the upgrade");
    assert!(all.iter().all(|r| r.triage.is_none()));
    let triage = EventTriage { labels: vec!["l".into()], triaged_at_unix: 5, ..Default::default() };
    assert_eq!(store.put_event_triage(&[(all[0].id, triage.clone())]).await.unwrap(), 1);
    let labelled =
        store.query_events(&EventFilter { label: Some("l".into()), limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!((labelled.len(), labelled[0].triage.as_ref()), (1, Some(&triage)));
    assert_eq!(store.prune_events(None, Some(0)).await.unwrap(), 2);
    let left: i64 = client.query_one("SELECT count(*) FROM dasher_event_labels", &[]).await.unwrap().get(0);
    assert_eq!(left, 0, "labels go with their events");
    drop((client, store));
    db.drop_database().await;
}

/// A database at schema 2 with hosts in it upgrades at connect and its hosts become
/// searchable (migration 3 indexes the hosts already stored); proposals keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_schema_2_indexes_hosts() {
    let Some((db, store)) = fresh("upgrade_from_schema_2_indexes_hosts").await else { return };
    for (id, name) in [("M-1", "Alice-MBP"), ("M-2", "bob-mini")] {
        let inv = dasher_store::HostInventory {
            machine_id: id.into(),
            hostname: name.into(),
            last_seen_unix: 5,
            ..Default::default()
        };
        store.put_host_inventory(&inv).await.unwrap();
    }
    store.set_host_tags("M-3", &["lab".into()]).await.unwrap();
    drop(store);
    let (client, conn) = tokio_postgres::connect(db.url.as_str(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("{DROP_SCHEMA_3} DELETE FROM dasher_schema_migrations WHERE version > 2;"))
        .await
        .unwrap();
    let store = PgStore::connect(&db.url).await.unwrap();
    let found: Vec<String> =
        store.search_hosts("ALICE", None, 10).await.unwrap().into_iter().map(|m| m.host.machine_id).collect();
    assert_eq!(found, vec!["M-1"], "existing hosts indexed by the migration");
    let ids: Vec<String> =
        store.search_hosts("m-", None, 10).await.unwrap().into_iter().map(|m| m.host.machine_id).collect();
    assert_eq!(ids, vec!["M-1", "M-2", "M-3"], "hosts known only by tags too");
    drop((client, store));
    db.drop_database().await;
}

/// Replicas uploading events for the same binaries, preflighting and requesting approval at
/// the same time: every counter, summary and request is counted exactly once (row locks and
/// host markers, not last-writer-wins).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_writes_across_replicas() {
    const REPLICAS: usize = 3;
    const MACHINES: usize = 12;
    const BATCHES: u32 = 5;
    const PER_BATCH: u32 = 8;
    let Some(server) = server_url("console_writes_across_replicas") else { return };
    let db = TestDatabase::create(&server, "console_race").await;
    let mut replicas: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..REPLICAS {
        replicas.push(Arc::new(PgStore::connect(&db.url).await.unwrap()));
    }
    let sha = |i: u32| format!("{:064x}", i % 3);
    let day = 20_000 * dasher_store::DAY_SECS;
    let sid = "EQHXZ8M8AV:com.vendor.app";
    let new = |machine: &str, at: i64| NewProposal {
        scope: ProposalScope::Global,
        rule_set: "global".into(),
        key: dasher_sdk::domain::RuleKey { rule_type: RuleType::SigningId, identifier: sid.into() },
        rule: RuleSpec {
            identifier: sid.into(),
            rule_type: RuleType::SigningId,
            policy: Policy::Allowlist,
            custom_msg: None,
            custom_url: None,
            cel_expr: None,
            notification_app_name: None,
            event_detail_button_label: None,
            comment: None,
        },
        reason: String::new(),
        machine_id: machine.into(),
        proposed_by: vec![],
        at_unix: at,
    };
    let mut tasks = Vec::new();
    for m in 0..MACHINES {
        let store = replicas[m % REPLICAS].clone();
        tasks.push(tokio::spawn(async move {
            let machine = format!("m{m:02}");
            for b in 0..BATCHES {
                let events: Vec<NewEvent> = (0..PER_BATCH)
                    .map(|n| NewEvent {
                        kind: EventKind::Execution,
                        dedupe_key: format!("{b}-{n}"),
                        decision: "BLOCK_BINARY".into(),
                        file_sha256: sha(n),
                        file_bundle_hash: String::new(),
                        occurred_at_unix: 0.0,
                        received_at_unix: day + i64::from(b),
                        body: serde_json::json!({ "file_name": format!("f{n}"), "team_id": "T" }),
                    })
                    .collect();
                assert_eq!(store.insert_events(&machine, &events).await.unwrap().stored, PER_BATCH);
                let inv = dasher_store::HostInventory {
                    machine_id: machine.clone(),
                    last_seen_unix: day + i64::from(b),
                    ..Default::default()
                };
                store.record_preflight(&inv, &HostSyncState::default()).await.unwrap();
                store.record_user_request(&new(&machine, i64::from(b)), Some("u"), "please").await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let store = &replicas[0];
    let total = u64::from(BATCHES * PER_BATCH) * MACHINES as u64;
    let mut events = 0;
    for i in 0..3 {
        let s = store.get_binary(&sha(i)).await.unwrap().expect("summary");
        assert_eq!(s.hosts, MACHINES as u64, "each machine counted once for {}", s.sha256);
        events += s.events;
        let per_day = store.binary_activity(&sha(i), day, day + dasher_store::DAY_SECS).await.unwrap();
        assert_eq!(per_day.iter().map(|b| b.count).sum::<u64>(), s.events);
    }
    assert_eq!(events, total, "every event counted in its binary");
    let days = store.activity(dasher_store::ActivitySeries::EventsPerDay, day, day + 1).await.unwrap();
    assert_eq!(days.iter().map(|b| b.count).sum::<u64>(), total, "every event counted per day");
    let syncs = store.activity(dasher_store::ActivitySeries::SyncsPerHour, day, day + 3600).await.unwrap();
    assert_eq!(syncs.iter().map(|b| b.count).sum::<u64>(), u64::from(BATCHES) * MACHINES as u64);
    let p = &store.list_proposals(None, None, 10).await.unwrap()[0];
    assert_eq!((p.requests, p.hosts.len()), (u64::from(BATCHES) * MACHINES as u64, MACHINES));
    let seqs = store.proposal_requests(p.id).await.unwrap();
    assert_eq!(seqs.len() as u64, p.requests, "every request kept once");
    drop(replicas);
    db.drop_database().await;
}
