//! Fault fixture: every hook allocates without bound (stopped by the memory limit).

use dasher_sdk::plugin::prelude::*;
use serde::Deserialize;

/// No settings.
#[derive(Deserialize)]
pub struct Hog {}

fn grow() -> ! {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        chunks.push(std::hint::black_box(vec![1u8; 1 << 20]));
        std::hint::black_box(&chunks);
    }
}

impl Configure for Hog {
    fn configure(&self, _host: &HostFacts) -> Result<ConfigDecision> {
        grow()
    }
}

impl SelectRules for Hog {
    fn select_rules(&self, _host: &HostFacts) -> Result<SelectionDecision> {
        grow()
    }
}

impl Triage for Hog {
    fn triage(&self, _batch: &EventBatch) -> Result<Verdicts> {
        grow()
    }
}

dasher_sdk::export_plugin!(Hog, hooks: [Configure, SelectRules, Triage]);
