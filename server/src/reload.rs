//! Live configuration: SIGHUP, `POST /api/v1/config/reload` and `POST /api/v1/plugins/reload`
//! re-read the config file. The new file is validated completely first — parsing, ranges, and
//! every plugin whose settings, mode or limits change loading with them — and an invalid file
//! changes nothing. Then [`LIVE_KEYS`](crate::config::live::LIVE_KEYS) apply at once (the next
//! request reads them) and the plugin set is updated; every other changed key keeps its running
//! value and is reported as needing a restart. One reload runs at a time.

use crate::config::live::split_reload;
use crate::config::{Config, ConfigError, LiveConfig};
use dasher_policy::{PluginManager, ReloadReport, Trigger};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

/// Where the running configuration came from: the file, and the command-line overrides
/// applied on top of it (re-applied at every reload, so a flag keeps winning over the file).
#[derive(Clone)]
pub struct ConfigSource {
    /// The TOML file (`--config`).
    pub path: PathBuf,
    /// Overrides from flags and environment.
    pub overrides: Arc<dyn Fn(&mut Config) + Send + Sync>,
}

/// Re-reads and applies the configuration.
pub struct ConfigReloader {
    source: Option<ConfigSource>,
    live: LiveConfig,
    plugins: Option<Arc<PluginManager>>,
    lock: tokio::sync::Mutex<()>,
}

/// What a reload did.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigReloadReport {
    /// The file read.
    pub file: PathBuf,
    /// Changed keys now in force (`defaults`, `limits.max_events_per_upload`, `plugins.plugin`…).
    pub applied: Vec<String>,
    /// Changed keys that keep their running value until the server restarts.
    pub needs_restart: Vec<String>,
    /// The plugin rescan that followed (with plugins configured).
    pub plugins: Option<ReloadReport>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The server was started without a config file.
    #[error(
        "the server was started without a config file (--config or DASHER_CONFIG); there is nothing to re-read. Restart it with one to change its configuration live"
    )]
    NoFile,
    /// The file is unreadable or invalid (the message names the key).
    #[error("{0}; nothing was changed")]
    Invalid(#[from] ConfigError),
    /// A plugin does not load with its new settings, mode or limits.
    #[error("{}; nothing was changed", .0.join("; "))]
    Plugins(Vec<String>),
}

impl ConfigReloader {
    /// A reloader for the configuration in `live`, read from `source` (none: reloads refuse).
    pub fn new(source: Option<ConfigSource>, live: LiveConfig, plugins: Option<Arc<PluginManager>>) -> Self {
        ConfigReloader { source, live, plugins, lock: tokio::sync::Mutex::new(()) }
    }

    /// True if there is a file to re-read.
    pub fn has_file(&self) -> bool {
        self.source.is_some()
    }

    /// Re-reads the file and applies it (see the module doc). `by` (a token name, `SIGHUP`) and
    /// `trigger` are recorded in the history of plugin generations it activates. Logs the
    /// outcome either way.
    pub async fn reload(&self, by: &str, trigger: Trigger) -> Result<ConfigReloadReport, ReloadError> {
        let result = self.reload_inner(by, trigger).await;
        match &result {
            Ok(r) => tracing::info!(
                by,
                file = %r.file.display(),
                applied = ?r.applied,
                needs_restart = ?r.needs_restart,
                "configuration reloaded"
            ),
            Err(e) => tracing::warn!(by, "configuration reload refused: {e}"),
        }
        result
    }

    async fn reload_inner(&self, by: &str, trigger: Trigger) -> Result<ConfigReloadReport, ReloadError> {
        let _one_at_a_time = self.lock.lock().await;
        let source = self.source.as_ref().ok_or(ReloadError::NoFile)?;
        let path = source.path.clone();
        let mut new = tokio::task::spawn_blocking(move || Config::from_file(&path))
            .await
            .map_err(|e| ConfigError::Invalid(format!("reading the file did not finish: {e}")))??;
        (source.overrides)(&mut new);
        new.validate()?;
        let running = self.live.snapshot();
        let split = split_reload(&running, &new).map_err(ConfigError::Invalid)?;
        if let (Some(manager), Some(p)) = (&self.plugins, &split.apply.plugins) {
            manager.check_config(p.clone()).await.map_err(ReloadError::Plugins)?;
        }
        let plugins_config = split.apply.plugins.clone();
        self.live.store(split.apply);
        let plugins = match (&self.plugins, plugins_config) {
            (Some(manager), Some(p)) => Some(manager.apply_config_as(p, trigger, Some(by.to_owned())).await),
            _ => None,
        };
        Ok(ConfigReloadReport {
            file: source.path.clone(),
            applied: split.applied,
            needs_restart: split.needs_restart,
            plugins,
        })
    }
}
