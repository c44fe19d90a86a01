//! A policy that demands a CLEAN or CLEAN_ALL sync gets it once per change of the demand, not
//! at every sync (issue 11 item 10: on NPS ≥ 2026.4 every clean sync also wipes the synced
//! settings). Config files cannot demand one (`Config::validate`); plugins can, so the sync
//! runs here against a real store with a policy engine whose demand the test sets, standing
//! in for a plugin at the `PolicyEngine` seam.

use async_trait::async_trait;
use dasher_sdk::domain::HostFacts;
use dasher_sdk::names::MachineId;
use dasher_sdk::wire::{PostflightRequest, PreflightRequest, RuleDownloadRequest, SyncType};
use dasher_server::config::Config;
use dasher_server::policy::{ConfigPolicy, Configured, PolicyEngine, PolicyRejected, Selection};
use dasher_server::sync::SyncService;
use dasher_server::sync::cursor::CursorSigner;
use dasher_store::StoreSpec;
use std::sync::{Arc, Mutex};

/// The config policy, plus a `sync_type` demand set by the test (as a plugin would return it).
struct Demanding {
    config: ConfigPolicy,
    sync_type: Mutex<Option<SyncType>>,
}

#[async_trait]
impl PolicyEngine for Demanding {
    async fn configure(&self, host: &HostFacts) -> Result<Configured, PolicyRejected> {
        let mut c = self.config.configure(host).await?;
        c.decision.sync_type = *self.sync_type.lock().unwrap();
        Ok(c)
    }
    async fn select_rule_sets(&self, host: &HostFacts) -> Result<Selection, PolicyRejected> {
        self.config.select_rule_sets(host).await
    }
}

const ID: &str = "m1";

fn id() -> MachineId {
    MachineId::parse(ID, 256).unwrap()
}

fn preflight() -> PreflightRequest {
    PreflightRequest { santa_version: "2026.7.1".into(), machine_id: ID.into(), ..Default::default() }
}

/// Preflight, and unless `complete` is false the download and postflight; returns the
/// sync type answered.
async fn sync(service: &SyncService, complete: bool) -> SyncType {
    let resp = service.preflight(&id(), preflight()).await.unwrap();
    let sync_type = resp.sync_type_value().expect("a 2026.7 client is sent sync_type");
    if complete {
        let mut cursor = String::new();
        loop {
            let page =
                service.rule_download(&id(), RuleDownloadRequest { cursor, ..Default::default() }).await.unwrap();
            match page.cursor {
                Some(c) => cursor = c,
                None => break,
            }
        }
        service
            .postflight(&id(), PostflightRequest { sync_type: sync_type as i32, ..Default::default() })
            .await
            .unwrap();
    }
    sync_type
}

#[tokio::test]
async fn a_policy_clean_demand_applies_once_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = dasher_store::open(&StoreSpec::Redb(dir.path().join("db.redb"))).unwrap();
    let config = Config::for_tests(dir.path());
    let policy = Arc::new(Demanding { config: ConfigPolicy::new(config.clone()), sync_type: Mutex::new(None) });
    let service = SyncService {
        store: store.clone(),
        triage: dasher_server::triage::Triager::start(store.clone(), policy.clone()),
        policy: policy.clone(),
        config: dasher_server::config::LiveConfig::new(config),
        cursors: CursorSigner::new(&[7; 32]).unwrap(),
        rules_owners: Default::default(),
        deferred: Default::default(),
    };
    let demand = |t: Option<SyncType>| *policy.sync_type.lock().unwrap() = t;

    assert_eq!(sync(&service, true).await, SyncType::Clean, "first sync");
    assert_eq!(sync(&service, true).await, SyncType::Normal);

    demand(Some(SyncType::CleanAll));
    assert_eq!(sync(&service, true).await, SyncType::CleanAll, "the new demand applies");
    for _ in 0..3 {
        assert_eq!(sync(&service, true).await, SyncType::Normal, "the same demand is not applied again");
    }

    // A demand whose sync never completed is still owed.
    demand(Some(SyncType::Clean));
    assert_eq!(sync(&service, false).await, SyncType::Clean, "a changed demand applies");
    assert_eq!(sync(&service, true).await, SyncType::Clean, "not completed, so asked again");
    assert_eq!(sync(&service, true).await, SyncType::Normal);

    // Dropping the demand and making it again applies it again.
    demand(None);
    assert_eq!(sync(&service, true).await, SyncType::Normal);
    demand(Some(SyncType::Clean));
    assert_eq!(sync(&service, true).await, SyncType::Clean);
    assert_eq!(sync(&service, true).await, SyncType::Normal);
    let host = store.get_host(ID).await.unwrap().unwrap();
    assert_eq!(host.sync.policy_clean_done, Some(SyncType::Clean), "what was applied is in the sync state");
}
