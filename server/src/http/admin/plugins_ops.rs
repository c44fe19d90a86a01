//! Admin routes that operate the plugin system and the configuration: reloads, rollback to a
//! named generation, the history of generations.

use super::{MAX_ADMIN_BODY_BYTES, Resp, plugin_manager};
use crate::http::admin::auth::Identity;
use crate::http::error::{ApiError, json_response};
use crate::http::{AppState, read_limited};
use dasher_policy::Trigger;
use http::{Request, StatusCode};
use serde::Deserialize;

/// The calling token's name (set by the router after authorization).
fn caller(req: &Request<hyper::body::Incoming>) -> String {
    req.extensions().get::<Identity>().map_or_else(|| "admin".to_owned(), |i| i.name.clone())
}

fn manager_arc(state: &AppState) -> Result<std::sync::Arc<dasher_policy::PluginManager>, ApiError> {
    plugin_manager(state)?;
    Ok(state.plugins.clone().expect("checked by plugin_manager"))
}

/// `POST /api/v1/config/reload`: re-reads the config file; 400 naming the key if it is
/// invalid (nothing changes), 409 if the server has no config file.
pub(super) async fn reload_config(state: &AppState, req: Request<hyper::body::Incoming>) -> Resp {
    let by = caller(&req);
    let report = state.reloader.reload(&by, Trigger::ConfigReload).await.map_err(crate::actions::ActionError::from)?;
    Ok(json_response(StatusCode::OK, &report))
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RollbackRequest {
    /// A generation number or at least 8 hex digits of its SHA-256; default: the previous one.
    to: Option<serde_json::Value>,
}

/// `POST /api/v1/plugins/{name}/rollback` with an optional `{"to": "<sha or number>"}`.
pub(super) async fn rollback(
    state: &AppState,
    actor: &crate::actions::Actor,
    name: &str,
    req: Request<hyper::body::Incoming>,
) -> Resp {
    let name = crate::actions::plugin_name(name)?;
    let bytes = read_limited(req.into_body(), MAX_ADMIN_BODY_BYTES).await?;
    let body: RollbackRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        RollbackRequest::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))?
    };
    let to = match &body.to {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) if n.is_u64() => Some(n.to_string()),
        Some(_) => {
            return Err(ApiError::field("to", "to must be a generation number or a SHA-256 (prefix of 8+ hex digits)"));
        }
    };
    let (from, to) = crate::actions::rollback_plugin(&state.sync, state.plugins.as_ref(), actor, name, to).await?;
    Ok(json_response(StatusCode::OK, &serde_json::json!({"plugin": name, "from": from, "to": to})))
}

/// `GET /api/v1/plugins/{name}/history`: activations of the plugin's generations, newest first.
pub(super) async fn history(state: &AppState, name: &str) -> Resp {
    let manager = manager_arc(state)?;
    let name = crate::actions::plugin_name(name)?.to_owned();
    let active = manager.plugin_set().plugins.iter().find(|p| p.name() == name).map(|p| p.hash().to_owned());
    // Blocking: the kv backend reads the store.
    let (m, n) = (manager.clone(), name.clone());
    let mut records = tokio::task::spawn_blocking(move || m.history(&n))
        .await
        .map_err(|e| ApiError::Busy(format!("reading the history did not finish: {e}")))?
        .map_err(|e| ApiError::NotFound(e.to_string()))?;
    records.reverse();
    Ok(json_response(StatusCode::OK, &serde_json::json!({"plugin": name, "active": active, "generations": records})))
}
