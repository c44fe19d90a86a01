//! The contract versions this host links: the current one (`sdk/wit`) and 0.2.0 (a frozen
//! copy in `policy/wit/`), so plugins built before the atomic kv imports keep loading. Both
//! `host` interfaces are defined in one linker under their own versioned names; a component
//! is bound to the world of the contract its metadata declares.

use super::host::HostState;
use crate::error::LoadError;
use dasher_sdk::plugin::{Hook, PluginMetadata};
use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker};

pub(super) mod current {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "policy",
    });
}

pub(super) mod v0_2 {
    wasmtime::component::bindgen!({
        path: "wit/dasher-plugin-0.2.0",
        world: "policy",
    });
}

/// Defines every supported contract's `host` interface in `linker`.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    current::dasher::plugin::host::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    v0_2::dasher::plugin::host::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}

/// A component pre-linked against the world of its contract.
#[derive(Clone)]
pub(super) enum Pre {
    Current(current::PolicyPre<HostState>),
    V0_2(v0_2::PolicyPre<HostState>),
}

impl Pre {
    /// Links `component` as the contract `meta` declares (already checked compatible).
    pub(super) fn new(
        linker: &Linker<HostState>,
        component: &Component,
        meta: &PluginMetadata,
    ) -> Result<Pre, LoadError> {
        let compile = |e: wasmtime::Error| LoadError::Compile(format!("{e:#}"));
        let pre = linker.instantiate_pre(component).map_err(compile)?;
        let declared = meta.contract.rsplit_once('@').and_then(|(_, v)| crate::meta::parse_version(v));
        if declared.is_some_and(|(major, minor, _)| major == 0 && minor == 2) {
            Ok(Pre::V0_2(v0_2::PolicyPre::new(pre).map_err(compile)?))
        } else {
            Ok(Pre::Current(current::PolicyPre::new(pre).map_err(compile)?))
        }
    }

    pub(super) fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Bindings> {
        Ok(match self {
            Pre::Current(p) => Bindings::Current(p.instantiate(&mut *store)?),
            Pre::V0_2(p) => Bindings::V0_2(p.instantiate(&mut *store)?),
        })
    }
}

/// An instance's exports, whichever contract.
pub(super) enum Bindings {
    Current(current::Policy),
    V0_2(v0_2::Policy),
}

macro_rules! call_hook {
    ($hooks:expr, $store:expr, $hook:expr, $input:expr) => {{
        let hooks = $hooks;
        let r = match $hook {
            Hook::Configure => hooks.call_configure($store, $input),
            Hook::SelectRules => hooks.call_select_rules($store, $input),
            Hook::Triage => hooks.call_triage($store, $input),
            Hook::Review => hooks.call_review($store, $input),
            Hook::Init => hooks.call_init($store, $input).map(|r| r.map(|()| String::new())),
        };
        r.map(|r| r.map_err(|e| e.message))
    }};
}

impl Bindings {
    /// Calls `hook` (for [`Hook::Init`], `input` is the settings JSON; the output is empty).
    /// `Err` = trap; `Ok(Err(message))` = the plugin's own error.
    pub(super) fn call(
        &self,
        store: &mut Store<HostState>,
        hook: Hook,
        input: &str,
    ) -> wasmtime::Result<Result<String, String>> {
        match self {
            Bindings::Current(b) => call_hook!(b.dasher_plugin_hooks(), &mut *store, hook, input),
            Bindings::V0_2(b) => call_hook!(b.dasher_plugin_hooks(), &mut *store, hook, input),
        }
    }
}
