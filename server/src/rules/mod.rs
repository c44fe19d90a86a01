//! Rules as code: a rule set's whole content declared in a file, planned and applied as one
//! rule version.
//!
//! Map: [`parse_rule`] is the one validation of an admin-written rule (the admin API's
//! `POST /api/v1/rules` and rules files both go through it); [`validate_sets`] turns the
//! declared content of named sets ([`SetSource`], one per file) into [`DesiredSet`]s;
//! [`plan`] diffs them against the store at one version and [`apply`] commits that diff with
//! [`dasher_store::Store::commit_rules_at`], so a plan lands whole on the version it was
//! computed from or not at all. [`files`] reads and writes the TOML files, [`import`]
//! converts Moroz and santactl rules into them, [`dir`] is the GitOps watcher.
//!
//! Errors are this layer's [`RulesError`]; the admin API maps them to statuses.

pub mod dir;
pub mod files;
pub mod import;
mod plan;

pub use plan::{FieldChange, Plan, RuleRef, SetPlan, apply, plan};

use dasher_sdk::domain::{Rule, RuleKey, RuleSpec};
use dasher_sdk::names::RuleSetName;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Most rule sets one plan may name.
pub const MAX_SETS_PER_PLAN: usize = 10_000;

/// Why a plan or apply was refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// A rule or set is invalid; `field` is the request path (`sets[0].rules[3].identifier`),
    /// the message names the file, the rule and the field.
    #[error("{message}")]
    Invalid {
        /// Request path of the offending value.
        field: String,
        /// A sentence naming the file, rule index or identifier, and field.
        message: String,
    },
    /// The plan cannot be applied as asked: `expect_version` is not the head, or a set is
    /// managed by the rules directory.
    #[error("{0}")]
    Conflict(String),
    /// Storage failed.
    #[error("storage unavailable: {0}")]
    Store(#[from] dasher_store::StoreError),
}

/// A rule the admin API or a rules file failed to validate: the field (relative to the rule,
/// `None` for the rule as a whole) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFieldError {
    /// `identifier`, `cel_expr`, `rule_set`…, or `None` when the rule itself is malformed.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl RuleFieldError {
    /// `prefix.field`, or `prefix` for the rule as a whole.
    pub fn path(&self, prefix: &str) -> String {
        match &self.field {
            Some(f) => format!("{prefix}.{f}"),
            None => prefix.to_owned(),
        }
    }
}

#[derive(Deserialize)]
struct RuleInput {
    #[serde(flatten)]
    spec: RuleSpec,
    #[serde(default)]
    rule_set: Option<String>,
}

/// A rule's name and change, as [`parse_rule`] returns it.
pub type ParsedRule = (Option<String>, RuleKey, Option<Rule>);

/// Validates one admin-written rule (a JSON object: the [`RuleSpec`] fields, `comment`, and an
/// optional `rule_set`, checked with [`RuleSetName::writable`]). Returns the named set, the key,
/// and the rule (`None` for `REMOVE`). The one gate of `POST /api/v1/rules` and rules files.
pub fn parse_rule(value: serde_json::Value) -> Result<ParsedRule, RuleFieldError> {
    let input: RuleInput =
        serde_json::from_value(value).map_err(|e| RuleFieldError { field: None, message: e.to_string() })?;
    if let Some(name) = &input.rule_set {
        RuleSetName::writable(name)
            .map_err(|e| RuleFieldError { field: Some("rule_set".into()), message: e.to_string() })?;
    }
    let (key, rule) = input
        .spec
        .validate()
        .map_err(|e| RuleFieldError { field: Some(e.field().to_owned()), message: e.to_string() })?;
    Ok((input.rule_set, key, rule))
}

/// The declared whole content of one rule set (one rules file), as the CLI sends it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetSource {
    /// The set.
    pub rule_set: String,
    /// Where it was declared (a file name), named in errors and plans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Its rules, as the admin API takes them (without `rule_set`).
    pub rules: Vec<serde_json::Value>,
}

impl SetSource {
    fn label(&self) -> String {
        self.source.clone().unwrap_or_else(|| format!("rule set {:?}", self.rule_set))
    }
}

/// A validated set: its name, source and rules in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredSet {
    /// The set.
    pub name: String,
    /// Where it was declared.
    pub source: Option<String>,
    /// Its rules, by key.
    pub rules: BTreeMap<RuleKey, Rule>,
}

/// The body of `POST /api/v1/rules/plan` and `/apply`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// The whole content of every set the plan names.
    pub sets: Vec<SetSource>,
    /// Also empty every writable set that no entry of `sets` names.
    #[serde(default)]
    pub prune: bool,
    /// Apply only if the rule head is still this version (409 otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_version: Option<u64>,
}

/// Validates declared sets with [`parse_rule`]: names writable, each set named once, at most
/// `max_rules` rules in all, no `rule_set` or `REMOVE` inside a set (a file names its set's
/// whole content), no rule twice. Errors name the file, the rule's index and identifier, and
/// the field.
pub fn validate_sets(sets: Vec<SetSource>, max_rules: usize) -> Result<Vec<DesiredSet>, RulesError> {
    if sets.len() > MAX_SETS_PER_PLAN {
        return Err(RulesError::Invalid {
            field: "sets".into(),
            message: format!("a plan names at most {MAX_SETS_PER_PLAN} rule sets, not {}", sets.len()),
        });
    }
    let total: usize = sets.iter().map(|s| s.rules.len()).sum();
    if total > max_rules {
        return Err(RulesError::Invalid {
            field: "sets".into(),
            message: format!(
                "a plan holds at most {max_rules} rules (limits.max_rules_per_apply), not {total}; split the sets or raise the limit"
            ),
        });
    }
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(sets.len());
    for (s, set) in sets.into_iter().enumerate() {
        let label = set.label();
        if let Err(e) = RuleSetName::writable(&set.rule_set) {
            return Err(RulesError::Invalid {
                field: format!("sets[{s}].rule_set"),
                message: format!("{label}: rule_set: {e}"),
            });
        }
        if let Some(other) = seen.insert(set.rule_set.clone(), label.clone()) {
            return Err(RulesError::Invalid {
                field: format!("sets[{s}].rule_set"),
                message: format!(
                    "{label}: rule_set {:?} is already declared by {other}; one file per rule set",
                    set.rule_set
                ),
            });
        }
        let mut rules: BTreeMap<RuleKey, Rule> = BTreeMap::new();
        let mut index_of: HashMap<RuleKey, usize> = HashMap::new();
        for (i, value) in set.rules.into_iter().enumerate() {
            let id = value.get("identifier").and_then(|v| v.as_str()).map(|s| s.chars().take(80).collect::<String>());
            let at = match &id {
                Some(id) => format!("{label}: rules[{i}] (identifier {id:?})"),
                None => format!("{label}: rules[{i}]"),
            };
            let prefix = format!("sets[{s}].rules[{i}]");
            let invalid = |field: String, message: String| RulesError::Invalid { field, message };
            let (named, key, rule) = parse_rule(value).map_err(|e| {
                let what = e.field.as_deref().map(|f| format!("{f}: ")).unwrap_or_default();
                invalid(e.path(&prefix), format!("{at}: {what}{}", e.message))
            })?;
            if named.is_some() {
                return Err(invalid(
                    format!("{prefix}.rule_set"),
                    format!(
                        "{at}: rule_set: a rule in a file has no rule_set of its own; the file's rule_set (or name) names its set"
                    ),
                ));
            }
            let Some(rule) = rule else {
                return Err(invalid(
                    format!("{prefix}.policy"),
                    format!(
                        "{at}: policy: REMOVE has no place in a rules file; delete the rule from the file to remove it"
                    ),
                ));
            };
            if let Some(first) = index_of.insert(key.clone(), i) {
                return Err(invalid(
                    format!("{prefix}.identifier"),
                    format!("{at}: identifier: the same {} rule is already rules[{first}]", key.rule_type),
                ));
            }
            rules.insert(key, rule);
        }
        out.push(DesiredSet { name: set.rule_set, source: set.source, rules });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(name: &str, rules: serde_json::Value) -> SetSource {
        SetSource {
            rule_set: name.into(),
            source: Some(format!("{name}.toml")),
            rules: rules.as_array().unwrap().clone(),
        }
    }

    #[test]
    fn errors_name_file_rule_and_field() {
        let bad = set(
            "eng",
            json!([
                {"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "ALLOWLIST"},
                {"identifier": "nope", "rule_type": "TEAMID", "policy": "ALLOWLIST"}
            ]),
        );
        let RulesError::Invalid { field, message } = validate_sets(vec![bad], 100).unwrap_err() else { panic!() };
        assert_eq!(field, "sets[0].rules[1].identifier");
        assert!(message.starts_with("eng.toml: rules[1] (identifier \"nope\"): identifier: "), "{message}");
    }

    #[test]
    fn refuses_remove_duplicates_rule_set_and_twice_named_sets() {
        let r = |v| validate_sets(vec![set("eng", v)], 100).unwrap_err().to_string();
        let e = r(json!([{"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "REMOVE"}]));
        assert!(e.contains("REMOVE has no place"), "{e}");
        let e = r(json!([{"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "ALLOWLIST", "rule_set": "x"}]));
        assert!(e.contains("rule_set"), "{e}");
        let e = r(json!([
            {"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "ALLOWLIST"},
            {"identifier": "eqhxz8m8av", "rule_type": "TEAMID", "policy": "BLOCKLIST"}
        ]));
        assert!(e.contains("rules[1]") && e.contains("already rules[0]"), "{e}");
        let mut other = set("eng", json!([]));
        other.source = Some("other.toml".into());
        let e = validate_sets(vec![set("eng", json!([])), other], 100).unwrap_err().to_string();
        assert!(e.contains("other.toml") && e.contains("eng.toml"), "{e}");
        let e = validate_sets(vec![set("plugin-host:x", json!([]))], 100).unwrap_err().to_string();
        assert!(e.starts_with("plugin-host:x.toml: rule_set:"), "{e}");
    }

    #[test]
    fn comment_is_kept_and_bounded() {
        let ok = set(
            "eng",
            json!([{"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "ALLOWLIST", "comment": "why"}]),
        );
        let sets = validate_sets(vec![ok], 100).unwrap();
        assert_eq!(sets[0].rules.values().next().unwrap().comment.as_deref(), Some("why"));
        let long = "x".repeat(5000);
        let bad = set(
            "eng",
            json!([{"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "ALLOWLIST", "comment": long}]),
        );
        let RulesError::Invalid { field, .. } = validate_sets(vec![bad], 100).unwrap_err() else { panic!() };
        assert_eq!(field, "sets[0].rules[0].comment");
    }
}
