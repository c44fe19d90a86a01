//! The wasmtime side: one engine with the pooling allocator and an epoch ticker thread, the
//! linker with the `host` imports of every supported contract ([`contract`]), and
//! [`LoadedPlugin`] — a compiled, type-checked, initialised plugin generation with its
//! reusable instances.
//!
//! Invariants: an instance that trapped (including timeouts and memory-limit traps) is never
//! reused, and none of its call's buffered kv writes are applied (`kv-set`/`kv-delete` are
//! applied together when the call returns; the atomic kv operations are applied at once, see
//! [`host`]); every call sets its own epoch deadline; outputs are size-checked before parsing.

use crate::breaker::Breakers;
use crate::config::{Limits, Mode};
use crate::error::{Fault, LoadError};
use crate::kv::{KvBackend, MemoryKv};
use crate::log_limit::LogLimiter;
use crate::meta;
use crate::stats::Stats;
use dasher_sdk::plugin::{Hook, PluginMetadata};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimitsBuilder, Trap,
    UpdateDeadline,
};

mod contract;
mod host;

use contract::{Bindings, Pre};
pub(crate) use host::HostState;

/// Epoch tick: deadlines are counted in these.
const TICK: Duration = Duration::from_millis(1);
/// Instances per plugin kept idle for reuse (one per worker is the steady state).
const MAX_IDLE_INSTANCES: usize = 16;
/// Repeated fault lines and identical guest warn/error lines: one summary per this interval.
pub(crate) const REPEAT_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Distinct guest warn/error lines tracked per generation for aggregation.
const GUEST_LOG_KEYS: usize = 1024;

/// Aggregation of a generation's identical guest log lines, by (level, hash of the line).
type GuestLog = LogLimiter<(u8, u64)>;

/// The engine, linker and epoch ticker shared by every plugin generation.
#[derive(Clone)]
pub(crate) struct Runtime {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    /// Fuel metering, for the test harness's instruction counts only (it costs 13–42 % per
    /// call, so production relies on epochs).
    fuel: bool,
}

impl Runtime {
    /// Creates the engine. `max_memory_bytes` bounds every plugin's memory limit;
    /// `max_instances` sizes the pooling allocator.
    pub(crate) fn new(max_memory_bytes: usize, max_instances: u32) -> Result<Runtime, String> {
        Self::with_fuel(max_memory_bytes, max_instances, false)
    }

    /// Like [`new`](Self::new), with fuel metering when `fuel` (test harness).
    pub(crate) fn with_fuel(max_memory_bytes: usize, max_instances: u32, fuel: bool) -> Result<Runtime, String> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(max_instances)
            .total_core_instances(max_instances * 4)
            .total_memories(max_instances * 2)
            .total_tables(max_instances * 4)
            .max_memory_size(max_memory_bytes);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .parallel_compilation(true)
            .consume_fuel(fuel)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| format!("{e:#}"))?;
        let mut linker = Linker::<HostState>::new(&engine);
        contract::add_to_linker(&mut linker).map_err(|e| format!("{e:#}"))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("dasher-plugin-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Runtime { engine, linker: Arc::new(linker), fuel })
    }

    /// Metadata check, compile and type check: everything before running guest code.
    pub(crate) fn compile(&self, bytes: &[u8], limits: &Limits) -> Result<Compiled, LoadError> {
        if bytes.len() > limits.max_component_bytes {
            return Err(LoadError::TooLarge { size: bytes.len(), limit: limits.max_component_bytes });
        }
        let meta = meta::read_metadata(bytes)?;
        meta::check_compatible(&meta)?;
        let component = Component::new(&self.engine, bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let pre = Pre::new(&self.linker, &component, &meta)?;
        Ok(Compiled { meta, pre, hash: content_hash(bytes), size_bytes: bytes.len(), runtime: self.clone() })
    }
}

/// SHA-256 of the file, hex: the plugin's generation id.
pub fn content_hash(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A compiled, type-checked component, not yet initialised.
pub(crate) struct Compiled {
    pub(crate) meta: PluginMetadata,
    pub(crate) hash: String,
    pub(crate) size_bytes: usize,
    pre: Pre,
    runtime: Runtime,
}

struct Instance {
    store: Store<HostState>,
    bindings: Bindings,
}

/// What one successful call produced, with its measurements.
pub(crate) struct CallOutput {
    pub(crate) json: String,
    pub(crate) elapsed: Duration,
    pub(crate) peak_memory_bytes: usize,
    /// Fuel consumed (≈ wasm instructions), when the runtime meters fuel.
    pub(crate) instructions: Option<u64>,
}

/// One plugin generation: compiled, initialised with its settings, smoke-tested.
pub struct LoadedPlugin {
    pub(crate) meta: PluginMetadata,
    pub(crate) hash: String,
    pub(crate) file: std::path::PathBuf,
    pub(crate) size_bytes: usize,
    pub(crate) loaded_at: SystemTime,
    pub(crate) mode: Mode,
    pub(crate) limits: Limits,
    pub(crate) stats: Stats,
    /// Circuit breaker per hook; a new generation starts with all closed.
    pub(crate) breakers: Breakers,
    /// Aggregation of this generation's fault lines, per hook.
    pub(crate) fault_log: LogLimiter<Hook>,
    guest_log: Arc<GuestLog>,
    settings_json: String,
    namespace: String,
    pre: Pre,
    runtime: Runtime,
    idle: Mutex<Vec<Instance>>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin").field("name", &self.meta.name).field("hash", &self.hash).finish()
    }
}

impl LoadedPlugin {
    /// Initialises a compiled component with its settings (the first instance is kept).
    pub(crate) fn init(
        compiled: Compiled,
        file: std::path::PathBuf,
        settings_json: String,
        mode: Mode,
        limits: Limits,
        kv: Arc<dyn KvBackend>,
    ) -> Result<LoadedPlugin, LoadError> {
        let namespace = match mode {
            Mode::Enforce => format!("plugin:{}", compiled.meta.name),
            Mode::Shadow => format!("shadow:{}", compiled.meta.name),
        };
        let plugin = LoadedPlugin {
            meta: compiled.meta,
            hash: compiled.hash,
            file,
            size_bytes: compiled.size_bytes,
            loaded_at: SystemTime::now(),
            mode,
            limits,
            stats: Stats::default(),
            breakers: Breakers::default(),
            fault_log: LogLimiter::new(REPEAT_LOG_INTERVAL, 8),
            guest_log: Arc::new(LogLimiter::new(REPEAT_LOG_INTERVAL, GUEST_LOG_KEYS)),
            settings_json,
            namespace,
            pre: compiled.pre,
            runtime: compiled.runtime,
            idle: Mutex::new(Vec::new()),
        };
        let instance = plugin.new_instance(&kv).map_err(|f| LoadError::Init(f.to_string()))?;
        plugin.idle.lock().unwrap_or_else(|e| e.into_inner()).push(instance);
        Ok(plugin)
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.meta.name
    }

    /// Its generation (content hash).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Its metadata.
    pub fn metadata(&self) -> &PluginMetadata {
        &self.meta
    }

    /// The settings JSON it was initialised with.
    pub fn settings_json(&self) -> &str {
        &self.settings_json
    }

    fn new_instance(&self, kv: &Arc<dyn KvBackend>) -> Result<Instance, Fault> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .instances(16)
            .tables(16)
            .memories(4)
            .trap_on_grow_failure(true)
            .build();
        let state = HostState {
            limits,
            memory_cap: self.limits.memory_bytes,
            peak_memory: 0,
            hit_memory_limit: false,
            plugin: Arc::from(self.meta.name.as_str()),
            kv: Arc::clone(kv),
            namespace: self.namespace.clone(),
            log_budget: self.limits.max_log_bytes_per_call,
            guest_log: Arc::clone(&self.guest_log),
            pending: BTreeMap::new(),
            pending_bytes: 0,
            atomic_keys: BTreeSet::new(),
            atomic_ops: 0,
            store_wait: Duration::ZERO,
        };
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|s| s);
        // At the deadline: credit the time this call spent waiting for the store in atomic kv
        // operations (each a durable write, bounded per call), else time out.
        store.epoch_deadline_callback(|mut ctx| {
            let waited = std::mem::take(&mut ctx.data_mut().store_wait);
            if waited.is_zero() {
                return Err(Trap::Interrupt.into());
            }
            Ok(UpdateDeadline::Continue(ticks(u64::try_from(waited.as_millis()).unwrap_or(u64::MAX))))
        });
        store.set_epoch_deadline(ticks(self.limits.init_deadline_ms));
        if self.runtime.fuel {
            store.set_fuel(u64::MAX).map_err(|e| Fault::Trap(format!("{e:#}")))?;
        }
        let bindings = self.pre.instantiate(&mut store).map_err(|e| classify(&store, e))?;
        match bindings.call(&mut store, Hook::Init, &self.settings_json) {
            Ok(Ok(_)) => {
                store.data_mut().flush();
                Ok(Instance { store, bindings })
            }
            Ok(Err(message)) => {
                store.data_mut().flush();
                Err(Fault::PluginError(message))
            }
            Err(e) => Err(classify(&store, e)),
        }
    }

    /// Calls `hook` with `input`, on an idle instance or a fresh one. `kv` backs the `kv`
    /// import for this call. An instance that trapped is dropped; one that returned a
    /// plugin error or bad output is reused (its state is intact).
    pub(crate) fn call(&self, hook: Hook, input: &str, kv: &Arc<dyn KvBackend>) -> Result<CallOutput, Fault> {
        let started = Instant::now();
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut inst = match pooled {
            Some(i) => i,
            None => self.new_instance(kv)?,
        };
        let deadline_ms = match hook {
            // Off the request path like triage: the same, more generous deadline.
            Hook::Triage | Hook::Review => self.limits.triage_deadline_ms,
            Hook::Init => self.limits.init_deadline_ms,
            Hook::Configure | Hook::SelectRules => self.limits.deadline_ms,
        };
        {
            let s = inst.store.data_mut();
            s.kv = Arc::clone(kv);
            s.log_budget = self.limits.max_log_bytes_per_call;
            s.hit_memory_limit = false;
            s.atomic_keys.clear();
            s.atomic_ops = 0;
            s.store_wait = Duration::ZERO;
        }
        inst.store.set_epoch_deadline(ticks(deadline_ms));
        let fuel_before = inst.store.get_fuel().ok();
        let result = inst.bindings.call(&mut inst.store, hook, input);
        let elapsed = started.elapsed();
        if result.is_ok() {
            inst.store.data_mut().flush();
        }
        let out = match result {
            Err(e) => return Err(classify(&inst.store, e)),
            Ok(Err(message)) => Err(Fault::PluginError(message)),
            Ok(Ok(json)) if json.len() > self.limits.max_output_bytes => Err(Fault::InvalidOutput(format!(
                "output is {} bytes, more than the limit of {}",
                json.len(),
                self.limits.max_output_bytes
            ))),
            Ok(Ok(json)) => Ok(CallOutput {
                json,
                elapsed,
                peak_memory_bytes: inst.store.data().peak_memory.min(inst.store.data().memory_cap),
                instructions: match (fuel_before, inst.store.get_fuel().ok()) {
                    (Some(before), Some(after)) if self.runtime.fuel => Some(before - after),
                    _ => None,
                },
            }),
        };
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_INSTANCES {
            idle.push(inst);
        }
        out
    }
}

fn ticks(ms: u64) -> u64 {
    // +1: the current tick may be about to end.
    ms.max(1) + 1
}

fn classify(store: &Store<HostState>, e: wasmtime::Error) -> Fault {
    if store.data().hit_memory_limit {
        return Fault::OutOfMemory;
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Fault::Timeout,
        _ => Fault::Trap(format!("{e:#}")),
    }
}

/// A scratch kv for smoke tests and tools.
pub(crate) fn scratch_kv() -> Arc<dyn KvBackend> {
    Arc::new(MemoryKv::new())
}
