//! Fault fixture: every hook loops forever (stopped by the epoch deadline).

use dasher_sdk::plugin::prelude::*;
use serde::Deserialize;

/// No settings.
#[derive(Deserialize)]
pub struct Spin {}

fn forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

impl Configure for Spin {
    fn configure(&self, _host: &HostFacts) -> Result<ConfigDecision> {
        forever()
    }
}

impl SelectRules for Spin {
    fn select_rules(&self, _host: &HostFacts) -> Result<SelectionDecision> {
        forever()
    }
}

impl Triage for Spin {
    fn triage(&self, _batch: &EventBatch) -> Result<Verdicts> {
        forever()
    }
}

dasher_sdk::export_plugin!(Spin, hooks: [Configure, SelectRules, Triage]);
