//! Rule-set targeting: a host gets the rule sets whose criteria it matches — admin tags,
//! model family (`MacBookPro` from `MacBookPro18,3`), macOS major version and primary-user
//! groups — plus the `always` sets. Within one target, every criterion given must match (any
//! value of its list); targets are independent.
//!
//! ```toml
//! [plugins.plugin.ruleset-targeting.settings]
//! always = ["global"]
//! targets = [
//!   { rule_set = "developer-tools", groups = ["engineering"] },
//!   { rule_set = "kiosk", tags = ["kiosk"], model_families = ["Macmini", "iMac"] },
//!   { rule_set = "sequoia-compat", os_major = [15] },
//! ]
//! ```

use dasher_sdk::plugin::prelude::*;
use serde::Deserialize;

/// Settings.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Targeting {
    /// Sets every host gets, after the targeted ones.
    pub always: Vec<String>,
    /// Targets in precedence order.
    pub targets: Vec<Target>,
}

/// One rule set and who gets it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Target {
    /// The rule set.
    pub rule_set: String,
    /// Any of these admin tags.
    pub tags: Vec<String>,
    /// Any of these model families.
    pub model_families: Vec<String>,
    /// Any of these macOS majors.
    pub os_major: Vec<u32>,
    /// Any of these primary-user groups.
    pub groups: Vec<String>,
}

impl Target {
    fn matches(&self, host: &HostFacts) -> bool {
        let any = |want: &[String], have: &[String]| want.is_empty() || want.iter().any(|w| have.contains(w));
        let family = model_family(&host.model_identifier);
        let major = host.os_version.split('.').next().and_then(|m| m.parse::<u32>().ok());
        any(&self.tags, &host.tags)
            && any(&self.groups, &host.primary_user_groups)
            && (self.model_families.is_empty() || self.model_families.iter().any(|f| f.eq_ignore_ascii_case(family)))
            && (self.os_major.is_empty() || major.is_some_and(|m| self.os_major.contains(&m)))
    }
}

/// `MacBookPro18,3` → `MacBookPro`.
fn model_family(model: &str) -> &str {
    model.trim_end_matches(|c: char| c.is_ascii_digit() || c == ',')
}

impl Validate for Targeting {
    fn validate(&self) -> Result<()> {
        match self.targets.iter().find(|t| t.rule_set.trim().is_empty()) {
            Some(_) => Err(PluginError::new("every target needs a rule_set")),
            None => Ok(()),
        }
    }
}

impl SelectRules for Targeting {
    fn select_rules(&self, host: &HostFacts) -> Result<SelectionDecision> {
        let mut sets: Vec<String> = vec![];
        for name in self.targets.iter().filter(|t| t.matches(host)).map(|t| &t.rule_set).chain(&self.always) {
            if !sets.contains(name) {
                sets.push(name.clone());
            }
        }
        Ok(SelectionDecision { rule_sets: Some(sets), host_rules: None })
    }
}

dasher_sdk::export_plugin!(Targeting, hooks: [SelectRules, Validate]);

#[cfg(test)]
mod tests {
    use super::*;
    use dasher_sdk::plugin::testing::Harness;

    const SETTINGS: &str = r#"{
        "always": ["global"],
        "targets": [
            {"rule_set": "developer-tools", "groups": ["engineering"]},
            {"rule_set": "kiosk", "tags": ["kiosk"], "model_families": ["Macmini", "iMac"]},
            {"rule_set": "sequoia-compat", "os_major": [15]}
        ]}"#;

    fn sets(h: &HostFacts) -> Vec<String> {
        Harness::<Targeting>::with_validated_settings(SETTINGS).unwrap().select_rules(h).unwrap().rule_sets.unwrap()
    }

    #[test]
    fn engineering_gets_developer_tools() {
        let h = HostFacts {
            primary_user_groups: vec!["engineering".into()],
            os_version: "14.1".into(),
            ..Default::default()
        };
        assert_eq!(sets(&h), vec!["developer-tools", "global"]);
    }

    #[test]
    fn all_criteria_of_a_target_must_match() {
        let mut h =
            HostFacts { tags: vec!["kiosk".into()], model_identifier: "MacBookPro18,3".into(), ..Default::default() };
        assert_eq!(sets(&h), vec!["global"]);
        h.model_identifier = "Macmini9,1".into();
        h.os_version = "15.3".into();
        assert_eq!(sets(&h), vec!["kiosk", "sequoia-compat", "global"]);
    }

    #[test]
    fn target_without_rule_set_is_rejected() {
        assert!(Harness::<Targeting>::with_validated_settings(r#"{"targets":[{"tags":["x"]}]}"#).is_err());
    }
}
