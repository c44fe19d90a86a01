//! Server configuration: a TOML file, overridden by environment and CLI flags.
//! Everything has a sensible default so `dasher serve` runs with no file at all.

use dasher_sdk::domain::ConfigDecision;
use dasher_sdk::wire::{ClientMode, Stage, SyncType};
use dasher_store::{OpenOptions, StoreSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod access;
pub mod live;
pub use access::{AdminSettings, MetricsSettings, Role, SyncAuthSettings, TlsSettings, TokenConfig};
pub use live::LiveConfig;
mod rules_dir;
pub use rules_dir::RulesDirSettings;
mod ui;
pub use ui::UiSettings;

/// The whole server configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory for the embedded database and the generated admin token.
    pub data_dir: PathBuf,
    /// Storage engine and location (`redb:PATH`, `sled:PATH` or `postgres://USER@HOST:PORT/DB`);
    /// default `redb:{data_dir}/dasher.redb`.
    pub store: Option<StoreSpec>,
    /// Embedded-engine tuning (`[storage]`).
    pub storage: StorageSettings,
    /// Path prefix of the sync routes, e.g. `/santa` → `/santa/preflight/{machine_id}`.
    pub sync_prefix: String,
    /// Bearer token for the admin API (also `DASHER_ADMIN_TOKEN`); generated if unset.
    pub admin_token: Option<String>,
    /// Input limits.
    pub limits: Limits,
    /// Sync behaviour.
    pub sync: SyncSettings,
    /// Fleet-wide default settings sent to every host.
    pub defaults: ConfigDecision,
    /// Per-tag overrides: the first of a host's tags with an opinion on a field wins.
    pub tags: BTreeMap<String, TagPolicy>,
    /// WebAssembly policy plugins (`[plugins]`); off unless set.
    pub plugins: Option<dasher_policy::PluginsConfig>,
    /// Admin API role tokens and listener (`[admin]`, `[[admin.tokens]]`).
    pub admin: AdminSettings,
    /// Shared-secret header on sync requests (`[sync_auth]`); off unless `header` is set.
    pub sync_auth: SyncAuthSettings,
    /// HTTPS and client certificates (`[tls]`); plain HTTP unless set.
    pub tls: Option<TlsSettings>,
    /// `GET /metrics` (`[metrics]`).
    pub metrics: MetricsSettings,
    /// The web console (`[ui]`).
    pub ui: UiSettings,
    /// GitOps mode (`[rules_dir]`, `--rules-dir`): rules files applied at start and on change.
    pub rules_dir: Option<RulesDirSettings>,
    /// Event export (`[[export.sinks]]`).
    pub export: crate::export::ExportSettings,
}

/// Settings and rule sets for hosts carrying one tag.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TagPolicy {
    /// Setting overrides.
    pub config: ConfigDecision,
    /// Extra rule sets (besides the set named like the tag).
    pub rule_sets: Vec<String>,
}

/// Tuning of the embedded storage engines (redb, sled); PostgreSQL ignores it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// Page cache in MiB (redb's cache size, sled's `cache_capacity`; both default to 1 GiB
    /// on their own, which an event flood fills). At least 1.
    pub cache_mb: u64,
}

impl StorageSettings {
    /// `cache_mb` in bytes (`None` if it overflows the address space).
    fn cache_bytes(&self) -> Option<usize> {
        usize::try_from(self.cache_mb).ok()?.checked_mul(1 << 20)
    }
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings { cache_mb: 256 }
    }
}

/// Bounds on everything that comes from outside.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body as sent (compressed).
    pub max_body_bytes: usize,
    /// Largest request body after decompression (event uploads; the other stages have
    /// their own, smaller bounds below).
    pub max_inflated_bytes: usize,
    /// Largest preflight body, before and after decompression (a real one is a few KiB).
    pub max_preflight_bytes: usize,
    /// Largest rule-download body, before and after decompression (it carries a cursor of
    /// at most 64 KiB).
    pub max_ruledownload_bytes: usize,
    /// Largest postflight body, before and after decompression.
    pub max_postflight_bytes: usize,
    /// Longest string in a preflight or postflight (hostname, serial, user, each group,
    /// versions, model, push token, rules hash); longer is refused with 400 naming the field.
    pub max_inventory_string_bytes: usize,
    /// Most `primary_user_groups` kept per host; the first ones are kept, the host keeps
    /// syncing, and its record says the list was cut (`inventory.truncated`).
    pub max_user_groups: usize,
    /// Most events in one upload.
    pub max_events_per_upload: usize,
    /// Longest machine id.
    pub max_machine_id_bytes: usize,
    /// Most rules in one admin request.
    pub max_rules_per_request: usize,
    /// Seconds to receive request headers (slow-loris bound).
    pub header_read_timeout_secs: u64,
    /// Seconds to receive a sync request body once its headers arrived (408 after).
    pub body_read_timeout_secs: u64,
    /// Most client connections open at once per listener. At the limit the longest-idle
    /// connection is closed to make room; a new one is refused only when none is idle.
    pub max_connections: usize,
    /// Most connections open at once from one client address, per listener, with the same
    /// make-room rule (0 = unlimited). Behind a reverse proxy every client shares its address.
    pub max_connections_per_peer: usize,
    /// Seconds a connection may stay idle (no request in progress) between requests before it
    /// is closed; the first request is bounded by `header_read_timeout_secs`.
    pub idle_connection_timeout_secs: u64,
    /// Seconds between HTTP/2 keep-alive pings; an unanswered ping closes the connection after
    /// as long again (0 = no pings).
    pub http2_keep_alive_interval_secs: u64,
    /// Most concurrent HTTP/2 streams (requests) per connection.
    pub http2_max_concurrent_streams: u32,
    /// Largest HTTP/2 header list (decoded, as HTTP/2 counts it) per request.
    pub http2_max_header_list_bytes: u32,
    /// Sync requests per machine id per minute, with a burst of the same size; more get 429
    /// with `Retry-After` (0 = unlimited).
    pub requests_per_machine_per_minute: u32,
    /// Most rule sets one host's selection may hold (at least 3); a larger selection keeps the
    /// first ones in precedence order, `global` always among them, and logs a warning.
    pub max_rule_sets_per_host: usize,
    /// Seconds the server spends on one sync request once its body is read; 503 after.
    pub sync_request_timeout_secs: u64,
    /// Most rules one rules-as-code plan or apply may declare, all sets together (the 64 MiB
    /// admin body bound holds about 400,000 rules).
    pub max_rules_per_apply: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 8 << 20,
            max_inflated_bytes: 64 << 20,
            max_preflight_bytes: 256 << 10,
            max_ruledownload_bytes: 128 << 10,
            max_postflight_bytes: 64 << 10,
            max_inventory_string_bytes: 1024,
            max_user_groups: 256,
            max_events_per_upload: 10_000,
            max_machine_id_bytes: 256,
            max_rules_per_request: 100_000,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 60,
            max_connections: 4096,
            max_connections_per_peer: 1024,
            idle_connection_timeout_secs: 60,
            http2_keep_alive_interval_secs: 30,
            http2_max_concurrent_streams: 100,
            http2_max_header_list_bytes: 64 << 10,
            requests_per_machine_per_minute: 1200,
            max_rule_sets_per_host: 64,
            sync_request_timeout_secs: 30,
            max_rules_per_apply: 500_000,
        }
    }
}

impl Limits {
    /// The body bounds of one sync stage: `(as sent, after decompression)`, and the
    /// `[limits]` key that set them (named in the 413).
    pub fn stage_body_limits(&self, stage: Stage) -> (usize, usize, &'static str) {
        let (stage_max, key) = match stage {
            Stage::EventUpload => return (self.max_body_bytes, self.max_inflated_bytes, "max_inflated_bytes"),
            Stage::Preflight => (self.max_preflight_bytes, "max_preflight_bytes"),
            Stage::RuleDownload => (self.max_ruledownload_bytes, "max_ruledownload_bytes"),
            Stage::Postflight => (self.max_postflight_bytes, "max_postflight_bytes"),
        };
        (self.max_body_bytes.min(stage_max), self.max_inflated_bytes.min(stage_max), key)
    }
}

/// Sync behaviour.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncSettings {
    /// Rules per rule-download page.
    pub page_size_rules: usize,
    /// Delete events older than this many days (0 = keep).
    pub event_retention_days: u64,
    /// Keep at most this many events (0 = unlimited).
    pub event_retention_max: u64,
    /// Keep the rule history that hosts seen within this many days build on; older history is
    /// compacted hourly and hosts returning after longer get a clean sync (0 = never compact).
    pub rule_history_days: u64,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings { page_size_rules: 1000, event_retention_days: 90, event_retention_max: 0, rule_history_days: 30 }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            data_dir: PathBuf::from("data"),
            store: None,
            storage: StorageSettings::default(),
            sync_prefix: "/santa".into(),
            admin_token: None,
            limits: Limits::default(),
            sync: SyncSettings::default(),
            defaults: ConfigDecision {
                client_mode: Some(ClientMode::Monitor),
                batch_size: Some(50),
                full_sync_interval_seconds: Some(600),
                enable_bundles: Some(false),
                enable_transitive_rules: Some(false),
                enable_all_event_upload: Some(false),
                disable_unknown_event_upload: Some(false),
                ..Default::default()
            },
            tags: BTreeMap::new(),
            plugins: None,
            admin: Default::default(),
            sync_auth: Default::default(),
            tls: None,
            metrics: Default::default(),
            ui: UiSettings::default(),
            rules_dir: None,
            export: Default::default(),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Parser message (names the key).
        message: String,
    },
    /// A value is out of range.
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Config::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.to_owned(), message },
            other => other,
        })
    }

    /// Parses TOML text and validates it.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: PathBuf::new(), message: e.to_string() })?;
        config.validate()?;
        Ok(config)
    }

    /// A configuration for tests: loopback on an ephemeral port, data in `data_dir`,
    /// admin token `test-token`, small pages so paging is exercised.
    pub fn for_tests(data_dir: &Path) -> Config {
        Config {
            listen: "127.0.0.1:0".parse().expect("valid address"),
            data_dir: data_dir.to_owned(),
            admin_token: Some("test-token".into()),
            // Closed-loop test fleets sync far faster than real clients; tests of the limit
            // turn it on themselves.
            limits: Limits { requests_per_machine_per_minute: 0, ..Limits::default() },
            ..Config::default()
        }
    }

    /// The storage engine to open.
    pub fn store_spec(&self) -> StoreSpec {
        self.store.clone().unwrap_or_else(|| StoreSpec::Redb(self.data_dir.join("dasher.redb")))
    }

    /// How to open the store (`[storage]`); valid once [`Config::validate`] passed.
    pub fn store_options(&self) -> OpenOptions {
        OpenOptions { cache_bytes: self.storage.cache_bytes() }
    }

    /// Checks ranges and the prefix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let prefix = &self.sync_prefix;
        if !prefix.is_empty() && (!prefix.starts_with('/') || prefix.ends_with('/')) {
            return Err(ConfigError::Invalid(format!(
                "sync_prefix {prefix:?} must start with '/' and not end with '/' (or be empty)"
            )));
        }
        if self.limits.max_connections == 0 || self.limits.body_read_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "limits.max_connections and limits.body_read_timeout_secs must be at least 1".into(),
            ));
        }
        if self.limits.sync_request_timeout_secs == 0 || self.limits.max_rule_sets_per_host < 3 {
            return Err(ConfigError::Invalid(
                "limits.sync_request_timeout_secs must be at least 1 and limits.max_rule_sets_per_host at least 3 \
                 (a host's own set, its plugin set and global)"
                    .into(),
            ));
        }
        for (key, v) in [
            ("max_preflight_bytes", self.limits.max_preflight_bytes),
            ("max_ruledownload_bytes", self.limits.max_ruledownload_bytes),
            ("max_postflight_bytes", self.limits.max_postflight_bytes),
            ("max_inventory_string_bytes", self.limits.max_inventory_string_bytes),
            ("max_user_groups", self.limits.max_user_groups),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid(format!("limits.{key} must be at least 1")));
            }
        }
        let l = &self.limits;
        if l.idle_connection_timeout_secs == 0
            || l.http2_max_concurrent_streams == 0
            || l.http2_max_header_list_bytes < 1024
        {
            return Err(ConfigError::Invalid(
                "limits.idle_connection_timeout_secs and limits.http2_max_concurrent_streams must be at least 1, \
                 limits.http2_max_header_list_bytes at least 1024"
                    .into(),
            ));
        }
        if self.storage.cache_mb == 0 || self.storage.cache_bytes().is_none() {
            return Err(ConfigError::Invalid(format!(
                "storage.cache_mb must be at least 1 and its bytes fit in the address space (got {})",
                self.storage.cache_mb
            )));
        }
        self.admin.validate().map_err(ConfigError::Invalid)?;
        self.sync_auth.validate().map_err(ConfigError::Invalid)?;
        self.ui.validate().map_err(ConfigError::Invalid)?;
        self.export.validate().map_err(ConfigError::Invalid)?;
        if let Some(tls) = &self.tls {
            tls.validate().map_err(ConfigError::Invalid)?;
        }
        if self.sync.page_size_rules == 0 || self.sync.page_size_rules > 100_000 {
            return Err(ConfigError::Invalid("sync.page_size_rules must be between 1 and 100000".into()));
        }
        for (name, d) in
            std::iter::once(("defaults", &self.defaults)).chain(self.tags.iter().map(|(t, p)| (t.as_str(), &p.config)))
        {
            for (field, v) in
                [("allowed_path_regex", &d.allowed_path_regex), ("blocked_path_regex", &d.blocked_path_regex)]
            {
                if v.as_deref() == Some("") {
                    return Err(ConfigError::Invalid(format!(
                        "{name}.{field} must not be empty (clients may treat \"\" as match-all); use \"(?!)\" to match nothing"
                    )));
                }
            }
            // A standing CLEAN would be sent at every sync: the client wipes its rules each
            // time (and on NPS ≥ 2026.4 every synced setting too).
            if let Some(t @ (SyncType::Clean | SyncType::CleanAll)) = d.sync_type {
                let key = if std::ptr::eq(d, &self.defaults) { name.to_owned() } else { format!("tags.{name}.config") };
                return Err(ConfigError::Invalid(format!(
                    "{key}.sync_type = \"{t}\" would force a clean sync at every sync of every host it applies to; \
                     remove it and ask for one clean sync per host with POST /api/v1/hosts/{{machine_id}}/clean-sync"
                )));
            }
            if d.batch_size == Some(0) {
                return Err(ConfigError::Invalid(format!("{name}.batch_size must be at least 1")));
            }
        }
        // A tag selects the set named like it, plus its `rule_sets`: never a host's own set.
        for (tag, policy) in &self.tags {
            dasher_sdk::names::check_tag(tag).map_err(|e| ConfigError::Invalid(format!("tags.{tag}: {e}")))?;
            for (i, set) in policy.rule_sets.iter().enumerate() {
                dasher_sdk::names::RuleSetName::selectable(set)
                    .map_err(|e| ConfigError::Invalid(format!("tags.{tag}.rule_sets[{i}]: {e}")))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_files_parse() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        for file in ["dasher.toml", "container/dasher.toml", "compose/dasher.toml"] {
            let c = Config::from_file(&deploy.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(c.defaults.client_mode, Some(ClientMode::Monitor), "{file}");
        }
        let packaged = Config::from_file(&deploy.join("dasher.toml")).unwrap();
        assert_eq!(packaged.data_dir, Path::new("/var/lib/dasher"));
        assert!(packaged.listen.ip().is_loopback(), "plain HTTP stays on loopback unless TLS is configured");
        let container = Config::from_file(&deploy.join("container/dasher.toml")).unwrap();
        assert_eq!(container.data_dir, Path::new("/data"));
    }

    #[test]
    fn parses_defaults_and_tag_overrides() {
        let c = Config::from_toml(
            r#"
            listen = "127.0.0.1:9000"
            sync_prefix = ""
            [defaults]
            client_mode = "LOCKDOWN"
            batch_size = 100
            [tags.engineering]
            rule_sets = ["dev-tools"]
            [tags.engineering.config]
            client_mode = "MONITOR"
            "#,
        )
        .unwrap();
        assert_eq!(c.defaults.client_mode, Some(ClientMode::Lockdown));
        assert_eq!(c.tags["engineering"].rule_sets, vec!["dev-tools"]);
        assert_eq!(c.tags["engineering"].config.client_mode, Some(ClientMode::Monitor));
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let err = Config::from_toml("lisen = \"x\"").unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
        assert!(Config::from_toml("[defaults]\nallowed_path_regex = \"\"").is_err());
        assert!(Config::from_toml("sync_prefix = \"santa/\"").is_err());
        assert!(Config::from_toml("[defaults]\nclient_mode = \"PARANOID\"").is_err());
        let err = Config::from_toml("[tags.\"host:Y\"]\nrule_sets = []").unwrap_err().to_string();
        assert!(err.contains("tags.host:Y") && err.contains("reserved"), "{err}");
        let err = Config::from_toml("[tags.kiosk]\nrule_sets = [\"host:Y\"]").unwrap_err().to_string();
        assert!(err.contains("tags.kiosk.rule_sets[0]"), "{err}");
    }

    #[test]
    fn storage_cache_defaults_to_256_mib_and_rejects_0() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.storage.cache_mb, 256);
        assert_eq!(c.store_options().cache_bytes, Some(256 << 20));
        let c = Config::from_toml("[storage]\ncache_mb = 32").unwrap();
        assert_eq!(c.store_options().cache_bytes, Some(32 << 20));
        let err = Config::from_toml("[storage]\ncache_mb = 0").unwrap_err().to_string();
        assert!(err.contains("storage.cache_mb"), "names the key: {err}");
        let err = Config::from_toml(&format!("[storage]\ncache_mb = {}", u64::MAX >> 1)).unwrap_err().to_string();
        assert!(err.contains("storage.cache_mb"), "an overflowing size is refused: {err}");
        let err = Config::from_toml("[storage]\ncache_gb = 1").unwrap_err().to_string();
        assert!(err.contains("cache_gb"), "unknown key named: {err}");
    }

    #[test]
    fn connection_bounds_default_on_and_refuse_0() {
        let l = Config::from_toml("").unwrap().limits;
        assert_eq!((l.idle_connection_timeout_secs, l.max_connections_per_peer), (60, 1024));
        assert!(Config::from_toml("[limits]\nmax_connections_per_peer = 0").is_ok(), "0 = unlimited");
        for bad in
            ["idle_connection_timeout_secs = 0", "http2_max_concurrent_streams = 0", "http2_max_header_list_bytes = 10"]
        {
            let err = Config::from_toml(&format!("[limits]\n{bad}")).unwrap_err().to_string();
            assert!(err.contains(bad.split(' ').next().unwrap()), "names the key: {err}");
        }
    }

    #[test]
    fn store_may_be_a_postgres_url() {
        let c = Config::from_toml("store = \"postgres://dasher:pw@db.internal:5432/dasher\"").unwrap();
        assert!(matches!(c.store_spec(), StoreSpec::Postgres(_)));
        assert_eq!(c.store_spec().to_string(), "postgres://dasher:***@db.internal:5432/dasher");
        let err = Config::from_toml("store = \"postgres://db.internal/dasher\"").unwrap_err().to_string();
        assert!(err.contains("no user"), "names what is missing: {err}");
    }

    /// Issue 11 item 10: a standing CLEAN/CLEAN_ALL in `[defaults]` or a tag wiped every
    /// host it applied to at every sync.
    #[test]
    fn clean_sync_types_in_config_are_refused() {
        for t in ["CLEAN", "CLEAN_ALL"] {
            let err = Config::from_toml(&format!("[tags.lab.config]\nsync_type = \"{t}\"")).unwrap_err().to_string();
            assert!(err.contains("tags.lab.config.sync_type") && err.contains(t), "names the key: {err}");
            assert!(err.contains("/clean-sync"), "says what to do instead: {err}");
            let err = Config::from_toml(&format!("[defaults]\nsync_type = \"{t}\"")).unwrap_err().to_string();
            assert!(err.contains("defaults.sync_type"), "{err}");
        }
        let c = Config::from_toml("[tags.lab.config]\nsync_type = \"NORMAL\"").unwrap();
        assert_eq!(c.tags["lab"].config.sync_type, Some(SyncType::Normal), "NORMAL forces nothing");
    }

    #[test]
    fn stage_body_limits_are_per_stage_and_never_above_the_global_ones() {
        let l = Limits::default();
        assert_eq!(l.stage_body_limits(Stage::Preflight), (256 << 10, 256 << 10, "max_preflight_bytes"));
        assert_eq!(l.stage_body_limits(Stage::RuleDownload), (128 << 10, 128 << 10, "max_ruledownload_bytes"));
        assert_eq!(l.stage_body_limits(Stage::Postflight), (64 << 10, 64 << 10, "max_postflight_bytes"));
        assert_eq!(l.stage_body_limits(Stage::EventUpload), (8 << 20, 64 << 20, "max_inflated_bytes"));
        let small = Limits { max_body_bytes: 1000, max_inflated_bytes: 2000, ..Limits::default() };
        assert_eq!(small.stage_body_limits(Stage::Preflight), (1000, 2000, "max_preflight_bytes"));
        let c = Config::from_toml("[limits]\nmax_preflight_bytes = 4096\nmax_user_groups = 8").unwrap();
        assert_eq!((c.limits.max_preflight_bytes, c.limits.max_user_groups), (4096, 8));
        let err = Config::from_toml("[limits]\nmax_inventory_string_bytes = 0").unwrap_err().to_string();
        assert!(err.contains("limits.max_inventory_string_bytes"), "{err}");
    }
}
