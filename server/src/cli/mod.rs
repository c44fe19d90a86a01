//! The `dasher` admin commands: rules as code ([`rules`]) and the rest of the admin API
//! ([`admin`]) over HTTP ([`client`]). Each prints a human table, or the API's JSON with
//! `--json`; errors are sentences (which server, which token, which field).
//!
//! Exit codes: 0 success, 1 error, and for `rules plan` 2 when applying would change
//! something (like `terraform plan -detailed-exitcode`).

pub mod admin;
pub mod client;
pub mod rules;

use clap::Subcommand;
use client::Conn;
use std::process::ExitCode;

/// The admin commands (flattened into `dasher`'s own).
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Rules as code: export, plan, apply and import rules files.
    Rules {
        /// Server and token.
        #[command(flatten)]
        conn: Conn,
        /// What to do.
        #[command(subcommand)]
        cmd: rules::RulesCommand,
    },
    /// Hosts: list, show, tag, ask for a clean sync.
    Hosts {
        /// Server and token.
        #[command(flatten)]
        conn: Conn,
        /// What to do.
        #[command(subcommand)]
        cmd: admin::HostsCommand,
    },
    /// Stored events, newest first (the API's filters).
    Events {
        /// Server and token.
        #[command(flatten)]
        conn: Conn,
        /// Filters.
        #[command(flatten)]
        args: admin::EventsArgs,
    },
    /// Rule proposals: list, approve, reject.
    Proposals {
        /// Server and token.
        #[command(flatten)]
        conn: Conn,
        /// What to do.
        #[command(subcommand)]
        cmd: admin::ProposalsCommand,
    },
    /// The server's policy plugins: list, reload, roll back.
    Plugins {
        /// Server and token.
        #[command(flatten)]
        conn: Conn,
        /// What to do.
        #[command(subcommand)]
        cmd: admin::PluginsCommand,
    },
}

/// Runs an admin command on a small runtime of its own.
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        match cmd {
            Command::Rules { conn, cmd } => rules::run(&conn, cmd).await,
            Command::Hosts { conn, cmd } => admin::hosts(&conn, cmd).await,
            Command::Events { conn, args } => admin::events(&conn, args).await,
            Command::Proposals { conn, cmd } => admin::proposals(&conn, cmd).await,
            Command::Plugins { conn, cmd } => admin::plugins(&conn, cmd).await,
        }
    })
}

/// Prints rows as aligned columns under a header.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// Pretty JSON on stdout.
pub fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("JSON serializes"));
}
