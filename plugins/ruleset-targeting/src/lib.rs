//! Rule-set targeting: a host gets the rule sets whose criteria it matches — admin tags,
//! model family (`MacBookPro` from `MacBookPro18,3`), macOS major version and primary-user
//! groups — plus the `always` sets. Within one target, every criterion given must match (any
//! value of its list); targets are independent.
//!
//! By default its selection replaces the host's default selection (`mode = "replace"`): the
//! sets of the host's tags under `[tags.X].rule_sets` are not kept unless a target lists
//! them. With `mode = "add"` its sets are added to the default selection instead.
//!
//! `pins` pin rules on matching hosts only (same criteria), e.g. allow a licensed tool on
//! the hosts of the team that bought it without creating a rule set per team. The server
//! keeps them in the host's plugin host set; a host that stops matching gets them removed.
//!
//! ```toml
//! [plugins.plugin.ruleset-targeting.settings]
//! always = ["global"]
//! targets = [
//!   { rule_set = "developer-tools", groups = ["engineering"] },
//!   { rule_set = "kiosk", tags = ["kiosk"], model_families = ["Macmini", "iMac"] },
//!   { rule_set = "sequoia-compat", os_major = [15] },
//! ]
//! pins = [
//!   { tags = ["cad"], rules = [{ identifier = "EQHXZ8M8AV", rule_type = "TEAMID", policy = "ALLOWLIST" }] },
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
    /// Host rules pinned on matching hosts; the first pin naming a rule key wins.
    pub pins: Vec<Pin>,
    /// `"replace"` (the default: this plugin's sets are the whole selection) or `"add"` (the
    /// sets are added to the host's default selection from `[tags.X].rule_sets`).
    pub mode: Option<SelectionMode>,
}

/// Rules pinned on the hosts matching the criteria (every criterion given must match).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pin {
    /// The rules (as an admin writes them; `REMOVE` is not allowed).
    pub rules: Vec<RuleSpec>,
    /// Any of these admin tags.
    pub tags: Vec<String>,
    /// Any of these model families.
    pub model_families: Vec<String>,
    /// Any of these macOS majors.
    pub os_major: Vec<u32>,
    /// Any of these primary-user groups.
    pub groups: Vec<String>,
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
        matches(host, &self.tags, &self.model_families, &self.os_major, &self.groups)
    }
}

impl Pin {
    fn matches(&self, host: &HostFacts) -> bool {
        matches(host, &self.tags, &self.model_families, &self.os_major, &self.groups)
    }
}

/// Every criterion given matches (any value of its list).
fn matches(host: &HostFacts, tags: &[String], families: &[String], os_major: &[u32], groups: &[String]) -> bool {
    let any = |want: &[String], have: &[String]| want.is_empty() || want.iter().any(|w| have.contains(w));
    let family = model_family(&host.model_identifier);
    let major = host.os_version.split('.').next().and_then(|m| m.parse::<u32>().ok());
    any(tags, &host.tags)
        && any(groups, &host.primary_user_groups)
        && (families.is_empty() || families.iter().any(|f| f.eq_ignore_ascii_case(family)))
        && (os_major.is_empty() || major.is_some_and(|m| os_major.contains(&m)))
}

/// `MacBookPro18,3` → `MacBookPro`.
fn model_family(model: &str) -> &str {
    model.trim_end_matches(|c: char| c.is_ascii_digit() || c == ',')
}

impl Validate for Targeting {
    fn validate(&self) -> Result<()> {
        if self.targets.iter().any(|t| t.rule_set.trim().is_empty()) {
            return Err(PluginError::new("every target needs a rule_set"));
        }
        for (i, pin) in self.pins.iter().enumerate() {
            for (j, rule) in pin.rules.iter().enumerate() {
                match rule.validate() {
                    Ok((_, Some(_))) => {}
                    Ok((_, None)) => {
                        return Err(PluginError::new(format!(
                            "pins[{i}].rules[{j}]: REMOVE cannot be pinned (drop the rule instead)"
                        )));
                    }
                    Err(e) => return Err(PluginError::new(format!("pins[{i}].rules[{j}].{}: {e}", e.field()))),
                }
            }
        }
        Ok(())
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
        // With pins configured this plugin owns the host's pinned rules: an empty list for a
        // host matching none removes what it pinned before.
        let host_rules = (!self.pins.is_empty()).then(|| {
            let mut rules: Vec<RuleSpec> = vec![];
            for rule in self.pins.iter().filter(|p| p.matches(host)).flat_map(|p| &p.rules) {
                if !rules.iter().any(|r| r.rule_type == rule.rule_type && r.identifier == rule.identifier) {
                    rules.push(rule.clone());
                }
            }
            rules
        });
        // Replace unless configured otherwise: this plugin owns the whole selection (list
        // `always` sets yourself); `mode = "add"` keeps the hosts' `[tags.X].rule_sets` as well.
        let mode = self.mode.unwrap_or(SelectionMode::Replace);
        Ok(SelectionDecision { rule_sets: Some(sets), mode: Some(mode), host_rules })
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

    #[test]
    fn the_selection_replaces_the_default_explicitly() {
        let d = Harness::<Targeting>::with_validated_settings(SETTINGS).unwrap().select_rules(&HostFacts::default());
        assert_eq!(d.unwrap().mode, Some(SelectionMode::Replace));
        let add = Harness::<Targeting>::with_validated_settings(r#"{"mode": "add"}"#).unwrap();
        assert_eq!(add.select_rules(&HostFacts::default()).unwrap().mode, Some(SelectionMode::Add));
    }

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
    fn pins_apply_to_matching_hosts_only() {
        let settings = r#"{"pins": [
            {"tags": ["cad"], "rules": [{"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "ALLOWLIST"}]},
            {"groups": ["eng"], "rules": [{"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "BLOCKLIST"}]}
        ]}"#;
        let plugin = Harness::<Targeting>::with_validated_settings(settings).unwrap();
        let cad = HostFacts { tags: vec!["cad".into()], primary_user_groups: vec!["eng".into()], ..Default::default() };
        let rules = plugin.select_rules(&cad).unwrap().host_rules.unwrap();
        assert_eq!(rules.len(), 1, "one rule per key, first pin wins");
        assert_eq!(rules[0].policy, Policy::Allowlist);
        let other = plugin.select_rules(&HostFacts::default()).unwrap().host_rules;
        assert_eq!(other, Some(vec![]), "a host matching no pin gets an empty list, not no opinion");
        let without = Harness::<Targeting>::with_validated_settings(SETTINGS).unwrap();
        assert_eq!(without.select_rules(&cad).unwrap().host_rules, None);
    }

    #[test]
    fn invalid_pins_are_rejected() {
        for bad in [
            r#"{"pins":[{"rules":[{"identifier":"nope","rule_type":"TEAMID","policy":"ALLOWLIST"}]}]}"#,
            r#"{"pins":[{"rules":[{"identifier":"EQHXZ8M8AV","rule_type":"TEAMID","policy":"REMOVE"}]}]}"#,
        ] {
            assert!(Harness::<Targeting>::with_validated_settings(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn target_without_rule_set_is_rejected() {
        assert!(Harness::<Targeting>::with_validated_settings(r#"{"targets":[{"tags":["x"]}]}"#).is_err());
    }
}
