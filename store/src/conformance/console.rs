//! Contract checks for what the console and approval flows read: host search, activity
//! counters, the audit log, binary summaries and proposal requests.

use super::review::proposal;
use super::{event, inventory};
use crate::{
    ActivityBucket, ActivitySeries, AuditVia, DAY_SECS, EventKind, HOUR_SECS, HostSearchCursor, HostSearchField,
    HostSyncState, MAX_BINARY_NAMES, MAX_JUSTIFICATION_BYTES, MAX_PROPOSAL_REQUESTS, NewAuditEntry, NewEvent,
    OTHER_DECISION, RequestSource, Store,
};

fn host(id: &str, hostname: &str, serial: &str, user: &str) -> crate::HostInventory {
    crate::HostInventory {
        hostname: hostname.into(),
        serial_number: serial.into(),
        primary_user: user.into(),
        ..inventory(id, 100)
    }
}

async fn search(store: &dyn Store, prefix: &str, limit: usize) -> Vec<(String, HostSearchField, String)> {
    store
        .search_hosts(prefix, None, limit)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.host.machine_id, m.field, m.value))
        .collect()
}

/// Host search: prefix of machine id, hostname, serial or primary user, case-insensitive,
/// ordered by matching term then machine id, each host once; keyset pages cover everything
/// once; a changed value is found by its new value only.
pub async fn host_search(store: &dyn Store) {
    store.put_host_inventory(&host("M-AAA", "Alice-MBP", "C02XYZ", "alice")).await.unwrap();
    store.put_host_inventory(&host("M-BBB", "bob-mini", "C02ABC", "bob")).await.unwrap();
    store.record_preflight(&host("m-ccc", "kiosk-01", "FVFX1", "Kiosk"), &HostSyncState::default()).await.unwrap();
    store.set_host_tags("M-TAGGED", &["lab".into()]).await.unwrap();

    use HostSearchField::*;
    assert_eq!(
        search(store, "ALI", 10).await,
        vec![("M-AAA".into(), PrimaryUser, "alice".into())],
        "case-insensitive; one match per host, at its smallest matching term"
    );
    assert_eq!(search(store, "c02a", 10).await, vec![("M-BBB".into(), SerialNumber, "C02ABC".into())]);
    assert_eq!(search(store, "kiosk-", 10).await, vec![("m-ccc".into(), Hostname, "kiosk-01".into())]);
    assert_eq!(
        search(store, "c02", 10).await.into_iter().map(|m| m.0).collect::<Vec<_>>(),
        vec!["M-BBB", "M-AAA"],
        "ordered by matching term (c02abc < c02xyz)"
    );
    let by_id: Vec<String> = search(store, "m-", 10).await.into_iter().map(|m| m.0).collect();
    assert_eq!(by_id, vec!["M-AAA", "M-BBB", "m-ccc", "M-TAGGED"], "machine ids, also of a host known by tags");
    assert!(search(store, "zzz", 10).await.is_empty());
    assert!(store.search_hosts("m-", None, 0).await.unwrap().is_empty());

    // A changed value is found by its new value only; unchanged ones still match.
    store.put_host_inventory(&host("M-AAA", "renamed-host", "C02XYZ", "alice")).await.unwrap();
    assert!(search(store, "alice-m", 10).await.is_empty(), "old hostname no longer found");
    assert_eq!(search(store, "RENAMED", 10).await, vec![("M-AAA".into(), Hostname, "renamed-host".into())]);
    assert_eq!(search(store, "alice", 10).await.len(), 1, "the primary user still matches");
    let found = store.search_hosts("renamed", None, 1).await.unwrap();
    assert_eq!(found[0].host.tags, Vec::<String>::new());
    assert_eq!(found[0].host.inventory.as_ref().map(|i| i.first_seen_unix), Some(100), "the whole host");

    // Paging: many hosts, several matching through two values; pages cover each host once.
    for i in 0..30 {
        let id = format!("P-{i:02}");
        let user = if i % 3 == 0 { format!("p-user-{i}") } else { "someone".into() };
        store.put_host_inventory(&host(&id, &format!("pc-{:02}", 29 - i), "S", &user)).await.unwrap();
    }
    let full = store.search_hosts("P", None, 1000).await.unwrap();
    let mut ids: Vec<String> = full.iter().map(|m| m.host.machine_id.clone()).collect();
    assert_eq!(ids.len(), 30, "each P- host once: {ids:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30);
    let cursors: Vec<HostSearchCursor> = full.iter().map(|m| m.cursor()).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "strictly increasing (term, machine id)");
    let mut paged = Vec::new();
    let mut after: Option<HostSearchCursor> = None;
    loop {
        let page = store.search_hosts("p", after.as_ref(), 7).await.unwrap();
        assert!(page.len() <= 7);
        let Some(last) = page.last() else { break };
        after = Some(HostSearchCursor::decode(&last.cursor().encode()).unwrap());
        paged.extend(page);
    }
    assert_eq!(paged, full, "keyset pages equal one big page");
    let everyone = store.search_hosts("", None, 1000).await.unwrap();
    assert_eq!(everyone.len(), 34, "an empty prefix lists every host once");
}

fn dated(n: u32, sha: &str, decision: &str, received: i64) -> NewEvent {
    NewEvent { dedupe_key: format!("k{n}-{received}"), ..event(n, sha, decision, received) }
}

/// Activity counters: events per UTC day and decision (duplicates not counted, odd decisions
/// under `OTHER`), preflights per UTC hour (only `record_preflight` counts), read by range.
pub async fn activity_counters(store: &dyn Store) {
    let d0 = 20_000 * DAY_SECS;
    let batch = vec![
        dated(1, "s1", "BLOCK_BINARY", d0 + 5),
        dated(2, "s1", "BLOCK_BINARY", d0 + 50),
        dated(3, "s2", "ALLOW_UNKNOWN", d0 + 500),
        dated(4, "", "weird decision", d0 + DAY_SECS + 1),
        dated(5, "s2", "BLOCK_BINARY", d0 + DAY_SECS + 2),
    ];
    store.insert_events("m1", &batch).await.unwrap();
    store.insert_events("m1", &batch[..2]).await.unwrap(); // duplicates: not counted
    store.insert_events("m2", &batch[..1]).await.unwrap();
    let b = |day: i64, series: &str, count: u64| ActivityBucket { start_unix: day, series: series.into(), count };
    let all = store.activity(ActivitySeries::EventsPerDay, d0 - DAY_SECS, d0 + 10 * DAY_SECS).await.unwrap();
    assert_eq!(
        all,
        vec![
            b(d0, "ALLOW_UNKNOWN", 1),
            b(d0, "BLOCK_BINARY", 3),
            b(d0 + DAY_SECS, "BLOCK_BINARY", 1),
            b(d0 + DAY_SECS, OTHER_DECISION, 1),
        ]
    );
    let day2 = store.activity(ActivitySeries::EventsPerDay, d0 + DAY_SECS + 7, d0 + 2 * DAY_SECS).await.unwrap();
    assert_eq!(day2.len(), 2, "from rounds down to its day, to is exclusive");
    assert!(store.activity(ActivitySeries::EventsPerDay, d0, d0).await.unwrap().is_empty(), "empty range");
    store.prune_events(None, Some(0)).await.unwrap();
    assert_eq!(
        store.activity(ActivitySeries::EventsPerDay, d0, d0 + 2 * DAY_SECS).await.unwrap(),
        all,
        "pruning keeps history"
    );

    let h0 = d0 + 3 * HOUR_SECS;
    for (id, at) in [("a", h0), ("b", h0 + 59), ("a", h0 + HOUR_SECS + 1), ("c", h0 + 5 * HOUR_SECS)] {
        store.record_preflight(&inventory(id, at), &HostSyncState::default()).await.unwrap();
    }
    store.put_host_inventory(&inventory("d", h0)).await.unwrap(); // not a preflight
    let syncs = store.activity(ActivitySeries::SyncsPerHour, h0 - 1, h0 + 2 * HOUR_SECS).await.unwrap();
    assert_eq!(syncs, vec![b(h0, "", 2), b(h0 + HOUR_SECS, "", 1)], "from rounds down to its hour");
    let later = store.activity(ActivitySeries::SyncsPerHour, h0 + 2 * HOUR_SECS, i64::MAX).await.unwrap();
    assert_eq!(later, vec![b(h0 + 5 * HOUR_SECS, "", 1)]);
    assert!(store.activity(ActivitySeries::SyncsPerHour, i64::MIN, h0).await.unwrap().is_empty());
}

fn audit(n: i64, target: &str) -> NewAuditEntry {
    NewAuditEntry {
        at_unix: 1000 + n,
        actor: format!("admin{n}"),
        role: "rules-editor".into(),
        action: "host.tags.set".into(),
        target: target.into(),
        detail: if n % 2 == 0 { serde_json::json!({ "tags": ["a", n] }) } else { serde_json::json!("plain text") },
        via: if n % 2 == 0 { AuditVia::Ui } else { AuditVia::Api },
    }
}

/// The audit log: increasing ids, newest first, exact target filter, `before_id` paging,
/// entries cut to their bounds.
pub async fn audit_log(store: &dyn Store) {
    assert!(store.list_audit(None, None, 10).await.unwrap().is_empty());
    let mut ids = Vec::new();
    for n in 0..12 {
        let target = if n % 3 == 0 { "host:M1" } else { "proposal:7" };
        ids.push(store.record_audit(&audit(n, target)).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "increasing ids: {ids:?}");
    let all = store.list_audit(None, None, 100).await.unwrap();
    assert_eq!(all.len(), 12);
    assert_eq!(all[0], audit(11, "proposal:7").with_id(ids[11]), "round-trips, newest first");
    assert_eq!(all[11].detail, serde_json::json!({ "tags": ["a", 0] }));
    let m1: Vec<u64> = store.list_audit(Some("host:M1"), None, 100).await.unwrap().iter().map(|e| e.id).collect();
    assert_eq!(m1, vec![ids[9], ids[6], ids[3], ids[0]]);
    let page = store.list_audit(Some("host:M1"), Some(ids[6]), 1).await.unwrap();
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), vec![ids[3]]);
    assert!(store.list_audit(Some("host:M"), None, 100).await.unwrap().is_empty(), "targets match exactly");
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_audit(None, before, 5).await.unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let big = NewAuditEntry { target: "t".repeat(5000), detail: serde_json::json!("x".repeat(50_000)), ..audit(1, "") };
    let id = store.record_audit(&big).await.unwrap();
    let stored = store.list_audit(None, None, 1).await.unwrap().remove(0);
    assert_eq!(stored, big.bounded().with_id(id), "stored within bounds");
}

fn exec(n: u32, sha: &str, decision: &str, received: i64, name: &str, team: &str) -> NewEvent {
    NewEvent {
        body: serde_json::json!({
            "file_name": name, "file_path": format!("/Applications/{name}.app/Contents/MacOS"),
            "team_id": team, "signing_id": format!("{team}:com.x.{name}"),
            "signing_chain": [{ "sha256": format!("cert-{team}"), "cn": format!("Developer ID {team}") }],
        }),
        ..dated(n, sha, decision, received)
    }
}

/// Binary summaries: first/last seen, event and distinct host counts (across batches and
/// machines, duplicates skipped), bounded names, latest signer, decisions per day, listing by
/// recency with keyset pages.
pub async fn binary_summaries(store: &dyn Store) {
    let d0 = 19_000 * DAY_SECS;
    let sha = "a".repeat(64);
    assert_eq!(store.get_binary(&sha).await.unwrap(), None);
    let first = vec![
        exec(1, &sha, "BLOCK_BINARY", d0 + 10, "Tool", "TEAM1"),
        exec(2, &sha, "BLOCK_BINARY", d0 + 20, "Tool", "TEAM1"),
        exec(3, &sha, "ALLOW_BINARY", d0 + 5, "ToolCopy", "TEAM1"),
    ];
    store.insert_events("m1", &first).await.unwrap();
    store.insert_events("m1", &first).await.unwrap(); // duplicates change nothing
    store.insert_events("m1", &[exec(4, &sha, "BLOCK_BINARY", d0 + DAY_SECS, "Tool", "TEAM2")]).await.unwrap();
    store.insert_events("m2", &[exec(5, &sha, "BLOCK_BINARY", d0 + DAY_SECS + 9, "Tool", "TEAM2")]).await.unwrap();
    let s = store.get_binary(&sha).await.unwrap().expect("summary kept");
    assert_eq!((s.sha256.as_str(), s.first_seen_unix, s.last_seen_unix), (sha.as_str(), d0 + 5, d0 + DAY_SECS + 9));
    assert_eq!((s.events, s.hosts), (5, 2), "distinct hosts across batches");
    let names: Vec<&str> = s.names.iter().map(|n| n.file_name.as_str()).collect();
    assert_eq!(names, vec!["Tool", "ToolCopy"]);
    assert_eq!(s.names[0].file_path, "/Applications/Tool.app/Contents/MacOS");
    assert!(!s.names_truncated);
    let signer = s.signer.expect("signer kept");
    assert_eq!((signer.team_id.as_str(), signer.signing_id.as_str()), ("TEAM2", "TEAM2:com.x.Tool"), "latest");
    assert_eq!(signer.chain[0].cn, "Developer ID TEAM2");

    let b = |day: i64, series: &str, count: u64| ActivityBucket { start_unix: day, series: series.into(), count };
    assert_eq!(
        store.binary_activity(&sha, d0, d0 + 7 * DAY_SECS).await.unwrap(),
        vec![b(d0, "ALLOW_BINARY", 1), b(d0, "BLOCK_BINARY", 2), b(d0 + DAY_SECS, "BLOCK_BINARY", 2)]
    );
    assert_eq!(store.binary_activity(&sha, d0 + DAY_SECS, d0 + 2 * DAY_SECS).await.unwrap().len(), 1);
    assert!(store.binary_activity("other", d0, d0 + 7 * DAY_SECS).await.unwrap().is_empty());

    // Names are bounded; further ones only set the flag.
    let many: Vec<NewEvent> = (0..MAX_BINARY_NAMES as u32 + 5)
        .map(|i| exec(100 + i, &sha, "BLOCK_BINARY", d0 + DAY_SECS + 9, &format!("n{i}"), "TEAM2"))
        .collect();
    store.insert_events("m3", &many).await.unwrap();
    let s = store.get_binary(&sha).await.unwrap().unwrap();
    assert_eq!(s.names.len(), MAX_BINARY_NAMES);
    assert!(s.names_truncated);
    assert_eq!(s.hosts, 3);

    // File-access events name their process; events without a hash make no summary.
    let faa = NewEvent {
        kind: EventKind::FileAccess,
        body: serde_json::json!({ "process_chain": [{ "file_path": "/usr/local/bin/agent", "team_id": "T3" }] }),
        ..dated(300, "b".repeat(64).as_str(), "DENIED", d0 + 3 * DAY_SECS)
    };
    store.insert_events("m1", &[faa, dated(301, "", "BLOCK_BINARY", d0)]).await.unwrap();
    let f = store.get_binary(&"b".repeat(64)).await.unwrap().unwrap();
    assert_eq!((f.names[0].file_name.as_str(), f.signer.unwrap().team_id.as_str()), ("agent", "T3"));
    assert_eq!(store.get_binary("").await.unwrap(), None);

    // Listing: most recently seen first, keyset pages.
    for i in 0..6u32 {
        let s = format!("{i:064}");
        store
            .insert_events("m9", &[exec(400 + i, &s, "ALLOW_BINARY", d0 + 4 * DAY_SECS + i64::from(i % 3), "x", "")])
            .await
            .unwrap();
    }
    let all = store.list_binaries(None, 100).await.unwrap();
    assert_eq!(all.len(), 8);
    assert!(all.windows(2).all(|w| (w[0].last_seen_unix, &w[0].sha256) > (w[1].last_seen_unix, &w[1].sha256)));
    assert_eq!(all[7].sha256, sha, "least recently seen last");
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_binaries(before.as_ref(), 3).await.unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.cursor());
        paged.extend(page);
    }
    assert_eq!(paged, all);
    store.prune_events(None, Some(0)).await.unwrap();
    assert_eq!(store.get_binary(&sha).await.unwrap().unwrap().events, 5 + many.len() as u64, "history kept");
}

/// Proposal requests: triage occurrences and user requests are kept in order (the first
/// `MAX_PROPOSAL_REQUESTS`, the rest counted), a user request creates or raises a proposal,
/// every distinct requesting host is listed, justifications are cut to their bound.
pub async fn proposal_requests(store: &dyn Store) {
    let sid = "EQHXZ8M8AV:com.vendor.app";
    let (p, created) = store.record_proposal(&proposal("global", sid, "m1", 10)).await.unwrap();
    assert!(created);
    assert_eq!(p.requests, 1);
    let long = "é".repeat(MAX_JUSTIFICATION_BYTES);
    let (raised, created) =
        store.record_user_request(&proposal("global", sid, "m2", 20), Some("alice"), &long).await.unwrap();
    assert!(!created, "a user request raises the triage proposal");
    assert_eq!((raised.id, raised.count, raised.requests), (p.id, 2, 2));
    assert_eq!(raised.hosts, vec!["m1".to_string(), "m2".to_string()]);
    let reqs = store.proposal_requests(p.id).await.unwrap();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        (reqs[0].source, reqs[0].machine_id.as_str(), reqs[0].user.as_deref()),
        (RequestSource::Triage, "m1", None)
    );
    assert_eq!(reqs[0].justification, "seen on m1", "triage's reason");
    assert_eq!((reqs[1].source, reqs[1].user.as_deref(), reqs[1].at_unix), (RequestSource::User, Some("alice"), 20));
    assert_eq!(reqs[1].justification.len(), MAX_JUSTIFICATION_BYTES, "cut at a character boundary");

    // A user request for a rule nobody proposed creates a pending proposal.
    let (own, created) =
        store.record_user_request(&proposal("host:m5", "T:com.y", "m5", 30), None, "I need it").await.unwrap();
    assert!(created);
    assert_eq!(
        (own.status, own.requests, own.hosts.clone()),
        (crate::ProposalStatus::Pending, 1, vec!["m5".to_string()])
    );
    assert_eq!(store.proposal_requests(own.id).await.unwrap()[0].justification, "I need it");

    // Many requests from many hosts: every distinct host listed, the first requests kept.
    let extra = MAX_PROPOSAL_REQUESTS as u64 + 10;
    for i in 0..extra {
        let machine = format!("h{}", i % 150);
        store.record_user_request(&proposal("global", sid, &machine, 100 + i as i64), Some("u"), "j").await.unwrap();
    }
    let p = store.get_proposal(p.id).await.unwrap().unwrap();
    assert_eq!((p.count, p.requests), (2 + extra, 2 + extra));
    assert_eq!(p.hosts.len(), 152, "all distinct hosts");
    let reqs = store.proposal_requests(p.id).await.unwrap();
    assert_eq!(reqs.len(), MAX_PROPOSAL_REQUESTS, "bounded");
    assert!(reqs.windows(2).all(|w| w[0].at_unix <= w[1].at_unix), "oldest first");
    assert_eq!(reqs[2].machine_id, "h0");
    assert!(store.proposal_requests(9999).await.unwrap().is_empty());
}
