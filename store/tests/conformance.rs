//! Runs every check of `dasher_store::conformance` against every embedded engine.

use dasher_store::{Store, StoreSpec, conformance, open};
use std::sync::Arc;
use tempfile::TempDir;

fn spec(engine: &str, dir: &TempDir) -> StoreSpec {
    format!("{engine}:{}", dir.path().join("db").display()).parse().unwrap()
}

fn fresh(engine: &str) -> (TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&spec(engine, &dir)).unwrap();
    (dir, store)
}

macro_rules! engine_tests {
    ($engine:ident) => {
        mod $engine {
            use super::*;
            const ENGINE: &str = stringify!($engine);

            macro_rules! check {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let (_dir, store) = fresh(ENGINE);
                        conformance::$name(&*store).await;
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
                let (_dir, store) = fresh(ENGINE);
                conformance::concurrent_commits(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lease_race() {
                let (_dir, store) = fresh(ENGINE);
                conformance::lease_race(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_events() {
                let (_dir, store) = fresh(ENGINE);
                conformance::concurrent_events(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn kv_put_if_absent() {
                let (_dir, store) = fresh(ENGINE);
                conformance::kv_put_if_absent(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn kv_atomic() {
                let (_dir, store) = fresh(ENGINE);
                conformance::kv_atomic(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reopen() {
                let dir = tempfile::tempdir().unwrap();
                let spec = spec(ENGINE, &dir);
                conformance::reopen(|| {
                    let spec = spec.clone();
                    async move { open(&spec).unwrap() }
                })
                .await;
            }
        }
    };
}

engine_tests!(redb);
engine_tests!(sled);

#[test]
fn open_names_a_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let spec: StoreSpec = format!("redb:{}", dir.path().join("missing/db.redb").display()).parse().unwrap();
    let err = open(&spec).err().expect("missing parent directory is an error").to_string();
    assert!(err.contains("missing"), "{err}");
}
