//! Fault fixture: a hook loops forever (stopped by the epoch deadline) when the host carries the tag in `when_tag`
//! (default `"fault"`; `"*"` = always, which fails the load-time smoke test). Otherwise it
//! answers normally — `configure`: LOCKDOWN with batch size 7; `select-rules`:
//! `["fault-loop-set"]`; `triage`: keep every event with label `fault-loop` — so a test can
//! first get a good decision for a host and then make the same host fail.

use dasher_sdk::plugin::prelude::*;
use serde::Deserialize;

/// Settings.
#[derive(Deserialize)]
#[serde(default)]
pub struct Spin {
    /// Fail for hosts with this tag (`"*"`: always).
    pub when_tag: String,
}

impl Default for Spin {
    fn default() -> Self {
        Spin { when_tag: "fault".into() }
    }
}

impl Spin {
    fn triggered(&self, host: &HostFacts) -> bool {
        self.when_tag == "*" || host.tags.contains(&self.when_tag)
    }
}

fn forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

impl Configure for Spin {
    fn configure(&self, host: &HostFacts) -> Result<ConfigDecision> {
        if self.triggered(host) {
            forever()
        }
        Ok(ConfigDecision { client_mode: Some(ClientMode::Lockdown), batch_size: Some(7), ..Default::default() })
    }
}

impl SelectRules for Spin {
    fn select_rules(&self, host: &HostFacts) -> Result<SelectionDecision> {
        if self.triggered(host) {
            forever()
        }
        Ok(SelectionDecision::replacing(["fault-loop-set"]))
    }
}

impl Triage for Spin {
    fn triage(&self, batch: &EventBatch) -> Result<Verdicts> {
        if self.triggered(&batch.host) {
            forever()
        }
        let verdicts = batch
            .events
            .iter()
            .map(|e| Verdict { action: Some(Action::Keep), labels: vec!["fault-loop".into()], ..Verdict::on(e.id) })
            .collect();
        Ok(Verdicts { verdicts })
    }
}

dasher_sdk::export_plugin!(Spin, hooks: [Configure, SelectRules, Triage]);
