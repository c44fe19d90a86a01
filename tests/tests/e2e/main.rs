//! End-to-end tests: the real server on loopback, driven over HTTP. One test binary (one link of
//! the server, wasmtime included) with a module per area.

mod compaction;
mod cursor_forgery;
mod export;
mod fuzz_regressions;
mod hostile_connections;
mod idle_connections;
mod inventory_bounds;
mod plugin_breaker;
mod plugin_decide;
mod plugin_decisions;
mod plugin_ops;
mod plugins_http;
mod postgres_replicas;
mod reserved_names;
mod rule_input;
mod rules_as_code;
mod security_http;
mod sim_blast;
mod sim_client;
mod sim_convergence;
mod sim_scenario;
mod sync_protocol;
mod tls_http;
mod triage_http;
mod ui_browser;
mod ui_console;
mod ui_oidc;
mod ui_pages;
