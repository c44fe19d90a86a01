//! The host side of the imports: [`HostState`] (one per wasmtime store) implements the
//! current contract's `host` interface and, by delegation, contract 0.2.0's.
//!
//! kv: `kv-set`/`kv-delete` are buffered in [`HostState::pending`] and applied together when
//! the call returns ([`HostState::flush`]); a trapped call's instance, buffer included, is
//! dropped. `kv-increment`/`kv-compare-and-swap` go to the backend at once (atomic there),
//! so they stay applied whatever the call does next. One key is written one way per call.
//! The time an atomic operation waits for the store is credited back to the call's deadline
//! (see `LoadedPlugin::new_instance`); [`MAX_ATOMIC_OPS_PER_CALL`] bounds it.

use super::GuestLog;
use super::contract::current::dasher::plugin::host::{self as wit_host, LogLevel};
use super::contract::v0_2;
use crate::kv::{KvBackend, MAX_KEY_BYTES, MAX_VALUE_BYTES, MAX_WRITE_BYTES_PER_CALL};
use crate::log_limit::Emit;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{ResourceLimiter, StoreLimits};

/// Per-store state: limits and the context of the current call.
pub(crate) struct HostState {
    pub(super) limits: StoreLimits,
    pub(super) memory_cap: usize,
    pub(super) peak_memory: usize,
    pub(super) hit_memory_limit: bool,
    pub(super) plugin: Arc<str>,
    pub(super) kv: Arc<dyn KvBackend>,
    pub(super) namespace: String,
    pub(super) log_budget: usize,
    pub(super) guest_log: Arc<GuestLog>,
    /// The current call's kv writes, applied together when it returns (see [`HostState::flush`]).
    pub(super) pending: BTreeMap<String, Option<Vec<u8>>>,
    /// Bytes of kv writes this call (buffered and atomic), bounded by
    /// [`MAX_WRITE_BYTES_PER_CALL`].
    pub(super) pending_bytes: usize,
    /// Keys this call changed with an atomic operation: a buffered write of one of them would
    /// overwrite the atomic result when the call returns, so it is refused.
    pub(super) atomic_keys: BTreeSet<String>,
    /// Atomic operations this call, bounded by [`MAX_ATOMIC_OPS_PER_CALL`].
    pub(super) atomic_ops: usize,
    /// Time this call waited for the store in atomic operations and that the epoch deadline
    /// has not yet credited back (a durable write is the store's time, not the guest's).
    pub(super) store_wait: Duration,
}

/// Most atomic kv operations one call may make: each is a durable store write whose wait
/// does not count against the call's deadline, so this bounds how long a call can take.
pub const MAX_ATOMIC_OPS_PER_CALL: usize = 1024;

impl HostState {
    /// Applies the finished call's kv writes in one backend write. A call that trapped never
    /// gets here (its instance and writes are dropped), so a call's state changes are all or
    /// nothing. A backend failure is logged: the call's decision stands, its state is lost.
    pub(super) fn flush(&mut self) {
        self.atomic_keys.clear();
        self.atomic_ops = 0;
        self.pending_bytes = 0;
        if self.pending.is_empty() {
            return;
        }
        let writes = std::mem::take(&mut self.pending);
        if let Err(e) = self.kv.apply(&self.namespace, &writes) {
            tracing::error!(plugin = &*self.plugin, writes = writes.len(), "plugin kv writes not saved: {e}");
        }
    }

    fn stage(&mut self, key: String, value: Option<Vec<u8>>) -> Result<(), String> {
        if self.atomic_keys.contains(&key) {
            return Err(format!(
                "kv key {key:?} was changed by kv-increment or kv-compare-and-swap earlier in this call; \
                 a buffered kv-set/kv-delete would overwrite that when the call returns. Use \
                 kv-compare-and-swap to change it again, and do not mix buffered and atomic writes on one key"
            ));
        }
        self.count_bytes(key.len() + value.as_ref().map_or(0, Vec::len))?;
        self.pending.insert(key, value);
        Ok(())
    }

    fn count_bytes(&mut self, bytes: usize) -> Result<(), String> {
        if self.pending_bytes + bytes > MAX_WRITE_BYTES_PER_CALL {
            return Err(format!("more than {MAX_WRITE_BYTES_PER_CALL} bytes of kv writes in one call"));
        }
        self.pending_bytes += bytes;
        Ok(())
    }

    /// Checks an atomic operation's arguments: bounds, no buffered write of the key in this
    /// call, and the per-call byte budget.
    fn atomic_check(&mut self, op: &str, key: &str, values: &[Option<&[u8]>]) -> Result<(), String> {
        if self.atomic_ops >= MAX_ATOMIC_OPS_PER_CALL {
            return Err(format!(
                "{op}: more than {MAX_ATOMIC_OPS_PER_CALL} atomic kv operations in one call; \
                 keep them to one per new fact (e.g. per new host), not one per event"
            ));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(format!("{op}: key longer than {MAX_KEY_BYTES} bytes"));
        }
        if values.iter().flatten().any(|v| v.len() > MAX_VALUE_BYTES) {
            return Err(format!("{op}: value larger than {MAX_VALUE_BYTES} bytes"));
        }
        if self.pending.contains_key(key) {
            return Err(format!(
                "{op}: kv key {key:?} has a buffered kv-set/kv-delete in this call; do not mix buffered \
                 writes and atomic operations (kv-increment, kv-compare-and-swap) on one key"
            ));
        }
        let bytes = key.len() + values.last().copied().flatten().map_or(8, <[u8]>::len);
        self.count_bytes(bytes)?;
        self.atomic_ops += 1;
        Ok(())
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let r = self.limits.memory_growing(current, desired, maximum);
        match &r {
            Ok(true) => self.peak_memory = self.peak_memory.max(desired),
            _ => self.hit_memory_limit = true,
        }
        r
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl wit_host::Host for HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        if self.log_budget == 0 {
            return;
        }
        let mut end = message.len().min(self.log_budget);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        self.log_budget -= end;
        let msg = &message[..end];
        let plugin = &*self.plugin;
        let key = match level {
            // A plugin's panic hook logs an error at every trap: identical warn/error lines are
            // aggregated (the first in full, then a count at most once per interval).
            LogLevel::Warn | LogLevel::Error => {
                let mut h = DefaultHasher::new();
                msg.hash(&mut h);
                (u8::from(matches!(level, LogLevel::Error)), h.finish())
            }
            LogLevel::Trace | LogLevel::Debug | LogLevel::Info => return guest_line(level, plugin, msg),
        };
        match self.guest_log.note(key, msg) {
            Emit::Quiet => {}
            Emit::Full { earlier } => {
                if let Some(r) = earlier {
                    guest_line(
                        level,
                        plugin,
                        &format!("(logged {} more times in {} s) {}", r.count_text(), r.over.as_secs().max(1), r.last),
                    );
                }
                guest_line(level, plugin, msg);
            }
            Emit::Summary(r) => guest_line(
                level,
                plugin,
                &format!("(logged {} more times in the last {} s) {}", r.count_text(), r.over.as_secs().max(1), r.last),
            ),
        }
    }

    fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
        if key.len() > MAX_KEY_BYTES {
            return None;
        }
        if let Some(staged) = self.pending.get(&key) {
            return staged.clone();
        }
        match self.kv.get(&self.namespace, &key) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(plugin = &*self.plugin, "kv get failed: {e}");
                None
            }
        }
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        if key.len() > MAX_KEY_BYTES {
            return Err(format!("key longer than {MAX_KEY_BYTES} bytes"));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(format!("value larger than {MAX_VALUE_BYTES} bytes"));
        }
        self.stage(key, Some(value))
    }

    fn kv_delete(&mut self, key: String) -> Result<(), String> {
        if key.len() > MAX_KEY_BYTES {
            return Err(format!("key longer than {MAX_KEY_BYTES} bytes"));
        }
        self.stage(key, None)
    }

    fn kv_increment(&mut self, key: String, delta: i64) -> Result<i64, String> {
        self.atomic_check("kv-increment", &key, &[])?;
        let started = Instant::now();
        let result = self.kv.increment(&self.namespace, &key, delta);
        self.store_wait += started.elapsed();
        match result {
            Ok(Ok(n)) => {
                self.atomic_keys.insert(key);
                Ok(n)
            }
            Ok(Err(e)) => Err(format!("kv-increment: {}", e.describe(&key))),
            Err(e) => Err(format!("kv-increment of {key:?} failed: {e}")),
        }
    }

    fn kv_compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, String> {
        self.atomic_check("kv-compare-and-swap", &key, &[expected.as_deref(), new.as_deref()])?;
        let started = Instant::now();
        let result = self.kv.compare_and_swap(&self.namespace, &key, expected.as_deref(), new.as_deref());
        self.store_wait += started.elapsed();
        match result {
            Ok(swapped) => {
                self.atomic_keys.insert(key);
                Ok(swapped)
            }
            Err(e) => Err(format!("kv-compare-and-swap of {key:?} failed: {e}")),
        }
    }
}

/// Contract 0.2.0's host imports: the same functions, without the atomic ones.
impl v0_2::dasher::plugin::host::Host for HostState {
    fn log(&mut self, level: v0_2::dasher::plugin::host::LogLevel, message: String) {
        use v0_2::dasher::plugin::host::LogLevel as Old;
        let level = match level {
            Old::Trace => LogLevel::Trace,
            Old::Debug => LogLevel::Debug,
            Old::Info => LogLevel::Info,
            Old::Warn => LogLevel::Warn,
            Old::Error => LogLevel::Error,
        };
        wit_host::Host::log(self, level, message)
    }

    fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
        wit_host::Host::kv_get(self, key)
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        wit_host::Host::kv_set(self, key, value)
    }

    fn kv_delete(&mut self, key: String) -> Result<(), String> {
        wit_host::Host::kv_delete(self, key)
    }
}

/// Writes one guest log line at its level.
fn guest_line(level: LogLevel, plugin: &str, msg: &str) {
    match level {
        LogLevel::Trace => tracing::trace!(plugin, "{msg}"),
        LogLevel::Debug => tracing::debug!(plugin, "{msg}"),
        LogLevel::Info => tracing::info!(plugin, "{msg}"),
        LogLevel::Warn => tracing::warn!(plugin, "{msg}"),
        LogLevel::Error => tracing::error!(plugin, "{msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemoryKv;
    use crate::log_limit::LogLimiter;
    use wasmtime::StoreLimitsBuilder;
    use wit_host::Host as _;

    fn state(kv: Arc<MemoryKv>) -> HostState {
        HostState {
            limits: StoreLimitsBuilder::new().build(),
            memory_cap: 0,
            peak_memory: 0,
            hit_memory_limit: false,
            plugin: Arc::from("p"),
            kv,
            namespace: "plugin:p".into(),
            log_budget: 0,
            guest_log: Arc::new(LogLimiter::new(super::super::REPEAT_LOG_INTERVAL, 4)),
            pending: BTreeMap::new(),
            pending_bytes: 0,
            atomic_keys: BTreeSet::new(),
            atomic_ops: 0,
            store_wait: Duration::ZERO,
        }
    }

    #[test]
    fn increment_is_applied_at_once_and_read_back() {
        let kv = Arc::new(MemoryKv::new());
        let mut s = state(kv.clone());
        assert_eq!(s.kv_increment("n".into(), 3), Ok(3));
        assert_eq!(s.kv_increment("n".into(), -5), Ok(-2));
        assert_eq!(kv.dump("plugin:p")["n"], b"-2", "in the backend before the call returns");
        assert_eq!(s.kv_get("n".into()).as_deref(), Some(&b"-2"[..]), "kv-get sees it");
        s.kv_set("text".into(), b"{}".to_vec()).unwrap();
        s.flush();
        let err = s.kv_increment("text".into(), 1).unwrap_err();
        assert!(err.contains(r#""text""#) && err.contains("not a decimal 64-bit integer"), "{err}");
        assert_eq!(s.kv_increment("big".into(), i64::MAX), Ok(i64::MAX));
        let err = s.kv_increment("big".into(), 1).unwrap_err();
        assert!(err.contains(r#""big""#) && err.contains("outside the signed 64-bit range"), "{err}");
        assert_eq!(kv.dump("plugin:p")["big"], i64::MAX.to_string().as_bytes(), "no wrap, unchanged");
    }

    #[test]
    fn compare_and_swap_cases() {
        let kv = Arc::new(MemoryKv::new());
        let mut s = state(kv.clone());
        assert_eq!(s.kv_compare_and_swap("k".into(), None, Some(b"a".to_vec())), Ok(true), "absent expected");
        assert_eq!(s.kv_compare_and_swap("k".into(), None, Some(b"b".to_vec())), Ok(false), "present");
        assert_eq!(s.kv_compare_and_swap("k".into(), Some(b"x".to_vec()), Some(b"b".to_vec())), Ok(false));
        assert_eq!(s.kv_get("k".into()).as_deref(), Some(&b"a"[..]));
        assert_eq!(s.kv_compare_and_swap("k".into(), Some(b"a".to_vec()), Some(b"b".to_vec())), Ok(true));
        assert_eq!(s.kv_compare_and_swap("k".into(), Some(b"b".to_vec()), None), Ok(true), "delete via none");
        assert_eq!(s.kv_get("k".into()), None);
        assert!(kv.dump("plugin:p").is_empty());
    }

    #[test]
    fn bad_sizes_are_refused_with_the_bound() {
        let mut s = state(Arc::new(MemoryKv::new()));
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let big = vec![0u8; MAX_VALUE_BYTES + 1];
        let err = s.kv_increment(long.clone(), 1).unwrap_err();
        assert!(err.contains("kv-increment") && err.contains("key longer than 256 bytes"), "{err}");
        let err = s.kv_compare_and_swap(long, None, Some(b"v".to_vec())).unwrap_err();
        assert!(err.contains("key longer than 256 bytes"), "{err}");
        let err = s.kv_compare_and_swap("k".into(), None, Some(big.clone())).unwrap_err();
        assert!(err.contains("kv-compare-and-swap") && err.contains("larger than 65536 bytes"), "{err}");
        let err = s.kv_compare_and_swap("k".into(), Some(big), None).unwrap_err();
        assert!(err.contains("larger than 65536 bytes"), "{err}");
        assert_eq!(s.kv_compare_and_swap("k".into(), None, Some(vec![1; MAX_VALUE_BYTES])), Ok(true), "at the bound");
        assert_eq!(
            s.kv_compare_and_swap("k".repeat(MAX_KEY_BYTES), None, Some(b"v".to_vec())),
            Ok(true),
            "key at the bound"
        );
    }

    #[test]
    fn buffered_and_atomic_writes_do_not_mix_on_one_key_in_one_call() {
        let kv = Arc::new(MemoryKv::new());
        let mut s = state(kv.clone());
        s.kv_set("a".into(), b"1".to_vec()).unwrap();
        let err = s.kv_increment("a".into(), 1).unwrap_err();
        assert!(err.contains("buffered kv-set/kv-delete") && err.contains(r#""a""#), "{err}");
        s.kv_delete("b".into()).unwrap();
        assert!(s.kv_compare_and_swap("b".into(), None, Some(b"x".to_vec())).is_err());
        assert_eq!(s.kv_increment("c".into(), 1), Ok(1));
        let err = s.kv_set("c".into(), b"9".to_vec()).unwrap_err();
        assert!(err.contains("changed by kv-increment or kv-compare-and-swap"), "{err}");
        assert!(s.kv_delete("c".into()).is_err());
        assert_eq!(s.kv_increment("c".into(), 1), Ok(2), "atomic again is fine");
        // The next call starts clean.
        s.flush();
        assert_eq!(kv.dump("plugin:p")["a"], b"1");
        s.kv_set("c".into(), b"9".to_vec()).unwrap();
        assert!(s.kv_increment("a".into(), 1).is_ok(), "a is no longer pending");
        s.flush();
        assert_eq!(kv.dump("plugin:p")["c"], b"9");
        assert_eq!(kv.dump("plugin:p")["a"], b"2");
    }
}
