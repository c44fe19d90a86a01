//! The `dasher` CLI's client of a running server's admin API (`plugin history`, `plugin
//! rollback`): plain HTTP to `--server`, bearer token from `DASHER_ADMIN_TOKEN` or
//! `--token-file`.

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::path::PathBuf;
use std::time::Duration;

/// Largest answer read from the server.
const MAX_ANSWER_BYTES: usize = 16 << 20;
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the server is and how to authenticate.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// The server's admin address (the main listener, or `admin.listen`); plain HTTP.
    #[arg(long, env = "DASHER_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// File holding an admin-API token (else `DASHER_ADMIN_TOKEN`).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

impl ServerArgs {
    fn token(&self) -> anyhow::Result<String> {
        if let Some(path) = &self.token_file {
            let t = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            return Ok(t.trim().to_owned());
        }
        match std::env::var("DASHER_ADMIN_TOKEN") {
            Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
            _ => bail!("no admin token: set DASHER_ADMIN_TOKEN or pass --token-file (e.g. DATA_DIR/admin.token)"),
        }
    }
}

/// Characters left as they are in a path segment (RFC 3986 unreserved).
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes one path segment (plugin names pass unchanged).
pub fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// Calls the admin API; a non-2xx answer is an error carrying the server's message.
pub fn call(
    args: &ServerArgs,
    method: http::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let base = args.server.trim_end_matches('/');
    if !base.starts_with("http://") {
        bail!(
            "--server must be an http:// URL (this client does not speak HTTPS; use curl with the admin API for that)"
        );
    }
    let token = args.token()?;
    let uri = format!("{base}{path}");
    let body = body.map(|b| serde_json::to_vec(&b)).transpose()?.unwrap_or_default();
    let req = http::Request::builder()
        .method(method)
        .uri(&uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let resp = tokio::time::timeout(CALL_TIMEOUT, client.request(req))
            .await
            .with_context(|| format!("{uri}: no answer within {} s", CALL_TIMEOUT.as_secs()))?
            .with_context(|| format!("{uri}: cannot connect"))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("{uri}: reading the answer: {e}"))?
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(
            |_| serde_json::json!({ "error": String::from_utf8_lossy(&bytes).chars().take(500).collect::<String>() }),
        );
        if !status.is_success() {
            bail!("{uri}: {status}: {}", v["error"].as_str().unwrap_or(&v.to_string()));
        }
        Ok(v)
    })
}

/// The history answer as a table, newest first.
pub fn format_history(v: &serde_json::Value) -> String {
    let active = v["active"].as_str().unwrap_or("");
    let mut out = format!("plugin {}\n", v["plugin"].as_str().unwrap_or("?"));
    out.push_str("     #  generation     version   activated (UTC)       trigger        by\n");
    for g in v["generations"].as_array().into_iter().flatten() {
        let sha = g["sha256"].as_str().unwrap_or("");
        out.push_str(&format!(
            "{} {:>4}  {:<13}  {:<8}  {:<20}  {:<13}  {}\n",
            if sha == active { "*" } else { " " },
            g["number"].as_u64().unwrap_or(0),
            &sha[..sha.len().min(12)],
            g["version"].as_str().unwrap_or(""),
            utc(g["activated_at_unix"].as_i64().unwrap_or(0)),
            g["trigger"].as_str().unwrap_or(""),
            g["by"].as_str().unwrap_or("-"),
        ));
    }
    if active.is_empty() {
        out.push_str("(not loaded now)\n");
    }
    out
}

/// `YYYY-MM-DD HH:MM:SS` of Unix seconds (civil-from-days, UTC).
fn utc(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_767_225_599), "2025-12-31 23:59:59");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00");
    }
}
