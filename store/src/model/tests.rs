use super::*;

#[test]
fn sync_outcomes_read_back_as_written() {
    let all = [
        SyncOutcome::None,
        SyncOutcome::InProgress,
        SyncOutcome::Ok,
        SyncOutcome::RulesRejected { kept: 73, received: 74 },
        SyncOutcome::Incomplete,
        SyncOutcome::PolicyRejected { plugins: "a, b".into(), hook: Hook::SelectRules },
        SyncOutcome::Other("old".into()),
    ];
    for o in all {
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(serde_json::from_str::<SyncOutcome>(&json).unwrap(), o, "{json}");
    }
    assert_eq!(
        serde_json::to_string(&SyncOutcome::RulesRejected { kept: 1, received: 2 }).unwrap(),
        r#""rules_rejected: client kept 1 of 2 rules""#,
        "the stored form is the sentence older versions wrote"
    );
}

#[test]
fn sync_state_stored_before_provenance_still_decodes() {
    let old = r#"{"acked":{"version":3,"rule_sets":["host:m1","global"]},"last_outcome":"ok","plan":null}"#;
    let state: HostSyncState = serde_json::from_str(old).unwrap();
    assert_eq!(state.acked.unwrap().version, 3);
    assert_eq!(state.decided, None);
}

#[test]
fn provenance_round_trips() {
    let mut decided = DecisionProvenance { decided_unix: 7, host_rules: Some(1), ..Default::default() };
    decided.settings.insert(
        "client_mode".into(),
        AppliedSetting {
            value: "LOCKDOWN".into(),
            by: Decider { by: "staged-rollout".into(), generation: "ab12".into(), source: Some(DecisionSource::Live) },
        },
    );
    decided.chain.push(ChainPart {
        hook: Hook::Configure,
        plugin: Decider { by: "staged-rollout".into(), generation: "ab12".into(), source: Some(DecisionSource::Live) },
        fields: vec!["client_mode".into()],
    });
    decided.rule_sets_by.push(Decider::config());
    let state = HostSyncState { decided: Some(decided), ..Default::default() };
    let json = serde_json::to_string(&state).unwrap();
    assert_eq!(serde_json::from_str::<HostSyncState>(&json).unwrap(), state);
}

#[test]
fn inventory_truncation_and_policy_clean_round_trip_and_old_records_read() {
    let old = r#"{"machine_id":"m1","hostname":"h","primary_user_groups":["a"],"last_seen_unix":5}"#;
    let inv: HostInventory = serde_json::from_str(old).unwrap();
    assert!(inv.truncated.is_empty(), "records from before truncation read as not cut");
    assert!(!serde_json::to_string(&inv).unwrap().contains("truncated"), "nothing cut, nothing said");
    let cut = HostInventory { truncated: BTreeMap::from([("primary_user_groups".into(), 1000)]), ..inv };
    let json = serde_json::to_string(&cut).unwrap();
    assert!(json.contains(r#""truncated":{"primary_user_groups":1000}"#), "{json}");
    assert_eq!(serde_json::from_str::<HostInventory>(&json).unwrap(), cut);

    let state = HostSyncState {
        policy_clean_done: Some(SyncType::CleanAll),
        plan: Some(SyncPlan { policy_clean: Some(SyncType::Clean), ..Default::default() }),
        ..Default::default()
    };
    let json = serde_json::to_string(&state).unwrap();
    assert_eq!(serde_json::from_str::<HostSyncState>(&json).unwrap(), state);
}
