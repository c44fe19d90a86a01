//! Helpers for Dasher end-to-end tests.
