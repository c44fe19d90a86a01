//! Loading and reloading: the load pipeline (metadata → compile → type check → init → smoke
//! test), a rescan of the plugin directory that swaps in a new plugin set only when something
//! changed (with a grace window for removed files and load errors kept for status), and
//! rollback to an earlier generation.

use super::*;

impl Inner {
    /// Metadata check → compile → type check → init → smoke test.
    pub(super) fn load(&self, path: &Path, bytes: &[u8]) -> Result<LoadedPlugin, LoadError> {
        let name = meta::read_metadata(bytes)?.name;
        let cfg = self.cfg();
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

    pub(super) fn reload_blocking(&self) -> ReloadReport {
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
                && state.pinned.get(name) == Some(&hash)
            {
                if let Some(p) = current.by_name(name) {
                    keep(&mut next, p);
                }
                continue;
            }
            match self.load(&path, &bytes) {
                Ok(p) if next.iter().any(|n| n.meta.name == p.meta.name) => {
                    self.fail(&mut report, &path, Some(p.meta.name.clone()), LoadError::Duplicate(p.meta.name.clone()));
                }
                Ok(p) => {
                    let p = Arc::new(p);
                    tracing::info!(plugin = %p.meta.name, generation = %&p.hash[..12], file = %path.display(), "plugin loaded");
                    report.loaded.push((p.meta.name.clone(), p.hash.clone()));
                    state.pinned.remove(&p.meta.name);
                    let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
                    let h = history.entry(p.meta.name.clone()).or_default();
                    h.retain(|g| g.hash != p.hash);
                    h.push_back(Arc::clone(&p));
                    while h.len() > GENERATIONS_KEPT {
                        h.pop_front();
                    }
                    drop(history);
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
        for p in &current.plugins {
            if seen.contains(&p.file) || next.iter().any(|n| n.meta.name == p.meta.name) {
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
        self.order(&mut next, &cfg);
        let changed =
            next.len() != current.plugins.len() || next.iter().zip(&current.plugins).any(|(a, b)| !Arc::ptr_eq(a, b));
        if changed {
            self.set.store(Arc::new(PluginSet { generation: current.generation + 1, plugins: next }));
            report.swapped = true;
        }
        report
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

    pub(super) fn rollback(&self, name: &str) -> Result<(String, String), PolicyError> {
        let mut state = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.set.load_full();
        let active = current.by_name(name).ok_or_else(|| PolicyError::UnknownPlugin(name.to_owned()))?;
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let h = history.get(name).ok_or_else(|| PolicyError::NoOlderGeneration(name.to_owned()))?;
        let pos = h.iter().position(|g| g.hash == active.hash).unwrap_or(h.len());
        let target =
            pos.checked_sub(1).and_then(|i| h.get(i)).ok_or_else(|| PolicyError::NoOlderGeneration(name.to_owned()))?;
        let target = Arc::clone(target);
        drop(history);
        // Back in service as the active generation: its breakers start closed, as a new one's.
        target.breakers.reset();
        let mut next: Vec<Arc<LoadedPlugin>> = current.plugins.clone();
        for p in next.iter_mut() {
            if p.meta.name == name {
                *p = Arc::clone(&target);
            }
        }
        state.pinned.insert(name.to_owned(), active.hash.clone());
        self.set.store(Arc::new(PluginSet { generation: current.generation + 1, plugins: next }));
        tracing::info!(plugin = name, from = %&active.hash[..12], to = %&target.hash[..12], "plugin rolled back");
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
