//! `dasher hosts|events|proposals|plugins`: the rest of the admin API, as tables or `--json`.

use super::client::{Api, Conn, query, seg};
use super::{print_json, print_table};
use serde_json::{Value, json};
use std::process::ExitCode;

/// `dasher hosts …`
#[derive(clap::Subcommand, Debug)]
pub enum HostsCommand {
    /// Hosts in machine-id order.
    List {
        /// At most this many (1–10000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Continue after this machine id.
        #[arg(long)]
        after: Option<String>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// One host: inventory, tags, sync state.
    Show {
        /// Machine id.
        machine_id: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replace a host's tags (none given: remove them all).
    Tag {
        /// Machine id.
        machine_id: String,
        /// The tags.
        tags: Vec<String>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask for a clean sync at the host's next preflight.
    CleanSync {
        /// Machine id.
        machine_id: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `dasher events` filters (those of `GET /api/v1/events`).
#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    /// Only this host.
    #[arg(long)]
    machine_id: Option<String>,
    /// Only this file (SHA-256).
    #[arg(long)]
    file_sha256: Option<String>,
    /// Only this decision (e.g. BLOCK_BINARY).
    #[arg(long)]
    decision: Option<String>,
    /// Only events received since (Unix seconds).
    #[arg(long)]
    since: Option<i64>,
    /// Only events with an id below this (paging).
    #[arg(long)]
    before_id: Option<u64>,
    /// Only events triage labelled so.
    #[arg(long)]
    label: Option<String>,
    /// Also events triage dropped as noise.
    #[arg(long)]
    include_dropped: bool,
    /// At most this many (1–10000).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
}

/// `dasher proposals …`
#[derive(clap::Subcommand, Debug)]
pub enum ProposalsCommand {
    /// Proposals, newest first.
    List {
        /// pending, approved or rejected.
        #[arg(long)]
        status: Option<String>,
        /// At most this many (1–10000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve: commits the proposed rule.
    Approve {
        /// Proposal id.
        id: u64,
        /// Who decides (recorded).
        #[arg(long)]
        by: Option<String>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reject.
    Reject {
        /// Proposal id.
        id: u64,
        /// Who decides (recorded).
        #[arg(long)]
        by: Option<String>,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `dasher plugins …`
#[derive(clap::Subcommand, Debug)]
pub enum PluginsCommand {
    /// Loaded plugins and their statistics.
    List {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rescan the plugin directory now.
    Reload {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Go back to a plugin's previous generation.
    Rollback {
        /// Plugin name.
        name: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn when(v: &Value) -> String {
    match v.as_f64().and_then(|t| time::OffsetDateTime::from_unix_timestamp(t as i64).ok()) {
        Some(t) if t.unix_timestamp() > 0 => {
            format!("{} {:02}:{:02}:{:02}", t.date(), t.hour(), t.minute(), t.second())
        }
        _ => "-".into(),
    }
}

fn done(out: &Value, json: bool, sentence: impl FnOnce() -> String) -> anyhow::Result<ExitCode> {
    if json {
        print_json(out);
    } else {
        println!("{}", sentence());
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a hosts command.
pub async fn hosts(conn: &Conn, cmd: HostsCommand) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    match cmd {
        HostsCommand::List { limit, after, json } => {
            let q = query(&[("limit", Some(limit.to_string())), ("after", after)]);
            let out = api.get(&format!("/api/v1/hosts{q}")).await?;
            if json {
                print_json(&out);
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = out["hosts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|h| {
                    let inv = &h["inventory"];
                    vec![
                        s(&h["machine_id"]),
                        s(&inv["hostname"]),
                        s(&inv["serial_number"]),
                        s(&inv["santa_version"]),
                        s(&inv["client_mode"]),
                        when(&inv["last_seen_unix"]),
                        s(&h["sync"]["last_outcome"]),
                        s(&h["tags"]),
                    ]
                })
                .collect();
            print_table(
                &["MACHINE ID", "HOSTNAME", "SERIAL", "SANTA", "MODE", "LAST SEEN (UTC)", "LAST SYNC", "TAGS"],
                &rows,
            );
            Ok(ExitCode::SUCCESS)
        }
        HostsCommand::Show { machine_id, json } => {
            let h = api.get(&format!("/api/v1/hosts/{}", seg(&machine_id))).await?;
            if json {
                print_json(&h);
                return Ok(ExitCode::SUCCESS);
            }
            let inv = &h["inventory"];
            let sync = &h["sync"];
            let rows = [
                ("machine id", s(&h["machine_id"])),
                ("hostname", s(&inv["hostname"])),
                ("serial", s(&inv["serial_number"])),
                ("macOS", format!("{} ({})", s(&inv["os_version"]), s(&inv["os_build"]))),
                ("Santa", s(&inv["santa_version"])),
                ("client mode", s(&inv["client_mode"])),
                ("primary user", s(&inv["primary_user"])),
                ("tags", s(&h["tags"])),
                ("clean sync requested", s(&h["clean_requested"])),
                ("first seen (UTC)", when(&inv["first_seen_unix"])),
                ("last seen (UTC)", when(&inv["last_seen_unix"])),
                ("last sync", format!("{} ({})", s(&sync["last_outcome"]), s(&sync["last_sync_reason"]))),
                ("acknowledged version", s(&sync["acked"]["version"])),
            ];
            for (k, v) in rows {
                println!("{:<22}{v}", format!("{k}:"));
            }
            Ok(ExitCode::SUCCESS)
        }
        HostsCommand::Tag { machine_id, tags, json } => {
            let out = api.put(&format!("/api/v1/hosts/{}/tags", seg(&machine_id)), &json!({"tags": tags})).await?;
            done(&out, json, || format!("Host {machine_id} now has tags: {}.", s(&out["tags"])))
        }
        HostsCommand::CleanSync { machine_id, json } => {
            let out = api.post(&format!("/api/v1/hosts/{}/clean-sync", seg(&machine_id)), &json!({})).await?;
            done(&out, json, || format!("Host {machine_id} gets a clean sync at its next preflight."))
        }
    }
}

/// Runs `dasher events`.
pub async fn events(conn: &Conn, a: EventsArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    let q = query(&[
        ("machine_id", a.machine_id),
        ("file_sha256", a.file_sha256),
        ("decision", a.decision),
        ("since", a.since.map(|v| v.to_string())),
        ("before_id", a.before_id.map(|v| v.to_string())),
        ("label", a.label),
        ("include_dropped", a.include_dropped.then(|| "true".to_owned())),
        ("limit", Some(a.limit.to_string())),
    ]);
    let out = api.get(&format!("/api/v1/events{q}")).await?;
    if a.json {
        print_json(&out);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = out["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let name = e["body"]["file_name"].as_str().or(e["body"]["file_path"].as_str()).unwrap_or("").to_owned();
            vec![
                s(&e["id"]),
                when(&e["received_at_unix"]),
                s(&e["machine_id"]),
                s(&e["decision"]),
                name,
                s(&e["file_sha256"]),
                s(&e["triage"]["labels"]),
            ]
        })
        .collect();
    print_table(&["ID", "RECEIVED (UTC)", "MACHINE ID", "DECISION", "FILE", "SHA-256", "LABELS"], &rows);
    Ok(ExitCode::SUCCESS)
}

/// Runs a proposals command.
pub async fn proposals(conn: &Conn, cmd: ProposalsCommand) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    let decide = |id: u64, verb: &str, by: Option<String>| {
        let body = match by {
            Some(by) => json!({"by": by}),
            None => json!({}),
        };
        (format!("/api/v1/proposals/{id}/{verb}"), body)
    };
    match cmd {
        ProposalsCommand::List { status, limit, json } => {
            let q = query(&[("status", status), ("limit", Some(limit.to_string()))]);
            let out = api.get(&format!("/api/v1/proposals{q}")).await?;
            if json {
                print_json(&out);
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = out["proposals"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    vec![
                        s(&p["id"]),
                        s(&p["status"]),
                        s(&p["rule_set"]),
                        format!("{} {}", s(&p["rule"]["rule_type"]), s(&p["rule"]["identifier"])),
                        s(&p["rule"]["policy"]),
                        s(&p["count"]),
                        s(&p["reason"]),
                    ]
                })
                .collect();
            print_table(&["ID", "STATUS", "RULE SET", "RULE", "POLICY", "COUNT", "REASON"], &rows);
            Ok(ExitCode::SUCCESS)
        }
        ProposalsCommand::Approve { id, by, json } => {
            let (path, body) = decide(id, "approve", by);
            let out = api.post(&path, &body).await?;
            done(&out, json, || format!("Approved proposal {id}: its rule is in rule set {}.", s(&out["rule_set"])))
        }
        ProposalsCommand::Reject { id, by, json } => {
            let (path, body) = decide(id, "reject", by);
            let out = api.post(&path, &body).await?;
            done(&out, json, || format!("Rejected proposal {id}."))
        }
    }
}

/// Runs a plugins command.
pub async fn plugins(conn: &Conn, cmd: PluginsCommand) -> anyhow::Result<ExitCode> {
    let api = Api::new(conn)?;
    match cmd {
        PluginsCommand::List { json } => {
            let out = api.get("/api/v1/plugins").await?;
            if json {
                print_json(&out);
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = out["plugins"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    vec![
                        s(&p["name"]),
                        s(&p["version"]),
                        s(&p["mode"]),
                        s(&p["hooks"]),
                        s(&p["calls"]),
                        s(&p["errors"]),
                        s(&p["shadow_hosts_differing"]),
                        s(&p["hash"]).chars().take(12).collect(),
                    ]
                })
                .collect();
            print_table(&["NAME", "VERSION", "MODE", "HOOKS", "CALLS", "ERRORS", "SHADOW DIFFERING", "HASH"], &rows);
            for e in out["load_errors"].as_array().into_iter().flatten() {
                println!("load error: {}", s(&e["error"]).if_empty(|| e.to_string()));
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginsCommand::Reload { json } => {
            let out = api.post("/api/v1/plugins/reload", &json!({})).await?;
            done(&out, json, || {
                format!(
                    "Reloaded: {} loaded, {} unchanged, {} unloaded, {} errors.",
                    out["loaded"].as_array().map_or(0, Vec::len),
                    out["unchanged"].as_array().map_or(0, Vec::len),
                    out["unloaded"].as_array().map_or(0, Vec::len),
                    out["errors"].as_array().map_or(0, Vec::len)
                )
            })
        }
        PluginsCommand::Rollback { name, json } => {
            let out = api.post(&format!("/api/v1/plugins/{}/rollback", seg(&name)), &json!({})).await?;
            done(&out, json, || format!("Plugin {name} rolled back from {} to {}.", s(&out["from"]), s(&out["to"])))
        }
    }
}

trait IfEmpty {
    fn if_empty(self, f: impl FnOnce() -> String) -> String;
}

impl IfEmpty for String {
    fn if_empty(self, f: impl FnOnce() -> String) -> String {
        if self.is_empty() { f() } else { self }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::when(&serde_json::json!(0)), "-");
        assert_eq!(super::when(&serde_json::json!(1_700_000_000)), "2023-11-14 22:13:20");
        assert_eq!(super::when(&serde_json::json!(951_782_400)), "2000-02-29 00:00:00");
    }
}
