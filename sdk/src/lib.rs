//! Dasher's shared vocabulary.
//!
//! - [`wire`]: the Santa sync protocol (v1) messages exactly as clients of every generation
//!   send and read them — tolerant `Deserialize` for requests, strict `Serialize` for
//!   responses, and `prost` encodings for binary protobuf transfer.
//! - [`domain`]: Dasher's own types (rules, host facts, policy decisions) that the server,
//!   the store, plugins and the simulator share. No protocol quirk reaches these.
//! - [`names`]: machine ids, rule-set names and tags, validated (reserved names refused here).
//! - [`version`]: Santa client versions and the features each generation understands.
//! - `cel` (feature `cel`, the server only): Santa CEL v1 expressions parsed and type-checked.

#[cfg(feature = "cel")]
pub mod cel;
pub mod domain;
#[cfg(feature = "plugin")]
#[doc(hidden)]
pub mod guest;
pub mod names;
pub mod plugin;
pub mod plugin_schema;
pub mod version;
pub mod wire;
