//! `dasher` command line: parse arguments, load config, run.

use clap::{Parser, Subcommand};
use dasher_server::config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Dasher — a sync server for Santa, the macOS binary-authorization agent.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sync server (embedded storage by default).
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "DASHER_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "DASHER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Data directory for the embedded database [default: ./data].
    #[arg(long, env = "DASHER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Storage: `redb:PATH` (default) or `sled:PATH`.
    #[arg(long, env = "DASHER_STORE")]
    store: Option<String>,
    /// Admin API bearer token (generated into DATA_DIR/admin.token if unset).
    #[arg(long, env = "DASHER_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Log filter, e.g. `info` or `dasher_server=debug`.
    #[arg(long, env = "DASHER_LOG", default_value = "info")]
    log: String,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Command::Serve(args) = Cli::parse().command;
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)?;
    if args.log_json {
        tracing_subscriber::fmt().json().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(store) = args.store {
        config.store = Some(store.parse()?);
    }
    if let Some(token) = args.admin_token {
        config.admin_token = Some(token);
    }
    let server = dasher_server::start(config).await?;
    let stop = server.shutdown_sender();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stop.send(true);
    });
    server.wait().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
