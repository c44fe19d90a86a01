//! The parts of a run a [`Scenario`] adds: admin tags before the load, and the report per
//! group after it (client mode from each host's synced settings, rule sets from the server's
//! `GET /api/v1/hosts/{id}/effective-rules`).

use crate::runner::Fleet;
use crate::scenario::Scenario;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Sets each host's group tags with `PUT /api/v1/hosts/{id}/tags` (before its first sync, so
/// the first preflight already sees them). Needs the admin token when any group has tags.
pub async fn apply_tags(
    fleet: &Fleet,
    scenario: &Scenario,
    admin: &str,
    token: Option<&str>,
    concurrency: usize,
) -> anyhow::Result<()> {
    if scenario.groups.iter().all(|g| g.tags.is_empty()) {
        return Ok(());
    }
    let Some(token) = token else {
        anyhow::bail!("the scenario sets tags, which needs the admin API: give --admin-token (or DASHER_ADMIN_TOKEN)");
    };
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::new();
    for client in &fleet.clients {
        let Some(tags) = client.group.map(|g| scenario.groups[g].tags.clone()).filter(|t| !t.is_empty()) else {
            continue;
        };
        let (ctx, sem) = (fleet.ctx.clone(), sem.clone());
        let url = format!("{}/api/v1/hosts/{}/tags", admin.trim_end_matches('/'), client.host.machine_id);
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            match ctx.transport.send_json(http::Method::PUT, &url, &token, &json!({ "tags": tags })).await {
                Ok((200, _)) => Ok(()),
                Ok((status, body)) => Err(format!("{url}: HTTP {status}: {}", String::from_utf8_lossy(&body))),
                Err(e) => Err(format!("{url}: {e}")),
            }
        }));
    }
    for t in tasks {
        t.await?.map_err(|e| anyhow::anyhow!("setting scenario tags: {e}"))?;
    }
    Ok(())
}

/// Per group: hosts, how many ended in each client mode and with each rule-set list (joined
/// with `,`), executions blocked, hosts whose last sync failed. Rule sets need the admin
/// token (`"rule_sets": null` without it).
pub async fn group_report(
    fleet: &Fleet,
    scenario: &Scenario,
    admin: &str,
    token: Option<&str>,
    concurrency: usize,
) -> Value {
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::new();
    for client in &fleet.clients {
        let (client, ctx, sem) = (client.clone(), fleet.ctx.clone(), sem.clone());
        let url = format!("{}/api/v1/hosts/{}/effective-rules", admin.trim_end_matches('/'), client.host.machine_id);
        let token = token.map(str::to_owned);
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await;
            let sets = match token {
                None => None,
                Some(token) => Some(match ctx.transport.get_json(&url, &token).await {
                    Ok(v) => v["rule_sets"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
                        .unwrap_or_default(),
                    Err(e) => format!("(error: {e})"),
                }),
            };
            let st = client.state.lock().expect("client state lock");
            (client.group, st.settings.client_mode.to_string(), sets, st.blocked_executions, st.last_sync_ok)
        }));
    }
    #[derive(Default)]
    struct Tally {
        hosts: u64,
        modes: BTreeMap<String, u64>,
        sets: BTreeMap<String, u64>,
        blocked: u64,
        failed: u64,
    }
    let mut tallies: Vec<Tally> = scenario.groups.iter().map(|_| Tally::default()).collect();
    for t in tasks {
        let Ok((Some(g), mode, sets, blocked, last_ok)) = t.await else { continue };
        let tally = &mut tallies[g];
        tally.hosts += 1;
        *tally.modes.entry(mode).or_default() += 1;
        if let Some(sets) = sets {
            *tally.sets.entry(sets).or_default() += 1;
        }
        tally.blocked += blocked;
        tally.failed += u64::from(last_ok == Some(false));
    }
    let mut out = serde_json::Map::new();
    for (g, t) in scenario.groups.iter().zip(tallies) {
        out.insert(
            g.name.clone(),
            json!({
                "hosts": t.hosts,
                "client_mode": t.modes,
                "rule_sets": if token.is_some() { json!(t.sets) } else { Value::Null },
                "blocked_executions": t.blocked,
                "last_sync_failed": t.failed,
            }),
        );
    }
    Value::Object(out)
}

/// The group report as text, one group per block.
pub fn human_groups(groups: &Value) -> String {
    let mut out = String::new();
    let Some(groups) = groups.as_object() else { return out };
    for (name, g) in groups {
        out.push_str(&format!("group {name}: {} hosts, {} blocked executions", g["hosts"], g["blocked_executions"]));
        if g["last_sync_failed"].as_u64().unwrap_or(0) > 0 {
            out.push_str(&format!(", {} last syncs failed", g["last_sync_failed"]));
        }
        out.push('\n');
        let list = |v: &Value| {
            v.as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, n)| format!("{} × {n}", if k.is_empty() { "(none)" } else { k }))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_else(|| "unknown (no --admin-token)".to_owned())
        };
        out.push_str(&format!("  client mode: {}\n", list(&g["client_mode"])));
        out.push_str(&format!("  rule sets:   {}\n", list(&g["rule_sets"])));
    }
    out
}
