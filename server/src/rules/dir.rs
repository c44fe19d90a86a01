//! GitOps mode (`[rules_dir]`, `--rules-dir`): the server applies a directory of rules files at
//! start and whenever it changes, so a git-sync sidecar or a CI job copying files is the
//! whole deployment.
//!
//! Owns: the directory's last applied state ([`DirStatus`]) and which sets it owns. A change
//! is seen through notify (debounced) and, as a safety net for watches that miss a change
//! (a symlink swapped to a new checkout), a rescan every `poll_secs`; a rescan whose files hash
//! like the last applied ones does nothing. A broken file applies nothing: the last good
//! rules stay, the error is logged, counted (`dasher_rules_dir_errors_total`) and shown by
//! `GET /api/v1/rules-dir`. Sets named by the directory refuse other writers ([`RulesDir::owner`]).

use super::files::{self, LoadedDir};
use super::{apply, validate_sets};
use crate::config::RulesDirSettings;
use crate::metrics::Metrics;
use crate::sync::now_unix;
use dasher_store::Store;
use notify::RecursiveMode;
use notify_debouncer_full::new_debouncer;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// What `GET /api/v1/rules-dir` shows.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DirStatus {
    /// The directory.
    pub path: String,
    /// Whether sets no file names are emptied.
    pub prune: bool,
    /// SHA-256 over the names and contents of the files last applied.
    pub applied_sha256: Option<String>,
    /// The rule version after that apply.
    pub applied_version: Option<u64>,
    /// When (Unix seconds).
    pub applied_at_unix: Option<i64>,
    /// The last attempt's error, cleared by a successful apply.
    pub last_error: Option<String>,
    /// When it happened (Unix seconds).
    pub last_error_at_unix: Option<i64>,
    /// Failed attempts since start.
    pub errors: u64,
    /// The sets the directory owns, with the file that declares each.
    pub sets: BTreeMap<String, String>,
}

/// The rule sets a rules directory owns, with the file declaring each; shared by the
/// directory (which writes it) and every other rule writer (which checks it).
#[derive(Clone, Debug, Default)]
pub struct Owners(Arc<RwLock<BTreeMap<String, String>>>);

impl Owners {
    /// The file (path) owning `rule_set`, if a rules directory owns it.
    pub fn owner(&self, rule_set: &str) -> Option<String> {
        self.0.read().expect("owners lock").get(rule_set).cloned()
    }

    /// The first of `sets` a rules directory owns, with its file.
    pub fn first_owned<'a>(&self, sets: impl IntoIterator<Item = &'a str>) -> Option<(String, String)> {
        let owned = self.0.read().expect("owners lock");
        sets.into_iter().find_map(|s| owned.get(s).map(|f| (s.to_owned(), f.clone())))
    }

    /// The refusal for a write into an owned set.
    pub fn refusal(set: &str, file: &str) -> String {
        format!("rule set {set:?} is managed by the rules directory (file {file}); change the file instead")
    }
}

/// The rules directory of a running server.
pub struct RulesDir {
    settings: RulesDirSettings,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    max_rules: usize,
    status: Mutex<DirStatus>,
    owned: Owners,
    applying: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for RulesDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RulesDir").field("path", &self.settings.path).finish_non_exhaustive()
    }
}

impl RulesDir {
    /// Applies the directory once (an error is recorded, not returned: the server starts with
    /// the rules it has) and watches it until `shutdown`.
    pub async fn start(
        settings: RulesDirSettings,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        owned: Owners,
        max_rules: usize,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Arc<RulesDir>> {
        use anyhow::Context;
        std::fs::create_dir_all(&settings.path)
            .with_context(|| format!("creating rules directory {}", settings.path.display()))?;
        let status =
            DirStatus { path: settings.path.display().to_string(), prune: settings.prune, ..Default::default() };
        let dir = Arc::new(RulesDir {
            settings,
            store,
            metrics,
            max_rules,
            status: Mutex::new(status),
            owned,
            applying: tokio::sync::Mutex::new(()),
        });
        dir.sync_now().await;
        let (tx, rx) = mpsc::channel(1);
        watch_thread(&dir.settings, tx).map_err(|e| anyhow::anyhow!("watching the rules directory: {e}"))?;
        tokio::spawn(run(dir.clone(), rx, shutdown));
        Ok(dir)
    }

    /// The status shown by `GET /api/v1/rules-dir`.
    pub fn status(&self) -> DirStatus {
        self.status.lock().expect("status lock").clone()
    }

    /// The file (path) owning `rule_set`, if the directory owns it.
    pub fn owner(&self, rule_set: &str) -> Option<String> {
        self.owned.owner(rule_set)
    }

    /// Reads and applies the directory now, unless its files hash like the last applied ones.
    /// Returns whether the rules are now those of the files.
    pub async fn sync_now(&self) -> bool {
        let _one_at_a_time = self.applying.lock().await;
        let path = self.settings.path.clone();
        let max = self.max_rules;
        let loaded = tokio::task::spawn_blocking(move || -> Result<_, String> {
            let LoadedDir { sets, content_sha256 } = files::load_dir(&path).map_err(|e| e.to_string())?;
            let desired = validate_sets(sets, max).map_err(|e| e.to_string())?;
            Ok((desired, content_sha256))
        })
        .await
        .unwrap_or_else(|e| Err(format!("reading the rules directory panicked: {e}")));
        let (desired, sha) = match loaded {
            Ok(v) => v,
            Err(e) => {
                self.failed(e);
                return false;
            }
        };
        {
            let s = self.status.lock().expect("status lock");
            if s.applied_sha256.as_deref() == Some(sha.as_str()) && s.last_error.is_none() {
                return true;
            }
        }
        match apply(self.store.as_ref(), &desired, self.settings.prune, None, &|_| false).await {
            Ok((plan, version)) => {
                let sets: BTreeMap<String, String> = desired
                    .iter()
                    .map(|d| {
                        let file = self.settings.path.join(d.source.as_deref().unwrap_or_default());
                        (d.name.clone(), file.display().to_string())
                    })
                    .collect();
                *self.owned.0.write().expect("owners lock") = sets.clone();
                let mut s = self.status.lock().expect("status lock");
                s.applied_sha256 = Some(sha);
                s.applied_version = Some(version);
                s.applied_at_unix = Some(now_unix());
                s.last_error = None;
                s.sets = sets;
                tracing::info!(
                    dir = %self.settings.path.display(), version, add = plan.add, change = plan.change,
                    remove = plan.remove, "applied the rules directory"
                );
                true
            }
            Err(e) => {
                self.failed(e.to_string());
                false
            }
        }
    }

    /// Records a failed attempt; before any success, the sets the files seem to name are owned
    /// anyway, so a broken first start does not leave them open to other writers.
    fn failed(&self, error: String) {
        tracing::error!(dir = %self.settings.path.display(), %error, "rules directory not applied; the last good rules stay");
        self.metrics.record_rules_dir_error();
        {
            let mut owned = self.owned.0.write().expect("owners lock");
            if owned.is_empty() {
                *owned = lenient_owners(&self.settings.path);
            }
        }
        let mut s = self.status.lock().expect("status lock");
        s.last_error = Some(error);
        s.last_error_at_unix = Some(now_unix());
        s.errors += 1;
        if s.sets.is_empty() {
            s.sets = self.owned.0.read().expect("owners lock").clone();
        }
    }
}

/// Each file's set as far as it can be read (its `rule_set`, or its stem).
fn lenient_owners(dir: &std::path::Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for path in files::rule_files(dir).unwrap_or_default() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let set = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| files::parse_file(&name, &t).ok())
            .map(|s| s.rule_set)
            .unwrap_or_else(|| name.strip_suffix(".toml").unwrap_or(&name).to_owned());
        out.insert(set, path.display().to_string());
    }
    out
}

async fn run(dir: Arc<RulesDir>, mut changes: mpsc::Receiver<()>, mut shutdown: watch::Receiver<bool>) {
    let mut poll = tokio::time::interval(Duration::from_secs(dir.settings.poll_secs.max(1)));
    poll.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            got = changes.recv() => if got.is_none() { return },
            _ = poll.tick(), if dir.settings.poll_secs > 0 => {}
        }
        if *shutdown.borrow() {
            return;
        }
        dir.sync_now().await;
    }
}

/// notify + debouncer on a thread of its own; each batch of events becomes one (coalesced)
/// message. The thread ends when the receiving task has.
fn watch_thread(settings: &RulesDirSettings, tx: mpsc::Sender<()>) -> Result<(), String> {
    let (events_tx, events) = std::sync::mpsc::channel();
    let mut debouncer = new_debouncer(Duration::from_millis(settings.debounce_ms.max(10)), None, events_tx)
        .map_err(|e| e.to_string())?;
    debouncer.watch(&settings.path, RecursiveMode::NonRecursive).map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("dasher-rules-watch".into())
        .spawn(move || {
            let _debouncer = debouncer;
            loop {
                match events.recv_timeout(Duration::from_millis(500)) {
                    Ok(Ok(batch)) if batch.iter().all(|e| e.kind.is_access()) => {}
                    Ok(Ok(_)) => {
                        let _ = tx.try_send(());
                    }
                    Ok(Err(errors)) => tracing::warn!("rules directory watch error: {errors:?}"),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                }
                if tx.is_closed() {
                    return;
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(())
}
