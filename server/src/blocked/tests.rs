use super::*;
use dasher_sdk::domain::{Rule, host_rule_set};
use dasher_store::{
    HostInventory, HostSyncState, NewEvent, ProposalScope, ProposalStatus, RequestSource, RuleAck, RuleChange,
};
use std::sync::Arc;

const SHA: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const OTHER: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("redb:{}", dir.path().join("db").display()).parse().unwrap();
    (dir, dasher_store::open(&spec).unwrap())
}

fn mid(s: &str) -> MachineId {
    MachineId::parse(s, 256).unwrap()
}

/// A host that acknowledged `host:<id>` then `global`.
async fn host(s: &dyn Store, id: &str) {
    s.put_host_inventory(&HostInventory {
        machine_id: id.into(),
        hostname: format!("{id}.local"),
        ..Default::default()
    })
    .await
    .unwrap();
    let acked = RuleAck { version: 0, rule_sets: vec![host_rule_set(id), "global".into()], ..Default::default() };
    s.put_sync_state(id, &HostSyncState { acked: Some(acked), ..Default::default() }).await.unwrap();
}

async fn event(s: &dyn Store, id: &str, sha: &str, decision: Decision, at: f64) {
    let e = wire::Event {
        file_sha256: sha.into(),
        file_name: "Tool".into(),
        file_path: "/Applications/Tool.app/Contents/MacOS".into(),
        executing_user: "alice".into(),
        execution_time: at,
        decision: decision as i32,
        team_id: "EQHXZ8M8AV".into(),
        signing_id: "EQHXZ8M8AV:com.example.tool".into(),
        ..Default::default()
    };
    let new = NewEvent {
        kind: EventKind::Execution,
        dedupe_key: format!("{sha}|{at}|{decision}"),
        decision: decision.to_string(),
        file_sha256: sha.into(),
        file_bundle_hash: String::new(),
        occurred_at_unix: at,
        received_at_unix: at as i64,
        body: serde_json::to_value(&e).unwrap(),
    };
    s.insert_events(id, &[new]).await.unwrap();
}

fn rule(rule_type: RuleType, identifier: &str, policy: Policy, msg: Option<&str>) -> Rule {
    Rule {
        identifier: identifier.into(),
        rule_type,
        policy,
        custom_msg: msg.map(str::to_owned),
        custom_url: None,
        cel_expr: None,
        notification_app_name: None,
        event_detail_button_label: None,
        comment: None,
    }
}

async fn put(s: &dyn Store, set: &str, r: Rule) {
    s.commit_rules(&[RuleChange { rule_set: set.into(), key: r.key(), rule: Some(r) }]).await.unwrap();
}

#[tokio::test]
async fn shows_the_newest_block_of_that_binary_on_that_machine_with_its_rules_message() {
    let (_d, store) = store();
    let s = store.as_ref();
    host(s, "m1").await;
    host(s, "m2").await;
    event(s, "m1", SHA, Decision::AllowUnknown, 10.0).await;
    event(s, "m1", SHA, Decision::BlockTeamId, 20.0).await;
    event(s, "m1", SHA, Decision::BlockBinary, 30.0).await;
    event(s, "m1", OTHER, Decision::BlockBinary, 40.0).await;
    event(s, "m2", OTHER, Decision::BlockBinary, 50.0).await;
    // The global set says one thing; the host's own set (first in precedence) wins.
    put(s, "global", rule(RuleType::Binary, SHA, Policy::Blocklist, Some("global message"))).await;
    put(s, "host:m1", rule(RuleType::Binary, SHA, Policy::Blocklist, Some("Ask IT: it@example.com"))).await;

    let b = lookup(s, &mid("m1"), SHA).await.unwrap().expect("m1 reported a block of SHA");
    assert_eq!((b.decision, b.times, b.last_blocked_unix), (Decision::BlockBinary, 2, 30.0), "allows do not count");
    assert_eq!((b.file_name.as_str(), b.executing_user.as_str()), ("Tool", "alice"));
    assert_eq!(
        b.why,
        Why::Rule { rule_type: RuleType::Binary, custom_msg: Some("Ask IT: it@example.com".into()), custom_url: None }
    );

    // Another machine's block of the same binary is not shown for a machine without one.
    assert_eq!(lookup(s, &mid("m2"), SHA).await.unwrap(), None);
    // An unknown machine, and a known one without that binary: nothing.
    assert_eq!(lookup(s, &mid("nobody"), SHA).await.unwrap(), None);
    host(s, "m3").await;
    assert_eq!(lookup(s, &mid("m3"), SHA).await.unwrap(), None);
}

#[tokio::test]
async fn explains_blocks_without_a_current_blocking_rule() {
    let (_d, store) = store();
    let s = store.as_ref();
    host(s, "m1").await;
    event(s, "m1", SHA, Decision::BlockUnknown, 1.0).await;
    assert_eq!(lookup(s, &mid("m1"), SHA).await.unwrap().unwrap().why, Why::Unknown);

    event(s, "m1", OTHER, Decision::BlockSigningId, 1.0).await;
    let why = || async { lookup(s, &mid("m1"), OTHER).await.unwrap().unwrap().why };
    assert_eq!(why().await, Why::RuleNotFound { rule_type: RuleType::SigningId });
    put(s, "global", rule(RuleType::SigningId, "EQHXZ8M8AV:com.example.tool", Policy::Allowlist, None)).await;
    assert_eq!(why().await, Why::NowAllowed { rule_type: RuleType::SigningId });
    // A rule in a set the host does not hold is not its rule.
    put(s, "finance", rule(RuleType::TeamId, "EQHXZ8M8AV", Policy::Blocklist, Some("x"))).await;
    event(s, "m1", SHA, Decision::BlockTeamId, 2.0).await;
    assert_eq!(
        lookup(s, &mid("m1"), SHA).await.unwrap().unwrap().why,
        Why::RuleNotFound { rule_type: RuleType::TeamId }
    );
}

#[tokio::test]
async fn a_request_raises_the_binarys_pending_proposal_and_never_a_rule() {
    let (_d, store) = store();
    let s = store.as_ref();
    let policy = crate::policy::ConfigPolicy::new(crate::config::Config::default());
    host(s, "m1").await;
    event(s, "m1", SHA, Decision::BlockBinary, 1.0).await;
    let head = s.head_version().await.unwrap();
    let req = |user: &str| ApprovalRequest {
        machine_id: mid("m1"),
        sha256: SHA.into(),
        username: Some(user.into()),
        justification: "I need it for the quarterly report".into(),
    };
    let RequestOutcome::Recorded { proposal: p, created: true } =
        request_approval(s, &policy, &req("alice"), 100).await.unwrap()
    else {
        panic!("first request creates a proposal")
    };
    // One proposal per binary (the admin picks the scope when approving), so requests add up.
    assert_eq!((p.status, p.scope, p.rule_set.as_str()), (ProposalStatus::Pending, ProposalScope::Global, "global"));
    assert_eq!(
        (p.rule.rule_type, p.rule.policy, p.rule.identifier.as_str()),
        (RuleType::Binary, Policy::Allowlist, SHA)
    );
    assert_eq!(p.hosts, vec!["m1".to_owned()]);

    let RequestOutcome::Recorded { proposal: again, created: false } =
        request_approval(s, &policy, &req("bob"), 200).await.unwrap()
    else {
        panic!("a repeat raises the same proposal")
    };
    assert_eq!((again.id, again.count), (p.id, 2));
    assert_eq!(s.head_version().await.unwrap(), head, "no rule was committed");
    let requests = s.proposal_requests(p.id).await.unwrap();
    let who: Vec<_> = requests.iter().map(|r| (r.source, r.machine_id.as_str(), r.user.as_deref())).collect();
    assert_eq!(who, vec![(RequestSource::User, "m1", Some("alice")), (RequestSource::User, "m1", Some("bob"))]);
    assert_eq!(requests[0].justification, "I need it for the quarterly report");

    let unknown = ApprovalRequest { sha256: OTHER.into(), ..req("mallory") };
    assert!(matches!(request_approval(s, &policy, &unknown, 300).await.unwrap(), RequestOutcome::NothingBlocked));
    let elsewhere = ApprovalRequest { machine_id: mid("m9"), ..req("mallory") };
    assert!(matches!(request_approval(s, &policy, &elsewhere, 300).await.unwrap(), RequestOutcome::NothingBlocked));
    assert_eq!(s.list_proposals(None, None, 10).await.unwrap().len(), 1);
}

#[test]
fn inputs_are_bounded_and_checked() {
    assert_eq!(parse_sha256(&SHA.to_ascii_uppercase()).unwrap(), SHA);
    for bad in ["", "abc", &SHA[1..], &format!("{SHA}0"), &format!("{}g", &SHA[1..])] {
        assert!(matches!(parse_sha256(bad), Err(BlockedError::Invalid { field: "sha256", .. })), "{bad}");
    }
    assert_eq!(check_justification("  needed for work \r\n thanks ").unwrap(), "needed for work \n thanks");
    for bad in ["", "  x ", &"y".repeat(MAX_JUSTIFICATION_CHARS + 1), "bell\u{7}"] {
        let err = check_justification(bad).unwrap_err();
        assert!(matches!(err, BlockedError::Invalid { field: "justification", .. }), "{bad:?}");
    }
    assert!(check_justification(&"é".repeat(MAX_JUSTIFICATION_CHARS)).is_ok(), "characters, not bytes");
    assert_eq!(clean_username(" al\u{0}ice "), Some("alice".into()));
    assert_eq!(clean_username("\u{1b}\u{7} "), None);
    assert_eq!(clean_username(&"u".repeat(1000)).unwrap().len(), MAX_USERNAME_CHARS);
}

#[test]
fn limits_are_per_machine() {
    let limits = BlockPageLimits::default();
    for _ in 0..VIEWS_PER_MACHINE_PER_MINUTE {
        limits.check_view("m1").unwrap();
    }
    let wait = limits.check_view("m1").unwrap_err();
    assert!(wait > Duration::ZERO, "{wait:?}");
    limits.check_view("m2").unwrap();
    for _ in 0..REQUEST_BURST {
        limits.check_request("m1").unwrap();
    }
    assert!(limits.check_request("m1").unwrap_err() > Duration::from_secs(60), "the hourly pace applies");
    limits.check_request("m2").unwrap();
}
