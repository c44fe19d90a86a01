//! Fault fixture: a hook allocates without bound (stopped by the memory limit) when the host carries the tag in `when_tag`
//! (default `"fault"`; `"*"` = always, which fails the load-time smoke test). Otherwise it
//! answers normally — `configure`: LOCKDOWN with batch size 7; `select-rules`:
//! `["fault-memory-set"]`; `triage`: keep every event with label `fault-memory` — so a test can
//! first get a good decision for a host and then make the same host fail.

use dasher_sdk::plugin::prelude::*;
use serde::Deserialize;

/// Settings.
#[derive(Deserialize)]
#[serde(default)]
pub struct Hog {
    /// Fail for hosts with this tag (`"*"`: always).
    pub when_tag: String,
}

impl Default for Hog {
    fn default() -> Self {
        Hog { when_tag: "fault".into() }
    }
}

impl Hog {
    fn triggered(&self, host: &HostFacts) -> bool {
        self.when_tag == "*" || host.tags.contains(&self.when_tag)
    }
}

fn grow() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        // Zeroed 4 MiB chunks come straight from `memory.grow`: no memset, so the limit is hit
        // in a handful of grows rather than after a deadline's worth of copying.
        chunks.push(std::hint::black_box(vec![0u8; 4 << 20]));
        std::hint::black_box(&chunks);
    }
}

impl Configure for Hog {
    fn configure(&self, host: &HostFacts) -> Result<ConfigDecision> {
        if self.triggered(host) {
            grow()
        }
        Ok(ConfigDecision { client_mode: Some(ClientMode::Lockdown), batch_size: Some(7), ..Default::default() })
    }
}

impl SelectRules for Hog {
    fn select_rules(&self, host: &HostFacts) -> Result<SelectionDecision> {
        if self.triggered(host) {
            grow()
        }
        Ok(SelectionDecision::replacing(["fault-memory-set"]))
    }
}

impl Triage for Hog {
    fn triage(&self, batch: &EventBatch) -> Result<Verdicts> {
        if self.triggered(&batch.host) {
            grow()
        }
        let verdicts = batch
            .events
            .iter()
            .map(|e| Verdict { action: Some(Action::Keep), labels: vec!["fault-memory".into()], ..Verdict::on(e.id) })
            .collect();
        Ok(Verdicts { verdicts })
    }
}

dasher_sdk::export_plugin!(Hog, hooks: [Configure, SelectRules, Triage]);
