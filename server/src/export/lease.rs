//! Who exports a sink: the sink's task takes the store lease `export:<sink>` before it
//! delivers anything, renews it every third of `[export] lease_secs`, and stops delivering
//! the moment a renewal fails, is refused, or does not come back before the lease would run
//! out. Meanwhile (and while another replica holds it) the task stands by, showing the holder
//! and the shared cursor, and tries again every third of the lease time.
//!
//! The local deadline is measured from just before each acquire/renew request was sent, so
//! it never outlasts the lease the store granted (which counts from when the store ran it).

use super::{Exporter, SinkStatus, StepError, Wake, jitter, lease_name};
use dasher_store::{EventFilter, Lease, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// `Ok` while this replica surely still holds the lease whose deadline `valid` carries.
pub(super) fn check(valid: &watch::Receiver<Instant>) -> Result<(), StepError> {
    if Instant::now() < *valid.borrow() {
        Ok(())
    } else {
        Err(StepError::Lost("the export lease ran out before it was renewed; delivery stopped".into()))
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn show(s: &mut SinkStatus, lease: Option<&Lease>, here: bool) {
    let live = lease.filter(|l| l.live);
    s.holder = live.map(|l| l.holder.clone());
    s.lease_expires = live.map(|l| l.expires_unix_ms.div_euclid(1000));
    s.held_here = here && live.is_some();
}

/// Why a tenure ended.
enum Ended {
    Shutdown,
    Lost(String),
}

impl Exporter {
    /// The sink's task: take the lease, export while holding it, stand by otherwise.
    pub(super) async fn run(mut self) {
        let name = self.c.name.clone();
        let lease = lease_name(&name);
        let ttl = self.lease_ttl;
        let period = ttl / 3;
        self.metrics.set_export_lease_held(&name, false);
        loop {
            let asked = Instant::now();
            let mut stop = self.shutdown.clone();
            let got = tokio::select! {
                r = self.store.lease_acquire(&lease, &self.replica, ms(ttl)) => r,
                _ = stop.wait_for(|v| *v) => return,
            };
            match got {
                Ok(Some(l)) => {
                    self.status.update(&name, |s| show(s, Some(&l), true));
                    self.metrics.set_export_lease_held(&name, true);
                    tracing::info!(sink = %name, replica = %self.replica, "export lease taken; exporting");
                }
                Ok(None) => {
                    self.standby(&lease).await;
                    if let Wake::Shutdown = self.sleep(jitter(period)).await {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    self.failed(&format!("taking the export lease: {e}"));
                    if let Wake::Shutdown = self.sleep(jitter(period)).await {
                        return;
                    }
                    continue;
                }
            }
            let (tx, valid) = watch::channel(asked + ttl);
            let renewals = renew(self.store.clone(), lease.clone(), self.replica.clone(), ttl, tx, self.clone_status());
            let ended = tokio::select! {
                why = renewals => Ended::Lost(why),
                why = expiry(valid.clone()) => Ended::Lost(why),
                r = self.export(&valid) => Ended::Lost(r.err().unwrap_or_default()),
                _ = stop.wait_for(|v| *v) => Ended::Shutdown,
            };
            // Stopped delivering (the select dropped any delivery in flight); let another
            // replica in without waiting for the expiry. Only deletes the lease if still ours.
            self.metrics.set_export_lease_held(&name, false);
            let release = self.store.lease_release(&lease, &self.replica);
            let _ = tokio::time::timeout(Duration::from_secs(5), release).await;
            self.status.update(&name, |s| show(s, None, false));
            match ended {
                Ended::Shutdown => return,
                Ended::Lost(why) => {
                    self.failed(&why);
                    if let Wake::Shutdown = self.sleep(jitter(period)).await {
                        return;
                    }
                }
            }
        }
    }

    fn clone_status(&self) -> (super::ExportStatus, String) {
        (self.status.clone(), self.c.name.clone())
    }

    /// While another replica exports: show its lease and the shared cursor and lag.
    async fn standby(&mut self, lease: &str) {
        let held = self.store.lease_get(lease).await.ok().flatten();
        let cursor = self.read_cursor().await.ok();
        let head = self.store.query_events(&EventFilter { limit: 1, ..Default::default() }).await.ok();
        let head = head.map(|h| h.first().map_or(0, |e| e.id));
        self.status.update(&self.c.name, |s| {
            show(s, held.as_ref(), false);
            if let Some(c) = cursor {
                s.cursor = c;
            }
            if let Some(h) = head {
                s.head = h;
            }
            s.lag_events = s.head.saturating_sub(s.cursor);
        });
    }
}

/// Renews every third of `ttl`; moves the deadline in `valid` on success; returns why it
/// stopped (refused or failed: either way the holder must stop delivering).
async fn renew(
    store: Arc<dyn Store>,
    lease: String,
    replica: String,
    ttl: Duration,
    valid: watch::Sender<Instant>,
    (status, sink): (super::ExportStatus, String),
) -> String {
    loop {
        tokio::time::sleep(ttl / 3).await;
        let asked = Instant::now();
        match store.lease_renew(&lease, &replica, ms(ttl)).await {
            Ok(Some(l)) => {
                let _ = valid.send(asked + ttl);
                status.update(&sink, |s| show(s, Some(&l), true));
            }
            Ok(None) => return "the export lease was taken over or ran out; delivery stopped".into(),
            Err(e) => return format!("renewing the export lease failed ({e}); delivery stopped"),
        }
    }
}

/// Returns once the deadline in `valid` passes without having been moved.
async fn expiry(mut valid: watch::Receiver<Instant>) -> String {
    loop {
        let until = *valid.borrow_and_update();
        if Instant::now() >= until {
            return "the export lease ran out before it was renewed; delivery stopped".into();
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => {}
            r = valid.changed() => {
                if r.is_err() {
                    // The renewals ended: their branch reports why.
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}
