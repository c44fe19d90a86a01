//! Dasher: a sync server for Santa.
//!
//! Map: [`config`] (TOML + overrides) → [`start`] opens the [`dasher_store::Store`], builds
//! the [`policy::PolicyEngine`] and serves [`http`] (sync routes → [`sync`], admin routes →
//! [`admin`]). See ARCHITECTURE.md for the path of one sync and the invariants.

pub mod admin;
pub mod config;
pub mod http;
pub mod policy;
pub mod sync;

use anyhow::Context;
use config::Config;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    prefix: String,
    admin_token: String,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `SyncBaseURL` clients should use, with a trailing slash.
    pub fn sync_base_url(&self) -> String {
        format!("http://{}{}/", self.addr, self.prefix)
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Stops accepting, lets in-flight requests finish, and closes the store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Waits until the server stops (after a shutdown signal).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    /// A sender that stops the server when `true` is sent.
    pub fn shutdown_sender(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

fn random_token() -> String {
    let a = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    format!("{a:016x}{:016x}", h.finish())
}

/// The admin token: configured, or read from / generated into `{data_dir}/admin.token`.
fn admin_token(config: &Config) -> anyhow::Result<String> {
    if let Some(t) = config.admin_token.as_ref().filter(|t| !t.is_empty()) {
        return Ok(t.clone());
    }
    let path = config.data_dir.join("admin.token");
    if let Ok(existing) = std::fs::read_to_string(&path)
        && !existing.trim().is_empty()
    {
        return Ok(existing.trim().to_owned());
    }
    let token = random_token();
    std::fs::write(&path, &token).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    tracing::info!(path = %path.display(), "generated an admin token (set DASHER_ADMIN_TOKEN to choose one)");
    Ok(token)
}

/// Opens storage, binds the listener and serves until shut down.
pub async fn start(config: Config) -> anyhow::Result<ServerHandle> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let spec = config.store_spec();
    let store = dasher_store::connect(&spec).await.with_context(|| format!("opening store {spec}"))?;
    let admin_token = admin_token(&config)?;
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let config = Arc::new(config);
    let config_policy = policy::ConfigPolicy::new((*config).clone());
    let (policy, plugins): (Arc<dyn policy::PolicyEngine>, _) = match &config.plugins {
        None => (Arc::new(config_policy), None),
        Some(plugins_config) => {
            std::fs::create_dir_all(&plugins_config.dir)
                .with_context(|| format!("creating plugin directory {}", plugins_config.dir.display()))?;
            let kv = Arc::new(policy::plugins::StoreKv::new(store.clone(), tokio::runtime::Handle::current()));
            let cfg = plugins_config.clone();
            let manager = tokio::task::spawn_blocking(move || dasher_policy::PluginManager::start(cfg, kv))
                .await?
                .context("starting the plugin host")?;
            let manager = Arc::new(manager);
            (Arc::new(policy::plugins::PluginPolicy::new(manager.clone(), config_policy)), Some(manager))
        }
    };
    let state = Arc::new(http::AppState {
        sync: sync::SyncService { store: store.clone(), policy, config: config.clone() },
        admin_token: admin_token.clone(),
        plugins,
    });
    let (shutdown, mut shutdown_rx) = watch::channel(false);
    let retention = spawn_retention(store.clone(), config.clone(), shutdown.subscribe());
    let header_timeout = Duration::from_secs(config.limits.header_read_timeout_secs.max(1));
    let task = tokio::spawn(async move {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, _) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let state = state.clone();
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(http::handle(state, req).await) }
                    });
                    let mut builder = auto::Builder::new(TokioExecutor::new());
                    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
                    let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                _ = shutdown_rx.changed() => break,
            }
        }
        drop(listener);
        if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await.is_err() {
            tracing::warn!("in-flight requests did not finish within 30 s");
        }
        drop(state);
        if let Some(retention) = retention {
            let _ = retention.await;
        }
        // Background work (triage) may still hold the store; wait for it so that a
        // returned shutdown means the database is closed and can be reopened.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&store) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if Arc::strong_count(&store) > 1 {
            tracing::warn!("store still in use 10 s after shutdown");
        }
        drop(store);
    });
    tracing::info!(%addr, prefix = %config.sync_prefix, store = %spec, "dasher listening");
    Ok(ServerHandle { addr, prefix: config.sync_prefix.clone(), admin_token, shutdown, task })
}

/// Prunes events hourly by age and count.
fn spawn_retention(
    store: Arc<dyn dasher_store::Store>,
    config: Arc<Config>,
    mut stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let days = config.sync.event_retention_days;
    let max = config.sync.event_retention_max;
    if days == 0 && max == 0 {
        return None;
    }
    Some(tokio::spawn(async move {
        loop {
            let before = (days > 0).then(|| sync::now_unix() - (days as i64) * 86_400);
            match store.prune_events(before, (max > 0).then_some(max)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "event retention"),
                Err(e) => tracing::warn!(error = %e, "event retention failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                _ = stop.changed() => return,
            }
        }
    }))
}
