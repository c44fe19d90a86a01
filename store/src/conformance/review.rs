//! Contract checks for what the review side of triage stores: per-event triage records and
//! de-duplicated rule proposals with their decisions.

use super::{event, key};
use crate::{
    DecideOutcome, EventFilter, EventTriage, NewEvent, NewProposal, PluginRef, ProposalDecision, ProposalScope,
    ProposalStatus, RuleChange, Store,
};
use dasher_sdk::domain::RuleSpec;
use dasher_sdk::plugin::{Action, Severity};
use dasher_sdk::wire::{Policy, RuleType};

pub(super) fn triage(action: Option<Action>, labels: &[&str]) -> EventTriage {
    EventTriage {
        action,
        labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        severity: Some(Severity::Medium),
        made_by: vec![PluginRef { plugin: "event-triage".into(), generation: "gen-1".into() }],
        triaged_at_unix: 2000,
        shadow: vec![],
    }
}

/// `insert_events` reports each event's id; triage joins its event in queries; dropped
/// events are stored, hidden only when asked (`dropped: Some(false)`); labels are indexed and
/// re-indexed by a re-triage; pruning removes triage with its event; triage of a pruned
/// event is skipped.
pub async fn event_triage(store: &dyn Store) {
    let evs: Vec<NewEvent> = (0..6).map(|n| event(n, "sha-t", "BLOCK_BINARY", 100 + i64::from(n))).collect();
    let out = store.insert_events("m1", &evs).await.unwrap();
    let ids: Vec<u64> = out.ids.iter().map(|i| i.expect("new events get ids")).collect();
    assert_eq!(ids.len(), 6);
    let again = store.insert_events("m1", &[evs[0].clone(), event(9, "sha-t", "BLOCK_BINARY", 109)]).await.unwrap();
    assert_eq!(again.ids[0], None, "a duplicate has no new id");
    assert!(again.ids[1].is_some_and(|id| id > ids[5]));
    let all_ids = |rs: Vec<crate::EventRecord>| rs.into_iter().map(|r| r.id).collect::<Vec<u64>>();
    let q = |f: EventFilter| async move { store.query_events(&EventFilter { limit: 100, ..f }).await.unwrap() };

    let recorded = store
        .put_event_triage(&[
            (ids[0], triage(Some(Action::Drop), &[])),
            (ids[1], triage(Some(Action::Drop), &["noise"])),
            (ids[2], triage(Some(Action::Keep), &["team:A", "approved"])),
            (ids[3], triage(None, &["team:A"])),
            (999_999, triage(Some(Action::Keep), &["team:A"])),
        ])
        .await
        .unwrap();
    assert_eq!(recorded, 4, "triage of an unknown event is skipped");
    let everything = q(EventFilter::default()).await;
    assert_eq!(everything.len(), 7, "dropped events are still stored and listed without a filter");
    let first = everything.iter().find(|r| r.id == ids[2]).unwrap();
    assert_eq!(first.triage, Some(triage(Some(Action::Keep), &["team:A", "approved"])), "triage round-trips");
    assert_eq!(everything.iter().find(|r| r.id == ids[4]).unwrap().triage, None, "untriaged event");

    let mut visible = ids.clone();
    visible.retain(|id| *id != ids[0] && *id != ids[1]);
    visible.push(again.ids[1].unwrap());
    visible.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(all_ids(q(EventFilter { dropped: Some(false), ..Default::default() }).await), visible);
    assert_eq!(
        all_ids(q(EventFilter { dropped: Some(true), ..Default::default() }).await),
        vec![ids[1], ids[0]],
        "only dropped"
    );
    let by_machine = EventFilter { machine_id: Some("m1".into()), dropped: Some(false), ..Default::default() };
    assert_eq!(all_ids(q(by_machine).await), visible, "dropped filter combines with an index walk");
    assert_eq!(
        all_ids(q(EventFilter { label: Some("team:A".into()), ..Default::default() }).await),
        vec![ids[3], ids[2]]
    );
    let label_paged = EventFilter { label: Some("team:A".into()), before_id: Some(ids[3]), ..Default::default() };
    assert_eq!(all_ids(q(label_paged).await), vec![ids[2]], "label walk pages with before_id");
    let noise_hidden = EventFilter { label: Some("noise".into()), dropped: Some(false), ..Default::default() };
    assert!(q(noise_hidden).await.is_empty());
    assert!(q(EventFilter { label: Some("absent".into()), ..Default::default() }).await.is_empty());

    // A re-triage replaces the record and its label index entries.
    store.put_event_triage(&[(ids[2], triage(Some(Action::Drop), &["team:B"]))]).await.unwrap();
    assert_eq!(all_ids(q(EventFilter { label: Some("team:A".into()), ..Default::default() }).await), vec![ids[3]]);
    assert_eq!(all_ids(q(EventFilter { label: Some("team:B".into()), ..Default::default() }).await), vec![ids[2]]);

    // Pruning takes triage and label entries with the event.
    assert_eq!(store.prune_events(Some(104), None).await.unwrap(), 4);
    assert!(q(EventFilter { label: Some("team:A".into()), ..Default::default() }).await.is_empty());
    assert!(q(EventFilter { dropped: Some(true), ..Default::default() }).await.is_empty());
    assert_eq!(store.put_event_triage(&[(ids[0], triage(None, &["late"]))]).await.unwrap(), 0, "pruned: skipped");
    assert!(q(EventFilter { label: Some("late".into()), ..Default::default() }).await.is_empty());
}

pub(super) fn proposal(rule_set: &str, identifier: &str, machine: &str, at: i64) -> NewProposal {
    let spec = RuleSpec {
        identifier: identifier.to_owned(),
        rule_type: RuleType::SigningId,
        policy: Policy::Allowlist,
        custom_msg: None,
        custom_url: None,
        cel_expr: None,
        notification_app_name: None,
        event_detail_button_label: None,
        comment: None,
    };
    NewProposal {
        scope: if rule_set == "global" { ProposalScope::Global } else { ProposalScope::RuleSet },
        rule_set: rule_set.to_owned(),
        key: key(RuleType::SigningId, identifier),
        rule: spec,
        reason: format!("seen on {machine}"),
        machine_id: machine.to_owned(),
        proposed_by: vec![PluginRef { plugin: "event-triage".into(), generation: "gen-1".into() }],
        at_unix: at,
    }
}

/// Proposals de-duplicate by `(rule set, key)`; repeats bump the counter, last-seen and
/// hosts; listing filters by status, newest first; approval commits the rule atomically with
/// the status; a decided proposal cannot be decided again; repeats of decided ones keep their
/// status.
pub async fn proposals(store: &dyn Store) {
    let sid = "EQHXZ8M8AV:com.vendor.app";
    let (p1, created) = store.record_proposal(&proposal("global", sid, "m1", 10)).await.unwrap();
    assert!(created);
    assert_eq!((p1.status, p1.count, p1.hosts.clone()), (ProposalStatus::Pending, 1, vec!["m1".to_string()]));
    let (again, created) = store.record_proposal(&proposal("global", sid, "m2", 20)).await.unwrap();
    assert!(!created, "same (rule set, key) is a repeat, not a new proposal");
    assert_eq!(again.id, p1.id);
    assert_eq!((again.count, again.first_seen_unix, again.last_seen_unix), (2, 10, 20));
    assert_eq!(again.hosts, vec!["m1".to_string(), "m2".to_string()]);
    assert_eq!(again.reason, "seen on m2", "the latest reason");
    let (same_host, _) = store.record_proposal(&proposal("global", sid, "m1", 15)).await.unwrap();
    assert_eq!((same_host.count, same_host.hosts.len(), same_host.last_seen_unix), (3, 2, 20), "hosts are distinct");
    let (other_set, created) = store.record_proposal(&proposal("vendors", sid, "m1", 30)).await.unwrap();
    assert!(created, "another rule set is another proposal");
    let (other_key, _) = store.record_proposal(&proposal("global", "EQHXZ8M8AV:com.vendor.b", "m3", 40)).await.unwrap();

    let list = |status: Option<ProposalStatus>| async move {
        store.list_proposals(status, None, 100).await.unwrap().into_iter().map(|p| p.id).collect::<Vec<u64>>()
    };
    assert_eq!(list(None).await, vec![other_key.id, other_set.id, p1.id], "newest first");
    assert_eq!(list(Some(ProposalStatus::Pending)).await, vec![other_key.id, other_set.id, p1.id]);
    assert!(list(Some(ProposalStatus::Approved)).await.is_empty());
    let paged = store.list_proposals(None, Some(other_set.id), 1).await.unwrap();
    assert_eq!(paged.iter().map(|p| p.id).collect::<Vec<_>>(), vec![p1.id], "before_id and limit");
    assert_eq!(store.get_proposal(p1.id).await.unwrap(), Some(same_host.clone()));
    assert_eq!(store.get_proposal(999).await.unwrap(), None);

    // Approve: the rule lands in the set as a new version, atomically with the status.
    let (k, rule) = p1.rule.validate().unwrap();
    let change = RuleChange { rule_set: "global".into(), key: k, rule: rule.clone() };
    let approve = ProposalDecision::Approve { by: "alice".into(), at_unix: 50, change: Box::new(change.clone()) };
    let head = store.head_version().await.unwrap();
    let DecideOutcome::Decided(approved) = store.decide_proposal(p1.id, &approve).await.unwrap() else {
        panic!("pending proposal is decided")
    };
    assert_eq!(approved.status, ProposalStatus::Approved);
    assert_eq!((approved.decided_by.as_deref(), approved.decided_at_unix), (Some("alice"), Some(50)));
    assert_eq!(approved.applied_version, Some(head + 1));
    assert_eq!(store.get_rule("global", &change.key, head + 1).await.unwrap(), rule, "rule committed");
    let DecideOutcome::AlreadyDecided(still) = store.decide_proposal(p1.id, &approve).await.unwrap() else {
        panic!("approving twice is refused")
    };
    assert_eq!(still, approved, "unchanged");
    let reject = ProposalDecision::Reject { by: "bob".into(), at_unix: 60 };
    assert!(matches!(store.decide_proposal(p1.id, &reject).await.unwrap(), DecideOutcome::AlreadyDecided(_)));
    assert_eq!(store.decide_proposal(999, &reject).await.unwrap(), DecideOutcome::NotFound);
    assert_eq!(store.head_version().await.unwrap(), head + 1, "refused decisions commit nothing");

    assert_eq!(approved.applied_rule_set.as_deref(), Some("global"), "where it was applied");

    // An approval whose change is for another key is an error and changes nothing.
    let wrong_key = RuleChange { key: other_key.key.clone(), ..change };
    let wrong = ProposalDecision::Approve { by: "x".into(), at_unix: 1, change: Box::new(wrong_key) };
    assert!(store.decide_proposal(other_set.id, &wrong).await.is_err());
    assert_eq!(store.get_proposal(other_set.id).await.unwrap().unwrap().status, ProposalStatus::Pending);

    // Reject.
    let DecideOutcome::Decided(rejected) = store.decide_proposal(other_key.id, &reject).await.unwrap() else {
        panic!("pending proposal is rejected")
    };
    assert_eq!((rejected.status, rejected.decided_by.as_deref()), (ProposalStatus::Rejected, Some("bob")));
    assert_eq!(store.get_rule("global", &other_key.key, head + 1).await.unwrap(), None, "nothing committed");
    assert_eq!(list(Some(ProposalStatus::Pending)).await, vec![other_set.id]);
    assert_eq!(list(Some(ProposalStatus::Approved)).await, vec![p1.id]);
    assert_eq!(list(Some(ProposalStatus::Rejected)).await, vec![other_key.id]);

    // Repeats of decided proposals are counted and keep their status.
    let (rep, created) = store.record_proposal(&proposal("global", "EQHXZ8M8AV:com.vendor.b", "m4", 70)).await.unwrap();
    assert!(!created);
    assert_eq!((rep.status, rep.count, rep.last_seen_unix), (ProposalStatus::Rejected, 2, 70));
    assert_eq!(list(Some(ProposalStatus::Rejected)).await, vec![other_key.id]);
    assert_eq!(list(Some(ProposalStatus::Pending)).await, vec![other_set.id]);

    // The reviewer may apply a proposal to another rule set than the proposed one.
    let (k, rule) = other_set.rule.validate().unwrap();
    let elsewhere = RuleChange { rule_set: "host:m9".into(), key: k.clone(), rule: rule.clone() };
    let approve = ProposalDecision::Approve { by: "carol".into(), at_unix: 80, change: Box::new(elsewhere) };
    let DecideOutcome::Decided(moved) = store.decide_proposal(other_set.id, &approve).await.unwrap() else {
        panic!("pending proposal is approved into another set")
    };
    assert_eq!((moved.rule_set.as_str(), moved.applied_rule_set.as_deref()), ("vendors", Some("host:m9")));
    let v = moved.applied_version.unwrap();
    assert_eq!(store.get_rule("host:m9", &k, v).await.unwrap(), rule, "committed where the reviewer chose");
    assert_eq!(store.get_rule("vendors", &k, v).await.unwrap(), None, "not in the proposed set");
    assert_eq!(store.get_proposal(other_set.id).await.unwrap(), Some(moved), "read back as decided");
}
