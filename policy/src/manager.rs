//! [`PluginManager`]: the plugin set the server calls. Owns the engine, the worker pool, the
//! active [`PluginSet`] (swapped atomically on reload), the last 3 generations per plugin
//! for rollback, the last good decision per host for fail-static, and the directory watcher.
//!
//! Invariants: a decision call never returns an error and never panics — a fault becomes a
//! log line, a counter, a status entry and a fail-static answer; a call uses one set
//! snapshot from start to end (in-flight calls finish on the old generation); a file that
//! fails to load never replaces a loaded plugin.

use crate::breaker::{Admit, Transition};
use crate::config::{Mode, OnFailure, OnUnavailable, PluginsConfig};
use crate::convert::event_facts;
use crate::error::{Fault, LoadError, PolicyError};
use crate::exec::Executor;
use crate::generations::{GenerationRecord, Generations, Trigger};
use crate::kv::KvBackend;
use crate::last_good::LastGood;
use crate::log_limit::Emit;
use crate::merge::{merge_config, merge_selection, merge_verdicts};
use crate::meta;
use crate::runtime::{LoadedPlugin, Runtime, content_hash, scratch_kv};
use arc_swap::ArcSwap;
use dasher_sdk::domain::{ConfigDecision, HostFacts};
use dasher_sdk::plugin::{
    EventBatch, EventFacts, EventKind, Hook, ReviewDecision, ReviewInput, ReviewVerdict, SelectionDecision, Verdicts,
};
use dasher_store::model::EventRecord;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod chain;
mod reload;

/// Generations kept per plugin for rollback (the active one included).
const GENERATIONS_KEPT: usize = 3;
/// Pool slots of the pooling allocator (component instances across all plugins).
const MAX_INSTANCES: u32 = 256;

pub use crate::report::{
    BreakerState, BreakerStatus, Contribution, Decided, FaultRecord, LoadFailure, ManagerStatus, PluginStatus,
    ReloadReport, ShadowRecord, Source, UnavailablePlugin,
};

/// The immutable set of active plugins, in chain order.
#[derive(Debug, Default)]
pub struct PluginSet {
    /// Incremented by every swap.
    pub generation: u64,
    /// Plugins in chain order.
    pub plugins: Vec<Arc<LoadedPlugin>>,
    /// Configured plugins that are not loaded, in chain order.
    pub unavailable: Vec<Arc<UnavailablePlugin>>,
    /// Both, in chain order: what a decision walks.
    chain: Vec<Link>,
}

/// One place in the chain.
#[derive(Debug)]
enum Link {
    Loaded(Arc<LoadedPlugin>),
    Unavailable(Arc<UnavailablePlugin>),
}

impl PluginSet {
    fn new(
        generation: u64,
        plugins: Vec<Arc<LoadedPlugin>>,
        unavailable: Vec<Arc<UnavailablePlugin>>,
        cfg: &PluginsConfig,
    ) -> PluginSet {
        let rank = |name: &str| (cfg.order.iter().position(|n| n == name).unwrap_or(usize::MAX), name.to_owned());
        let mut chain: Vec<Link> = plugins
            .iter()
            .map(|p| Link::Loaded(Arc::clone(p)))
            .chain(unavailable.iter().map(|u| Link::Unavailable(Arc::clone(u))))
            .collect();
        chain.sort_by_cached_key(|l| match l {
            Link::Loaded(p) => rank(&p.meta.name),
            Link::Unavailable(u) => rank(&u.name),
        });
        PluginSet { generation, plugins, unavailable, chain }
    }

    fn by_name(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.iter().find(|p| p.meta.name == name)
    }
}

/// The plugin system. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct PluginManager {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: ArcSwap<PluginsConfig>,
    runtime: Runtime,
    kv: Arc<dyn KvBackend>,
    set: ArcSwap<PluginSet>,
    executor: Executor,
    last_good: LastGood,
    generations: Generations,
    reload_lock: Mutex<ReloadState>,
    history: Mutex<HashMap<String, VecDeque<Arc<LoadedPlugin>>>>,
    load_errors: Mutex<BTreeMap<PathBuf, LoadFailure>>,
}

#[derive(Default)]
struct ReloadState {
    /// Files of loaded plugins seen missing, and since when.
    missing_since: HashMap<PathBuf, Instant>,
}

impl PluginManager {
    /// Starts the plugin system: creates the engine and worker pool, loads every component in
    /// `config.dir` (blocking: compiles them), and starts watching the directory if
    /// `config.watch`. A plugin that fails to load is reported in [`status`](Self::status)
    /// and does not prevent the start; only an unusable engine or directory does.
    pub fn start(config: PluginsConfig, kv: Arc<dyn KvBackend>) -> Result<PluginManager, PolicyError> {
        if !config.dir.is_dir() {
            return Err(PolicyError::Dir { dir: config.dir.display().to_string(), message: "not a directory".into() });
        }
        let max_memory = config
            .plugin
            .values()
            .filter_map(|p| p.limits.as_ref())
            .map(|l| l.memory_bytes)
            .fold(config.limits.memory_bytes, usize::max);
        let runtime = Runtime::new(max_memory, MAX_INSTANCES).map_err(PolicyError::Engine)?;
        let inner = Arc::new(Inner {
            executor: Executor::new(config.worker_count(), config.queue_capacity),
            last_good: LastGood { kv: Arc::clone(&kv), cache: Mutex::new(HashMap::new()) },
            generations: Generations { kv: Arc::clone(&kv) },
            config: ArcSwap::from_pointee(config),
            runtime,
            kv,
            set: ArcSwap::from_pointee(PluginSet::default()),
            reload_lock: Mutex::new(ReloadState::default()),
            history: Mutex::new(HashMap::new()),
            load_errors: Mutex::new(BTreeMap::new()),
        });
        inner.reload_blocking(Trigger::Startup, None);
        let cfg = inner.cfg();
        if cfg.watch {
            crate::watch::spawn(Arc::downgrade(&inner), cfg.dir.clone(), cfg.debounce_ms)
                .map_err(|message| PolicyError::Dir { dir: cfg.dir.display().to_string(), message })?;
        }
        Ok(PluginManager { inner })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> Arc<PluginsConfig> {
        self.inner.cfg()
    }

    /// The active plugin set (a snapshot).
    pub fn plugin_set(&self) -> Arc<PluginSet> {
        self.inner.set.load_full()
    }

    /// Runs the `configure` chain for a host. Never fails: see [`Decided`].
    pub async fn configure(&self, host: &HostFacts) -> Decided<ConfigDecision> {
        let inner = Arc::clone(&self.inner);
        let h = host.clone();
        match self.inner.executor.run(move || inner.configure(&h, false)).await {
            Some(d) => d,
            None => {
                let (inner, h) = (Arc::clone(&self.inner), host.clone());
                off_worker(move || inner.configure(&h, true)).await
            }
        }
    }

    /// Runs the `select-rules` chain for a host. Never fails: see [`Decided`].
    pub async fn select_rules(&self, host: &HostFacts) -> Decided<SelectionDecision> {
        let inner = Arc::clone(&self.inner);
        let h = host.clone();
        match self.inner.executor.run(move || inner.select_rules(&h, false)).await {
            Some(d) => d,
            None => {
                let (inner, h) = (Arc::clone(&self.inner), host.clone());
                off_worker(move || inner.select_rules(&h, true)).await
            }
        }
    }

    /// Runs the `triage` chain on events already stored for `host`. Never fails; a degraded
    /// result means some plugin did not judge the batch (retry later if wanted).
    pub async fn triage(&self, host: &HostFacts, events: &[EventRecord]) -> Decided<Verdicts> {
        let batch = EventBatch { host: host.clone(), events: events.iter().map(event_facts).collect() };
        let inner = Arc::clone(&self.inner);
        let b = batch.clone();
        match self.inner.executor.run(move || inner.triage(&b, false)).await {
            Some(d) => d,
            None => {
                let inner = Arc::clone(&self.inner);
                off_worker(move || inner.triage(&batch, true)).await
            }
        }
    }

    /// Runs the `review` chain on a rule proposal. Never fails; a plugin that faults has no
    /// opinion (the proposal stays for an admin). Merge: any `reject` wins, else any
    /// `approve` (the last approving plugin's scope and rule), else `leave`.
    pub async fn review(&self, input: &ReviewInput) -> Decided<ReviewDecision> {
        let json = serde_json::to_string(input).unwrap_or_default();
        let inner = Arc::clone(&self.inner);
        let j = json.clone();
        match self.inner.executor.run(move || inner.review(&j, false)).await {
            Some(d) => d,
            None => self.inner.review(&json, true),
        }
    }

    /// Counts one host of shadow plugin `name` (generation `generation`) whose decision
    /// started to differ from the applied one. The caller decides what "differs" means (it
    /// alone knows the applied decision); a generation no longer active is ignored.
    pub fn note_shadow_disagreement(&self, name: &str, generation: &str) {
        let set = self.inner.set.load_full();
        if let Some(p) = set.by_name(name).filter(|p| p.hash == generation) {
            p.stats.shadow_disagreements.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Status of every active plugin and of failing files.
    pub fn status(&self) -> ManagerStatus {
        self.inner.status()
    }

    /// Rescans the directory now (the watcher does this on its own); compiles off the
    /// caller's thread.
    pub async fn reload(&self) -> ReloadReport {
        self.reload_as(Trigger::ReloadApi, None).await
    }

    /// [`reload`](Self::reload), recording `trigger` and `by` in the history of generations
    /// it activates.
    pub async fn reload_as(&self, trigger: Trigger, by: Option<String>) -> ReloadReport {
        let inner = Arc::clone(&self.inner);
        match tokio::task::spawn_blocking(move || inner.reload_blocking(trigger, by.as_deref())).await {
            Ok(r) => r,
            Err(e) => ReloadReport {
                errors: vec![LoadFailure {
                    file: self.inner.cfg().dir.clone(),
                    plugin: None,
                    error: e.to_string(),
                    at_unix: now_unix(),
                }],
                ..ReloadReport::default()
            },
        }
    }

    /// Rescans the directory now, on this thread (for sync callers and tests).
    pub fn reload_blocking(&self) -> ReloadReport {
        self.inner.reload_blocking(Trigger::ReloadApi, None)
    }

    /// Applies a changed configuration (settings, modes, limits, order, fallbacks) through
    /// the load pipeline: plugins whose settings, mode or limits changed are re-initialised
    /// and smoke-tested; one that fails keeps its previous generation and settings serving
    /// and is reported. `dir`, `watch`, `workers` and `queue_capacity` need a restart and
    /// are kept from the running configuration.
    pub async fn update_config(&self, config: PluginsConfig) -> ReloadReport {
        self.apply_config(config, None).await
    }

    /// [`update_config`](Self::update_config), recording `by` in the history of generations
    /// it activates.
    pub async fn apply_config(&self, config: PluginsConfig, by: Option<String>) -> ReloadReport {
        self.apply_config_as(config, Trigger::ConfigReload, by).await
    }

    /// [`apply_config`](Self::apply_config) recording `trigger`.
    pub async fn apply_config_as(
        &self,
        mut config: PluginsConfig,
        trigger: Trigger,
        by: Option<String>,
    ) -> ReloadReport {
        let old = self.inner.cfg();
        config.dir = old.dir.clone();
        config.watch = old.watch;
        config.workers = old.workers;
        config.queue_capacity = old.queue_capacity;
        config.debounce_ms = old.debounce_ms;
        self.inner.config.store(Arc::new(config));
        self.reload_as(trigger, by).await
    }

    /// Checks, without changing anything, that every loaded plugin whose settings, mode or
    /// limits differ in `config` loads with them (compile, `init`, smoke test). Each error
    /// names the plugin's config key, e.g. `plugins.plugin.staged-rollout.settings: …`.
    pub async fn check_config(&self, config: PluginsConfig) -> Result<(), Vec<String>> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.check_config(&config))
            .await
            .unwrap_or_else(|e| Err(vec![format!("plugins: the check did not finish: {e}")]))
    }

    /// Re-activates the previous generation of `name`. The file on disk is ignored until
    /// its content changes, across restarts. Returns `(from, to)` generations.
    pub fn rollback(&self, name: &str) -> Result<(String, String), PolicyError> {
        self.inner.rollback(name, None, None)
    }

    /// Re-activates a named generation of `name`: its number in the history, or its SHA-256
    /// (a prefix of at least 8 hex digits); `None` is the previous one. Generations no longer
    /// in memory are loaded from the store. `by` is recorded in the history.
    pub fn rollback_to(&self, name: &str, to: Option<&str>, by: Option<&str>) -> Result<(String, String), PolicyError> {
        self.inner.rollback(name, to, by)
    }

    /// The activations of `name`'s generations, oldest first, as kept in the store.
    pub fn history(&self, name: &str) -> Result<Vec<GenerationRecord>, PolicyError> {
        let h = self.inner.generations.history(name);
        if h.is_empty() && self.plugin_set().by_name(name).is_none() {
            return Err(PolicyError::UnknownPlugin(name.to_owned()));
        }
        Ok(h)
    }
}

impl Inner {
    fn cfg(&self) -> Arc<PluginsConfig> {
        self.config.load_full()
    }

    fn status(&self) -> ManagerStatus {
        let set = self.set.load_full();
        let errors = self.load_errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let cfg = self.cfg();
        let now = Instant::now();
        let plugins = set
            .plugins
            .iter()
            .map(|p| {
                let (faults, last_error, p50_us, p99_us) = p.stats.snapshot();
                let breaker = cfg.breaker_for(&p.meta.name);
                let breakers: Vec<BreakerStatus> = p
                    .meta
                    .hooks
                    .iter()
                    .filter(|h| **h != Hook::Init)
                    .map(|h| p.breakers.get(*h).status(*h, &breaker, now))
                    .collect();
                PluginStatus {
                    name: p.meta.name.clone(),
                    version: p.meta.version.clone(),
                    contract: p.meta.contract.clone(),
                    file: p.file.clone(),
                    hash: p.hash.clone(),
                    size_bytes: p.size_bytes,
                    hooks: p.meta.hooks.clone(),
                    mode: p.mode,
                    loaded_at_unix: p.loaded_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                    calls: p.stats.calls.load(Ordering::Relaxed),
                    errors: p.stats.errors.load(Ordering::Relaxed),
                    faults,
                    p50_us,
                    p99_us,
                    last_error,
                    last_load_error: errors
                        .values()
                        .filter(|f| f.plugin.as_deref() == Some(&p.meta.name))
                        .map(|f| f.error.clone())
                        .next_back(),
                    degraded: breakers.iter().any(|b| b.state != BreakerState::Closed),
                    skipped_calls: breakers.iter().map(|b| b.skipped_calls).sum(),
                    breakers,
                    shadow_disagreements: p.stats.shadow_disagreements.load(Ordering::Relaxed),
                    generations: history
                        .get(&p.meta.name)
                        .map(|h| h.iter().rev().map(|g| g.hash.clone()).collect())
                        .unwrap_or_default(),
                }
            })
            .collect();
        ManagerStatus {
            generation: set.generation,
            plugins,
            load_errors: errors.into_values().collect(),
            unavailable: set.unavailable.iter().map(|u| (**u).clone()).collect(),
        }
    }
}

/// Hook for the watcher: rescan, and whether a pending removal needs another look.
pub(crate) fn watcher_reload(inner: &Weak<Inner>) -> Option<bool> {
    let inner = inner.upgrade()?;
    inner.reload_blocking(Trigger::FileChange, None);
    Some(inner.has_pending_removals())
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Runs `f` on the blocking pool. The overloaded path calls no plugin, but its fail-static
/// answer may read a host's last good decision from the store, which blocks (the store-backed
/// kv drives the async store with `block_on`, which panics on a tokio worker).
async fn off_worker<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("plugin fallback task cancelled: {e}"),
    }
}
