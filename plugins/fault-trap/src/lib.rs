//! Fault fixture: a hook panics (a trap under `panic = "abort"`) when the host carries the tag in `when_tag`
//! (default `"fault"`; `"*"` = always, which fails the load-time smoke test). Otherwise it
//! answers normally — `configure`: LOCKDOWN with batch size 7; `select-rules`:
//! `["fault-trap-set"]`; `triage`: keep every event with label `fault-trap` — so a test can
//! first get a good decision for a host and then make the same host fail. `configure` also
//! records `configured:<machine id>` in kv; just before it panics it increments
//! `attempts:<machine id>` (an atomic kv operation: applied at once and kept) and writes
//! `trapped:<machine id>` (buffered: never saved), so tests can check both sides of the
//! trap semantics.

use dasher_sdk::plugin::prelude::*;
use serde::Deserialize;

/// Settings.
#[derive(Deserialize)]
#[serde(default)]
pub struct Trap {
    /// Fail for hosts with this tag (`"*"`: always).
    pub when_tag: String,
}

impl Default for Trap {
    fn default() -> Self {
        Trap { when_tag: "fault".into() }
    }
}

impl Trap {
    fn triggered(&self, host: &HostFacts) -> bool {
        self.when_tag == "*" || host.tags.contains(&self.when_tag)
    }
}

impl Configure for Trap {
    fn configure(&self, host: &HostFacts) -> Result<ConfigDecision> {
        if self.triggered(host) {
            kv::increment(&format!("attempts:{}", host.machine_id), 1)?;
            kv::set(&format!("trapped:{}", host.machine_id), b"written before the panic")?;
            panic!("fault-trap: deliberate panic")
        }
        kv::set(&format!("configured:{}", host.machine_id), b"1")?;
        Ok(ConfigDecision { client_mode: Some(ClientMode::Lockdown), batch_size: Some(7), ..Default::default() })
    }
}

impl SelectRules for Trap {
    fn select_rules(&self, host: &HostFacts) -> Result<SelectionDecision> {
        if self.triggered(host) {
            panic!("fault-trap: deliberate panic")
        }
        Ok(SelectionDecision::replacing(["fault-trap-set"]))
    }
}

impl Triage for Trap {
    fn triage(&self, batch: &EventBatch) -> Result<Verdicts> {
        if self.triggered(&batch.host) {
            panic!("fault-trap: deliberate panic")
        }
        let verdicts = batch
            .events
            .iter()
            .map(|e| Verdict { action: Some(Action::Keep), labels: vec!["fault-trap".into()], ..Verdict::on(e.id) })
            .collect();
        Ok(Verdicts { verdicts })
    }
}

dasher_sdk::export_plugin!(Trap, hooks: [Configure, SelectRules, Triage]);
