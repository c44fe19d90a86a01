//! Per-generation call statistics: counts, fault kinds, last error, call-time percentiles.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Call times kept for percentiles.
const SAMPLES: usize = 1024;

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) calls: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) shadow_disagreements: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    samples_us: VecDeque<u64>,
    faults: BTreeMap<&'static str, u64>,
    last_error: Option<String>,
}

impl Stats {
    pub(crate) fn record_ok(&self, elapsed: Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.samples_us.len() == SAMPLES {
            inner.samples_us.pop_front();
        }
        inner.samples_us.push_back(elapsed.as_micros() as u64);
    }

    /// Records a faulted call (skipped calls are counted by the breaker, not here).
    pub(crate) fn record_fault(&self, kind: &'static str, message: String) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *inner.faults.entry(kind).or_default() += 1;
        inner.last_error = Some(message);
    }

    pub(crate) fn snapshot(&self) -> (BTreeMap<String, u64>, Option<String>, u64, u64) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut sorted: Vec<u64> = inner.samples_us.iter().copied().collect();
        sorted.sort_unstable();
        let pct = |p: usize| if sorted.is_empty() { 0 } else { sorted[(sorted.len() - 1) * p / 100] };
        let faults = inner.faults.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        (faults, inner.last_error.clone(), pct(50), pct(99))
    }
}
