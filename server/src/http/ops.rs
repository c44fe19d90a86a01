//! Operational endpoints: `GET /metrics` (Prometheus text format) and `GET /readyz`
//! (200 when the store answers and the configured plugins are in force, 503 otherwise).
//! `/healthz` (the process is up) is answered by the router. With `metrics.require_token`
//! `/metrics` is an admin route (read-only role), checked before it gets here.

use super::AppState;
use super::error::{ApiError, bytes_response, json_response};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use std::time::Duration;

/// How long `/readyz` waits for the store.
const READY_STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /metrics`.
pub async fn metrics<B>(state: &AppState, req: &Request<B>) -> Result<Response<Full<Bytes>>, ApiError> {
    let config = state.sync.config.snapshot();
    let settings = &config.metrics;
    if !settings.enabled {
        return Err(ApiError::NotFound("metrics are disabled (metrics.enabled = false)".into()));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(ApiError::MethodNotAllowed);
    }
    let hosts = match tokio::time::timeout(READY_STORE_TIMEOUT, state.sync.store.host_count()).await {
        Ok(Ok(n)) => Some(n),
        _ => None,
    };
    let plugins = state.plugins.as_ref().map(|p| p.status());
    let text = state.metrics.render(hosts, plugins.as_ref());
    Ok(bytes_response(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", text.into_bytes()))
}

/// `GET /readyz`: ready when the store answers a read within 5 s and, with plugins
/// configured, every configured plugin is loaded and every plugin file that fails to load
/// still has an earlier generation serving (a plugin that should decide but cannot means the
/// intended policy is not in force). The body says which check failed, naming the plugin.
pub async fn readyz(state: &AppState) -> Result<Response<Full<Bytes>>, ApiError> {
    let store = match tokio::time::timeout(READY_STORE_TIMEOUT, state.sync.store.head_version()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("store: {e}")),
        Err(_) => Err(format!("store did not answer within {} s", READY_STORE_TIMEOUT.as_secs())),
    };
    let plugins = match &state.plugins {
        None => Ok(()),
        Some(manager) => {
            let status = manager.status();
            // Configured plugins that are not loaded first: the intended policy is not in force.
            let mut missing: Vec<String> = status
                .unavailable
                .iter()
                .map(|u| {
                    format!("plugin {} is configured but not loaded ({}): {}", u.name, on_unavailable(u), u.reason)
                })
                .collect();
            missing.extend(
                status
                    .load_errors
                    .iter()
                    .filter(|f| f.plugin.as_ref().is_none_or(|name| !status.plugins.iter().any(|p| &p.name == name)))
                    .filter(|f| {
                        f.plugin.as_ref().is_none_or(|name| !status.unavailable.iter().any(|u| &u.name == name))
                    })
                    .map(|f| format!("{}: {}", f.file.display(), f.error)),
            );
            if missing.is_empty() { Ok(()) } else { Err(format!("plugins not loaded: {}", missing.join("; "))) }
        }
    };
    let check = |r: &Result<(), String>| match r {
        Ok(()) => serde_json::Value::from("ok"),
        Err(e) => serde_json::Value::from(e.as_str()),
    };
    let ready = store.is_ok() && plugins.is_ok();
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not ready" },
        "store": check(&store),
        "plugins": if state.plugins.is_some() { check(&plugins) } else { "not configured".into() },
    });
    Ok(json_response(if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &body))
}

/// What hosts get meanwhile, in words.
fn on_unavailable(u: &dasher_policy::UnavailablePlugin) -> &'static str {
    use dasher_policy::{Mode, OnUnavailable};
    match (u.mode, u.on_unavailable) {
        (Mode::Shadow, _) => "shadow mode: decisions unaffected",
        (_, OnUnavailable::LastGood) => "hosts keep its last good decisions",
        (_, OnUnavailable::Reject) => "syncs are refused with 503",
        (_, OnUnavailable::Config) => "settings come from the config file",
    }
}
