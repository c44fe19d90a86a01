//! Fault fixture: every hook panics (a trap under `panic = "abort"`).

use dasher_sdk::plugin::prelude::*;
use serde::Deserialize;

/// No settings.
#[derive(Deserialize)]
pub struct Trap {}

impl Configure for Trap {
    fn configure(&self, host: &HostFacts) -> Result<ConfigDecision> {
        panic!("fault-trap: refusing to configure {}", host.machine_id)
    }
}

impl SelectRules for Trap {
    fn select_rules(&self, _host: &HostFacts) -> Result<SelectionDecision> {
        panic!("fault-trap: select-rules")
    }
}

impl Triage for Trap {
    fn triage(&self, _batch: &EventBatch) -> Result<Verdicts> {
        panic!("fault-trap: triage")
    }
}

dasher_sdk::export_plugin!(Trap, hooks: [Configure, SelectRules, Triage]);
