//! Chaining in configured order and the documented merge rules, through the host.
