//! `dasher` command line: parse arguments, load config, run.

mod admin_client;

use clap::{Parser, Subcommand};
use dasher_server::config::Config;
use std::net::SocketAddr;

/// jemalloc: many small short-lived allocations per request (JSON, rules); glibc malloc showed
/// up as ~17 % of server CPU in `perf` under simulator load. mimalloc saved a little more CPU
/// but tripled peak RSS with many threads (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
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
    /// Build, inspect, test and install WebAssembly policy plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Admin-token and sync-secret helpers.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Exit 0 if a running server answers `GET /healthz` with 200 (container HEALTHCHECK,
    /// which has no curl in a scratch image).
    Healthcheck {
        /// The health URL (plain http).
        #[arg(long, env = "DASHER_HEALTHCHECK_URL", default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
    /// Admin API commands (rules, hosts, events, proposals, plugins).
    #[command(flatten)]
    Admin(dasher_server::cli::Command),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print the SHA-256 (hex) of a token or secret read from stdin (one trailing newline
    /// dropped), for `[[admin.tokens]] sha256` or `sync_auth.secrets_sha256`.
    Hash,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Build a plugin crate into a component (wasm32-unknown-unknown, size profile).
    Build {
        /// The plugin crate's directory.
        crate_dir: PathBuf,
        /// Output file [default: <crate>.wasm in the current directory].
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
    /// Print a component's metadata (name, version, hooks, versions, hash).
    Inspect {
        /// The component.
        file: PathBuf,
    },
    /// Run a component through the server's host code against JSON fixtures.
    Test {
        /// The component.
        file: PathBuf,
        /// Directory of fixture files.
        fixtures: PathBuf,
    },
    /// Install a component into a plugin directory atomically (temp file + rename).
    Install {
        /// The component.
        file: PathBuf,
        /// The server's plugin directory.
        dir: PathBuf,
    },
    /// List a plugin's generations on a running server (number, SHA-256, when, what, who).
    History {
        /// The plugin's name.
        name: String,
        #[command(flatten)]
        server: admin_client::ServerArgs,
    },
    /// Roll a plugin back on a running server, to a generation number or SHA-256 prefix
    /// [default: the previous generation]. Lasts across restarts until the file changes.
    Rollback {
        /// The plugin's name.
        name: String,
        /// Generation number or SHA-256 prefix (8+ hex digits).
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        server: admin_client::ServerArgs,
    },
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
    /// Storage: `redb:PATH` (default), `sled:PATH` or `postgres://USER@HOST:PORT/DB` (shared by replicas).
    #[arg(long, env = "DASHER_STORE")]
    store: Option<String>,
    /// Page cache of the embedded engine in MiB [default: 256; ignored for PostgreSQL].
    #[arg(long, env = "DASHER_STORE_CACHE_MB")]
    store_cache_mb: Option<u64>,
    /// Admin API bearer token (generated into DATA_DIR/admin.token if unset).
    #[arg(long, env = "DASHER_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Log filter, e.g. `info` or `dasher_server=debug`.
    #[arg(long, env = "DASHER_LOG", default_value = "info")]
    log: String,
    /// Load WebAssembly policy plugins from this directory (and watch it).
    #[arg(long, env = "DASHER_PLUGINS_DIR")]
    plugins_dir: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// GitOps mode: apply this directory of rules files at start and on every change.
    #[arg(long, env = "DASHER_RULES_DIR")]
    rules_dir: Option<PathBuf>,
    /// Build this checkout's example plugins (staged-rollout, ruleset-targeting, event-triage,
    /// approval-voting) into the plugin directory [default: DATA_DIR/plugins] and load them.
    #[arg(long)]
    examples: bool,
}

fn plugin_command(cmd: PluginCommand) -> anyhow::Result<std::process::ExitCode> {
    use dasher_policy::tools;
    let ok = match cmd {
        PluginCommand::Build { crate_dir, out } => {
            eprintln!("Building {} for {} (the first build takes a minute)…", crate_dir.display(), tools::WASM_TARGET);
            let options = tools::BuildOptions { progress: true, ..Default::default() };
            let r = tools::build(&crate_dir, out.as_deref(), &options)?;
            println!("{} ({} bytes)\nsha256 {}", r.component.display(), r.component_bytes, r.hash);
            true
        }
        PluginCommand::Inspect { file } => {
            let i = tools::inspect(&file)?;
            print!("{i}");
            i.compatible.is_ok()
        }
        PluginCommand::Test { file, fixtures } => {
            let r = tools::test(&file, &fixtures)?;
            print!("{r}");
            r.passed()
        }
        PluginCommand::Install { file, dir } => {
            println!("installed {}", tools::install(&file, &dir)?.display());
            true
        }
        PluginCommand::History { name, server } => {
            let path = format!("/api/v1/plugins/{}/history", admin_client::segment(&name));
            let v = admin_client::call(&server, http::Method::GET, &path, None)?;
            print!("{}", admin_client::format_history(&v));
            true
        }
        PluginCommand::Rollback { name, to, server } => {
            let path = format!("/api/v1/plugins/{}/rollback", admin_client::segment(&name));
            let body = serde_json::json!({ "to": to });
            let v = admin_client::call(&server, http::Method::POST, &path, Some(body))?;
            println!(
                "{}: rolled back from {} to {}",
                name,
                v["from"].as_str().unwrap_or("?"),
                v["to"].as_str().unwrap_or("?")
            );
            true
        }
    };
    Ok(if ok { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE })
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        // A sentence and its causes for a person, not a debug dump with a backtrace.
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Plugin(cmd) => plugin_command(cmd),
        Command::Healthcheck { url } => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            match runtime.block_on(dasher_server::health::check(&url)) {
                Ok(()) => Ok(std::process::ExitCode::SUCCESS),
                Err(e) => {
                    eprintln!("unhealthy: {e}");
                    Ok(std::process::ExitCode::FAILURE)
                }
            }
        }
        Command::Admin(cmd) => dasher_server::cli::run(cmd),
        Command::Token(TokenCommand::Hash) => {
            let mut input = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut input)?;
            let token = input.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&input);
            if token.is_empty() {
                anyhow::bail!("no token on stdin (e.g. `printf %s \"$TOKEN\" | dasher token hash`)");
            }
            println!("{}", dasher_server::credentials::sha256_hex(token));
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            // Store reads run on the blocking pool; they are short, so a small pool serves
            // them with fewer thread wake-ups (and fewer per-thread allocator caches) than
            // tokio's default of 512 threads.
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .max_blocking_threads(32)
                .build()?
                .block_on(serve(args))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
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
    let store: Option<dasher_store::StoreSpec> = args.store.as_deref().map(str::parse).transpose()?;
    let (listen, data_dir, cache_mb, plugins_dir, token, examples) = (
        args.listen,
        args.data_dir.clone(),
        args.store_cache_mb,
        args.plugins_dir.clone(),
        args.admin_token.clone(),
        args.examples,
    );
    let rules_dir = args.rules_dir.clone();
    // Flags win over the file, at start and at every reload.
    let overrides = move |config: &mut Config| {
        if let Some(listen) = listen {
            config.listen = listen;
        }
        if let Some(dir) = &data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(store) = &store {
            config.store = Some(store.clone());
        }
        if let Some(mb) = cache_mb {
            config.storage.cache_mb = mb;
        }
        if let Some(dir) = &plugins_dir {
            config.plugins.get_or_insert_with(Default::default).dir = dir.clone();
        }
        if let Some(token) = &token {
            config.admin_token = Some(token.clone());
        }
        if let Some(path) = &rules_dir {
            config.rules_dir.get_or_insert_with(Default::default).path = path.clone();
        }
        if examples {
            let data_dir = config.data_dir.clone();
            config.plugins.get_or_insert_with(|| dasher_policy::PluginsConfig {
                dir: data_dir.join("plugins"),
                ..Default::default()
            });
        }
    };
    overrides(&mut config);
    let source = args
        .config
        .clone()
        .map(|path| dasher_server::reload::ConfigSource { path, overrides: std::sync::Arc::new(overrides) });
    if args.examples {
        let data_dir = config.data_dir.clone();
        let plugins = config.plugins.get_or_insert_with(Default::default);
        let dir = plugins.dir.clone();
        let build_dir =
            std::env::var_os("DASHER_PLUGIN_BUILD_DIR").map_or_else(|| data_dir.join("plugin-build"), PathBuf::from);
        tracing::info!(dir = %dir.display(), "building the example plugins (the first build takes a minute)");
        tokio::task::spawn_blocking(move || dasher_server::examples::build_into(&dir, &build_dir)).await??;
    }
    let server = dasher_server::start_with_source(config, source).await?;
    #[cfg(unix)]
    {
        let reloader = server.config_reloader();
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: re-reading the configuration file");
                // The outcome (what changed, what needs a restart, or why nothing did) is logged.
                let _ = reloader.reload("SIGHUP", dasher_policy::Trigger::ConfigReload).await;
            }
        });
    }
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
