//! Integration tests of the plugin host: real plugins from `plugins/`, built for
//! `wasm32-unknown-unknown` by the test itself (`dasher_policy::tools::build`), run through
//! the same `PluginManager` the server uses.

mod atomic;
mod breaker;
mod chain;
mod examples;
mod faults;
mod reload;
mod support;
mod tools;
