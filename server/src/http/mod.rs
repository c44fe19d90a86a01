//! HTTP: the listener, routing, body limits, and the sync-stage adapters that turn bodies
//! into wire messages and back. Routes:
//!
//! - `POST {prefix}/{preflight|eventupload|ruledownload|postflight}/{machine_id}`
//! - `GET|POST {prefix}/preflight/santactl-doctor-test` (the `santactl doctor` probe)
//! - `POST {prefix}/xsrf/{machine_id}` → 404 (Dasher does not require XSRF tokens, §2.4)
//! - `/api/v1/...` and `/healthz` → [`admin`]
//! - `/metrics`, `/readyz` → [`ops`]
//!
//! `HEAD` is answered wherever `GET` is: routed as `GET`, with the headers (and
//! `Content-Length`) of the `GET` answer and no body.
//!
//! Every response carries `X-Request-Id` ([`request_id`]), also recorded in the request's
//! tracing span, and is counted in [`crate::metrics`]. No redirects, no trailing-slash rewriting.

pub mod admin;
pub mod body;
pub mod error;
pub mod machine_id;
pub mod ops;
pub mod rate_limit;
pub mod request_id;
pub mod sync_auth;

use crate::metrics::Metrics;
use crate::sync::{DOCTOR_MACHINE_ID, SyncService};
use bytes::Bytes;
use dasher_sdk::names::MachineId;
use dasher_sdk::wire::{Format, Stage, WireMessage};
use error::{ApiError, bytes_response, json_response};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// Shared state of every request.
pub struct AppState {
    /// The sync stages.
    pub sync: SyncService,
    /// The plugin host, when plugins are configured.
    pub plugins: Option<std::sync::Arc<dasher_policy::PluginManager>>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Admin tokens and roles.
    pub admin_auth: admin::auth::AdminAuth,
    /// Sync shared-secret check, when configured.
    pub sync_auth: Option<sync_auth::SyncAuth>,
    /// Per-machine request budget (`limits.requests_per_machine_per_minute`), unless 0.
    pub rate_limit: Option<rate_limit::MachineRateLimit>,
    /// Re-reads the config file (`POST /api/v1/config/reload`, SIGHUP).
    pub reloader: Arc<crate::reload::ConfigReloader>,
    /// The web console's shared state.
    pub ui: crate::ui::UiState,
    /// GitOps rules directory, when `[rules_dir]` is set (its status; ownership is in
    /// [`crate::sync::SyncService::rules_owners`]).
    pub rules_dir: Option<Arc<crate::rules::dir::RulesDir>>,
    /// Export sinks' cursors, lag and errors (`GET /api/v1/export`).
    pub export: crate::export::ExportStatus,
}

/// Which routes a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// Everything (one listener).
    All,
    /// Sync routes and health only (the main listener when `admin.listen` is set).
    Sync,
    /// Admin API, `/metrics` and health only (the `admin.listen` listener).
    Admin,
}

/// What the connection a request arrived on may reach, and who it is.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// Routes this listener serves.
    pub surface: Surface,
    /// True over TLS.
    pub tls: bool,
    /// Names in the verified client certificate (CN and SANs), if one was presented.
    pub peer_names: Option<Vec<String>>,
}

/// Answers one request; never fails (errors become responses).
pub async fn handle(
    state: Arc<AppState>,
    mut req: Request<hyper::body::Incoming>,
    conn: Arc<ConnInfo>,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    // HEAD is routed (and authorized) as GET; the body is dropped below, its length kept.
    if method == Method::HEAD {
        *req.method_mut() = Method::GET;
    }
    let request_id = request_id::from_header(req.headers().get(request_id::HEADER));
    let stage = stage_label(&state.sync.config.get().sync_prefix, &path);
    let span = tracing::info_span!("request", request_id = %request_id, %method, %path);
    let mut resp = async {
        let resp = match route(&state, req, &conn).await {
            Ok(resp) => resp,
            Err(e) => {
                if e.status().is_server_error() {
                    tracing::warn!(error = %e, "request failed");
                } else {
                    tracing::debug!(error = %e, "request refused");
                }
                e.into_response()
            }
        };
        tracing::trace!(status = resp.status().as_u16(), "request");
        resp
    }
    .instrument(span)
    .await;
    if let Ok(v) = http::HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(request_id::HEADER, v);
    }
    state.metrics.record_request(stage, resp.status().as_u16(), started.elapsed());
    if method == Method::HEAD {
        let len = hyper::body::Body::size_hint(resp.body()).exact().unwrap_or(0);
        resp.headers_mut().insert(header::CONTENT_LENGTH, http::HeaderValue::from(len));
        *resp.body_mut() = Full::new(Bytes::new());
    }
    resp
}

/// The `stage` label of a path (a fixed set, so label cardinality stays bounded).
fn stage_label(prefix: &str, path: &str) -> &'static str {
    match path {
        "/healthz" | "/readyz" => return "health",
        "/metrics" => return "metrics",
        p if p.starts_with("/api/") => return "admin",
        p if p == "/ui" || p.starts_with("/ui/") => return "ui",
        _ => {}
    }
    let stage = path.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')).and_then(|r| r.split('/').next());
    match stage.and_then(Stage::from_path) {
        Some(Stage::Preflight) => "preflight",
        Some(Stage::EventUpload) => "eventupload",
        Some(Stage::RuleDownload) => "ruledownload",
        Some(Stage::Postflight) => "postflight",
        None => "other",
    }
}

async fn route(
    state: &AppState,
    mut req: Request<hyper::body::Incoming>,
    conn: &ConnInfo,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let path = req.uri().path().to_owned();
    // The web console decides per route which listeners serve it (see `crate::ui`).
    if path == "/ui" || path.starts_with("/ui/") {
        return Ok(crate::ui::handle(state, req, conn).await);
    }
    let admin_route = path == "/metrics" || path.starts_with("/api/");
    match (conn.surface, admin_route) {
        (Surface::Sync, true) => return Err(ApiError::NotFound(format!("{path} is served on admin.listen only"))),
        (Surface::Admin, false) if path != "/healthz" && path != "/readyz" => {
            return Err(ApiError::NotFound(format!("sync routes are not served on admin.listen: {path}")));
        }
        _ => {}
    }
    match path.as_str() {
        "/healthz" => return Ok(json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
        "/readyz" => return ops::readyz(state).await,
        "/metrics" if !state.sync.config.get().metrics.require_token => return ops::metrics(state, &req).await,
        _ => {}
    }
    if admin_route {
        // Who first (an unauthenticated caller learns nothing of the routes), then the route
        // and the role it needs, both from the one table.
        let (route, params, who) = match state.admin_auth.authenticate(req.headers()) {
            Ok(who) => {
                let (route, params) = admin::find(req.method(), &path)?;
                if let Err(e) = who.may(route.role) {
                    state.metrics.record_auth_failure(e.metric_reason());
                    return Err(e.into());
                }
                tracing::debug!(token = %who.name, role = %who.role, "admin request");
                req.extensions_mut().insert(who.clone());
                (route, params, who)
            }
            Err(e) => {
                state.metrics.record_auth_failure(e.metric_reason());
                return Err(e.into());
            }
        };
        return admin::handle(state, route, &params, req, &who).await;
    }
    let config = state.sync.config.snapshot();
    let prefix = &config.sync_prefix;
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
    let limits = &config.limits;
    let machine_id = machine_id::parse_machine_id(raw_id, limits.max_machine_id_bytes)
        .map_err(|e| ApiError::field("machine_id", e.to_string()))?;
    // Credentials before the body: an unauthenticated client never gets us to read megabytes.
    check_client_identity(state, conn, &machine_id)?;
    if let Some(auth) = &state.sync_auth
        && let Err(e) = auth.check(&machine_id, req.headers())
    {
        state.metrics.record_auth_failure(match e {
            sync_auth::SyncAuthError::Missing(_) => "sync_secret_missing",
            sync_auth::SyncAuthError::Wrong { .. } => "sync_secret_wrong",
        });
        return Err(e.into());
    }
    if let Some(limit) = &state.rate_limit
        && let Err(wait) = limit.check(&machine_id)
    {
        state.metrics.record_auth_failure("rate_limited");
        let retry_after_secs = wait.as_secs() + 1;
        // hyper closes a keep-alive connection whose request body was left unread.
        let body_timeout = std::time::Duration::from_secs(limits.body_read_timeout_secs);
        discard_body(req.into_body(), limits.max_body_bytes, body_timeout).await;
        return Err(ApiError::TooManyRequests {
            message: format!(
                "machine {machine_id} exceeded {} requests per minute (limits.requests_per_machine_per_minute); retry in {retry_after_secs} s",
                limits.requests_per_machine_per_minute
            ),
            retry_after_secs,
        });
    }
    let body_timeout = std::time::Duration::from_secs(limits.body_read_timeout_secs);
    // Each stage has its own bound: a preflight needs kilobytes, not an event upload's megabytes.
    let (max_body_bytes, max_inflated_bytes, limit_key) = limits.stage_body_limits(stage);
    let (format, body) = tokio::time::timeout(body_timeout, read_sync_body(req, max_body_bytes, max_inflated_bytes))
        .await
        .map_err(|_| {
            ApiError::Timeout(format!(
                "request body not received within {} s (limits.body_read_timeout_secs)",
                limits.body_read_timeout_secs
            ))
        })?
        .map_err(|e| match e {
            ApiError::TooLarge(m) => ApiError::TooLarge(format!("{} {m} (limits.{limit_key})", stage.path())),
            e => e,
        })?;
    // A time budget per request, so no input (however crafted) holds the server for longer;
    // counted as `dasher_http_requests_total{status="503"}` of its stage.
    let budget = std::time::Duration::from_secs(limits.sync_request_timeout_secs);
    let out =
        tokio::time::timeout(budget, run_stage(state, stage, &machine_id, &body, format)).await.map_err(|_| {
            ApiError::Busy(format!(
                "the server did not finish this request within {} s (limits.sync_request_timeout_secs); retry later",
                limits.sync_request_timeout_secs
            ))
        })??;
    Ok(bytes_response(StatusCode::OK, format.content_type(), out))
}

/// Decodes a sync body, runs its stage and encodes the answer.
async fn run_stage(
    state: &AppState,
    stage: Stage,
    machine_id: &MachineId,
    body: &[u8],
    format: Format,
) -> Result<Vec<u8>, ApiError> {
    let sync = &state.sync;
    Ok(match stage {
        Stage::Preflight => {
            let resp = sync.preflight(machine_id, decode(body, format)?).await?;
            state.metrics.record_preflight(&resp);
            resp.encode_to(format)
        }
        Stage::EventUpload => sync.event_upload(machine_id, decode(body, format)?).await?.encode_to(format),
        Stage::RuleDownload => {
            let resp = sync.rule_download(machine_id, decode(body, format)?).await?;
            state.metrics.record_rules_sent(resp.rules.len());
            resp.encode_to(format)
        }
        Stage::Postflight => sync.postflight(machine_id, decode(body, format)?).await?.encode_to(format),
    })
}

/// With `tls.bind_identity`, the client certificate must name the machine (CN or SAN); 401 otherwise.
fn check_client_identity(state: &AppState, conn: &ConnInfo, machine_id: &str) -> Result<(), ApiError> {
    let bind = state.sync.config.get().tls.as_ref().is_some_and(|t| t.bind_identity);
    if !bind || !conn.tls {
        return Ok(());
    }
    let refused = |why: String| {
        state.metrics.record_auth_failure("client_cert_mismatch");
        // 401, not 403: Santa retries a 403 five times through its XSRF path (reference §2.4).
        Err(ApiError::Unauthenticated(why))
    };
    match &conn.peer_names {
        None => refused(format!("a client certificate naming machine {machine_id} is required (tls.bind_identity)")),
        Some(names) if crate::tls::identity_matches(names, machine_id) => Ok(()),
        Some(names) => {
            refused(format!("the client certificate names {names:?}, not machine {machine_id} (tls.bind_identity)"))
        }
    }
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

/// Reads and drops a body of at most `max` bytes within `timeout`, so the connection can serve
/// another request after an early answer; a longer or slower body is left (hyper then closes).
async fn discard_body(body: hyper::body::Incoming, max: usize, timeout: std::time::Duration) {
    let drain = async {
        let mut body = Limited::new(body, max);
        while let Some(Ok(_)) = body.frame().await {}
    };
    let _ = tokio::time::timeout(timeout, drain).await;
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
