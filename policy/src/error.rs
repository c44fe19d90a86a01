//! Errors at the policy boundary. wasmtime's own errors are converted to these once, here.

use dasher_sdk::plugin::Hook;
use std::fmt;

/// Why a component was not loaded. The previous generation of the plugin (if any) keeps serving.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read plugin file: {0}")]
    Io(String),
    /// The file is larger than `max_component_bytes`.
    #[error("plugin file is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// File size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// Not a valid wasm binary (truncated, still being written, or not wasm).
    #[error("not a valid WebAssembly component: {0}")]
    Corrupt(String),
    /// The metadata section is missing or malformed.
    #[error("bad plugin metadata: {0}")]
    BadMetadata(String),
    /// Contract or server version mismatch.
    #[error("{0}")]
    Incompatible(String),
    /// wasmtime refused to compile it, or its imports/exports do not match the contract.
    #[error("plugin does not compile or does not match the dasher:plugin world: {0}")]
    Compile(String),
    /// `init` rejected the settings or failed.
    #[error("init failed: {0}")]
    Init(String),
    /// A load-time smoke call failed.
    #[error("smoke test of {hook} failed: {message}")]
    Smoke {
        /// The hook.
        hook: Hook,
        /// What happened.
        message: String,
    },
    /// Another file already provides a plugin with this name.
    #[error("duplicate plugin name {0}: already loaded from another file")]
    Duplicate(String),
}

/// Errors of the manager's admin operations (never of decision calls, which fail static).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The engine could not be created.
    #[error("cannot start the plugin engine: {0}")]
    Engine(String),
    /// The plugin directory could not be read or watched.
    #[error("plugin directory {dir}: {message}")]
    Dir {
        /// The directory.
        dir: String,
        /// What failed.
        message: String,
    },
    /// No loaded plugin has this name.
    #[error("no plugin named {0}")]
    UnknownPlugin(String),
    /// Rollback without an older generation.
    #[error("plugin {0} has no older generation to roll back to")]
    NoOlderGeneration(String),
    /// A rollback target that does not name a usable generation.
    #[error("plugin {plugin}: {message}")]
    Generation {
        /// The plugin.
        plugin: String,
        /// What is wrong with the requested generation.
        message: String,
    },
    /// A plugin failed to load (strict start, `test`, `install`).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A tooling step failed (build, install, test).
    #[error("{0}")]
    Tool(String),
}

/// What went wrong in one plugin call. Recorded, then the hook's fail-static policy applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The guest trapped (panic, unreachable, stack overflow…). The instance is discarded.
    Trap(String),
    /// The call ran past its deadline. The instance is discarded.
    Timeout,
    /// The guest tried to grow memory past its limit. The instance is discarded.
    OutOfMemory,
    /// The output was too large, not valid JSON of the expected type, or referred to unknown events.
    InvalidOutput(String),
    /// The plugin returned its own error.
    PluginError(String),
    /// No worker was free (queue full) or the worker pool stopped.
    Overloaded,
    /// Not called: the hook's circuit breaker is open after repeated faults. The guest was
    /// not entered; the call fails static like any fault.
    BreakerOpen,
}

impl Fault {
    /// Short kind name for counters: `trap`, `timeout`, `oom`, `invalid_output`, `plugin_error`, `overloaded`, `breaker_open`.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Trap(_) => "trap",
            Fault::Timeout => "timeout",
            Fault::OutOfMemory => "oom",
            Fault::InvalidOutput(_) => "invalid_output",
            Fault::PluginError(_) => "plugin_error",
            Fault::Overloaded => "overloaded",
            Fault::BreakerOpen => "breaker_open",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Trap(m) => write!(f, "trap: {m}"),
            Fault::Timeout => f.write_str("deadline exceeded"),
            Fault::OutOfMemory => f.write_str("memory limit exceeded"),
            Fault::InvalidOutput(m) => write!(f, "invalid output: {m}"),
            Fault::PluginError(m) => write!(f, "plugin error: {m}"),
            Fault::Overloaded => f.write_str("no plugin worker available"),
            Fault::BreakerOpen => {
                f.write_str("skipped: the plugin's circuit breaker for this hook is open after repeated faults")
            }
        }
    }
}
