//! `dasher rules export|plan|apply|import`.

use super::client::{Api, Conn, query};
use crate::rules::PlanRequest;
use crate::rules::files::{self, file_name_for, to_toml};
use crate::rules::import;
use anyhow::{Context, bail};
use dasher_sdk::domain::Rule;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Rules per page when exporting.
const EXPORT_PAGE: usize = 50_000;

/// `dasher rules …`
#[derive(clap::Subcommand, Debug)]
pub enum RulesCommand {
    /// Write every rule set (or one) as rules files into DIR; applying them back changes nothing.
    Export {
        /// Output directory (created if missing).
        dir: PathBuf,
        /// Only this rule set.
        #[arg(long)]
        set: Option<String>,
    },
    /// Show what `apply` would do, per set. Exit 0: nothing to do, 2: changes, 1: error.
    Plan {
        /// Directory of rules files.
        dir: PathBuf,
        /// Print the plan as JSON ({"add","change","remove","sets":{…}}).
        #[arg(long)]
        json: bool,
        /// Also empty every rule set that no file names.
        #[arg(long)]
        prune: bool,
    },
    /// Commit the whole plan as one rule version, or nothing.
    Apply {
        /// Directory of rules files.
        dir: PathBuf,
        /// Refuse (409) if the rule head is no longer this version (the one `plan` showed).
        #[arg(long)]
        expect_version: Option<u64>,
        /// Also empty every rule set that no file names.
        #[arg(long)]
        prune: bool,
        /// Print the server's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Convert Moroz configs or a `santactl rule --export` file into rules files (no server needed).
    Import {
        /// What PATH is.
        #[arg(long, value_enum)]
        from: ImportFrom,
        /// A Moroz config directory or file, or a santactl JSON export.
        path: PathBuf,
        /// Output directory (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The rule set santactl rules go into.
        #[arg(long, default_value = "global")]
        set: String,
        /// Overwrite files that exist in the output directory.
        #[arg(long)]
        force: bool,
    },
}

/// Import sources.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ImportFrom {
    /// Moroz TOML configs.
    Moroz,
    /// `santactl rule --export` JSON.
    Santactl,
}

/// Runs a rules command.
pub async fn run(conn: &Conn, cmd: RulesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RulesCommand::Export { dir, set } => export(&Api::new(conn)?, &dir, set).await,
        RulesCommand::Plan { dir, json, prune } => {
            let body = read_dir(&dir, prune, None)?;
            let plan = Api::new(conn)?.post("/api/v1/rules/plan", &body).await?;
            let changes = count(&plan, "add") + count(&plan, "change") + count(&plan, "remove");
            if json {
                super::print_json(&plan);
            } else {
                print_plan(&plan, &dir);
            }
            Ok(if changes > 0 { ExitCode::from(2) } else { ExitCode::SUCCESS })
        }
        RulesCommand::Apply { dir, expect_version, prune, json } => {
            let body = read_dir(&dir, prune, expect_version)?;
            let out = Api::new(conn)?.post("/api/v1/rules/apply", &body).await?;
            if json {
                super::print_json(&out);
            } else {
                let v = out["applied_version"].as_u64().unwrap_or_default();
                if count(&out, "add") + count(&out, "change") + count(&out, "remove") == 0 {
                    println!("Nothing to apply: the server's rules already match {} (version {v}).", dir.display());
                } else {
                    print_plan(&out, &dir);
                    println!("Applied as rule version {v}.");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Import { from, path, out, set, force } => {
            let imported = match from {
                ImportFrom::Moroz => import::from_moroz(&path, usize::MAX)?,
                ImportFrom::Santactl => import::from_santactl(&path, &set, usize::MAX)?,
            };
            for w in &imported.warnings {
                eprintln!("warning: {w}");
            }
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let mut written = Vec::new();
            for set in &imported.sets {
                let rules: Vec<Rule> = set.rules.values().cloned().collect();
                let file = out.join(file_name_for(&set.name));
                if file.exists() && !force {
                    bail!("{} exists; pass --force to overwrite it", file.display());
                }
                write_atomic(&file, &to_toml(&set.name, &rules))?;
                written.push(format!("{} ({} rules → set {:?})", file.display(), rules.len(), set.name));
            }
            for w in written {
                println!("wrote {w}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn count(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or_default()
}

/// The request body for a directory: every file's set, whole.
fn read_dir(dir: &Path, prune: bool, expect_version: Option<u64>) -> anyhow::Result<Value> {
    if !dir.is_dir() {
        bail!("{} is not a directory of rules files", dir.display());
    }
    let loaded = files::load_dir(dir)?;
    if loaded.sets.is_empty() && !prune {
        eprintln!("note: {} holds no rules files (*.toml)", dir.display());
    }
    Ok(serde_json::to_value(PlanRequest { sets: loaded.sets, prune, expect_version })?)
}

fn print_plan(plan: &Value, dir: &Path) {
    let version = count(plan, "version");
    let empty = serde_json::Map::new();
    let sets = plan.get("sets").and_then(Value::as_object).unwrap_or(&empty);
    if sets.is_empty() {
        println!("No changes: the server's rules match {} (version {version}).", dir.display());
        return;
    }
    let rule =
        |r: &Value| format!("{} {}", r["rule_type"].as_str().unwrap_or("?"), r["identifier"].as_str().unwrap_or("?"));
    for (name, sp) in sets {
        let from = match sp.get("source").and_then(Value::as_str) {
            Some(s) => format!(" ({s})"),
            None if sp["pruned"].as_bool() == Some(true) => " (no file: pruned)".to_owned(),
            None => String::new(),
        };
        println!(
            "rule set {name}{from}: {} to add, {} to change, {} to remove",
            count(sp, "add"),
            count(sp, "change"),
            count(sp, "remove")
        );
        for r in sp["added"].as_array().into_iter().flatten() {
            println!("  + {}", rule(r));
        }
        for r in sp["changed"].as_array().into_iter().flatten() {
            let fields: Vec<&str> = r["fields"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            println!("  ~ {} ({})", rule(r), fields.join(", "));
        }
        for r in sp["removed"].as_array().into_iter().flatten() {
            println!("  - {}", rule(r));
        }
        let listed =
            ["added", "changed", "removed"].iter().map(|k| sp[k].as_array().map_or(0, Vec::len)).sum::<usize>();
        let total = (count(sp, "add") + count(sp, "change") + count(sp, "remove")) as usize;
        if listed < total {
            println!("  … and {} more (see --json)", total - listed);
        }
    }
    println!(
        "Plan at rule version {version}: {} to add, {} to change, {} to remove.",
        count(plan, "add"),
        count(plan, "change"),
        count(plan, "remove")
    );
}

/// Writes a temporary file beside `path` and renames it into place.
fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("rules.toml");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} into place", tmp.display()))?;
    Ok(())
}

async fn export(api: &Api, dir: &Path, only: Option<String>) -> anyhow::Result<ExitCode> {
    let sets: Vec<String> = match only {
        Some(s) => vec![s],
        None => api.get("/api/v1/rule-sets").await?["rule_sets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["rules"].as_u64().unwrap_or(0) > 0)
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .filter(|s| dasher_sdk::names::RuleSetName::writable(s).is_ok())
            .collect(),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // One version for every set: the export is one consistent snapshot.
    let mut version: Option<u64> = None;
    let mut total = 0;
    let mut names = std::collections::HashSet::new();
    for set in &sets {
        let mut rules: Vec<Rule> = Vec::new();
        loop {
            let last = rules.last();
            let q = query(&[
                ("rule_set", Some(set.clone())),
                ("limit", Some(EXPORT_PAGE.to_string())),
                ("version", version.map(|v| v.to_string())),
                ("after_type", last.map(|r| r.rule_type.to_string())),
                ("after_identifier", last.map(|r| r.identifier.clone())),
            ]);
            let page = api.get(&format!("/api/v1/rules{q}")).await?;
            version = version.or(page["version"].as_u64());
            let got: Vec<Rule> = serde_json::from_value(page["rules"].clone())
                .context("the server's rules are not in the format this dasher reads")?;
            let n = got.len();
            rules.extend(got);
            if n < EXPORT_PAGE {
                break;
            }
        }
        let mut file = file_name_for(set);
        let mut i = 2;
        while !names.insert(file.clone()) {
            file = format!("{}-{i}.toml", file_name_for(set).trim_end_matches(".toml"));
            i += 1;
        }
        write_atomic(&dir.join(&file), &to_toml(set, &rules))?;
        total += rules.len();
        println!("{file}: {} rules (set {set:?})", rules.len());
    }
    println!(
        "Exported {} rule sets, {total} rules, at rule version {} into {}.",
        sets.len(),
        version.unwrap_or_default(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
