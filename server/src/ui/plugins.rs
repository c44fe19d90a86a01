//! Plugins (`GET /ui/plugins`): loaded plugins with generation, hooks, mode, faults, breaker
//! state and shadow disagreements; reload and roll back (the admin API's actions and role).

use super::layout::{self, Nav, csrf_field};
use super::{Cx, Result, authorize, enc, fmt, html, redirect};
use crate::actions;
use http::{Method, StatusCode};
use maud::html as m;

/// `GET /ui/plugins`.
pub async fn page(cx: &Cx<'_>) -> Result {
    page_impl(cx).await
}

async fn page_impl(cx: &Cx<'_>) -> Result {
    let ctx = cx.page_ctx();
    let now = crate::sync::now_unix();
    let flash = match cx.q("done") {
        Some("reload") => Some("Plugins reloaded; the table shows what is loaded now."),
        Some("rollback") => Some("Plugin rolled back to its previous generation."),
        _ => None,
    };
    let body = match cx.state.plugins.as_deref() {
        None => {
            m! { p.muted { "Plugins are not configured (set " code { "[plugins]" } " or " code { "--plugins-dir" } ")." } }
        }
        Some(manager) => {
            let status = manager.status();
            let differing = cx.state.sync.policy.shadow_counts();
            m! {
                @if let Some(f) = &flash { div.flash.ok { (f) } }
                p {
                    "Plugin set generation " (status.generation) ". "
                    form.inline method="post" action="/ui/plugins/reload" {
                        (csrf_field(&ctx))
                        button type="submit" { "Reload now" }
                    }
                    span.muted { " (admin role; the server also reloads when the directory changes)" }
                }
                @if !status.load_errors.is_empty() {
                    h2 { "Files failing to load" }
                    table {
                        tr { th { "File" } th { "Error" } }
                        @for e in &status.load_errors {
                            @let v = serde_json::to_value(e).unwrap_or_default();
                            tr { td.mono { (v.get("file").map(|f| f.to_string()).unwrap_or_default()) } td { (v.get("error").or(v.get("message")).map(|f| f.to_string()).unwrap_or_default()) } }
                        }
                    }
                }
                table {
                    tr {
                        th { "Plugin" } th { "Generation" } th { "Hooks" } th { "Mode" } th.num { "Calls" } th.num { "Faults" }
                        th { "State" } th.num { "Shadow disagreements" } th.num { "Hosts differing" } th { "Loaded" } th {}
                    }
                    @for p in &status.plugins {
                        tr {
                            td { strong { (p.name) } " " span.muted { (p.version) } }
                            td.mono title=(p.hash) { (&p.hash[..p.hash.len().min(12)]) }
                            td { (p.hooks.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(", ")) }
                            td { (format!("{:?}", p.mode).to_ascii_lowercase()) }
                            td.num { (p.calls) }
                            td.num {
                                (p.errors)
                                @if !p.faults.is_empty() {
                                    br; span.muted { (p.faults.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")) }
                                }
                            }
                            td {
                                @if p.degraded { span.badge.bad { "degraded" } } @else { span.badge.ok { "healthy" } }
                                @for b in p.breakers.iter().filter(|b| !matches!(b.state, dasher_policy::BreakerState::Closed)) {
                                    br; span.muted { (b.hook.to_string()) ": " (format!("{:?}", b.state).to_ascii_lowercase()) }
                                }
                                @if let Some(e) = &p.last_error { br; span.muted { "last fault: " (e) } }
                                @if let Some(e) = &p.last_load_error { br; span.muted { "last load error: " (e) } }
                            }
                            td.num { (p.shadow_disagreements) }
                            td.num { (differing.get(&p.name).map_or(0, |c| c.hosts_differing)) }
                            td { (fmt::when(i64::try_from(p.loaded_at_unix).unwrap_or(0), now)) }
                            td {
                                @if p.generations.len() > 1 {
                                    form.inline method="post" action={ "/ui/plugins/" (enc(&p.name)) "/rollback" } {
                                        (csrf_field(&ctx))
                                        button.danger type="submit" { "Roll back" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(html(StatusCode::OK, layout::page(&ctx, "Plugins", Nav::Plugins, body)))
}

/// `POST /ui/plugins/reload` (admin role, as `POST /api/v1/plugins/reload`).
pub async fn reload(cx: &Cx<'_>) -> Result {
    let actor = authorize(cx, &Method::POST, "/api/v1/plugins/reload", "Reloading plugins")?;
    actions::reload_plugins(&cx.state.sync, cx.state.plugins.as_deref(), &cx.state.reloader, &actor).await?;
    Ok(redirect("/ui/plugins?done=reload"))
}

/// `POST /ui/plugins/{name}/rollback` (admin role, as `POST /api/v1/plugins/{name}/rollback`).
pub async fn rollback(cx: &Cx<'_>) -> Result {
    let name = cx.params[0].clone();
    actions::plugin_name(&name)?;
    let actor =
        authorize(cx, &Method::POST, &format!("/api/v1/plugins/{}/rollback", enc(&name)), "Rolling back a plugin")?;
    actions::rollback_plugin(&cx.state.sync, cx.state.plugins.as_ref(), &actor, &name, None).await?;
    Ok(redirect("/ui/plugins?done=rollback"))
}
