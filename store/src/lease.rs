//! Leases: named, time-limited claims that let exactly one of several replicas do a job
//! (e.g. export one sink) at a time.
//!
//! A lease is held by one `holder` until it expires; the holder extends it with
//! [`crate::Store::lease_renew`] well before then, and another holder can take it only once
//! it has expired (or was released). On PostgreSQL the lease lives in a table and its clock is
//! the database's, so replicas' clocks do not matter; the embedded engines, which one process
//! opens at a time, keep leases in memory ([`LocalLeases`]) with the same rules.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest lease name or holder, in bytes.
pub const MAX_LEASE_FIELD: usize = 256;
/// Longest lease time: a day, in milliseconds.
pub const MAX_LEASE_MS: u64 = 86_400_000;

/// A lease as the store sees it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Lease {
    /// What the lease is for.
    pub name: String,
    /// Who holds it.
    pub holder: String,
    /// When it expires (Unix milliseconds, by the store's clock).
    pub expires_unix_ms: i64,
    /// Whether it had not expired yet when read.
    pub live: bool,
}

/// Checks a lease call's arguments; the message names the bad one.
pub(crate) fn check_args(name: &str, holder: &str, ttl_ms: u64) -> crate::Result<()> {
    let bad = |what: &str| Err(crate::StoreError::Engine(format!("lease: {what}")));
    if name.is_empty() || name.len() > MAX_LEASE_FIELD {
        return bad("the name must be 1 to 256 bytes");
    }
    if holder.is_empty() || holder.len() > MAX_LEASE_FIELD {
        return bad("the holder must be 1 to 256 bytes");
    }
    if ttl_ms == 0 || ttl_ms > MAX_LEASE_MS {
        return bad("the time to live must be from 1 ms to a day");
    }
    Ok(())
}

fn unix_ms_in(d: Duration) -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from((now + d).as_millis()).unwrap_or(i64::MAX)
}

struct Held {
    holder: String,
    until: Instant,
    expires_unix_ms: i64,
}

/// The leases of a store only one process opens (redb, sled): in memory, monotonic clock.
#[derive(Default)]
pub struct LocalLeases(Mutex<HashMap<String, Held>>);

impl LocalLeases {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Held>) -> R) -> R {
        let mut m = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut m)
    }

    fn view(name: &str, h: &Held, now: Instant) -> Lease {
        Lease {
            name: name.to_owned(),
            holder: h.holder.clone(),
            expires_unix_ms: h.expires_unix_ms,
            live: h.until > now,
        }
    }

    /// [`crate::Store::lease_acquire`].
    pub fn acquire(&self, name: &str, holder: &str, ttl_ms: u64) -> Option<Lease> {
        let now = Instant::now();
        self.with(|m| {
            if m.get(name).is_some_and(|h| h.until > now && h.holder != holder) {
                return None;
            }
            let ttl = Duration::from_millis(ttl_ms);
            let h = Held { holder: holder.to_owned(), until: now + ttl, expires_unix_ms: unix_ms_in(ttl) };
            let lease = Self::view(name, &h, now);
            m.insert(name.to_owned(), h);
            Some(lease)
        })
    }

    /// [`crate::Store::lease_renew`].
    pub fn renew(&self, name: &str, holder: &str, ttl_ms: u64) -> Option<Lease> {
        let now = Instant::now();
        self.with(|m| {
            let h = m.get_mut(name).filter(|h| h.holder == holder && h.until > now)?;
            let ttl = Duration::from_millis(ttl_ms);
            h.until = now + ttl;
            h.expires_unix_ms = unix_ms_in(ttl);
            Some(Self::view(name, h, now))
        })
    }

    /// [`crate::Store::lease_release`].
    pub fn release(&self, name: &str, holder: &str) {
        self.with(|m| {
            if m.get(name).is_some_and(|h| h.holder == holder) {
                m.remove(name);
            }
        });
    }

    /// [`crate::Store::lease_get`].
    pub fn get(&self, name: &str) -> Option<Lease> {
        let now = Instant::now();
        self.with(|m| m.get(name).map(|h| Self::view(name, h, now)))
    }

    /// Whether `holder` holds a live lease `name` now.
    pub fn holds(&self, name: &str, holder: &str) -> bool {
        let now = Instant::now();
        self.with(|m| m.get(name).is_some_and(|h| h.holder == holder && h.until > now))
    }
}
