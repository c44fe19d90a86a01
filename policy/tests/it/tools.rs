//! Tooling.
