//! Store operations per engine (redb, sled) on real databases in a temp dir, through the
//! [`Store`] trait the server uses (so the group-committing writer is included).
//! `cargo bench -p dasher-store`.

mod support;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dasher_sdk::domain::RuleCounts;
use dasher_sim::events::Catalog;
use dasher_sim::fixtures;
use dasher_store::{HostInventory, NewEvent, RuleChange, Store, StoreSpec};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::runtime::Runtime;

const GLOBAL: &str = "global";

fn changes(from: u64, n: u64, salt: u64) -> Vec<RuleChange> {
    fixtures::rule_specs(from, n, salt)
        .iter()
        .map(|s| {
            let (key, rule) = s.validate().expect("valid fixture");
            RuleChange { rule_set: GLOBAL.into(), key, rule }
        })
        .collect()
}

fn inventory(i: u64) -> HostInventory {
    let host = fixtures::host(1, i % 1000);
    HostInventory {
        machine_id: host.machine_id.clone(),
        serial_number: host.device.serial.clone(),
        hostname: host.hostname.clone(),
        os_version: host.device.os_version.clone(),
        os_build: host.device.os_build.clone(),
        model_identifier: host.device.model.clone(),
        santa_version: host.santa_version.clone(),
        primary_user: host.primary_user.clone(),
        primary_user_groups: host.groups.clone(),
        rule_counts: RuleCounts { binary: 300, signingid: 500, teamid: 100, certificate: 100, ..Default::default() },
        rules_hash: Some("4b3e1c0a5d7f9e8b".into()),
        last_seen_unix: 1_790_000_000 + i as i64,
        ..Default::default()
    }
}

fn engine(c: &mut Criterion, rt: &Runtime, name: &str, spec: impl Fn(&std::path::Path) -> StoreSpec) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> = dasher_store::open(&spec(dir.path())).expect("store opens");
    // A realistic base: 5,000 global rules, so scans and commits work on a populated tree.
    rt.block_on(store.commit_rules(&changes(0, 5000, 1))).expect("seed rules");
    let head = rt.block_on(store.head_version()).expect("head");

    let mut g = c.benchmark_group(format!("store/{name}"));
    let n = AtomicU64::new(0);
    g.bench_function("put_host_inventory", |b| {
        b.to_async(rt).iter_batched(
            || inventory(n.fetch_add(1, Relaxed)),
            |inv| {
                let store = store.clone();
                async move { store.put_host_inventory(&inv).await.expect("put") }
            },
            BatchSize::SmallInput,
        )
    });

    let batch = AtomicU64::new(0);
    g.throughput(Throughput::Elements(100));
    g.bench_function("commit_rules_100", |b| {
        b.to_async(rt).iter_batched(
            || changes(batch.fetch_add(1, Relaxed) * 100, 100, 2),
            |ch| {
                let store = store.clone();
                async move { store.commit_rules(&ch).await.expect("commit") }
            },
            BatchSize::SmallInput,
        )
    });

    g.throughput(Throughput::Elements(1000));
    g.bench_function("scan_rules_page_1000", |b| {
        b.to_async(rt).iter(|| {
            let store = store.clone();
            async move {
                let page = store.scan_rules(GLOBAL, head, None, 1000).await.expect("scan");
                assert_eq!(page.len(), 1000);
                page
            }
        })
    });

    let catalog = Catalog::new(1);
    let events = AtomicU64::new(0);
    g.throughput(Throughput::Elements(50));
    g.bench_function("insert_events_50", |b| {
        b.to_async(rt).iter_batched(
            || {
                let i = events.fetch_add(1, Relaxed);
                let batch: Vec<NewEvent> =
                    fixtures::events(&catalog, 1, i, 50).iter().map(|e| support::new_event(e, 1_790_000_000)).collect();
                (format!("host-{}", i % 1000), batch)
            },
            |(machine, batch)| {
                let store = store.clone();
                async move {
                    let out = store.insert_events(&machine, &batch).await.expect("insert");
                    black_box(out)
                }
            },
            BatchSize::SmallInput,
        )
    });

    g.throughput(Throughput::Elements(1));
    let value = vec![7u8; 256];
    rt.block_on(store.kv_put("event-triage", "prevalence:abc", &value)).expect("kv put");
    g.bench_function("kv_get", |b| {
        b.to_async(rt).iter(|| {
            let store = store.clone();
            async move { store.kv_get("event-triage", "prevalence:abc").await.expect("kv get") }
        })
    });
    let k = AtomicU64::new(0);
    g.bench_function("kv_put", |b| {
        b.to_async(rt).iter_batched(
            || format!("prevalence:{}", k.fetch_add(1, Relaxed) % 10_000),
            |key| {
                let (store, value) = (store.clone(), value.clone());
                async move { store.kv_put("event-triage", &key, &value).await.expect("kv put") }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
    drop(store);
}

fn engines(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    engine(c, &rt, "redb", |d| StoreSpec::Redb(d.join("bench.redb")));
    engine(c, &rt, "sled", |d| StoreSpec::Sled(d.join("sled")));
}

criterion_group!(benches, engines);
criterion_main!(benches);
