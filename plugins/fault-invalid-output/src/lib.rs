//! Fault fixture: hooks return documents the host must reject — written against the raw WIT
//! bindings (as a plugin in another language would be), since the typed SDK cannot produce
//! invalid output. It is built against contract **0.2.0** (the frozen copy in
//! `policy/wit/dasher-plugin-0.2.0`, without the SDK), so it also proves that the server
//! still loads and runs plugins built before the atomic kv imports of 0.3.0. For hosts tagged `"fault"`: `configure` returns an unknown field,
//! `select-rules` returns text that is not JSON, `triage` returns a verdict for an event that
//! is not in the batch. Other hosts get valid, empty (no opinion) answers, so the plugin
//! passes the load-time smoke test.

#[cfg(target_arch = "wasm32")]
mod glue {
    wit_bindgen::generate!({
        path: "../../policy/wit/dasher-plugin-0.2.0",
        world: "policy",
    });

    use exports::dasher::plugin::hooks::{Guest, PluginError};

    struct Bad;

    /// A crude but sufficient check for the `"fault"` tag: no JSON parser in this fixture.
    fn triggered(input: &str) -> bool {
        input.contains("\"fault\"")
    }

    impl Guest for Bad {
        fn init(_settings: String) -> Result<(), PluginError> {
            Ok(())
        }
        fn configure(input: String) -> Result<String, PluginError> {
            Ok(if triggered(&input) { r#"{"client_mode":"LOCKDOWN","lockdown_everything":true}"# } else { "{}" }.into())
        }
        fn select_rules(input: String) -> Result<String, PluginError> {
            Ok(if triggered(&input) { "this is not json" } else { "{}" }.into())
        }
        fn triage(input: String) -> Result<String, PluginError> {
            Ok(if triggered(&input) {
                r#"{"verdicts":[{"event_id":999999,"action":"drop"}]}"#
            } else {
                r#"{"verdicts":[]}"#
            }
            .into())
        }
        fn review(_input: String) -> Result<String, PluginError> {
            Ok(r#"{"decision":"approve","scope":{"kind":"everywhere"}}"#.into())
        }
    }

    export!(Bad);

    const META: &[u8] = br#"{"name":"fault-invalid-output","version":"0.1.0","sdk_version":"0.1.0","contract":"dasher:plugin@0.2.0","hooks":["init","configure","select-rules","triage"],"min_server_version":"0.1.0","settings_schema":null}"#;

    #[unsafe(link_section = "dasher:plugin")]
    #[used]
    static METADATA: [u8; META.len()] = {
        let mut out = [0u8; META.len()];
        let mut i = 0;
        while i < META.len() {
            out[i] = META[i];
            i += 1;
        }
        out
    };
}
