//! Dasher server library.
