//! Staged rollout of LOCKDOWN: new hosts start in MONITOR; a host moves to LOCKDOWN once it
//! has been enrolled `lockdown_after_days`, or earlier if its OS version, a primary-user
//! group or its hostname puts it in an early wave. Exempt hosts stay in MONITOR.
//!
//! ```toml
//! [plugins.plugin.staged-rollout.settings]
//! lockdown_after_days = 14
//! lockdown_os_at_least = "15.0"
//! lockdown_groups = ["it", "security"]
//! lockdown_hostnames = ["lab-*"]
//! exempt_hostnames = ["build-*"]
//! exempt_groups = ["santa-exempt"]
//! ```

use dasher_sdk::plugin::prelude::*;
use serde::Deserialize;

/// Settings (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StagedRollout {
    /// Days after first sight before LOCKDOWN (`None` = never by age).
    pub lockdown_after_days: Option<u32>,
    /// LOCKDOWN hosts whose macOS version is at least this.
    pub lockdown_os_at_least: Option<String>,
    /// LOCKDOWN hosts whose primary user is in one of these groups.
    pub lockdown_groups: Vec<String>,
    /// LOCKDOWN hosts whose hostname matches one of these `*` patterns.
    pub lockdown_hostnames: Vec<String>,
    /// Never LOCKDOWN hosts matching these `*` patterns.
    pub exempt_hostnames: Vec<String>,
    /// Never LOCKDOWN hosts whose primary user is in one of these groups.
    pub exempt_groups: Vec<String>,
    /// Never LOCKDOWN these machine ids.
    pub exempt_machine_ids: Vec<String>,
}

const SCHEMA: &str = r#"{"type":"object","additionalProperties":false,"properties":{"lockdown_after_days":{"type":"integer","minimum":0,"maximum":3650},"lockdown_os_at_least":{"type":"string"},"lockdown_groups":{"type":"array","items":{"type":"string"}},"lockdown_hostnames":{"type":"array","items":{"type":"string"}},"exempt_hostnames":{"type":"array","items":{"type":"string"}},"exempt_groups":{"type":"array","items":{"type":"string"}},"exempt_machine_ids":{"type":"array","items":{"type":"string"}}}}"#;

impl Validate for StagedRollout {
    fn validate(&self) -> Result<()> {
        if self.lockdown_after_days.is_some_and(|d| d > 3650) {
            return Err(PluginError::new("lockdown_after_days must be at most 3650"));
        }
        if let Some(v) = &self.lockdown_os_at_least
            && os_version(v).is_none()
        {
            return Err(PluginError::new(format!("lockdown_os_at_least {v:?} is not a version like 15.0")));
        }
        Ok(())
    }
}

impl Configure for StagedRollout {
    fn configure(&self, host: &HostFacts) -> Result<ConfigDecision> {
        let in_group = |groups: &[String]| host.primary_user_groups.iter().any(|g| groups.contains(g));
        let exempt = self.exempt_machine_ids.contains(&host.machine_id)
            || in_group(&self.exempt_groups)
            || self.exempt_hostnames.iter().any(|p| glob(p, &host.hostname));
        let days_enrolled = (host.now_unix - host.first_seen_unix).max(0) / 86_400;
        let lockdown = !exempt
            && (self.lockdown_after_days.is_some_and(|d| days_enrolled >= i64::from(d))
                || self
                    .lockdown_os_at_least
                    .as_deref()
                    .and_then(os_version)
                    .is_some_and(|min| os_version(&host.os_version).is_some_and(|v| v >= min))
                || in_group(&self.lockdown_groups)
                || self.lockdown_hostnames.iter().any(|p| glob(p, &host.hostname)));
        let mode = if lockdown { ClientMode::Lockdown } else { ClientMode::Monitor };
        Ok(ConfigDecision { client_mode: Some(mode), ..Default::default() })
    }
}

/// `15.5.1` → `(15, 5, 1)`.
fn os_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.trim().split('.').map(|p| p.parse::<u32>().ok());
    Some((it.next()??, it.next().flatten().unwrap_or(0), it.next().flatten().unwrap_or(0)))
}

/// Case-insensitive match with `*` as "any run of characters".
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.to_ascii_lowercase(), text.to_ascii_lowercase());
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == t;
    }
    let mut rest = t.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(pos) = rest.find(part) else { return false };
            rest = &rest[pos + part.len()..];
        }
    }
    true
}

dasher_sdk::export_plugin!(StagedRollout, hooks: [Configure, Validate], settings_schema: SCHEMA);

#[cfg(test)]
mod tests {
    use super::*;
    use dasher_sdk::plugin::testing::Harness;

    const DAY: i64 = 86_400;

    fn host(hostname: &str, age_days: i64) -> HostFacts {
        HostFacts {
            machine_id: format!("m-{hostname}"),
            hostname: hostname.into(),
            os_version: "14.6".into(),
            first_seen_unix: 1_000 * DAY,
            now_unix: (1_000 + age_days) * DAY,
            ..Default::default()
        }
    }

    fn mode(settings: &str, h: &HostFacts) -> Option<ClientMode> {
        Harness::<StagedRollout>::with_validated_settings(settings).unwrap().configure(h).unwrap().client_mode
    }

    #[test]
    fn new_hosts_monitor_then_lockdown_after_n_days() {
        let s = r#"{"lockdown_after_days": 14}"#;
        assert_eq!(mode(s, &host("a", 0)), Some(ClientMode::Monitor));
        assert_eq!(mode(s, &host("a", 13)), Some(ClientMode::Monitor));
        assert_eq!(mode(s, &host("a", 14)), Some(ClientMode::Lockdown));
    }

    #[test]
    fn early_waves_by_os_group_and_hostname() {
        let s = r#"{"lockdown_os_at_least":"15.0","lockdown_groups":["it"],"lockdown_hostnames":["lab-*"]}"#;
        let mut h = host("desk-1", 0);
        assert_eq!(mode(s, &h), Some(ClientMode::Monitor));
        h.os_version = "15.2".into();
        assert_eq!(mode(s, &h), Some(ClientMode::Lockdown));
        let mut h = host("desk-2", 0);
        h.primary_user_groups = vec!["staff".into(), "it".into()];
        assert_eq!(mode(s, &h), Some(ClientMode::Lockdown));
        assert_eq!(mode(s, &host("LAB-042.corp", 0)), Some(ClientMode::Lockdown));
    }

    #[test]
    fn exemptions_win() {
        let s = r#"{"lockdown_after_days":0,"exempt_hostnames":["build-*"],"exempt_groups":["santa-exempt"]}"#;
        assert_eq!(mode(s, &host("build-7", 100)), Some(ClientMode::Monitor));
        let mut h = host("desk", 100);
        h.primary_user_groups = vec!["santa-exempt".into()];
        assert_eq!(mode(s, &h), Some(ClientMode::Monitor));
    }

    #[test]
    fn bad_settings_are_rejected() {
        assert!(Harness::<StagedRollout>::with_validated_settings(r#"{"lockdown_after_days":99999}"#).is_err());
        assert!(Harness::<StagedRollout>::with_validated_settings(r#"{"lockdown_os_at_least":"sonoma"}"#).is_err());
        assert!(Harness::<StagedRollout>::with_settings(r#"{"typo":1}"#).is_err());
    }

    #[test]
    fn glob_matches() {
        assert!(glob("lab-*", "lab-1"));
        assert!(glob("*.corp", "x.corp"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("lab-*", "xlab-1"));
        assert!(glob("exact", "EXACT"));
    }
}
