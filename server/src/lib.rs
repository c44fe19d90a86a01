//! Dasher: a sync server for Santa.
//!
//! Map: [`config`] (TOML + overrides) → [`start`] opens the [`dasher_store::Store`]
//! (wrapped in [`metrics::store::MeteredStore`]), builds the [`policy::PolicyEngine`] and
//! serves [`http`] from `serve`'s accept loops, over [`tls`] when configured (sync routes →
//! [`sync`], admin routes → [`http::admin`], `/metrics` → [`metrics`]); stored events go to
//! [`triage`] off the request path, rule proposals to [`proposals`]; [`maintenance`] prunes
//! events and compacts rule history. See ARCHITECTURE.md for the path of one sync and the
//! invariants, SECURITY.md for the threat model.

pub mod actions;
pub mod blocked;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod examples;
pub mod export;
pub mod health;
pub mod http;
pub mod maintenance;
pub mod metrics;
pub mod oidc;
pub mod policy;
pub mod proposals;
pub mod reload;
pub mod review;
pub mod rules;
mod serve;
pub mod sync;
pub mod tls;
pub mod triage;
pub mod ui;

use anyhow::Context;
use config::Config;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    scheme: &'static str,
    prefix: String,
    admin_token: Option<String>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    reloader: Arc<reload::ConfigReloader>,
}

impl ServerHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound address of the separate admin listener (`admin.listen`), if any.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// `https` with `[tls]`, `http` otherwise.
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// The `SyncBaseURL` clients should use, with a trailing slash.
    pub fn sync_base_url(&self) -> String {
        format!("{}://{}{}/", self.scheme, self.addr, self.prefix)
    }

    /// The single `admin`-role token (configured `admin_token` or `data/admin.token`), if any.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
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

    /// Re-reads the config file (what SIGHUP does).
    pub fn config_reloader(&self) -> Arc<reload::ConfigReloader> {
        self.reloader.clone()
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

/// The single admin token: configured, or read from `{data_dir}/admin.token`, or generated
/// there when no `[[admin.tokens]]` are configured (so a fresh server is never unusable,
/// and one configured with role tokens gets no extra credential it did not ask for).
fn admin_token(config: &Config) -> anyhow::Result<Option<String>> {
    if let Some(t) = config.admin_token.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(t.clone()));
    }
    let path = config.data_dir.join("admin.token");
    if let Ok(existing) = std::fs::read_to_string(&path)
        && !existing.trim().is_empty()
    {
        return Ok(Some(existing.trim().to_owned()));
    }
    if !config.admin.tokens.is_empty() {
        return Ok(None);
    }
    let token = random_token();
    std::fs::write(&path, &token).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    tracing::info!(path = %path.display(), "generated an admin token (set DASHER_ADMIN_TOKEN to choose one)");
    Ok(Some(token))
}

/// Opens storage, binds the listener and serves until shut down.
pub async fn start(config: Config) -> anyhow::Result<ServerHandle> {
    start_with_source(config, None).await
}

/// [`start`], remembering where `config` came from so that SIGHUP and the reload API can
/// re-read it ([`reload::ConfigReloader`]).
pub async fn start_with_source(config: Config, source: Option<reload::ConfigSource>) -> anyhow::Result<ServerHandle> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let spec = config.store_spec();
    let metrics = Arc::new(metrics::Metrics::new());
    let store: Arc<dyn dasher_store::Store> = Arc::new(metrics::store::MeteredStore::new(
        dasher_store::connect_with(&spec, &config.store_options())
            .await
            .with_context(|| format!("opening store {spec}"))?,
        metrics.clone(),
    ));
    let admin_token = admin_token(&config)?;
    let admin_auth =
        http::admin::auth::AdminAuth::new(&config.admin, admin_token.as_deref()).map_err(anyhow::Error::msg)?;
    let sync_auth = http::sync_auth::SyncAuth::new(&config.sync_auth).map_err(anyhow::Error::msg)?;
    let tls = match &config.tls {
        None => None,
        Some(settings) => Some(Arc::new(
            tls::TlsReloader::new(settings.clone(), metrics.clone()).context("loading the TLS certificate")?,
        )),
    };
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let admin_listener = match config.admin.listen {
        None => None,
        Some(a) => Some(tokio::net::TcpListener::bind(a).await.with_context(|| format!("binding admin.listen {a}"))?),
    };
    let admin_addr = admin_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let live = config::LiveConfig::new(config);
    let config = live.snapshot();
    let config_policy = policy::ConfigPolicy::live(live.clone());
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
    // Once per start, not per request; racing replicas end with the one key the store kept.
    let cursors = sync::cursor::CursorSigner::load(&*store).await.context("loading the rule-download cursor key")?;
    let reloader = Arc::new(reload::ConfigReloader::new(source, live.clone(), plugins.clone()));
    let oidc = match config.ui.oidc.clone() {
        Some(settings) => Some(Arc::new(oidc::Oidc::new(settings, &*store).await.context("setting up [ui.oidc]")?)),
        None => None,
    };
    let overview = ui::overview::SnapshotCell::default();
    let overview_sources = ui::overview::Sources {
        store: store.clone(),
        plugins: plugins.clone(),
        policy: policy.clone(),
        stale_after_days: config.ui.stale_after_days,
    };
    let (shutdown, _) = watch::channel(false);
    let rules_owners = rules::dir::Owners::default();
    let rules_dir = match &config.rules_dir {
        None => None,
        Some(settings) => Some(
            rules::dir::RulesDir::start(
                settings.clone(),
                store.clone(),
                metrics.clone(),
                rules_owners.clone(),
                config.limits.max_rules_per_apply,
                shutdown.subscribe(),
            )
            .await?,
        ),
    };
    let state = Arc::new(http::AppState {
        sync: sync::SyncService {
            store: store.clone(),
            triage: triage::Triager::start(store.clone(), policy.clone()),
            policy,
            config: live.clone(),
            cursors,
            rules_owners,
            deferred: Default::default(),
        },
        reloader: reloader.clone(),
        plugins,
        metrics,
        admin_auth,
        sync_auth,
        rate_limit: http::rate_limit::MachineRateLimit::new(config.limits.requests_per_machine_per_minute),
        ui: ui::UiState { overview: overview.clone(), blocked: Default::default(), oidc },
        rules_dir,
        export: export::ExportStatus::default(),
    });
    let exporters = export::spawn(
        &config.export,
        &config.data_dir,
        store.clone(),
        state.metrics.clone(),
        state.export.clone(),
        shutdown.subscribe(),
    )?;
    let retention = maintenance::spawn(store.clone(), config.clone(), shutdown.subscribe());
    let overview_task = config.ui.enabled.then(|| {
        let every = Duration::from_secs(config.ui.overview_refresh_secs);
        ui::overview::spawn(overview_sources, overview, every, shutdown.subscribe())
    });
    let main_surface = if admin_listener.is_some() { http::Surface::Sync } else { http::Surface::All };
    let mut loops = vec![tokio::spawn(serve::run(
        serve::Listener { tcp: listener, surface: main_surface, tls: tls.clone() },
        state.clone(),
        shutdown.subscribe(),
    ))];
    if let Some(tcp) = admin_listener {
        loops.push(tokio::spawn(serve::run(
            serve::Listener { tcp, surface: http::Surface::Admin, tls },
            state.clone(),
            shutdown.subscribe(),
        )));
    }
    let task = tokio::spawn(async move {
        for l in loops {
            let _ = l.await;
        }
        drop(state);
        if let Some(retention) = retention {
            let _ = retention.await;
        }
        if let Some(t) = overview_task {
            let _ = t.await;
        }
        for t in exporters {
            let _ = t.await;
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
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, ?admin_addr, scheme, prefix = %config.sync_prefix, store = %spec, "dasher listening");
    Ok(ServerHandle {
        addr,
        admin_addr,
        scheme,
        prefix: config.sync_prefix.clone(),
        admin_token,
        shutdown,
        task,
        reloader,
    })
}
