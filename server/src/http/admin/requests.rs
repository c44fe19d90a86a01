//! `POST /api/v1/proposals/requests`: records an end user's approval request for a blocked
//! binary on their machine, for integrations (a help desk, a chat bot) and tests; the block
//! page's form takes the same path ([`crate::proposals::user_request`]), so review plugins
//! see both alike.

use super::{Resp, json_body};
use crate::http::error::ApiError;
use crate::http::machine_id::parse_machine_id;
use crate::proposals;
use crate::sync::{SyncService, now_unix};
use dasher_sdk::domain::validate_identifier;
use dasher_sdk::wire::RuleType;
use dasher_store::{MAX_JUSTIFICATION_BYTES, MAX_REQUEST_USER_BYTES};
use hyper::{Request, StatusCode};
use serde::Deserialize;

/// Body of the request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRequest {
    machine_id: String,
    sha256: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    justification: String,
}

/// Validates and records the request; answers the proposal as it stands after review.
pub(super) async fn post_request(sync: &SyncService, req: Request<hyper::body::Incoming>) -> Resp {
    let body: UserRequest = json_body(req).await?;
    let machine_id = parse_machine_id(&body.machine_id, sync.config.get().limits.max_machine_id_bytes)
        .map_err(|e| ApiError::field("machine_id", e.to_string()))?;
    let sha256 =
        validate_identifier(RuleType::Binary, &body.sha256).map_err(|e| ApiError::field("sha256", e.to_string()))?;
    if let Some(user) = &body.user
        && (user.is_empty() || user.len() > MAX_REQUEST_USER_BYTES || user.chars().any(char::is_control))
    {
        return Err(ApiError::field(
            "user",
            format!("user must be 1 to {MAX_REQUEST_USER_BYTES} bytes without control characters"),
        ));
    }
    if body.justification.len() > MAX_JUSTIFICATION_BYTES {
        return Err(ApiError::field(
            "justification",
            format!("justification must be at most {MAX_JUSTIFICATION_BYTES} bytes"),
        ));
    }
    let store = sync.store.as_ref();
    let p = proposals::user_request(
        store,
        sync.policy.as_ref(),
        machine_id.as_str(),
        &sha256,
        body.user.as_deref(),
        &body.justification,
        now_unix(),
    )
    .await?;
    Ok(super::json_response(StatusCode::OK, &p))
}
