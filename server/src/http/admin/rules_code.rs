//! Rules as code over the admin API ([`crate::rules`]):
//!
//! - `POST /api/v1/rules/plan` (read-only): body [`PlanRequest`] (the whole content of the
//!   named sets, `prune`); answers the [`crate::rules::Plan`] at the head, writes nothing.
//! - `POST /api/v1/rules/apply` (rules-editor): the same body plus `expect_version`; computes
//!   the same diff server-side and commits it as one rule version, or nothing (409 when the
//!   head is not `expect_version`, 400 naming file, rule and field when a rule is invalid).
//! - `GET /api/v1/rules-dir` (read-only): the GitOps directory's status.
//!
//! Sets owned by the rules directory refuse every other writer with 409 naming the file:
//! plan/apply, `POST /api/v1/rules` and proposal approvals ([`check_unmanaged`]).

use super::{MAX_ADMIN_BODY_BYTES, Resp};
use crate::http::error::{ApiError, json_response};
use crate::http::{AppState, read_limited};
use crate::rules::{self, PlanRequest, RulesError};
use http::{Request, StatusCode};

impl From<RulesError> for ApiError {
    fn from(e: RulesError) -> Self {
        match e {
            RulesError::Invalid { field, message } => ApiError::field(field, message),
            RulesError::Conflict(m) => ApiError::Conflict(m),
            RulesError::Store(e) => e.into(),
        }
    }
}

/// 409 if the rules directory owns any of `sets` (the check of [`crate::actions::unmanaged`]).
pub fn check_unmanaged<'a>(state: &AppState, sets: impl IntoIterator<Item = &'a str>) -> Result<(), ApiError> {
    match state.sync.rules_owners.first_owned(sets) {
        Some((set, file)) => Err(ApiError::Conflict(crate::rules::dir::Owners::refusal(&set, &file))),
        None => Ok(()),
    }
}

async fn request(state: &AppState, req: Request<hyper::body::Incoming>) -> Result<PlanRequest, ApiError> {
    let bytes = read_limited(req.into_body(), MAX_ADMIN_BODY_BYTES).await?;
    let body: PlanRequest =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))?;
    check_unmanaged(state, body.sets.iter().map(|s| s.rule_set.as_str()))?;
    Ok(body)
}

/// `POST /api/v1/rules/plan` and `/apply`.
pub async fn plan_or_apply(state: &AppState, req: Request<hyper::body::Incoming>, commit: bool) -> Resp {
    let body = request(state, req).await?;
    let store = state.sync.store.as_ref();
    let max = state.sync.config.get().limits.max_rules_per_apply;
    let (prune, expect) = (body.prune, body.expect_version);
    let desired = tokio::task::spawn_blocking(move || rules::validate_sets(body.sets, max))
        .await
        .map_err(|e| ApiError::Unavailable(format!("validation task failed: {e}")))??;
    // Sets the rules directory owns are never pruned through the API.
    let keep = |set: &str| state.sync.rules_owners.owner(set).is_some();
    if !commit {
        let head = state.sync.store.head_version().await?;
        if let Some(v) = expect
            && v != head
        {
            return Err(ApiError::Conflict(format!("the rule head is version {head}, not {v} as expected")));
        }
        let plan = rules::plan(store, &desired, prune, head, &keep).await?;
        return Ok(json_response(StatusCode::OK, &plan));
    }
    let (plan, version) = rules::apply(store, &desired, prune, expect, &keep).await?;
    let mut out = serde_json::to_value(&plan).expect("plan serializes");
    out["applied_version"] = version.into();
    Ok(json_response(StatusCode::OK, &out))
}

/// `GET /api/v1/rules-dir`.
pub fn dir_status(state: &AppState) -> Resp {
    match &state.rules_dir {
        Some(dir) => Ok(json_response(StatusCode::OK, &dir.status())),
        None => Err(ApiError::NotFound("no rules directory is configured (set [rules_dir] or --rules-dir)".into())),
    }
}
