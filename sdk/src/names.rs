//! Validated names: machine ids, rule-set names and tags. Every name that enters from
//! outside (a sync URL, the admin API, the config file, a plugin's output) is checked here,
//! so reserved names are refused in one place.
//!
//! Reserved: the set `global`, the per-host sets `host:{machine_id}` (written by admins, only
//! ever *selected* by the server for that one host) and `plugin-host:{machine_id}` (written
//! and selected by the server only). A tag selects the rule set named like it, so a tag is a
//! [`RuleSetName::selectable`] name: a tag `host:Y` would otherwise hand Y's rules to every
//! host carrying it.

use std::fmt;

/// The rule set every host gets, last in precedence.
pub const GLOBAL_RULE_SET: &str = "global";
/// Prefix of the per-host rule sets (`host:{machine_id}`).
pub const HOST_SET_PREFIX: &str = "host:";
/// Prefix of the per-host rule sets holding plugin-supplied host rules; server-only.
pub const PLUGIN_HOST_SET_PREFIX: &str = "plugin-host:";
/// Longest rule-set name or tag.
pub const MAX_RULE_SET_NAME_BYTES: usize = 300;

/// Characters allowed besides ASCII letters and digits in machine ids, tags and set names.
const EXTRA_CHARS: &str = "._-:@+~";

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// Too long.
    #[error("{what} is longer than {max} bytes")]
    TooLong {
        /// What kind of name.
        what: &'static str,
        /// The bound.
        max: usize,
    },
    /// A character outside the allowed set, or `..`.
    #[error("{what} contains {found}; allowed are letters, digits and . _ - : @ + ~ (no '..')")]
    BadCharacter {
        /// What kind of name.
        what: &'static str,
        /// The offending character, quoted.
        found: String,
    },
    /// A name only the server may use here.
    #[error("{what} {name:?} is reserved: {why}")]
    Reserved {
        /// What kind of name.
        what: &'static str,
        /// The name (at most 64 characters of it).
        name: String,
        /// Why and what to use instead.
        why: &'static str,
    },
}

fn check_chars(what: &'static str, s: &str, max: usize) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty(what));
    }
    if s.len() > max {
        return Err(NameError::TooLong { what, max });
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || EXTRA_CHARS.contains(*c))) {
        return Err(NameError::BadCharacter { what, found: format!("{c:?}") });
    }
    if s.contains("..") {
        return Err(NameError::BadCharacter { what, found: "'..'".into() });
    }
    Ok(())
}

fn reserved(what: &'static str, name: &str, why: &'static str) -> NameError {
    NameError::Reserved { what, name: name.chars().take(64).collect(), why }
}

/// A machine id: opaque and case-sensitive (reference §1.3), never required to be a UUID;
/// bounded, limited to a safe character set, and never a reserved rule-set name, so it is
/// safe as a store key, a log field and inside `host:{id}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MachineId(String);

impl MachineId {
    /// Validates an already percent-decoded id of at most `max_bytes`.
    pub fn parse(id: &str, max_bytes: usize) -> Result<MachineId, NameError> {
        const WHAT: &str = "machine id";
        check_chars(WHAT, id, max_bytes)?;
        if id == "." || id == GLOBAL_RULE_SET {
            return Err(reserved(WHAT, id, "it names a path or the global rule set"));
        }
        if id.starts_with(HOST_SET_PREFIX) || id.starts_with(PLUGIN_HOST_SET_PREFIX) {
            return Err(reserved(WHAT, id, "it starts like a per-host rule-set name"));
        }
        Ok(MachineId(id.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The rule set holding this host's own rules.
    pub fn host_set(&self) -> RuleSetName {
        RuleSetName(format!("{HOST_SET_PREFIX}{}", self.0))
    }
}

impl std::ops::Deref for MachineId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for MachineId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A rule-set name, checked for the use it is put to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleSetName(String);

impl RuleSetName {
    /// A set whose rules may be read: any well-formed name.
    pub fn readable(name: &str) -> Result<RuleSetName, NameError> {
        check_chars("rule set name", name, MAX_RULE_SET_NAME_BYTES)?;
        Ok(RuleSetName(name.to_owned()))
    }

    /// A set admins (API, rules files) and plugin proposals may write rules into: `global`,
    /// a named set, or `host:{machine_id}` with a valid machine id; never `plugin-host:…`.
    pub fn writable(name: &str) -> Result<RuleSetName, NameError> {
        const WHAT: &str = "rule set name";
        let set = Self::readable(name)?;
        if name.starts_with(PLUGIN_HOST_SET_PREFIX) {
            return Err(reserved(WHAT, name, "plugin host sets are written by the server from plugin decisions"));
        }
        if let Some(id) = name.strip_prefix(HOST_SET_PREFIX) {
            MachineId::parse(id, MAX_RULE_SET_NAME_BYTES)
                .map_err(|_| reserved(WHAT, name, "a host: set must name a valid machine id (host:{machine_id})"))?;
        }
        Ok(set)
    }

    /// A set a tag, a tag policy or a plugin selection may name: a writable set that is not
    /// per-host (the server selects a host's own sets for that host only).
    pub fn selectable(name: &str) -> Result<RuleSetName, NameError> {
        let set = Self::writable(name)?;
        if name.starts_with(HOST_SET_PREFIX) {
            return Err(reserved(
                "rule set name",
                name,
                "a host's own set is selected for that host only; add rules to it instead of selecting it",
            ));
        }
        Ok(set)
    }

    /// The global set.
    pub fn global() -> RuleSetName {
        RuleSetName(GLOBAL_RULE_SET.to_owned())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::ops::Deref for RuleSetName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RuleSetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a host tag: a tag selects the rule set named like it, so it must be
/// [`RuleSetName::selectable`].
pub fn check_tag(tag: &str) -> Result<(), NameError> {
    RuleSetName::selectable(tag).map(|_| ()).map_err(|e| match e {
        NameError::Reserved { name, why, .. } => NameError::Reserved { what: "tag", name, why },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ids_accept_real_ids() {
        for id in ["50C7E1EB-2EF5-42D4-A084-A7966FC45A95", "mac-042.corp", "C02XK1ABCDEF", "user@host", "a", "aa:bb:cc"]
        {
            assert_eq!(MachineId::parse(id, 256).unwrap().as_str(), id);
        }
    }

    #[test]
    fn machine_ids_refuse_hostile_and_reserved_ids() {
        assert_eq!(MachineId::parse("", 256), Err(NameError::Empty("machine id")));
        assert_eq!(MachineId::parse(&"x".repeat(300), 256), Err(NameError::TooLong { what: "machine id", max: 256 }));
        for bad in ["..", "a b", "a/b", "a\0b", "é"] {
            assert!(matches!(MachineId::parse(bad, 256), Err(NameError::BadCharacter { .. })), "{bad}");
        }
        for reserved in [".", "global", "host:B", "plugin-host:B"] {
            assert!(matches!(MachineId::parse(reserved, 256), Err(NameError::Reserved { .. })), "{reserved}");
        }
    }

    #[test]
    fn rule_set_names_by_use() {
        for ok in ["global", "eng", "host:m1", "team:red"] {
            assert!(RuleSetName::writable(ok).is_ok(), "{ok}");
        }
        assert!(RuleSetName::writable("plugin-host:m1").is_err());
        assert!(RuleSetName::writable("host:").is_err(), "empty machine id");
        assert!(RuleSetName::writable("host:global").is_err(), "reserved machine id");
        assert!(RuleSetName::readable("plugin-host:m1").is_ok(), "admins may read plugin host sets");
        assert!(RuleSetName::selectable("host:Y").is_err());
        assert!(RuleSetName::selectable("eng").is_ok());
        assert!(matches!(check_tag("host:Y"), Err(NameError::Reserved { what: "tag", .. })));
        assert!(check_tag("plugin-host:Y").is_err());
        assert!(check_tag("kiosk").is_ok());
        assert!(matches!(check_tag(""), Err(NameError::Empty(_))));
    }
}
