//! Dasher fleet simulator.
