//! `[rules_dir]`: GitOps mode (see [`crate::rules::dir`]).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A directory of rules files the server applies at start and on every change.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesDirSettings {
    /// The directory (created if missing).
    pub path: PathBuf,
    /// Also empty every writable set no file names (`dasher rules apply --prune`).
    pub prune: bool,
    /// Quiet time after a change before applying, in milliseconds.
    pub debounce_ms: u64,
    /// Rescan this often (seconds, 0 = never) in case a change escaped the watch, e.g. a
    /// symlink swapped to a new checkout; unchanged files cost a read and a hash.
    pub poll_secs: u64,
}

impl Default for RulesDirSettings {
    fn default() -> Self {
        RulesDirSettings { path: PathBuf::from("rules"), prune: false, debounce_ms: 500, poll_secs: 60 }
    }
}
