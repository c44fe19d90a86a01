//! Running the hook chains: each enforcing plugin in order, shadow plugins beside them,
//! through the circuit breaker and the worker limits, merged into one [`Decided`] value with
//! fail-static answers for the plugins that faulted or are unavailable.

use super::*;

impl Inner {
    pub(super) fn configure(&self, host: &HostFacts, overloaded: bool) -> Decided<ConfigDecision> {
        let input = serde_json::to_string(host).unwrap_or_default();
        self.run_chain(
            Hook::Configure,
            &input,
            &host.machine_id,
            overloaded,
            merge_config,
            |name| {
                let cfg = self.cfg();
                cfg.plugin
                    .get(name)
                    .and_then(|c| c.fallback_configure.clone())
                    .or_else(|| cfg.fallback.configure.clone())
            },
            |_| Ok(()),
        )
    }

    pub(super) fn select_rules(&self, host: &HostFacts, overloaded: bool) -> Decided<SelectionDecision> {
        let input = serde_json::to_string(host).unwrap_or_default();
        self.run_chain(
            Hook::SelectRules,
            &input,
            &host.machine_id,
            overloaded,
            merge_selection,
            |_| self.cfg().fallback.select_rules.clone(),
            |_| Ok(()),
        )
    }

    pub(super) fn triage(&self, batch: &EventBatch, overloaded: bool) -> Decided<Verdicts> {
        let input = serde_json::to_string(batch).unwrap_or_default();
        let ids: HashSet<u64> = batch.events.iter().map(|e| e.id).collect();
        let merge = |acc: &Verdicts, later: &Verdicts| {
            let mut out = acc.clone();
            merge_verdicts(&mut out, later);
            out
        };
        let check = |v: &Verdicts| {
            let mut seen = HashSet::new();
            for verdict in &v.verdicts {
                if !ids.contains(&verdict.event_id) {
                    return Err(format!("verdict for event {} which is not in the batch", verdict.event_id));
                }
                if !seen.insert(verdict.event_id) {
                    return Err(format!("two verdicts for event {}", verdict.event_id));
                }
            }
            Ok(())
        };
        // Triage has no per-host "last good": a failed plugin contributes nothing.
        self.run_chain(Hook::Triage, &input, "", overloaded, merge, |_| None, check)
    }

    pub(super) fn review(&self, input: &str, overloaded: bool) -> Decided<ReviewDecision> {
        let merge = |acc: &ReviewDecision, later: &ReviewDecision| match (acc.decision, later.decision) {
            (ReviewVerdict::Reject, _) => acc.clone(),
            (_, ReviewVerdict::Leave) => acc.clone(),
            _ => later.clone(),
        };
        // Like triage: no per-host "last good" and no fallback; a failed plugin has no opinion.
        self.run_chain(Hook::Review, input, "", overloaded, merge, |_| None, |_| Ok(()))
    }

    /// The chain: each plugin declaring `hook`, in order; fail-static per plugin; shadow
    /// plugins recorded, not merged.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_chain<T>(
        &self,
        hook: Hook,
        input: &str,
        machine_id: &str,
        overloaded: bool,
        merge: impl Fn(&T, &T) -> T,
        fallback: impl Fn(&str) -> Option<T>,
        check: impl Fn(&T) -> Result<(), String>,
    ) -> Decided<T>
    where
        T: DeserializeOwned + Serialize + Default,
    {
        let set = self.set.load_full();
        let mut out = Decided {
            value: T::default(),
            made_by: vec![],
            faults: vec![],
            shadow: vec![],
            degraded: false,
            reject: false,
        };
        let mut shadow_values: Vec<(Arc<LoadedPlugin>, Option<serde_json::Value>)> = vec![];
        let last_good_or_fallback = |name: &str| {
            let last = if machine_id.is_empty() { None } else { self.last_good.get(name, hook, machine_id) };
            match last.and_then(|j| serde_json::from_str::<T>(&j).ok()) {
                Some(v) => (Some(v), Source::LastGood),
                None => match fallback(name) {
                    Some(v) => (Some(v), Source::Fallback),
                    None => (None, Source::NoOpinion),
                },
            }
        };
        for link in &set.chain {
            let p = match link {
                Link::Loaded(p) if p.meta.has(hook) => p,
                Link::Loaded(_) => continue,
                Link::Unavailable(u) => {
                    if hook == Hook::Triage
                        || u.mode == Mode::Shadow
                        || u.hooks.as_ref().is_some_and(|h| !h.contains(&hook))
                    {
                        continue;
                    }
                    // Never a live answer: the plugin host set is kept (no rule removed).
                    out.degraded = true;
                    let generation = u.last_generation.clone().unwrap_or_default();
                    out.faults.push(FaultRecord {
                        plugin: u.name.clone(),
                        generation: generation.clone(),
                        hook,
                        kind: "unavailable",
                        message: u.reason.clone(),
                    });
                    let (value, source) = match (u.on_unavailable, hook) {
                        (OnUnavailable::Reject, _) => {
                            out.reject = true;
                            (None, Source::NoOpinion)
                        }
                        (OnUnavailable::Config, Hook::Configure) => (None, Source::NoOpinion),
                        _ => last_good_or_fallback(&u.name),
                    };
                    // Nothing to say (a plugin never seen on this store): a fault, no part.
                    if value.is_none() && u.on_unavailable != OnUnavailable::Reject {
                        continue;
                    }
                    let mut fields = vec![];
                    if let Some(v) = value {
                        fields = set_fields(&v);
                        out.value = merge(&out.value, &v);
                    }
                    out.made_by.push(Contribution { plugin: u.name.clone(), generation, source, fields });
                    continue;
                }
            };
            let result = if overloaded {
                self.record_fault(p, hook, &Fault::Overloaded);
                Err(Fault::Overloaded)
            } else {
                self.call_guarded::<T>(p, hook, input, &check)
            };
            let (value, source) = match result {
                Ok((value, json)) => {
                    if !machine_id.is_empty() {
                        self.last_good.remember(&p.meta.name, hook, machine_id, json);
                    }
                    (Some(value), Source::Live)
                }
                Err(fault) => {
                    out.faults.push(FaultRecord {
                        plugin: p.meta.name.clone(),
                        generation: p.hash.clone(),
                        hook,
                        kind: fault.kind(),
                        message: fault.to_string(),
                    });
                    last_good_or_fallback(&p.meta.name)
                }
            };
            if p.mode == Mode::Shadow {
                shadow_values.push((Arc::clone(p), value.and_then(|v| serde_json::to_value(&v).ok())));
                continue;
            }
            if source != Source::Live {
                out.degraded = true;
                if matches!(hook, Hook::Configure | Hook::SelectRules)
                    && self.cfg().on_failure_for(&p.meta.name) == OnFailure::Reject
                {
                    out.reject = true;
                }
            }
            let mut fields = vec![];
            if let Some(v) = value {
                fields = set_fields(&v);
                out.value = merge(&out.value, &v);
            }
            out.made_by.push(Contribution { plugin: p.meta.name.clone(), generation: p.hash.clone(), source, fields });
        }
        // Whether a shadow decision differs is decided (and counted, and logged) by the
        // caller, against what it finally applied: one definition, not two.
        for (p, decision) in shadow_values {
            out.shadow.push(ShadowRecord { plugin: p.meta.name.clone(), generation: p.hash.clone(), decision });
        }
        out
    }

    pub(super) fn call_one<T: DeserializeOwned + Serialize>(
        &self,
        p: &LoadedPlugin,
        hook: Hook,
        input: &str,
        check: &impl Fn(&T) -> Result<(), String>,
    ) -> Result<(T, String), Fault> {
        let out = p.call(hook, input, &self.kv)?;
        let value: T = serde_json::from_str(&out.json).map_err(|e| Fault::InvalidOutput(e.to_string()))?;
        check(&value).map_err(Fault::InvalidOutput)?;
        p.stats.record_ok(out.elapsed);
        Ok((value, out.json))
    }

    /// One plugin's call through its hook's circuit breaker: skipped while it is open (the
    /// guest is not entered, so nothing runs and no kv write is staged), else run, recorded
    /// and reported to the breaker. Faults are counted and logged here.
    pub(super) fn call_guarded<T: DeserializeOwned + Serialize>(
        &self,
        p: &LoadedPlugin,
        hook: Hook,
        input: &str,
        check: &impl Fn(&T) -> Result<(), String>,
    ) -> Result<(T, String), Fault> {
        let settings = self.cfg().breaker_for(&p.meta.name);
        let ticket = match p.breakers.get(hook).admit(&settings, Instant::now()) {
            Admit::Enter(ticket) => ticket,
            Admit::Skip => return Err(Fault::BreakerOpen),
        };
        let result = self.call_one(p, hook, input, check);
        let transition = match &result {
            Ok(_) => ticket.succeeded(&settings, Instant::now()),
            Err(fault) => {
                self.record_fault(p, hook, fault);
                ticket.faulted(&settings, Instant::now())
            }
        };
        if let Some(t) = transition {
            log_transition(p, hook, &t);
        }
        result
    }

    /// Counts a fault and logs it: a plugin's first fault per hook in full, then at most one
    /// summary line per interval ("N more faults in the last 60 s, last: …").
    pub(super) fn record_fault(&self, p: &LoadedPlugin, hook: Hook, fault: &Fault) {
        let message = fault.to_string();
        p.stats.record_fault(fault.kind(), format!("{hook}: {message}"));
        let name = &p.meta.name;
        let generation = &p.hash[..12];
        match p.fault_log.note(hook, &message) {
            Emit::Quiet => {}
            Emit::Full { earlier } => {
                if let Some(r) = earlier {
                    tracing::warn!(plugin = %name, generation, hook = %hook, "plugin {name} hook {hook}: {} more faults in {} s, last: {}", r.count_text(), r.over.as_secs().max(1), r.last);
                }
                tracing::warn!(plugin = %name, generation, hook = %hook, kind = fault.kind(), "plugin fault: {message}");
            }
            Emit::Summary(r) => {
                tracing::warn!(plugin = %name, generation, hook = %hook, "plugin {name} hook {hook}: {} more faults in the last {} s, last: {}", r.count_text(), r.over.as_secs().max(1), r.last);
            }
        }
    }
}

/// Logs a breaker transition in full (never aggregated: they are rare and each one matters).
pub(super) fn log_transition(p: &LoadedPlugin, hook: Hook, t: &Transition) {
    let name = &p.meta.name;
    let generation = &p.hash[..12];
    match t {
        Transition::Opened { faults, calls, window, cool_down } => tracing::warn!(
            plugin = %name, generation, hook = %hook,
            "plugin {name} hook {hook}: circuit breaker open after {faults} faults in {calls} calls within {} s; calls skip the plugin and fail static for {} ms, then one trial call decides",
            window.as_secs(), cool_down.as_millis()
        ),
        Transition::Reopened { cool_down } => tracing::warn!(
            plugin = %name, generation, hook = %hook,
            "plugin {name} hook {hook}: trial call faulted; circuit breaker open again for {} ms",
            cool_down.as_millis()
        ),
        Transition::Closed { open_for, skipped } => tracing::info!(
            plugin = %name, generation, hook = %hook,
            "plugin {name} hook {hook}: trial call answered; circuit breaker closed after {} s open, {skipped} calls skipped",
            open_for.as_secs()
        ),
    }
}

/// Top-level fields a decision has an opinion on (set, not `null`).
pub(super) fn set_fields<T: Serialize>(v: &T) -> Vec<String> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(map)) => map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, _)| k).collect(),
        _ => vec![],
    }
}
