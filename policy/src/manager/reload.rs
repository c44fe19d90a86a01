//! Loading and reloading: the load pipeline (metadata → compile → type check → init → smoke
//! test), a rescan of the plugin directory that swaps in a new plugin set only when something
//! changed (with a grace window for removed files and load errors kept for status), and
//! rollback to an earlier generation. Configured plugins (see
//! [`PluginsConfig::expected`]) are never unloaded by a missing file; one not loaded at all is
//! restored from the generations kept in the store, else reported unavailable.

use super::*;
use crate::generations::{Pin, short};

impl Inner {
    /// Metadata check → compile → type check → init → smoke test.
    pub(super) fn load(&self, path: &Path, bytes: &[u8]) -> Result<LoadedPlugin, LoadError> {
        self.load_with(&self.cfg(), path, bytes)
    }

    /// [`load`](Self::load) with the settings, mode and limits of `cfg`.
    fn load_with(&self, cfg: &PluginsConfig, path: &Path, bytes: &[u8]) -> Result<LoadedPlugin, LoadError> {
        let name = meta::read_metadata(bytes)?.name;
        let limits = cfg.limits_for(&name);
        let compiled = self.runtime.compile(bytes, &limits)?;
        let plugin = LoadedPlugin::init(
            compiled,
            path.to_path_buf(),
            cfg.settings_json(&name),
            cfg.mode_for(&name),
            limits,
            Arc::clone(&self.kv),
        )?;
        smoke_test(&plugin)?;
        Ok(plugin)
    }

    /// The bytes of a loaded generation: its file if unchanged, else the store.
    fn bytes_of(&self, p: &LoadedPlugin) -> Option<Vec<u8>> {
        std::fs::read(&p.file)
            .ok()
            .filter(|b| content_hash(b) == p.hash)
            .or_else(|| self.generations.component(&p.hash))
    }

    /// See [`PluginManager::check_config`].
    pub(super) fn check_config(&self, cfg: &PluginsConfig) -> Result<(), Vec<String>> {
        let mut errors = vec![];
        for p in &self.set.load_full().plugins {
            let name = &p.meta.name;
            let key = if p.settings_json() != cfg.settings_json(name) {
                "settings"
            } else if p.limits != cfg.limits_for(name) {
                "limits"
            } else if p.mode != cfg.mode_for(name) {
                "mode"
            } else {
                continue;
            };
            let result = match self.bytes_of(p) {
                Some(bytes) => self.load_with(cfg, &p.file, &bytes).map(drop).map_err(|e| e.to_string()),
                None => Err("neither its file nor the store holds the loaded generation any more".to_owned()),
            };
            if let Err(e) = result {
                errors.push(format!("plugins.plugin.{name}.{key}: plugin {name} does not load with it: {e}"));
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    pub(super) fn reload_blocking(&self, trigger: Trigger, by: Option<&str>) -> ReloadReport {
        let mut state = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.set.load_full();
        let mut report = ReloadReport::default();
        let cfg = self.cfg();
        let files = match list_components(&cfg.dir) {
            Ok(f) => f,
            Err(e) => {
                report.errors.push(LoadFailure { file: cfg.dir.clone(), plugin: None, error: e, at_unix: now_unix() });
                return report;
            }
        };
        let mut next: Vec<Arc<LoadedPlugin>> = vec![];
        let mut seen: HashSet<PathBuf> = HashSet::new();
        let keep = |next: &mut Vec<Arc<LoadedPlugin>>, p: &Arc<LoadedPlugin>| {
            if !next.iter().any(|n| n.meta.name == p.meta.name) {
                next.push(Arc::clone(p));
            }
        };
        for path in files {
            seen.insert(path.clone());
            state.missing_since.remove(&path);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    self.fail(&mut report, &path, None, LoadError::Io(e.to_string()));
                    if let Some(p) = current.plugins.iter().find(|p| p.file == path) {
                        keep(&mut next, p);
                    }
                    continue;
                }
            };
            let hash = content_hash(&bytes);
            let configured_as_now = |p: &LoadedPlugin| {
                p.settings_json() == cfg.settings_json(&p.meta.name)
                    && p.mode == cfg.mode_for(&p.meta.name)
                    && p.limits == cfg.limits_for(&p.meta.name)
            };
            if let Some(p) = current.plugins.iter().find(|p| p.hash == hash && configured_as_now(p)) {
                keep(&mut next, p);
                report.unchanged.push(p.meta.name.clone());
                self.clear_error(&path);
                continue;
            }
            let name_hint = meta::read_metadata(&bytes).ok().map(|m| m.name);
            if let Some(name) = &name_hint
                && let Some(pin) = self.generations.pin(name)
            {
                let serving = current.by_name(name).filter(|p| p.hash == pin.generation);
                if pin.file_hash == hash && (serving.is_some() || self.generations.component(&pin.generation).is_some())
                {
                    // Rolled back: this file is ignored until it changes (restored below at start).
                    if let Some(p) = serving {
                        keep(&mut next, p);
                    }
                    continue;
                }
                if pin.file_hash == hash {
                    tracing::warn!(plugin = %name, generation = %short(&pin.generation), "the rolled-back generation is no longer stored; loading the file");
                }
                self.generations.set_pin(name, None);
            }
            match self.load(&path, &bytes) {
                Ok(p) if next.iter().any(|n| n.meta.name == p.meta.name) => {
                    self.fail(&mut report, &path, Some(p.meta.name.clone()), LoadError::Duplicate(p.meta.name.clone()));
                }
                Ok(p) => {
                    let p = Arc::new(p);
                    tracing::info!(plugin = %p.meta.name, generation = %&p.hash[..12], file = %path.display(), "plugin loaded");
                    report.loaded.push((p.meta.name.clone(), p.hash.clone()));
                    self.generations.activated(
                        &p.meta.name,
                        (&p.meta.version, &p.meta.hooks),
                        &p.hash,
                        Some(&bytes),
                        trigger,
                        by,
                    );
                    self.remember(&p);
                    self.clear_error(&path);
                    next.push(p);
                }
                Err(e) => {
                    self.fail(&mut report, &path, name_hint.clone(), e);
                    let old = current
                        .plugins
                        .iter()
                        .find(|p| p.file == path)
                        .or_else(|| name_hint.as_deref().and_then(|n| current.by_name(n)));
                    if let Some(p) = old {
                        keep(&mut next, p);
                    }
                }
            }
        }
        // Plugins whose file disappeared: unloaded once missing for longer than the grace
        // window, so a build tool's remove-then-create causes no gap.
        let grace = Duration::from_millis(cfg.debounce_ms.max(1) * 2);
        let expected = cfg.expected();
        for p in &current.plugins {
            if seen.contains(&p.file) || next.iter().any(|n| n.meta.name == p.meta.name) {
                continue;
            }
            if expected.contains(&p.meta.name) {
                // Configured: a missing file never unloads it (remove its configuration to).
                let error = LoadError::Io(format!(
                    "file removed; generation {} keeps serving because plugin {} is configured",
                    short(&p.hash),
                    p.meta.name
                ));
                self.fail(&mut report, &p.file, Some(p.meta.name.clone()), error);
                next.push(Arc::clone(p));
                continue;
            }
            let since = *state.missing_since.entry(p.file.clone()).or_insert_with(Instant::now);
            if since.elapsed() < grace {
                next.push(Arc::clone(p));
            } else {
                tracing::info!(plugin = %p.meta.name, "plugin file removed; unloaded");
                state.missing_since.remove(&p.file);
                report.unloaded.push(p.meta.name.clone());
            }
        }
        for name in &expected {
            if !next.iter().any(|n| &n.meta.name == name)
                && let Some(p) = self.restore(name, &cfg, &mut report)
            {
                next.push(p);
            }
        }
        self.order(&mut next, &cfg);
        let unavailable = self.unavailable(&next, &cfg);
        let changed = next.len() != current.plugins.len()
            || next.iter().zip(&current.plugins).any(|(a, b)| !Arc::ptr_eq(a, b))
            || unavailable.len() != current.unavailable.len()
            || unavailable.iter().zip(&current.unavailable).any(|(a, b)| a != b)
            || current.chain.len() != next.len() + unavailable.len();
        if changed {
            for u in &unavailable {
                tracing::warn!(plugin = %u.name, on_unavailable = ?u.on_unavailable, "configured plugin not loaded: {}", u.reason);
            }
            self.set.store(Arc::new(PluginSet::new(current.generation + 1, next, unavailable, &cfg)));
            report.swapped = true;
        }
        report
    }

    /// A configured plugin that no file provides: its pinned (rolled-back) generation, else
    /// its last active one, loaded from the store.
    fn restore(&self, name: &str, cfg: &PluginsConfig, report: &mut ReloadReport) -> Option<Arc<LoadedPlugin>> {
        let sha = match self.generations.pin(name) {
            Some(pin) => pin.generation,
            None => self.generations.history(name).last()?.sha256.clone(),
        };
        let bytes = self.generations.component(&sha)?;
        let failed = self
            .load_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find_map(|(path, f)| (f.plugin.as_deref() == Some(name)).then(|| path.clone()));
        let path = failed.clone().unwrap_or_else(|| cfg.dir.join(format!("{name}.wasm")));
        match self.load(&path, &bytes) {
            Ok(p) if p.meta.name == name => {
                let p = Arc::new(p);
                tracing::warn!(plugin = name, generation = %short(&sha), "configured plugin restored from the store");
                self.generations.activated(
                    name,
                    (&p.meta.version, &p.meta.hooks),
                    &p.hash,
                    None,
                    Trigger::StoreRestore,
                    None,
                );
                self.remember(&p);
                if failed.is_none() && !path.is_file() {
                    let why = format!(
                        "no component file provides plugin {name}; generation {} restored from the store",
                        short(&sha)
                    );
                    self.fail(report, &path, Some(name.to_owned()), LoadError::Io(why));
                }
                report.loaded.push((name.to_owned(), p.hash.clone()));
                Some(p)
            }
            Ok(p) => {
                tracing::warn!(
                    plugin = name,
                    "stored generation {} declares plugin {}; not restored",
                    short(&sha),
                    p.meta.name
                );
                None
            }
            Err(e) => {
                tracing::warn!(plugin = name, generation = %short(&sha), "stored generation does not load: {e}");
                None
            }
        }
    }

    /// Keeps a loaded generation in memory for rollback.
    fn remember(&self, p: &Arc<LoadedPlugin>) {
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let h = history.entry(p.meta.name.clone()).or_default();
        h.retain(|g| g.hash != p.hash);
        h.push_back(Arc::clone(p));
        while h.len() > GENERATIONS_KEPT {
            h.pop_front();
        }
    }

    /// Configured plugins missing from `loaded`, with why.
    fn unavailable(&self, loaded: &[Arc<LoadedPlugin>], cfg: &PluginsConfig) -> Vec<Arc<UnavailablePlugin>> {
        let errors = self.load_errors.lock().unwrap_or_else(|e| e.into_inner());
        cfg.expected()
            .into_iter()
            .filter(|name| !loaded.iter().any(|p| &p.meta.name == name))
            .map(|name| {
                let reason = errors
                    .values()
                    .find(|f| f.plugin.as_deref() == Some(name.as_str()))
                    .map(|f| format!("{}: {}", f.file.display(), f.error))
                    .unwrap_or_else(|| {
                        format!("no component file in {} declares plugin {name} and none is stored", cfg.dir.display())
                    });
                let last = self.generations.history(&name).pop();
                Arc::new(UnavailablePlugin {
                    reason,
                    on_unavailable: cfg.on_unavailable_for(&name),
                    mode: cfg.mode_for(&name),
                    hooks: last.as_ref().map(|r| r.hooks.clone()),
                    last_generation: last.map(|r| r.sha256),
                    name,
                })
            })
            .collect()
    }

    /// True while a removed plugin file is inside its grace window (the watcher rechecks).
    pub(super) fn has_pending_removals(&self) -> bool {
        !self.reload_lock.lock().unwrap_or_else(|e| e.into_inner()).missing_since.is_empty()
    }

    fn order(&self, plugins: &mut [Arc<LoadedPlugin>], cfg: &PluginsConfig) {
        let rank = |name: &str| cfg.order.iter().position(|n| n == name).unwrap_or(usize::MAX);
        plugins.sort_by(|a, b| rank(&a.meta.name).cmp(&rank(&b.meta.name)).then_with(|| a.meta.name.cmp(&b.meta.name)));
    }

    fn fail(&self, report: &mut ReloadReport, path: &Path, plugin: Option<String>, e: LoadError) {
        tracing::warn!(file = %path.display(), plugin = plugin.as_deref().unwrap_or("?"), "plugin not loaded: {e}");
        let failure = LoadFailure { file: path.to_path_buf(), plugin, error: e.to_string(), at_unix: now_unix() };
        self.load_errors.lock().unwrap_or_else(|e| e.into_inner()).insert(path.to_path_buf(), failure.clone());
        report.errors.push(failure);
    }

    fn clear_error(&self, path: &Path) {
        self.load_errors.lock().unwrap_or_else(|e| e.into_inner()).remove(path);
    }

    pub(super) fn rollback(
        &self,
        name: &str,
        to: Option<&str>,
        by: Option<&str>,
    ) -> Result<(String, String), PolicyError> {
        let _state = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.set.load_full();
        let active = current.by_name(name).ok_or_else(|| PolicyError::UnknownPlugin(name.to_owned()))?;
        let err = |message: String| PolicyError::Generation { plugin: name.to_owned(), message };
        let records = self.generations.history(name);
        let in_memory: Vec<Arc<LoadedPlugin>> = self
            .history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default();
        let sha = match to.map(str::trim) {
            None | Some("") => {
                // The newest generation older than the active one: by number in the stored
                // history, else by load order in memory.
                let active_number = records.iter().find(|r| r.sha256 == active.hash).map(|r| r.number);
                let older = active_number.and_then(|n| {
                    records.iter().filter(|r| r.number < n).max_by_key(|r| r.number).map(|r| r.sha256.clone())
                });
                let pos = in_memory.iter().position(|g| g.hash == active.hash).unwrap_or(in_memory.len());
                older
                    .or_else(|| pos.checked_sub(1).and_then(|i| in_memory.get(i)).map(|g| g.hash.clone()))
                    .ok_or_else(|| PolicyError::NoOlderGeneration(name.to_owned()))?
            }
            Some(n) if n.len() < 8 && n.bytes().all(|b| b.is_ascii_digit()) => {
                let number: u64 = n.parse().map_err(|_| err(format!("generation number {n:?} is not a number")))?;
                records
                    .iter()
                    .find(|r| r.number == number)
                    .map(|r| r.sha256.clone())
                    .ok_or_else(|| err(format!("no generation number {number} in its history")))?
            }
            Some(prefix) => {
                let prefix = prefix.to_ascii_lowercase();
                if prefix.len() < 8 || prefix.len() > 64 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(err(format!(
                        "\"to\" must be a generation number or at least 8 hex digits of its SHA-256, not {:?}",
                        prefix.chars().take(70).collect::<String>()
                    )));
                }
                let mut found: Vec<String> = records
                    .iter()
                    .map(|r| r.sha256.clone())
                    .chain(in_memory.iter().map(|g| g.hash.clone()))
                    .filter(|s| s.starts_with(&prefix))
                    .collect();
                found.sort();
                found.dedup();
                match found.len() {
                    1 => found.remove(0),
                    0 => return Err(err(format!("no generation {prefix} in its history"))),
                    _ => return Err(err(format!("{prefix} matches {} generations; give more digits", found.len()))),
                }
            }
        };
        if sha == active.hash {
            return Err(err(format!("generation {} is already active", short(&sha))));
        }
        let target = match in_memory.iter().find(|g| g.hash == sha) {
            Some(g) => Arc::clone(g),
            None => {
                let bytes = self.generations.component(&sha).ok_or_else(|| {
                    err(format!("generation {} is no longer stored (only the latest few are kept)", short(&sha)))
                })?;
                let p = self.load(&active.file, &bytes).map_err(|e| err(format!("generation {}: {e}", short(&sha))))?;
                if p.meta.name != name {
                    return Err(err(format!("stored generation {} declares plugin {}", short(&sha), p.meta.name)));
                }
                let p = Arc::new(p);
                self.remember(&p);
                p
            }
        };
        // Back in service as the active generation: its breakers start closed, as a new one's.
        target.breakers.reset();
        let next: Vec<Arc<LoadedPlugin>> = current
            .plugins
            .iter()
            .map(|p| if p.meta.name == name { Arc::clone(&target) } else { Arc::clone(p) })
            .collect();
        // The file on disk is ignored until it changes, across restarts.
        let file_hash = std::fs::read(&active.file).map_or_else(|_| active.hash.clone(), |b| content_hash(&b));
        let pin = Pin { generation: target.hash.clone(), file_hash: file_hash.clone() };
        self.generations.set_pin(name, (file_hash != target.hash).then_some(&pin));
        self.generations.activated(
            name,
            (&target.meta.version, &target.meta.hooks),
            &target.hash,
            None,
            Trigger::Rollback,
            by,
        );
        let unavailable = current.unavailable.clone();
        self.set.store(Arc::new(PluginSet::new(current.generation + 1, next, unavailable, &self.cfg())));
        tracing::info!(plugin = name, from = %short(&active.hash), to = %short(&target.hash), by = by.unwrap_or("-"), "plugin rolled back");
        Ok((active.hash.clone(), target.hash.clone()))
    }
}

/// Calls every declared hook once with a built-in input and checks the output parses
/// strictly. Uses a scratch kv so nothing persists.
fn smoke_test(p: &LoadedPlugin) -> Result<(), LoadError> {
    let now = now_unix() as i64;
    let host = HostFacts {
        machine_id: "dasher-smoke-test".into(),
        serial_number: "SMOKE000000".into(),
        hostname: "smoke-test.example.com".into(),
        os_version: "15.5".into(),
        os_build: "24F74".into(),
        model_identifier: "Mac15,7".into(),
        santa_version: "2026.7".into(),
        primary_user: "smoke".into(),
        first_seen_unix: now - 86_400,
        now_unix: now,
        ..HostFacts::default()
    };
    let batch = EventBatch {
        host: host.clone(),
        events: vec![EventFacts {
            id: 1,
            kind: EventKind::Execution,
            decision: "BLOCK_UNKNOWN".into(),
            file_sha256: "a".repeat(64),
            file_name: "smoke".into(),
            file_path: "/tmp".into(),
            occurred_at_unix: now as f64,
            received_at_unix: now,
            ..EventFacts::default()
        }],
    };
    let kv = scratch_kv();
    let run = |hook: Hook, input: String| -> Result<String, LoadError> {
        p.call(hook, &input, &kv).map(|o| o.json).map_err(|f| LoadError::Smoke { hook, message: f.to_string() })
    };
    let bad =
        |hook: Hook| move |e: serde_json::Error| LoadError::Smoke { hook, message: format!("invalid output: {e}") };
    let host_json = serde_json::to_string(&host).unwrap_or_default();
    if p.meta.has(Hook::Configure) {
        serde_json::from_str::<ConfigDecision>(&run(Hook::Configure, host_json.clone())?)
            .map_err(bad(Hook::Configure))?;
    }
    if p.meta.has(Hook::SelectRules) {
        serde_json::from_str::<SelectionDecision>(&run(Hook::SelectRules, host_json)?)
            .map_err(bad(Hook::SelectRules))?;
    }
    if p.meta.has(Hook::Triage) {
        serde_json::from_str::<Verdicts>(&run(Hook::Triage, serde_json::to_string(&batch).unwrap_or_default())?)
            .map_err(bad(Hook::Triage))?;
    }
    if p.meta.has(Hook::Review) {
        let input = dasher_sdk::plugin::ReviewInput { now_unix: now, ..Default::default() };
        serde_json::from_str::<dasher_sdk::plugin::ReviewDecision>(&run(
            Hook::Review,
            serde_json::to_string(&input).unwrap_or_default(),
        )?)
        .map_err(bad(Hook::Review))?;
    }
    Ok(())
}

/// `*.wasm` files of `dir`, skipping hidden files (temp files of `install`).
fn list_components(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".wasm") || !path.is_file() {
            continue;
        }
        out.push(path);
    }
    out.sort();
    Ok(out)
}
