//! The admin API client of the CLI: one server URL, one bearer token, JSON in and out, and
//! errors that say whether the server, the token or the request was wrong.

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Seconds to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Seconds for a whole request (a 100,000-rule apply takes seconds).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest response read.
const MAX_RESPONSE_BYTES: usize = 512 << 20;

/// Where the server is and how to authenticate (`--server`, `DASHER_SERVER`, `--token-file`,
/// `DASHER_ADMIN_TOKEN`).
#[derive(clap::Args, Clone, Debug)]
pub struct Conn {
    /// The server's admin API base URL.
    #[arg(long, env = "DASHER_SERVER", default_value = "http://127.0.0.1:8080", global = true)]
    pub server: String,
    /// Read the admin token from this file (otherwise DASHER_ADMIN_TOKEN).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
}

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No token given.
    #[error(
        "no admin token: set DASHER_ADMIN_TOKEN or pass --token-file FILE (a server without configured tokens writes one to DATA_DIR/admin.token)"
    )]
    NoToken,
    /// The token file could not be read.
    #[error("cannot read the token file {0}: {1}")]
    TokenFile(String, std::io::Error),
    /// `--server` is not a usable URL.
    #[error("--server {0:?} is not a usable URL: {1}")]
    BadServer(String, String),
    /// Nothing answered.
    #[error("cannot reach the Dasher server at {0}: {1}; is it running, and is --server (or DASHER_SERVER) right?")]
    Unreachable(String, String),
    /// 401.
    #[error("the server at {0} refused the admin token (401): check DASHER_ADMIN_TOKEN or --token-file")]
    WrongToken(String),
    /// 403.
    #[error("the admin token may not do this (403): {0}")]
    Forbidden(String),
    /// Any other refusal: status, the server's sentence, and the field it names.
    #[error("the server refused the request ({status}): {message}{}", field.as_deref().map(|f| format!(" (field {f})")).unwrap_or_default())]
    Refused {
        /// HTTP status.
        status: StatusCode,
        /// The server's error.
        message: String,
        /// The field it names.
        field: Option<String>,
    },
    /// The answer is not what the API sends.
    #[error("the server at {0} answered something that is not Dasher's admin API: {1}")]
    Garbled(String, String),
}

/// A connected admin API client.
pub struct Api {
    base: String,
    token: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Api {
    /// Checks the URL and reads the token.
    pub fn new(conn: &Conn) -> Result<Api, CliError> {
        let base = conn.server.trim_end_matches('/').to_owned();
        let uri: http::Uri = base.parse().map_err(|e| CliError::BadServer(base.clone(), format!("{e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(CliError::BadServer(
                    base,
                    "the CLI speaks plain HTTP only; point it at the admin listener (admin.listen) on loopback".into(),
                ));
            }
            _ => return Err(CliError::BadServer(base, "it must start with http://".into())),
        }
        let token = match &conn.token_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| CliError::TokenFile(path.display().to_string(), e))?
                .trim()
                .to_owned(),
            None => std::env::var("DASHER_ADMIN_TOKEN").unwrap_or_default().trim().to_owned(),
        };
        if token.is_empty() {
            return Err(CliError::NoToken);
        }
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        Ok(Api { base, token, client: Client::builder(TokioExecutor::new()).build(http) })
    }

    /// `GET path` (with its query string).
    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.call(Method::PUT, path, Some(body)).await
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("JSON serializes")).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| CliError::BadServer(self.base.clone(), e.to_string()))?;
        let unreachable = |e: String| CliError::Unreachable(self.base.clone(), e);
        let resp = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| unreachable(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())))?
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| unreachable(format!("the answer broke off: {e}")))?
            .to_bytes();
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if status.is_success() {
            return json.ok_or_else(|| {
                CliError::Garbled(self.base.clone(), String::from_utf8_lossy(&body[..body.len().min(200)]).into())
            });
        }
        let message = json
            .as_ref()
            .and_then(|j| j.get("error"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
        Err(match status {
            StatusCode::UNAUTHORIZED => CliError::WrongToken(self.base.clone()),
            StatusCode::FORBIDDEN => CliError::Forbidden(message),
            _ => CliError::Refused {
                status,
                message,
                field: json.as_ref().and_then(|j| j.get("field")).and_then(Value::as_str).map(str::to_owned),
            },
        })
    }
}

/// An error and its causes on one line (hyper's top-level message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// What a path segment keeps unencoded: letters, digits and the unreserved `-._~`.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A path segment, percent-encoded.
pub fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// A query string from pairs whose value is set.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            q.append_pair(k, v);
        }
    }
    let q = q.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}
