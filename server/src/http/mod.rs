//! HTTP: the listener, routing, body limits, and the sync-stage adapters that turn bodies
//! into wire messages and back. Routes:
//!
//! - `POST {prefix}/{preflight|eventupload|ruledownload|postflight}/{machine_id}`
//! - `GET|POST {prefix}/preflight/santactl-doctor-test` (the `santactl doctor` probe)
//! - `POST {prefix}/xsrf/{machine_id}` → 404 (Dasher does not require XSRF tokens, §2.4)
//! - `/api/v1/...` and `/healthz` → [`crate::admin`]
//!
//! No redirects, no trailing-slash rewriting.

pub mod body;
pub mod error;
pub mod machine_id;

use crate::admin;
use crate::sync::{DOCTOR_MACHINE_ID, SyncService};
use bytes::Bytes;
use dasher_sdk::wire::{Format, Stage, WireMessage};
use error::{ApiError, bytes_response, json_response};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use std::sync::Arc;

/// Shared state of every request.
pub struct AppState {
    /// The sync stages.
    pub sync: SyncService,
    /// Admin bearer token.
    pub admin_token: String,
    /// The plugin host, when plugins are configured.
    pub plugins: Option<std::sync::Arc<dasher_policy::PluginManager>>,
}

/// Answers one request; never fails (errors become responses).
pub async fn handle(state: Arc<AppState>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let resp = match route(&state, req).await {
        Ok(resp) => resp,
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(%method, %path, error = %e, "request failed");
            } else {
                tracing::debug!(%method, %path, error = %e, "request refused");
            }
            e.into_response()
        }
    };
    tracing::trace!(%method, %path, status = resp.status().as_u16(), "request");
    resp
}

async fn route(state: &AppState, req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, ApiError> {
    let path = req.uri().path().to_owned();
    if path == "/healthz" || path.starts_with("/api/") {
        return admin::handle(state, req).await;
    }
    let prefix = &state.sync.config.sync_prefix;
    let Some(rest) = path.strip_prefix(prefix.as_str()).and_then(|r| r.strip_prefix('/')) else {
        return Err(ApiError::NotFound(format!("no route for {path}")));
    };
    let Some((stage, raw_id)) = rest.split_once('/') else {
        return Err(ApiError::NotFound(format!("no route for {path}")));
    };
    if raw_id.contains('/') {
        return Err(ApiError::field("machine_id", "machine id must not contain '/'"));
    }
    if stage == "preflight" && raw_id == DOCTOR_MACHINE_ID && matches!(*req.method(), Method::GET | Method::POST) {
        return Ok(json_response(StatusCode::OK, &serde_json::json!({})));
    }
    if stage == "xsrf" {
        return Err(ApiError::NotFound("this server does not use XSRF tokens".into()));
    }
    let Some(stage) = Stage::from_path(stage) else {
        return Err(ApiError::NotFound(format!("no sync stage {stage:?}")));
    };
    if req.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    let limits = &state.sync.config.limits;
    let machine_id = machine_id::parse_machine_id(raw_id, limits.max_machine_id_bytes)
        .map_err(|e| ApiError::field("machine_id", e.to_string()))?;
    let (format, body) = read_sync_body(req, limits.max_body_bytes, limits.max_inflated_bytes).await?;
    let sync = &state.sync;
    let out = match stage {
        Stage::Preflight => sync.preflight(&machine_id, decode(&body, format)?).await?.encode_to(format),
        Stage::EventUpload => sync.event_upload(&machine_id, decode(&body, format)?).await?.encode_to(format),
        Stage::RuleDownload => sync.rule_download(&machine_id, decode(&body, format)?).await?.encode_to(format),
        Stage::Postflight => sync.postflight(&machine_id, decode(&body, format)?).await?.encode_to(format),
    };
    Ok(bytes_response(StatusCode::OK, format.content_type(), out))
}

fn decode<T: WireMessage>(body: &[u8], format: Format) -> Result<T, ApiError> {
    T::decode_from(body, format).map_err(|e| ApiError::bad(format!("request body: {e}")))
}

/// Reads a bounded body, picks the format from `Content-Type`, and inflates it.
pub async fn read_sync_body(
    req: Request<hyper::body::Incoming>,
    max_body_bytes: usize,
    max_inflated_bytes: usize,
) -> Result<(Format, Vec<u8>), ApiError> {
    let header_str =
        |name| req.headers().get(name).and_then(|v: &http::HeaderValue| v.to_str().ok()).map(str::to_owned);
    let content_type = header_str(header::CONTENT_TYPE).unwrap_or_default().to_ascii_lowercase();
    let encoding = header_str(header::CONTENT_ENCODING);
    let format =
        if content_type.starts_with("application/x-protobuf") || content_type.starts_with("application/protobuf") {
            Format::Protobuf
        } else {
            Format::Json
        };
    let raw = read_limited(req.into_body(), max_body_bytes).await?;
    let body = body::decode_body(encoding.as_deref(), &raw, max_inflated_bytes).map_err(|e| match e {
        body::BodyError::TooLargeInflated(_) => ApiError::TooLarge(e.to_string()),
        body::BodyError::UnsupportedEncoding(_) => ApiError::Unsupported(e.to_string()),
        body::BodyError::Corrupt(_) => ApiError::bad(e.to_string()),
    })?;
    Ok((format, body))
}

/// Collects a body of at most `max` bytes.
pub async fn read_limited(body: hyper::body::Incoming, max: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(ApiError::TooLarge(format!("request body is larger than {max} bytes")))
        }
        Err(e) => Err(ApiError::bad(format!("could not read request body: {e}"))),
    }
}
