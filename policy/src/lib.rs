//! Dasher's WebAssembly policy plugin host.
//!
//! Policy decisions (`configure`, `select-rules`, `triage`) are made by WebAssembly
//! components implementing the `dasher:plugin` contract (`sdk/wit/plugin.wit`), run in
//! wasmtime with per-call limits, chained in configured order, hot-reloaded from a
//! directory, and failing static. The server calls [`PluginManager`]; the `dasher plugin`
//! CLI calls the functions of [`tools`].
//!
//! ```no_run
//! # async fn demo(host: dasher_sdk::domain::HostFacts) -> Result<(), dasher_policy::PolicyError> {
//! use dasher_policy::{MemoryKv, PluginManager, PluginsConfig};
//! use std::sync::Arc;
//! let manager = PluginManager::start(PluginsConfig::for_dir("/var/lib/dasher/plugins"), Arc::new(MemoryKv::new()))?;
//! let decided = manager.configure(&host).await; // never an error: fail-static
//! println!("mode {:?} made by {:?}", decided.value.client_mode, decided.made_by);
//! # Ok(()) }
//! ```
//!
//! Map of the crate:
//! - [`config`]: [`PluginsConfig`] (serde, embedded in the server's TOML).
//! - `manager`: [`PluginManager`] — the chain, fail-static, status, reload, rollback.
//! - `breaker`: the circuit breaker per plugin generation and hook ([`BreakerConfig`]).
//! - [`log_limit`]: [`LogLimiter`], aggregation of repeated log lines.
//! - [`merge`]: the documented merge rule per hook.
//! - `runtime`: wasmtime engine, pooling allocator, epoch ticker, limits, instance reuse.
//! - `watch`: the directory watcher. `exec`: the bounded worker pool.
//! - [`kv`]: [`KvBackend`], implemented by the server over its store; [`MemoryKv`].
//! - [`meta`]: reading the `dasher:plugin` metadata section before compiling.
//! - [`tools`]: `build`, `inspect`, `install`, `test` for the CLI.

mod breaker;
pub mod config;
mod convert;
mod error;
mod exec;
pub mod generations;
pub mod kv;
mod last_good;
pub mod log_limit;
mod manager;
pub mod merge;
pub mod meta;
pub mod report;
mod runtime;
mod stats;
pub mod tools;
mod watch;

pub use config::{BreakerConfig, Fallback, Limits, Mode, OnFailure, OnUnavailable, PluginConfig, PluginsConfig};
pub use convert::event_facts;
pub use error::{Fault, LoadError, PolicyError};
pub use generations::{GenerationRecord, Pin, Trigger};
pub use kv::{CounterError, KvBackend, KvError, MemoryKv};
pub use log_limit::LogLimiter;
pub use manager::{
    BreakerState, BreakerStatus, Contribution, Decided, FaultRecord, LoadFailure, ManagerStatus, PluginManager,
    PluginSet, PluginStatus, ReloadReport, ShadowRecord, Source, UnavailablePlugin,
};
pub use meta::{SERVER_VERSION, check_compatible, read_metadata};
pub use runtime::{LoadedPlugin, content_hash};
