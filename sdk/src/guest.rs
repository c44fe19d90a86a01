//! Guest-side glue (feature `plugin`): the wit-bindgen bindings of `sdk/wit/plugin.wit` and
//! the [`export_plugin!`](crate::export_plugin) macro that turns a settings struct plus hook
//! traits into a component export and a `dasher:plugin` metadata section.
//!
//! Everything here only does real work on `wasm32`; natively the macro expands to nothing but
//! a compile-time check that the listed traits are implemented, so `cargo test` and
//! `cargo clippy` work on plugin crates.

#![allow(missing_docs, clippy::all)]

wit_bindgen::generate!({
    path: "wit",
    world: "policy",
    pub_export_macro: true,
    export_macro_name: "__dasher_export_policy",
    default_bindings_module: "dasher_sdk::guest",
});

use crate::plugin::runtime::{self, HookFn, HookTable};
use exports::dasher::plugin::hooks::PluginError as WitError;

/// The plugin value built by `init`. wasm32 components are single-threaded and the component
/// model forbids re-entry, so a `RefCell` behind `Sync` is sound there; the macro only emits
/// the static on wasm32.
pub struct GuestState<T>(core::cell::RefCell<Option<T>>);

// SAFETY: only instantiated on wasm32 (single-threaded, no re-entrant calls).
unsafe impl<T> Sync for GuestState<T> {}

impl<T> GuestState<T> {
    /// Not initialised.
    pub const fn new() -> Self {
        GuestState(core::cell::RefCell::new(None))
    }
}

fn wit_error(e: crate::plugin::PluginError) -> WitError {
    WitError { message: e.message }
}

/// `init`: installs a panic hook that logs the panic message, parses and validates settings.
pub fn init<T: serde::de::DeserializeOwned + 'static>(
    state: &GuestState<T>,
    table: &HookTable<T>,
    settings: &str,
) -> Result<(), WitError> {
    std::panic::set_hook(Box::new(|info| {
        dasher::plugin::host::log(dasher::plugin::host::LogLevel::Error, &format!("panic: {info}"));
    }));
    let plugin = runtime::init(table, settings).map_err(wit_error)?;
    *state.0.borrow_mut() = Some(plugin);
    Ok(())
}

/// One hook call.
pub fn call<T: 'static>(
    state: &GuestState<T>,
    hook: Option<HookFn<T>>,
    name: &str,
    input: &str,
) -> Result<String, WitError> {
    let Some(hook) = hook else {
        return Err(WitError { message: format!("hook {name} is not implemented by this plugin") });
    };
    let guard = state.0.borrow();
    let Some(plugin) = guard.as_ref() else {
        return Err(WitError { message: "plugin called before init".into() });
    };
    hook(plugin, input).map_err(wit_error)
}

/// Exports a plugin: `export_plugin!(Settings, hooks: [Configure, SelectRules, Triage, Review, Validate])`.
///
/// `Settings` is a `serde::Deserialize` struct: `init` parses the server's settings JSON into it
/// (an empty settings document is `{}`), and every hook is a method on it. List the hook
/// traits it implements; only those are declared in the metadata and called by the server.
/// `Validate` is optional and runs during `init`.
///
/// Optional trailing arguments: `min_server: "0.2.0"` (default: the SDK's
/// `MIN_SERVER_VERSION`) and `settings_schema: "<JSON Schema>"` (default `null`), both
/// `&'static str` constant expressions.
///
/// The macro emits (on wasm32 only) the component export glue and a `dasher:plugin` custom
/// section with the plugin's name and version (from Cargo), the SDK and contract versions,
/// the hooks, the minimum server version and the settings schema.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty, hooks: [$($hook:ident),* $(,)?] $(, min_server: $min:expr)? $(, settings_schema: $schema:expr)? $(,)?) => {
        #[doc(hidden)]
        #[allow(dead_code)]
        const __DASHER_TABLE: $crate::plugin::runtime::HookTable<$plugin> = $crate::plugin::runtime::HookTable {
            $( $hook: Some($crate::plugin::runtime::entry::$hook::<$plugin>), )*
            ..$crate::plugin::runtime::HookTable::EMPTY
        };

        #[doc(hidden)]
        #[allow(dead_code)]
        const __DASHER_META_PARTS: &[&str] = &[
            "{\"name\":\"", env!("CARGO_PKG_NAME"),
            "\",\"version\":\"", env!("CARGO_PKG_VERSION"),
            "\",\"sdk_version\":\"", $crate::plugin::SDK_VERSION,
            "\",\"contract\":\"", $crate::plugin::CONTRACT,
            "\",\"hooks\":[\"init\"",
            $crate::plugin::runtime::hook_item(__DASHER_TABLE.Configure.is_some(), ",\"configure\""),
            $crate::plugin::runtime::hook_item(__DASHER_TABLE.SelectRules.is_some(), ",\"select-rules\""),
            $crate::plugin::runtime::hook_item(__DASHER_TABLE.Triage.is_some(), ",\"triage\""),
            $crate::plugin::runtime::hook_item(__DASHER_TABLE.Review.is_some(), ",\"review\""),
            "],\"min_server_version\":\"", $crate::export_plugin!(@or $($min)?, $crate::plugin::MIN_SERVER_VERSION),
            "\",\"settings_schema\":", $crate::export_plugin!(@or $($schema)?, "null"),
            "}",
        ];

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            const LEN: usize = $crate::plugin::runtime::concat_len(__DASHER_META_PARTS);
            #[unsafe(link_section = "dasher:plugin")]
            #[used]
            static __DASHER_METADATA: [u8; LEN] = $crate::plugin::runtime::concat_bytes::<LEN>(__DASHER_META_PARTS);

            static __DASHER_STATE: $crate::guest::GuestState<$plugin> = $crate::guest::GuestState::new();

            struct __DasherGlue;

            impl $crate::guest::exports::dasher::plugin::hooks::Guest for __DasherGlue {
                fn init(settings: String) -> Result<(), $crate::guest::exports::dasher::plugin::hooks::PluginError> {
                    $crate::guest::init::<$plugin>(&__DASHER_STATE, &__DASHER_TABLE, &settings)
                }
                fn configure(input: String) -> Result<String, $crate::guest::exports::dasher::plugin::hooks::PluginError> {
                    $crate::guest::call(&__DASHER_STATE, __DASHER_TABLE.Configure, "configure", &input)
                }
                fn select_rules(input: String) -> Result<String, $crate::guest::exports::dasher::plugin::hooks::PluginError> {
                    $crate::guest::call(&__DASHER_STATE, __DASHER_TABLE.SelectRules, "select-rules", &input)
                }
                fn triage(input: String) -> Result<String, $crate::guest::exports::dasher::plugin::hooks::PluginError> {
                    $crate::guest::call(&__DASHER_STATE, __DASHER_TABLE.Triage, "triage", &input)
                }
                fn review(input: String) -> Result<String, $crate::guest::exports::dasher::plugin::hooks::PluginError> {
                    $crate::guest::call(&__DASHER_STATE, __DASHER_TABLE.Review, "review", &input)
                }
            }

            $crate::guest::__dasher_export_policy!(__DasherGlue with_types_in $crate::guest);
        };
    };
    (@or $given:expr, $default:expr) => { $given };
    (@or , $default:expr) => { $default };
}
