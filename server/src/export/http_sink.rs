//! The `http` sink: one POST per batch (ndjson, Splunk HEC or Elasticsearch `_bulk`), over
//! TLS (rustls; the system's CA store plus `ca_file`) for `https://`. A batch the receiver refuses with a 4xx
//! (other than 408/429) is re-sent one record at a time, and a record refused alone goes
//! to the dead-letter file with the reason; 408, 429, 5xx and network errors are transient
//! (the caller retries the whole batch later).

use super::SinkError;
use super::config::{HttpFormat, SinkConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Largest response body read from a receiver.
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// A credential; never printed.
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A configured receiver.
pub struct HttpSink {
    uri: http::Uri,
    format: HttpFormat,
    index: String,
    auth: Option<String>,
    tls: Option<tokio_rustls::TlsConnector>,
    timeout: Duration,
    dead_letter: PathBuf,
    replica: http::HeaderValue,
}

/// One record ready to send: its id, received time and JSON.
pub struct Item {
    /// Event id.
    pub id: u64,
    /// Received time (Unix seconds), for the index name.
    pub received_at_unix: i64,
    /// The record.
    pub json: Vec<u8>,
}

enum Outcome {
    Ok,
    /// Refused as invalid (4xx), with the reason.
    Rejected(String),
    /// Per-record failures of an Elasticsearch bulk request: (position, reason, transient).
    Partial(Vec<(usize, String, bool)>),
}

impl HttpSink {
    /// Reads the credential and the CA; errors name the key. `replica` (this replica's lease
    /// holder id) is sent as `X-Dasher-Replica` with every request.
    pub fn new(c: &SinkConfig, data_dir: &std::path::Path, replica: &str) -> Result<HttpSink, String> {
        let url = c.url.as_deref().unwrap_or_default();
        let uri: http::Uri = url.parse().map_err(|e| format!("url: {e}"))?;
        let secret = match (&c.credential_file, &c.credential_env) {
            (Some(p), _) => Some(Secret(
                std::fs::read_to_string(p)
                    .map_err(|e| format!("credential_file {}: {e}", p.display()))?
                    .trim()
                    .to_owned(),
            )),
            (None, Some(var)) => Some(Secret(
                std::env::var(var).map_err(|_| format!("credential_env: {var} is not set"))?.trim().to_owned(),
            )),
            (None, None) => None,
        };
        let auth = match (c.format, &c.username, secret) {
            (_, _, None) => None,
            (HttpFormat::Splunk, _, Some(s)) => Some(format!("Splunk {}", s.0)),
            (_, Some(user), Some(s)) => {
                use base64::Engine;
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", s.0))))
            }
            (HttpFormat::Elasticsearch, None, Some(s)) => Some(format!("ApiKey {}", s.0)),
            (HttpFormat::Ndjson, None, Some(s)) => Some(format!("Bearer {}", s.0)),
        };
        let tls = if uri.scheme_str() == Some("https") { Some(tls_connector(c)?) } else { None };
        let dead_letter =
            c.dead_letter_path.clone().unwrap_or_else(|| data_dir.join(format!("export-{}.deadletter.jsonl", c.name)));
        Ok(HttpSink {
            uri,
            format: c.format,
            index: c.index.clone(),
            auth,
            tls,
            timeout: Duration::from_secs(c.timeout_secs),
            dead_letter,
            replica: http::HeaderValue::from_str(replica).map_err(|e| format!("replica id {replica:?}: {e}"))?,
        })
    }

    /// Delivers `items`; `Ok(n)` = how many were dead-lettered.
    pub async fn deliver(&self, items: &[Item]) -> Result<u64, SinkError> {
        match self.post(items).await? {
            Outcome::Ok => Ok(0),
            Outcome::Partial(failed) => {
                if let Some((_, reason, _)) = failed.iter().find(|f| f.2) {
                    return Err(SinkError::Transient(format!("bulk item failed: {reason}")));
                }
                let dead: Vec<_> = failed.iter().map(|(i, r, _)| (&items[*i], r.clone())).collect();
                self.dead_letter(&dead)?;
                Ok(dead.len() as u64)
            }
            Outcome::Rejected(reason) if items.len() == 1 => {
                self.dead_letter(&[(&items[0], reason)])?;
                Ok(1)
            }
            Outcome::Rejected(_) => {
                // Find the record(s) at fault: one at a time, in order.
                let mut dead = 0;
                for item in items {
                    dead += Box::pin(self.deliver(std::slice::from_ref(item))).await?;
                }
                Ok(dead)
            }
        }
    }

    fn body(&self, items: &[Item]) -> Vec<u8> {
        let mut out = Vec::new();
        for it in items {
            match self.format {
                HttpFormat::Ndjson => out.extend_from_slice(&it.json),
                HttpFormat::Splunk => {
                    let _ = write!(out, "{{\"time\":{},\"sourcetype\":\"santa:event\",\"event\":", it.received_at_unix);
                    out.extend_from_slice(&it.json);
                    out.push(b'}');
                }
                HttpFormat::Elasticsearch => {
                    let action = json!({"create": {"_index": index_name(&self.index, it.received_at_unix), "_id": it.id.to_string()}});
                    out.extend_from_slice(action.to_string().as_bytes());
                    out.push(b'\n');
                    out.extend_from_slice(&it.json);
                }
            }
            out.push(b'\n');
        }
        out
    }

    async fn post(&self, items: &[Item]) -> Result<Outcome, SinkError> {
        let body = self.body(items);
        let host = self.uri.host().unwrap_or_default().to_owned();
        let port = self.uri.port_u16().unwrap_or(if self.tls.is_some() { 443 } else { 80 });
        let path = self.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
        let authority = self.uri.authority().map(|a| a.as_str()).unwrap_or(&host).to_owned();
        let content_type = match self.format {
            HttpFormat::Splunk => "application/json",
            HttpFormat::Ndjson | HttpFormat::Elasticsearch => "application/x-ndjson",
        };
        let mut req = http::Request::post(path)
            .header("host", authority)
            .header("content-type", content_type)
            .header("x-dasher-replica", self.replica.clone());
        if let Some(a) = &self.auth {
            req = req.header("authorization", a);
        }
        let req = req.body(Full::new(Bytes::from(body))).map_err(|e| SinkError::Transient(e.to_string()))?;
        let call = async {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            let resp = match &self.tls {
                None => send(hyper_util::rt::TokioIo::new(tcp), req).await?,
                Some(tls) => {
                    let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
                    let stream = tls.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
                    send(hyper_util::rt::TokioIo::new(stream), req).await?
                }
            };
            Ok::<_, String>(resp)
        };
        let (status, text) = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| SinkError::Transient(format!("no answer within {} s", self.timeout.as_secs())))?
            .map_err(SinkError::Transient)?;
        let s = status.as_u16();
        if status.is_success() {
            if self.format == HttpFormat::Elasticsearch {
                return Ok(bulk_failures(&text));
            }
            return Ok(Outcome::Ok);
        }
        let reason = format!("HTTP {s}: {}", text.chars().take(500).collect::<String>());
        if status.is_client_error() && s != 408 && s != 429 {
            Ok(Outcome::Rejected(reason))
        } else {
            Err(SinkError::Transient(reason))
        }
    }

    fn dead_letter(&self, dead: &[(&Item, String)]) -> Result<(), SinkError> {
        let io =
            |e: std::io::Error| SinkError::Transient(format!("dead-letter file {}: {e}", self.dead_letter.display()));
        if let Some(dir) = self.dead_letter.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.dead_letter).map_err(io)?;
        let mut buf = Vec::new();
        for (item, reason) in dead {
            let record: Value = serde_json::from_slice(&item.json).unwrap_or(Value::Null);
            let line = json!({"event_id": item.id.to_string(), "reason": reason, "record": record});
            buf.extend_from_slice(line.to_string().as_bytes());
            buf.push(b'\n');
            tracing::warn!(event_id = item.id, reason, "export: record rejected by the sink, dead-lettered");
        }
        f.write_all(&buf).and_then(|()| f.sync_data()).map_err(io)
    }
}

/// The TLS client of an `https://` sink: trusts the operating system's certificate store
/// (unless `system_roots = false`) plus the certificates in `ca_file`, if set.
fn tls_connector(c: &SinkConfig) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if c.system_roots {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(sink = %c.name, error = %e, "export: part of the system certificate store is unreadable");
        }
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(sink = %c.name, added, "export: system CA certificates trusted");
    }
    if let Some(ca) = &c.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            roots.add(cert).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        }
    }
    if roots.is_empty() {
        return Err(if c.system_roots {
            "no CA certificate to trust: the system certificate store is empty or unreadable; set ca_file".into()
        } else {
            "ca_file holds no CA certificate".into()
        });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn send<S>(io: S, req: http::Request<Full<Bytes>>) -> Result<(http::StatusCode, String), String>
where
    S: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    /// Ends the connection when the request is abandoned (timeout, lost lease, shutdown), so
    /// nothing more of it reaches the receiver.
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let (mut tx, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| e.to_string())?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let resp = tx.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES).collect().await.map_err(|e| e.to_string())?;
    Ok((status, String::from_utf8_lossy(&body.to_bytes()).into_owned()))
}

/// The per-item failures of a `_bulk` answer (`errors: true`): 409 (already there) counts as
/// delivered; 429 and 5xx are transient; other 4xx are rejections.
fn bulk_failures(text: &str) -> Outcome {
    let Ok(v) = serde_json::from_str::<Value>(text) else { return Outcome::Ok };
    if v.get("errors").and_then(Value::as_bool) != Some(true) {
        return Outcome::Ok;
    }
    let mut failed = vec![];
    for (i, item) in v.get("items").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let Some(op) = item.as_object().and_then(|o| o.values().next()) else { continue };
        let status = op.get("status").and_then(Value::as_u64).unwrap_or(0);
        if (200..300).contains(&status) || status == 409 {
            continue;
        }
        let reason = format!("bulk item HTTP {status}: {}", op.get("error").map(Value::to_string).unwrap_or_default());
        failed.push((i, reason, status == 429 || status >= 500 || status == 0));
    }
    if failed.is_empty() { Outcome::Ok } else { Outcome::Partial(failed) }
}

/// `template` with `{yyyy}`, `{mm}`, `{dd}` replaced by the UTC date of `unix`.
pub fn index_name(template: &str, unix: i64) -> String {
    let (y, m, d) = super::record::civil_from_days(unix.div_euclid(86_400));
    template
        .replace("{yyyy}", &format!("{y:04}"))
        .replace("{mm}", &format!("{m:02}"))
        .replace("{dd}", &format!("{d:02}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_and_bulk_answers() {
        assert_eq!(index_name("dasher-{yyyy}.{mm}.{dd}", 1_767_225_600), "dasher-2026.01.01");
        let ok = r#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":409}},{"create":{"status":400,"error":{"type":"mapper_parsing_exception"}}}]}"#;
        match bulk_failures(ok) {
            Outcome::Partial(f) => assert_eq!((f.len(), f[0].0, f[0].2), (1, 2, false)),
            _ => panic!("one rejection expected"),
        }
        assert!(matches!(bulk_failures(r#"{"errors":false,"items":[]}"#), Outcome::Ok));
    }
}
