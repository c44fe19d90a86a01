//! Triage after storage: eventupload hands each batch of newly stored events to the
//! [`Triager`], whose one worker asks the [`PolicyEngine`] for verdicts, records them beside
//! the events, and turns proposed rules into stored proposals (applied at once for the
//! scopes the config allows, see [`crate::proposals`]).
//!
//! Owns the queue between the request path and the plugins. Batches are judged one at a
//! time, in upload order, so a plugin's prevalence counting never races with itself; the
//! verdicts of every batch waiting in the queue (up to [`ROUND_BATCHES`]) are then stored in
//! one write, so triage keeps up with uploads instead of paying a durable commit per batch.
//!
//! Must never: delay or fail an eventupload (the events are already durable; a full queue
//! leaves a batch untriaged, logged, never lost), or delete an event (a `drop` verdict is
//! recorded as such; the event stays stored).

use crate::policy::{PolicyEngine, Triaged};
use crate::proposals;
use crate::sync::{host_facts, now_unix};
use dasher_sdk::plugin::Verdict;
use dasher_store::{EventRecord, EventTriage, Store, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// Batches that may wait for triage; beyond this new batches are left untriaged.
pub const QUEUE_BATCHES: usize = 1024;
/// Most batches judged before their verdicts are stored together.
pub const ROUND_BATCHES: usize = 64;
/// A full queue is logged on the first skipped batch, then once per this many skipped events.
const SKIPPED_LOG_EVERY: u64 = 10_000;
/// Labels kept per event; a plugin's further labels are ignored.
pub const MAX_LABELS_PER_EVENT: usize = 32;
/// Longest label kept, in bytes.
pub const MAX_LABEL_BYTES: usize = 128;

/// Newly stored events of one host.
struct Batch {
    machine_id: String,
    events: Vec<EventRecord>,
}

/// The triage queue. Dropping every handle lets the worker finish the queued batches and
/// stop (releasing the store).
pub struct Triager {
    tx: mpsc::Sender<Batch>,
    skipped: Arc<AtomicU64>,
}

impl Triager {
    /// Starts the worker on the current tokio runtime.
    pub fn start(store: Arc<dyn Store>, policy: Arc<dyn PolicyEngine>) -> Triager {
        let (tx, mut rx) = mpsc::channel::<Batch>(QUEUE_BATCHES);
        tokio::spawn(async move {
            let mut round = Vec::with_capacity(ROUND_BATCHES);
            while rx.recv_many(&mut round, ROUND_BATCHES).await > 0 {
                if let Err(e) = triage_round(store.as_ref(), policy.as_ref(), round.drain(..)).await {
                    tracing::warn!(error = %e, "triage could not be recorded");
                }
            }
        });
        Triager { tx, skipped: Arc::new(AtomicU64::new(0)) }
    }

    /// Queues events `insert_events` just stored (with their ids). Never waits.
    pub fn submit(&self, machine_id: &str, events: Vec<EventRecord>) {
        if events.is_empty() {
            return;
        }
        let n = events.len();
        if self.tx.try_send(Batch { machine_id: machine_id.to_owned(), events }).is_err() {
            let before = self.skipped.fetch_add(n as u64, Ordering::Relaxed);
            let skipped = before + n as u64;
            if before == 0 || before / SKIPPED_LOG_EVERY != skipped / SKIPPED_LOG_EVERY {
                tracing::warn!(machine_id, skipped_total = skipped, "triage queue full: events stay untriaged");
            }
        }
    }
}

/// Judges `batches` in order, then stores all their verdicts in one write and takes in
/// their proposals (after the verdicts, as before batching).
async fn triage_round(
    store: &dyn Store,
    policy: &dyn PolicyEngine,
    batches: impl Iterator<Item = Batch>,
) -> Result<(), StoreError> {
    let now = now_unix();
    let mut records: Vec<(u64, EventTriage)> = Vec::new();
    let mut proposed = Vec::new();
    for batch in batches {
        let host = match store.get_host(&batch.machine_id).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(machine_id = batch.machine_id, error = %e, "triage skipped a batch: host not readable");
                continue;
            }
        };
        let facts = host_facts(&batch.machine_id, host.as_ref(), now);
        let Triaged { verdicts, made_by, mut shadow } = policy.triage(&facts, &batch.events).await;
        for v in verdicts.verdicts {
            let shadow = shadow.remove(&v.event_id).unwrap_or_default();
            if v.action.is_some() || !v.labels.is_empty() || v.severity.is_some() || !shadow.is_empty() {
                let mut t = event_triage(&batch.machine_id, &v, &made_by, now);
                t.shadow = shadow;
                records.push((v.event_id, t));
            }
            for p in v.proposals {
                proposed.push((batch.machine_id.clone(), p, made_by.clone()));
            }
        }
        // Events only shadow plugins judged: the (empty) applied triage carries their verdicts.
        for (event_id, shadow) in shadow {
            let t = EventTriage { made_by: made_by.clone(), triaged_at_unix: now, shadow, ..EventTriage::default() };
            records.push((event_id, t));
        }
    }
    if !records.is_empty() {
        store.put_event_triage(&records).await?;
    }
    let auto_apply = policy.auto_apply_proposals();
    for (machine_id, p, made_by) in proposed {
        proposals::intake(store, policy, &machine_id, &p, &made_by, &auto_apply, now).await?;
    }
    Ok(())
}

fn event_triage(machine_id: &str, v: &Verdict, made_by: &[dasher_store::PluginRef], now: i64) -> EventTriage {
    let mut labels: Vec<String> = Vec::new();
    for l in &v.labels {
        if l.is_empty() || l.len() > MAX_LABEL_BYTES || labels.contains(l) {
            continue;
        }
        if labels.len() == MAX_LABELS_PER_EVENT {
            tracing::warn!(machine_id, event_id = v.event_id, "more than {MAX_LABELS_PER_EVENT} labels: rest ignored");
            break;
        }
        labels.push(l.clone());
    }
    EventTriage {
        action: v.action,
        labels,
        severity: v.severity,
        made_by: made_by.to_vec(),
        triaged_at_unix: now,
        shadow: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dasher_sdk::plugin::Action;

    #[test]
    fn labels_are_bounded_and_distinct() {
        let mut v = Verdict { action: Some(Action::Keep), ..Verdict::on(1) };
        v.labels = vec!["a".into(), "a".into(), String::new(), "x".repeat(MAX_LABEL_BYTES + 1)];
        v.labels.extend((0..40).map(|i| format!("l{i}")));
        let t = event_triage("m", &v, &[], 5);
        assert_eq!(t.labels.len(), MAX_LABELS_PER_EVENT);
        assert_eq!(t.labels[0], "a");
        assert_eq!(t.labels[1], "l0", "duplicates, empty and overlong labels are skipped");
        assert_eq!((t.action, t.triaged_at_unix), (Some(Action::Keep), 5));
    }
}
