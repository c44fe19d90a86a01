//! Fault fixtures.
