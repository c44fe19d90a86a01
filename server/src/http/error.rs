//! The one place where errors become HTTP statuses. Santa clients ≥ 2026.4 stop retrying
//! on most 4xx and retry 5xx: a status says what the client should do.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;

/// An error answered to a client or admin.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed input; retrying will not help. `field` names what was wrong, if known.
    #[error("{message}")]
    BadRequest {
        /// Human message.
        message: String,
        /// The offending field.
        field: Option<String>,
    },
    /// Body too large (before or after inflating).
    #[error("{0}")]
    TooLarge(String),
    /// Missing or wrong admin token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// Missing or wrong sync credential (secret header, client certificate); Santa stops
    /// retrying on 401 but retries a 403 through its XSRF path.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but not allowed (admin role too low).
    #[error("{0}")]
    Forbidden(String),
    /// The client took too long to send the request body.
    #[error("{0}")]
    Timeout(String),
    /// No such route or resource.
    #[error("{0}")]
    NotFound(String),
    /// Wrong method for the route.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request conflicts with the resource's state (e.g. approving a decided proposal).
    #[error("{0}")]
    Conflict(String),
    /// Unsupported media type.
    #[error("{0}")]
    Unsupported(String),
    /// The machine exceeded its request budget; retry after this many seconds (429).
    #[error("{message}")]
    TooManyRequests {
        /// Human message.
        message: String,
        /// Seconds until a request will be accepted (`Retry-After`).
        retry_after_secs: u64,
    },
    /// The request was not handled within its server-side time budget
    /// (`limits.sync_request_timeout_secs`); the client should retry later.
    #[error("{0}")]
    Busy(String),
    /// Storage failed; the client should retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A policy plugin configured to reject on failure failed; the client keeps its state
    /// and retries at its next sync.
    #[error("{0}")]
    PolicyRejected(#[from] crate::policy::PolicyRejected),
}

impl ApiError {
    /// A bad request naming a field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::BadRequest { message: message.into(), field: Some(field.into()) }
    }

    /// A bad request without a specific field.
    pub fn bad(message: impl Into<String>) -> Self {
        ApiError::BadRequest { message: message.into(), field: None }
    }

    /// The status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized | ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) | ApiError::Busy(_) | ApiError::PolicyRejected(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The JSON error response: `{"error": "...", "field": "..."}`.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = self.status();
        let mut body = serde_json::json!({ "error": self.to_string() });
        if let ApiError::BadRequest { field: Some(f), .. } = &self {
            body["field"] = f.clone().into();
        }
        let mut resp = json_response(status, &body);
        if matches!(self, ApiError::Unauthorized) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        }
        if let ApiError::TooManyRequests { retry_after_secs, .. } = self {
            resp.headers_mut().insert(header::RETRY_AFTER, http::HeaderValue::from(retry_after_secs));
        }
        resp
    }
}

impl From<dasher_store::StoreError> for ApiError {
    fn from(e: dasher_store::StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        ApiError::Unavailable(e.to_string())
    }
}

impl From<crate::sync::SyncError> for ApiError {
    fn from(e: crate::sync::SyncError) -> Self {
        use crate::sync::SyncError;
        match e {
            SyncError::Invalid { field, message } => ApiError::field(field, message),
            SyncError::TooLarge(message) => ApiError::TooLarge(message),
            SyncError::Store(e) => e.into(),
            SyncError::PolicyRejected(e) => ApiError::PolicyRejected(e),
        }
    }
}

impl From<crate::actions::ActionError> for ApiError {
    fn from(e: crate::actions::ActionError) -> Self {
        use crate::actions::ActionError;
        match e {
            ActionError::Invalid { field, message } => ApiError::field(field, message),
            ActionError::NotFound(m) => ApiError::NotFound(m),
            ActionError::Conflict(m) => ApiError::Conflict(m),
            ActionError::Store(e) => e.into(),
            ActionError::Unavailable(m) => ApiError::Busy(m),
        }
    }
}

impl From<crate::proposals::ReviewError> for ApiError {
    fn from(e: crate::proposals::ReviewError) -> Self {
        use crate::proposals::ReviewError;
        match e {
            ReviewError::NotFound(_) => ApiError::NotFound(e.to_string()),
            ReviewError::AlreadyDecided { .. } => ApiError::Conflict(e.to_string()),
            ReviewError::InvalidRule { ref field, .. } | ReviewError::BadScope { ref field, .. } => {
                ApiError::field(field.clone(), e.to_string())
            }
            ReviewError::Store(e) => e.into(),
        }
    }
}

/// A JSON response.
pub fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    bytes_response(status, "application/json", serde_json::to_vec(value).expect("response serializes"))
}

/// A response with a body and content type.
pub fn bytes_response(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    resp
}
