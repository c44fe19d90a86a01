//! The blast report: JSON per phase, and the human table printed at the end.

use super::drive::{PhaseResult, STAGES};
use serde_json::{Map, Value, json};
use std::fmt::Write;

/// One phase as JSON: throughput, per-stage latency (ms), errors, the generator's own CPU per
/// sync, and the server's when `server_cpu_s` was sampled.
pub fn phase_json(r: &PhaseResult, server_cpu_s: Option<f64>, own_cpu_s: Option<f64>) -> Value {
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let mut stages = Map::new();
    for (name, h) in STAGES.iter().zip(&r.hists) {
        if h.is_empty() {
            continue;
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        stages.insert(
            (*name).into(),
            json!({"count": h.len(), "p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99), "max_ms": h.max() as f64 / 1000.0}),
        );
    }
    let mut v = json!({
        "elapsed_s": secs,
        "syncs": r.ok,
        "syncs_per_s": r.ok as f64 / secs,
        "requests": r.requests,
        "requests_per_s": r.requests as f64 / secs,
        "rules_received": r.rules_received,
        "errors": r.error_count(),
        "errors_by_kind": r.errors,
        "first_errors": r.first_errors,
        "stages": stages,
    });
    if let Some(cpu) = own_cpu_s {
        v["blast_cpu_s"] = json!(cpu);
        v["blast_cpu_us_per_sync"] = json!(if r.ok > 0 { cpu * 1e6 / r.ok as f64 } else { 0.0 });
    }
    if let Some(cpu) = server_cpu_s {
        v["server_cpu_s"] = json!(cpu);
        v["server_cpu_util"] = json!(cpu / secs);
        v["server_cpu_us_per_sync"] = json!(if r.ok > 0 { cpu * 1e6 / r.ok as f64 } else { 0.0 });
    }
    v
}

fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.1}"),
        None => "–".into(),
    }
}

/// The terminal table: one row per generation and target. `server µs` and `blast µs` are CPU
/// per completed sync of the server process and of this process (which hosts the trivial target).
pub fn human(report: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "load average at the end: {}", report["load"]);
    let _ = writeln!(
        out,
        "{:<16} {:<8} {:>6} {:>6} {:>9} {:>9} {:>7} {:>10} {:>9} {:>20} {:>20} {:>20} {:>20}",
        "generation",
        "target",
        "hosts",
        "rules",
        "syncs/s",
        "req/s",
        "errors",
        "server µs",
        "blast µs",
        "preflight p50/90/99",
        "ruledownload",
        "postflight",
        "full sync"
    );
    for run in report["runs"].as_array().into_iter().flatten() {
        for target in ["server", "trivial"] {
            let p = &run[target];
            if p.is_null() {
                continue;
            }
            let lat = |stage: &str| {
                let s = &p["stages"][stage];
                if s.is_null() {
                    "–".to_owned()
                } else {
                    format!("{}/{}/{} ms", f(&s["p50_ms"]), f(&s["p90_ms"]), f(&s["p99_ms"]))
                }
            };
            let _ = writeln!(
                out,
                "{:<16} {:<8} {:>6} {:>6} {:>9} {:>9} {:>7} {:>10} {:>9} {:>20} {:>20} {:>20} {:>20}",
                run["generation"].as_str().unwrap_or(""),
                target,
                run["hosts"].to_string(),
                run["rules_per_host"].to_string(),
                f(&p["syncs_per_s"]),
                f(&p["requests_per_s"]),
                p["errors"].to_string(),
                f(&p["server_cpu_us_per_sync"]),
                f(&p["blast_cpu_us_per_sync"]),
                lat("preflight"),
                lat("ruledownload"),
                lat("postflight"),
                lat("full_sync"),
            );
            if !p["stages"]["eventupload"].is_null() {
                let s = &p["stages"]["eventupload"];
                let _ = writeln!(
                    out,
                    "{:<16} {:<8} eventupload p50/90/99 {}/{}/{} ms",
                    "",
                    "",
                    f(&s["p50_ms"]),
                    f(&s["p90_ms"]),
                    f(&s["p99_ms"])
                );
            }
            for e in p["first_errors"].as_array().into_iter().flatten() {
                let _ = writeln!(out, "    error: {}", e.as_str().unwrap_or(""));
            }
        }
        if let Some(r) = run["ratio_to_trivial"].as_f64() {
            let _ = writeln!(out, "{:<16} server / trivial = {r:.2}×", run["generation"].as_str().unwrap_or(""));
        }
    }
    out
}
