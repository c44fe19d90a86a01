//! The overview (`GET /ui/`): the fleet at a glance, from a snapshot that a background task
//! refreshes every `[ui] overview_refresh_secs` (a walk over the hosts in pages, off the
//! request path), so the page costs one read of memory however large the fleet.

use super::layout::{self, Nav};
use super::{Cx, Result, fmt, html};
use crate::policy::PolicyEngine;
use crate::sync::now_unix;
use dasher_store::{ActivitySeries, ProposalStatus, Store, SyncOutcome};
use http::StatusCode;
use maud::{Markup, html as m};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Most hosts one refresh walks (a larger fleet is summarised from its first hosts, and the
/// page says so).
pub const MAX_WALK_HOSTS: usize = 2_000_000;
/// Hosts per store page during the walk.
const WALK_PAGE: usize = 1000;
/// Most hosts listed by name under "stale" and "drifting".
pub const MAX_LISTED: usize = 25;
/// Pending proposals counted at most (shown as "N+").
const MAX_PENDING_COUNTED: usize = 10_000;

/// Last-sync age buckets, in order.
pub const AGE_BUCKETS: &[&str] = &["< 1 hour", "< 1 day", "< 7 days", "≥ 7 days", "never"];

/// One host listed on the overview.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedHost {
    /// Machine id.
    pub machine_id: String,
    /// Hostname.
    pub hostname: String,
    /// Last preflight (Unix seconds).
    pub last_seen_unix: i64,
    /// Why it is listed.
    pub note: String,
}

/// One plugin's health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginHealth {
    /// Name.
    pub name: String,
    /// Enforce or shadow.
    pub mode: String,
    /// Faulted calls of the active generation.
    pub faults: u64,
    /// A breaker is open or half-open.
    pub degraded: bool,
    /// Shadow decisions that differed from the applied ones.
    pub shadow_disagreements: u64,
    /// Hosts whose last shadow decision differed.
    pub shadow_hosts_differing: u64,
}

/// The fleet summary the overview shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// When it was taken (Unix seconds).
    pub taken_unix: i64,
    /// Hosts in the store.
    pub hosts_total: u64,
    /// Hosts walked (less than the total when the walk hit [`MAX_WALK_HOSTS`]).
    pub hosts_walked: u64,
    /// Hosts by Santa version (`unknown` without inventory).
    pub by_santa_version: BTreeMap<String, u64>,
    /// Hosts by reported client mode.
    pub by_client_mode: BTreeMap<String, u64>,
    /// Hosts per [`AGE_BUCKETS`] entry.
    pub by_sync_age: [u64; 5],
    /// Hosts not synced within `[ui] stale_after_days`.
    pub stale_count: u64,
    /// The first of them.
    pub stale: Vec<ListedHost>,
    /// Hosts whose last sync found their rules drifted from what the server sent, or that
    /// rejected or did not finish their last sync.
    pub drifting_count: u64,
    /// The first of them.
    pub drifting: Vec<ListedHost>,
    /// Stored events.
    pub events_total: u64,
    /// Pending proposals (at most `MAX_PENDING_COUNTED`, then `pending_more`).
    pub pending_proposals: u64,
    /// More pending proposals than counted.
    pub pending_more: bool,
    /// Plugins, when configured.
    pub plugins: Option<Vec<PluginHealth>>,
    /// Plugin files failing to load.
    pub plugin_load_errors: u64,
    /// Per UTC day of the last [`CHART_DAYS`]: (day start, blocked events, allowed events).
    pub events_per_day: Vec<(i64, u64, u64)>,
    /// Per UTC hour of the last [`CHART_HOURS`]: (hour start, syncs started).
    pub syncs_per_hour: Vec<(i64, u64)>,
}

/// Days in the events chart.
pub const CHART_DAYS: i64 = 30;
/// Hours in the syncs chart.
pub const CHART_HOURS: i64 = 48;

/// The shared latest snapshot.
#[derive(Clone, Default)]
pub struct SnapshotCell(Arc<RwLock<Option<Arc<Snapshot>>>>);

impl SnapshotCell {
    /// The latest snapshot, if one was taken.
    pub fn get(&self) -> Option<Arc<Snapshot>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, s: Snapshot) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(s));
    }
}

/// What the refresh task reads.
pub struct Sources {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The plugin host, if any.
    pub plugins: Option<Arc<dasher_policy::PluginManager>>,
    /// The policy engine (shadow disagreements per host).
    pub policy: Arc<dyn PolicyEngine>,
    /// `[ui] stale_after_days`.
    pub stale_after_days: u64,
}

/// Takes one snapshot.
pub async fn take(src: &Sources, now: i64) -> std::result::Result<Snapshot, dasher_store::StoreError> {
    let mut s = Snapshot { taken_unix: now, ..Default::default() };
    let stale_before = now - i64::try_from(src.stale_after_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
    let mut after: Option<String> = None;
    loop {
        let page = src.store.list_hosts(after.as_deref(), WALK_PAGE).await?;
        for h in &page {
            s.hosts_walked += 1;
            let inv = h.inventory.as_ref();
            let version = inv.map(|i| i.santa_version.as_str()).filter(|v| !v.is_empty()).unwrap_or("unknown");
            *s.by_santa_version.entry(version.to_owned()).or_default() += 1;
            let mode = inv.and_then(|i| i.client_mode).map(|m| format!("{m:?}")).unwrap_or_else(|| "unknown".into());
            *s.by_client_mode.entry(mode.to_ascii_uppercase()).or_default() += 1;
            let last = h.sync.last_preflight_unix;
            let age = now - last;
            let bucket = match () {
                _ if last <= 0 => 4,
                _ if age < 3600 => 0,
                _ if age < 86_400 => 1,
                _ if age < 7 * 86_400 => 2,
                _ => 3,
            };
            s.by_sync_age[bucket] += 1;
            let listed = |note: String| ListedHost {
                machine_id: h.machine_id.clone(),
                hostname: inv.map(|i| i.hostname.clone()).unwrap_or_default(),
                last_seen_unix: last,
                note,
            };
            if last > 0 && last < stale_before {
                s.stale_count += 1;
                if s.stale.len() < MAX_LISTED {
                    s.stale.push(listed(String::new()));
                }
            }
            let drift = if h.sync.last_sync_reason.contains("drift") {
                Some(h.sync.last_sync_reason.clone())
            } else {
                match &h.sync.last_outcome {
                    o @ (SyncOutcome::RulesRejected { .. } | SyncOutcome::PolicyRejected { .. }) => Some(o.to_string()),
                    _ => None,
                }
            };
            if let Some(note) = drift {
                s.drifting_count += 1;
                if s.drifting.len() < MAX_LISTED {
                    s.drifting.push(listed(note));
                }
            }
        }
        if page.len() < WALK_PAGE || s.hosts_walked as usize >= MAX_WALK_HOSTS {
            break;
        }
        after = page.last().map(|h| h.machine_id.clone());
        // Let sync requests go first on a busy server.
        tokio::task::yield_now().await;
    }
    s.hosts_total = src.store.host_count().await?;
    s.events_total = src.store.event_count().await?;
    let pending = src.store.list_proposals(Some(ProposalStatus::Pending), None, MAX_PENDING_COUNTED + 1).await?;
    s.pending_more = pending.len() > MAX_PENDING_COUNTED;
    s.pending_proposals = pending.len().min(MAX_PENDING_COUNTED) as u64;
    let (day, hour) = (dasher_store::DAY_SECS, dasher_store::HOUR_SECS);
    let first_day = dasher_store::bucket_start(now, day) - (CHART_DAYS - 1) * day;
    let mut per_day: BTreeMap<i64, (u64, u64)> = (0..CHART_DAYS).map(|i| (first_day + i * day, (0, 0))).collect();
    for b in src.store.activity(ActivitySeries::EventsPerDay, first_day, now + 1).await? {
        if let Some(slot) = per_day.get_mut(&b.start_unix) {
            if b.series.starts_with("BLOCK") {
                slot.0 += b.count;
            } else if b.series.starts_with("ALLOW") {
                slot.1 += b.count;
            }
        }
    }
    s.events_per_day = per_day.into_iter().map(|(t, (b, a))| (t, b, a)).collect();
    let first_hour = dasher_store::bucket_start(now, hour) - (CHART_HOURS - 1) * hour;
    let mut per_hour: BTreeMap<i64, u64> = (0..CHART_HOURS).map(|i| (first_hour + i * hour, 0)).collect();
    for b in src.store.activity(ActivitySeries::SyncsPerHour, first_hour, now + 1).await? {
        if let Some(slot) = per_hour.get_mut(&b.start_unix) {
            *slot += b.count;
        }
    }
    s.syncs_per_hour = per_hour.into_iter().collect();
    if let Some(manager) = &src.plugins {
        let status = manager.status();
        let differing = src.policy.shadow_counts();
        s.plugin_load_errors = status.load_errors.len() as u64;
        s.plugins = Some(
            status
                .plugins
                .iter()
                .map(|p| PluginHealth {
                    name: p.name.clone(),
                    mode: format!("{:?}", p.mode).to_ascii_lowercase(),
                    faults: p.errors,
                    degraded: p.degraded,
                    shadow_disagreements: p.shadow_disagreements,
                    shadow_hosts_differing: differing.get(&p.name).map_or(0, |c| c.hosts_differing),
                })
                .collect(),
        );
    }
    Ok(s)
}

/// Refreshes `cell` now and then every `every` until `stop` flips.
pub fn spawn(
    src: Sources,
    cell: SnapshotCell,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    match take(&src, now_unix()).await {
                        Ok(s) => cell.set(s),
                        Err(e) => tracing::warn!(error = %e, "overview snapshot failed; keeping the previous one"),
                    }
                }
                _ = stop.changed() => break,
            }
        }
    })
}

/// A chart drawn by uPlot (`dasher.js`) from `data-*` attributes, with the same numbers as
/// a table for readers without JavaScript.
fn chart(
    title: &str,
    kind: &str,
    xs: &[i64],
    series: &[(&str, &str, Vec<u64>)],
    label: impl Fn(i64) -> String,
) -> Markup {
    let join = |v: &mut dyn Iterator<Item = String>| v.collect::<Vec<_>>().join(",");
    let data_x = join(&mut xs.iter().map(|x| x.to_string()));
    let data_series = series
        .iter()
        .map(|(name, color, values)| format!("{name}|{color}|{}", join(&mut values.iter().map(|v| v.to_string()))))
        .collect::<Vec<_>>()
        .join(";");
    m! {
        div.card.wide {
            h2 { (title) }
            div.chart data-kind=(kind) data-x=(data_x) data-series=(data_series) {}
            details {
                summary { "Numbers" }
                table {
                    tr { th { "Time" } @for (name, _, _) in series { th.num { (name) } } }
                    @for (i, x) in xs.iter().enumerate().rev() {
                        tr {
                            td { (label(*x)) }
                            @for (_, _, values) in series { td.num { (values.get(i).copied().unwrap_or(0)) } }
                        }
                    }
                }
            }
        }
    }
}

fn counts_table(title: &str, rows: impl Iterator<Item = (String, u64)>, total: u64) -> Markup {
    let rows: Vec<(String, u64)> = rows.collect();
    m! {
        div.card {
            h2 { (title) }
            table {
                @for (label, n) in &rows {
                    tr {
                        td { (label) }
                        td.num { (n) }
                        td { div class={ "bar w" (bar_width(*n, total)) } {} }
                    }
                }
            }
        }
    }
}

/// A bar's width class (`w0`…`w10`) for `n` of `total`.
fn bar_width(n: u64, total: u64) -> u64 {
    if total == 0 { 0 } else { (n * 10).div_ceil(total).min(10) }
}

fn host_list(hosts: &[ListedHost], now: i64) -> Markup {
    m! {
        table {
            tr { th { "Host" } th { "Last sync" } th { "Note" } }
            @for h in hosts {
                tr {
                    td { a href={ "/ui/hosts/" (super::enc(&h.machine_id)) } { (if h.hostname.is_empty() { &h.machine_id } else { &h.hostname }) } }
                    td { (fmt::when(h.last_seen_unix, now)) }
                    td { (h.note) }
                }
            }
        }
    }
}

/// `GET /ui/`.
pub async fn page(cx: &Cx<'_>) -> Result {
    let now = now_unix();
    let stale_days = cx.state.sync.config.get().ui.stale_after_days;
    let body = match cx.state.ui.overview.get() {
        None => m! {
            p.muted { "The first fleet snapshot is being taken; reload in a few seconds." }
        },
        Some(s) => m! {
            p.muted {
                "Snapshot " (fmt::when(s.taken_unix, now)) ", refreshed every "
                (cx.state.sync.config.get().ui.overview_refresh_secs) " s."
                @if s.hosts_walked < s.hosts_total {
                    " Summaries cover the first " (s.hosts_walked) " of " (s.hosts_total) " hosts."
                }
            }
            div.cards {
                div.card { h2 { "Hosts" } div.big { (s.hosts_total) } a href="/ui/hosts" { "Search hosts" } }
                div.card { h2 { "Events stored" } div.big { (s.events_total) } a href="/ui/events" { "Browse events" } }
                div.card {
                    h2 { "Pending proposals" }
                    div.big { (s.pending_proposals) @if s.pending_more { "+" } }
                    a href="/ui/proposals" { "Review" }
                }
                div.card {
                    h2 { "Not synced in " (stale_days) " days" }
                    div.big { (s.stale_count) }
                }
                div.card {
                    h2 { "Drifting" }
                    div.big { (s.drifting_count) }
                    span.muted { "rules drifted, rejected, or refused by policy at the last sync" }
                }
            }
            div.cards {
                (counts_table("By Santa version", s.by_santa_version.iter().map(|(k, v)| (k.clone(), *v)), s.hosts_walked))
                (counts_table("By client mode", s.by_client_mode.iter().map(|(k, v)| (k.clone(), *v)), s.hosts_walked))
                (counts_table("By last sync", AGE_BUCKETS.iter().zip(s.by_sync_age).map(|(k, v)| (k.to_string(), v)), s.hosts_walked))
            }
            div.cards {
                (chart(
                    "Events per day (UTC)",
                    "bars",
                    &s.events_per_day.iter().map(|e| e.0).collect::<Vec<_>>(),
                    &[
                        ("blocked", "#b3261e", s.events_per_day.iter().map(|e| e.1).collect()),
                        ("allowed", "#1e7a3c", s.events_per_day.iter().map(|e| e.2).collect()),
                    ],
                    fmt::date,
                ))
                (chart(
                    "Syncs per hour (UTC)",
                    "line",
                    &s.syncs_per_hour.iter().map(|e| e.0).collect::<Vec<_>>(),
                    &[("syncs", "#2456a6", s.syncs_per_hour.iter().map(|e| e.1).collect())],
                    |t| fmt::time(t)[..16].to_owned(),
                ))
            }
            (plugin_health(&s))
            @if !s.stale.is_empty() {
                h2 { "Not synced in " (stale_days) " days" @if s.stale_count > s.stale.len() as u64 { " (first " (s.stale.len()) ")" } }
                (host_list(&s.stale, now))
            }
            @if !s.drifting.is_empty() {
                h2 { "Drifting" @if s.drifting_count > s.drifting.len() as u64 { " (first " (s.drifting.len()) ")" } }
                (host_list(&s.drifting, now))
            }
        },
    };
    // htmx refreshes the figures in place as often as the snapshot changes.
    let every = format!("every {}s", cx.state.sync.config.get().ui.overview_refresh_secs);
    let body = m! {
        div #overview hx-get="/ui/" hx-trigger=(every) hx-select="#overview" hx-swap="outerHTML" { (body) }
    };
    Ok(html(StatusCode::OK, page_frame(cx, body)))
}

fn page_frame(cx: &Cx<'_>, body: Markup) -> Markup {
    layout::page(&cx.page_ctx(), "Overview", Nav::Overview, body)
}

fn plugin_health(s: &Snapshot) -> Markup {
    m! {
        h2 { "Plugin health" }
        @match &s.plugins {
            None => p.muted { "Plugins are not configured." },
            Some(list) => {
                @if s.plugin_load_errors > 0 {
                    div.flash.error { (s.plugin_load_errors) " plugin file(s) fail to load: see " a href="/ui/plugins" { "Plugins" } "." }
                }
                table {
                    tr { th { "Plugin" } th { "Mode" } th.num { "Faults" } th { "State" } th.num { "Shadow disagreements" } th.num { "Hosts differing" } }
                    @for p in list {
                        tr {
                            td { a href="/ui/plugins" { (p.name) } }
                            td { (p.mode) }
                            td.num { (p.faults) }
                            td { @if p.degraded { span.badge.bad { "degraded (breaker open)" } } @else { span.badge.ok { "healthy" } } }
                            td.num { (p.shadow_disagreements) }
                            td.num { (p.shadow_hosts_differing) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bar_width;

    #[test]
    fn bars_scale_to_tenths() {
        assert_eq!(bar_width(0, 0), 0);
        assert_eq!(bar_width(1, 1000), 1, "any host shows a bar");
        assert_eq!(bar_width(5, 10), 5);
        assert_eq!(bar_width(10, 10), 10);
    }
}
