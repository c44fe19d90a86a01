//! Reports of `dasher-sim bench`: the one-line terminal summary and `summarize`, which merges a
//! directory of reports into `results.json` and the markdown tables of BENCHMARKS.md.

use serde_json::Value;
use std::path::PathBuf;

/// One line per report for the terminal.
pub fn summary(r: &Value) -> String {
    let st = |n: &str| {
        let s = &r["stages"][n];
        format!("{n} p50/p99 {:.1}/{:.1} ms", s["p50_ms"].as_f64().unwrap_or(0.0), s["p99_ms"].as_f64().unwrap_or(0.0))
    };
    format!(
        "{}: {:.1} s measured, {:.1} syncs/s, {:.1} req/s, {} errors; {}; {}; server cpu {:.2} s, peak RSS {} KiB",
        r["scenario"].as_str().unwrap_or("?"),
        r["elapsed_s"].as_f64().unwrap_or(0.0),
        r["syncs_per_sec"].as_f64().unwrap_or(0.0),
        r["requests_per_sec"].as_f64().unwrap_or(0.0),
        r["errors"],
        st("full_sync"),
        st("eventupload"),
        r["server"]["cpu_s"].as_f64().unwrap_or(0.0),
        r["server"]["peak_rss_kib"]
    )
}

fn ms_pair(r: &Value, stage: &str) -> String {
    let s = &r["stages"][stage];
    if s["count"].as_u64().unwrap_or(0) == 0 {
        return "–".into();
    }
    format!("{:.1} / {:.1}", s["p50_ms"].as_f64().unwrap_or(0.0), s["p99_ms"].as_f64().unwrap_or(0.0))
}

fn mib(v: &Value) -> String {
    v.as_f64().map_or("–".into(), |k| format!("{:.0}", k / 1024.0))
}

/// Merges every `RUN.json` report in `dir` with its `RUN.meta.json` (fields the script adds:
/// engine, store size, reopen time…), writes `results.json` and `results.md`, returns the table.
pub fn summarize(dir: &std::path::Path) -> anyhow::Result<String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.ends_with(".json") && !n.ends_with(".meta.json") && n != "results.json"
        })
        .collect();
    names.sort();
    let mut runs = Vec::new();
    for path in names {
        let mut r: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        let run = path.file_stem().and_then(|n| n.to_str()).unwrap_or("").to_owned();
        if let Ok(meta) = std::fs::read(path.with_extension("meta.json")) {
            let meta: Value = serde_json::from_slice(&meta)?;
            for (k, v) in meta.as_object().into_iter().flatten() {
                r[k] = v.clone();
            }
        }
        r["run"] = run.into();
        runs.push(r);
    }
    let baseline = runs.iter().find(|r| r["scenario"] == "steady" && r["engine"] == "baseline").cloned();
    for r in &mut runs {
        if let Some(b) = &baseline
            && r["scenario"] == "steady"
            && r["engine"] != "baseline"
        {
            let base = b["syncs_per_sec"].as_f64().unwrap_or(0.0);
            if base > 0.0 {
                r["syncs_per_sec_vs_baseline"] = (r["syncs_per_sec"].as_f64().unwrap_or(0.0) / base).into();
            }
        }
    }
    let mut md = String::from(
        "| run | engine | hosts | rules | measured s | syncs/s | events/s | vs trivial endpoint | preflight p50/p99 ms \
         | ruledownload p50/p99 ms | eventupload p50/p99 ms | full sync p50/p99 ms | errors | converged | server CPU s \
         (util) | peak RSS MiB | RSS growth MiB | store MiB | reopen s |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &runs {
        let f = |k: &str, d: usize| r[k].as_f64().map_or("–".into(), |v| format!("{v:.d$}"));
        let server = &r["server"];
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r["run"].as_str().unwrap_or(""),
            r["engine"].as_str().unwrap_or("–"),
            r["hosts"],
            r["rules"].as_u64().map_or("–".into(), |v| v.to_string()),
            f("elapsed_s", 1),
            if r["syncs"].as_u64().unwrap_or(0) > 0 { f("syncs_per_sec", 1) } else { "–".into() },
            f("events_per_sec", 0),
            r["syncs_per_sec_vs_baseline"].as_f64().map_or("–".into(), |v| format!("{v:.2}×")),
            ms_pair(r, "preflight"),
            ms_pair(r, "ruledownload"),
            ms_pair(r, "eventupload"),
            ms_pair(r, "full_sync"),
            r["errors"],
            if r["convergence_checked"] == true {
                format!("{}/{}", r["converged_hosts"], r["hosts"])
            } else {
                "–".into()
            },
            server["cpu_s"].as_f64().map_or("–".into(), |c| format!(
                "{c:.1} ({:.0} %)",
                server["cpu_util"].as_f64().unwrap_or(0.0) * 100.0
            )),
            mib(&server["peak_rss_kib"]),
            mib(&server["rss_growth_kib"]),
            r["store_bytes"].as_f64().map_or("–".into(), |b| format!("{:.1}", b / 1048576.0)),
            f("reopen_s", 2),
        ));
    }
    for r in runs.iter().filter(|r| r["scenario"] == "rule-push") {
        md.push_str(&format!(
            "\n{} ({}): push of {} rules committed in {} s, on every host after {} s ({} of {} hosts at the end).\n",
            r["run"].as_str().unwrap_or(""),
            r["engine"].as_str().unwrap_or(""),
            r["push_rules"],
            r["push_commit_s"].as_f64().map_or("–".into(), |v| format!("{v:.2}")),
            r["push_propagation_s"].as_f64().map_or("–".into(), |v| format!("{v:.2}")),
            r["hosts_with_push"],
            r["hosts"],
        ));
    }
    md.push_str(&extra_sections(&runs));
    std::fs::write(dir.join("results.json"), serde_json::to_vec_pretty(&runs)?)?;
    std::fs::write(dir.join("results.md"), &md)?;
    Ok(md)
}

/// Server CPU milliseconds per completed full sync of a run, if it made any.
fn cpu_ms_per_sync(r: &Value) -> Option<f64> {
    let syncs = r["syncs"].as_u64().filter(|n| *n > 0)? as f64;
    Some(r["server"]["cpu_s"].as_f64()? * 1000.0 / syncs)
}

/// The sections after the main table: plugins' share of server CPU (steady with vs without
/// plugins, per engine), hot reload under load, and the memory runs.
fn extra_sections(runs: &[Value]) -> String {
    let mut md = String::new();
    let name = |r: &Value| r["run"].as_str().unwrap_or("").to_owned();
    let find = |n: &str| runs.iter().find(|r| r["run"] == n);
    for r in runs.iter().filter(|r| r["scenario"] == "steady" && r["plugins"] == false) {
        let engine = r["engine"].as_str().unwrap_or("");
        let (Some(with), Some(without)) =
            (find(&format!("2-steady-{engine}")).and_then(cpu_ms_per_sync), cpu_ms_per_sync(r))
        else {
            continue;
        };
        md.push_str(&format!(
            "\nPlugins' share of server CPU per full sync ({engine}): {with:.2} ms with the three example plugins, \
             {without:.2} ms without ({}) → plugins add {:+.0} % to a full sync's server CPU ({:.0} % of it).\n",
            name(r),
            (with / without - 1.0) * 100.0,
            (1.0 - without / with) * 100.0,
        ));
    }
    for r in runs.iter().filter(|r| r["scenario"] == "steady" && r["watch"] == true) {
        md.push_str(&format!(
            "\n{} ({}): hot reload under load: {} plugin reloads during the {} s measured phase (the plugin file \
             was rewritten {} times), {} errors and {} failed syncs in {} syncs, plugin files failing to load at the \
             end: {}.\n",
            name(r),
            r["engine"].as_str().unwrap_or(""),
            r["plugin_reloads"].as_f64().map_or("–".into(), |v| format!("{v:.0}")),
            r["elapsed_s"].as_f64().map_or("–".into(), |v| format!("{v:.1}")),
            r["rewrites"],
            r["errors"],
            r["syncs_failed"],
            r["syncs"],
            r["plugin_load_errors"].as_f64().map_or("–".into(), |v| format!("{v:.0}")),
        ));
    }
    let memory: Vec<&Value> = runs.iter().filter(|r| r["scenario"] == "memory").collect();
    if !memory.is_empty() {
        md.push_str(
            "\n| memory run | engine | hosts (server count) | registration s (syncs/s, failed) | rules | rule load s \
             (rules/s) | clean sync of all rules s (rules on host) | RSS after registration MiB | RSS after rule \
             load MiB | RSS at end MiB | peak RSS MiB | store MiB | errors |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for r in memory {
            let f = |k: &str, d: usize| r[k].as_f64().map_or("–".into(), |v| format!("{v:.d$}"));
            let phases = &r["server_phases"];
            let rules = r["rules"].as_f64().unwrap_or(0.0);
            md.push_str(&format!(
                "| {} | {} | {} ({}) | {} ({}, {}) | {} | {} ({}) | {} ({}) | {} | {} | {} | {} | {} | {} |\n",
                name(r),
                r["engine"].as_str().unwrap_or("–"),
                r["hosts"],
                r["server_hosts"].as_f64().map_or("–".into(), |v| format!("{v:.0}")),
                f("register_s", 1),
                f("register_syncs_per_sec", 0),
                r["register_syncs_failed"],
                r["rules"],
                f("rule_load_s", 1),
                r["rule_load_s"].as_f64().filter(|t| *t > 0.0).map_or("–".into(), |t| format!("{:.0}", rules / t)),
                f("clean_sync_s", 2),
                r["rules_on_host"],
                mib(&phases["after_register"]["rss_kib"]),
                mib(&phases["after_rule_load"]["rss_kib"]),
                mib(&phases["end"]["rss_kib"]),
                mib(&phases["end"]["peak_rss_kib"]),
                r["store_bytes"].as_f64().map_or("–".into(), |b| format!("{:.1}", b / 1048576.0)),
                r["errors"],
            ));
        }
    }
    md
}
