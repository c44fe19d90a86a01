//! What the bench scenarios ask of the server besides syncs: samples of its process from
//! `/proc`, rules loaded through the admin API, and values read from `/metrics`.

use crate::fixtures;
use crate::transport::Transport;
use serde_json::{Value, json};

// ---- server process sampling ---------------------------------------------------------------

/// CPU and memory of a process at one instant, from `/proc/PID/{stat,status}` (Linux).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcSample {
    /// User + system CPU seconds so far.
    pub cpu_s: f64,
    /// Resident set (KiB).
    pub rss_kib: u64,
    /// Peak resident set since start (`VmHWM`, KiB).
    pub hwm_kib: u64,
}

/// Samples `pid`; `None` if it is not readable (not Linux, or gone).
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib =
        |key: &str| status.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
    // USER_HZ is 100 on every mainstream Linux ABI.
    Some(ProcSample { cpu_s: ticks as f64 / 100.0, rss_kib: kib("VmRSS:")?, hwm_kib: kib("VmHWM:")? })
}

pub(super) fn server_section(pid: Option<u32>, before: Option<ProcSample>, elapsed: f64) -> Value {
    let (Some(pid), Some(b)) = (pid, before) else { return json!({"sampled": false}) };
    let Some(a) = sample(pid) else { return json!({"sampled": false}) };
    let cpu = a.cpu_s - b.cpu_s;
    json!({
        "sampled": true,
        "cpu_s": cpu,
        "cpu_util": cpu / elapsed.max(1e-9),
        "rss_before_kib": b.rss_kib,
        "rss_after_kib": a.rss_kib,
        "rss_growth_kib": a.rss_kib as i64 - b.rss_kib as i64,
        "peak_rss_kib": a.hwm_kib,
    })
}

// ---- admin helpers --------------------------------------------------------------------------

/// Commits global rules `from..from+n` of the fixture set `salt` through `POST /api/v1/rules`,
/// 10,000 per request. Returns the last version.
pub async fn load_rules(t: &Transport, admin: &str, token: &str, from: u64, n: u64, salt: u64) -> anyhow::Result<u64> {
    load_rules_batched(t, admin, token, from, n, salt, 10_000).await
}

/// [`load_rules`] with `batch` rules per request.
pub async fn load_rules_batched(
    t: &Transport,
    admin: &str,
    token: &str,
    from: u64,
    n: u64,
    salt: u64,
    batch: u64,
) -> anyhow::Result<u64> {
    let url = format!("{}/api/v1/rules", admin.trim_end_matches('/'));
    let mut version = 0;
    let mut at = from;
    while at < from + n {
        let k = (from + n - at).min(batch.max(1));
        let rules: Vec<Value> = fixtures::rule_specs(at, k, salt)
            .into_iter()
            .map(|s| serde_json::to_value(s).expect("rule specs serialize"))
            .collect();
        let (status, body) = t
            .send_json(http::Method::POST, &url, token, &json!({ "rules": rules }))
            .await
            .map_err(|e| anyhow::anyhow!("POST {url}: {e}"))?;
        anyhow::ensure!(status == 200, "POST {url}: HTTP {status}: {}", String::from_utf8_lossy(&body));
        version = serde_json::from_slice::<Value>(&body)?["version"].as_u64().unwrap_or(0);
        at += k;
    }
    Ok(version)
}

/// `GET {admin}/metrics` (Prometheus text); `None` if it does not answer 200.
pub async fn scrape(t: &Transport, admin: &str, token: &str) -> Option<String> {
    let url = format!("{}/metrics", admin.trim_end_matches('/'));
    match t.get_text(&url, token).await {
        Ok((200, body)) => Some(String::from_utf8_lossy(&body).into_owned()),
        _ => None,
    }
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next()? == name).then(|| parts.next()?.parse().ok()).flatten()
    })
}

/// Plugin-set swaps so far (`dasher_plugin_reloads_total`: loads, reloads, rollbacks, unloads).
pub(super) const PLUGIN_RELOADS: &str = "dasher_plugin_reloads_total";

pub(super) fn sample_json(p: Option<ProcSample>) -> Value {
    p.map_or(Value::Null, |p| json!({"rss_kib": p.rss_kib, "peak_rss_kib": p.hwm_kib, "cpu_s": p.cpu_s}))
}
