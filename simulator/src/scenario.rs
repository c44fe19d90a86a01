//! Scenarios (`dasher-sim run --scenario FILE`): a fleet described as groups of hosts — which
//! macOS and Santa versions they run, their hostnames, users, user groups, serials and admin
//! tags, and the software they run and get blocked on — so a policy plugin can be checked at
//! fleet scale. The report then says, per group, which client mode and rule sets its hosts
//! ended with.
//!
//! ```toml
//! hosts = 1000           # optional; else --hosts
//! seed = 7               # optional; else --seed
//!
//! [[group]]
//! name = "kiosks"
//! share = 10                                  # weight: 10 of every (sum of shares) hosts
//! hostname = "kiosk-{n}.corp.example.com"     # {n}: 1-based index within the group, {user}
//! macos = ["13", "14.8:3"]                     # version prefixes, optional ":weight"
//! santa = "2025.6:1,2026.7:3"                  # generation mix (as --generations)
//! users = ["kiosk"]                            # primary users, in turn
//! user_groups = ["kiosk-users"]
//! serials = ["C02KIOSK0001"]                   # used in order; the rest are generated
//! tags = ["kiosk"]                             # set with the admin API (needs --admin-token)
//! runs = ["Google Chrome", "Slack"]            # catalog binaries (file name or signing id)
//! blocked = ["zoom.us"]                        # run and blocked unless a rule allows them
//! ```
//!
//! Hosts are split between groups in proportion to their shares (largest remainder, so the
//! counts are exact and stable), contiguously by index, each host still generated from the
//! seed: a group's hosts keep realistic models (a model that cannot run the chosen macOS is
//! re-drawn), builds and documents.

use crate::events::Catalog;
use crate::fleet::{self, HostSpec};
use crate::generation::Generation;
use rand::Rng;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// Longest accepted scenario file.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// Most groups in a scenario.
const MAX_GROUPS: usize = 256;

/// A scenario file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Number of hosts (else the `--hosts` flag).
    pub hosts: Option<usize>,
    /// Fleet seed (else the `--seed` flag).
    pub seed: Option<u64>,
    /// The groups, at least one.
    #[serde(rename = "group")]
    pub groups: Vec<Group>,
}

/// One group of hosts.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Name (unique; the report's key).
    pub name: String,
    /// Weight of the group in the fleet.
    #[serde(default = "one")]
    pub share: u32,
    /// Hostname pattern: `{n}` is the 1-based index within the group, `{user}` the user.
    pub hostname: Option<String>,
    /// macOS version prefixes (`13`, `14.8`, `26.6.1`), each with an optional `:weight`.
    #[serde(default)]
    pub macos: Vec<String>,
    /// Santa generation mix, as `--generations`.
    pub santa: Option<String>,
    /// Primary users, assigned in turn.
    #[serde(default)]
    pub users: Vec<String>,
    /// The primary user's groups.
    #[serde(default)]
    pub user_groups: Vec<String>,
    /// Serial numbers, assigned in order to the group's first hosts.
    #[serde(default)]
    pub serials: Vec<String>,
    /// Admin tags set on each host before the load.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Catalog binaries the hosts run (file name, e.g. `Slack`, or signing id).
    #[serde(default)]
    pub runs: Vec<String>,
    /// Catalog binaries the hosts run and that are blocked unless a rule allows them.
    #[serde(default)]
    pub blocked: Vec<String>,
}

fn one() -> u32 {
    1
}

/// What a group's hosts execute: indexes into the catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Software {
    /// Every binary the hosts run (including the blocked ones).
    pub runs: Vec<usize>,
    /// Those blocked unless a rule allows them.
    pub blocked: HashSet<usize>,
}

/// A scenario that cannot be used, with what to fix.
#[derive(Debug, thiserror::Error)]
#[error("scenario {file}: {message}")]
pub struct ScenarioError {
    /// The file.
    pub file: String,
    /// What is wrong, naming the group and field.
    pub message: String,
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let err = |message: String| ScenarioError { file: path.display().to_string(), message };
        let len = std::fs::metadata(path).map_err(|e| err(e.to_string()))?.len();
        if len > MAX_FILE_BYTES {
            return Err(err(format!("{len} bytes; at most {MAX_FILE_BYTES}")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let scenario: Scenario = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        scenario.check().map_err(err)?;
        Ok(scenario)
    }

    /// Checks what can be checked without the catalog.
    pub fn check(&self) -> Result<(), String> {
        if self.groups.is_empty() || self.groups.len() > MAX_GROUPS {
            return Err(format!("needs 1 to {MAX_GROUPS} [[group]] tables, not {}", self.groups.len()));
        }
        let mut names = HashSet::new();
        for g in &self.groups {
            let at = |field: &str| format!("group {:?}: {field}", g.name);
            if g.name.is_empty() || !names.insert(g.name.as_str()) {
                return Err(format!("group names must be unique and non-empty ({:?})", g.name));
            }
            if g.share == 0 {
                return Err(at("share must be at least 1"));
            }
            if let Some(mix) = &g.santa {
                Generation::parse_mix(mix).map_err(|e| at(&format!("santa: {e}")))?;
            }
            for m in &g.macos {
                let (prefix, _) = version_weight(m).map_err(|e| at(&format!("macos: {e}")))?;
                if !fleet::releases().any(|r| version_matches(r.0, prefix)) {
                    let known: Vec<&str> = fleet::releases().map(|r| r.0).collect();
                    return Err(at(&format!(
                        "macos: no known release matches {prefix:?} (known: {})",
                        known.join(", ")
                    )));
                }
            }
            if g.hostname.as_ref().is_some_and(|h| h.is_empty() || h.len() > 200) {
                return Err(at("hostname pattern must be 1 to 200 characters"));
            }
        }
        Ok(())
    }

    /// For each host index `0..total`: its group and its 0-based index within the group.
    pub fn assign(&self, total: usize) -> Vec<(usize, usize)> {
        let sum: u64 = self.groups.iter().map(|g| u64::from(g.share)).sum();
        let exact: Vec<(usize, u64, u64)> = self
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let num = total as u64 * u64::from(g.share);
                (i, num / sum, num % sum)
            })
            .collect();
        let mut counts: Vec<u64> = exact.iter().map(|e| e.1).collect();
        let mut left = total as u64 - counts.iter().sum::<u64>();
        let mut by_remainder = exact.clone();
        by_remainder.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        for (i, _, _) in by_remainder {
            if left == 0 {
                break;
            }
            counts[i] += 1;
            left -= 1;
        }
        counts.iter().enumerate().flat_map(|(g, n)| (0..*n as usize).map(move |k| (g, k))).collect()
    }

    /// Each group's software, resolved against the catalog.
    pub fn software(&self, catalog: &Catalog) -> Result<Vec<Option<Arc<Software>>>, String> {
        self.groups
            .iter()
            .map(|g| {
                if g.runs.is_empty() && g.blocked.is_empty() {
                    return Ok(None);
                }
                // Every version of the binary (the catalog has two of each vendor app).
                let find = |name: &String| {
                    let found: Vec<usize> = (0..catalog.binaries.len())
                        .filter(|&i| {
                            let b = &catalog.binaries[i];
                            &b.name == name || b.signing_id.as_ref() == Some(name)
                        })
                        .collect();
                    Some(found).filter(|f| !f.is_empty()).ok_or_else(|| {
                        let mut known: Vec<&str> = catalog.binaries.iter().map(|b| b.name.as_str()).collect();
                        known.dedup();
                        format!("group {:?}: unknown binary {name:?} (known: {})", g.name, known.join(", "))
                    })
                };
                let mut sw = Software::default();
                for name in &g.runs {
                    sw.runs.extend(find(name)?);
                }
                for name in &g.blocked {
                    for i in find(name)? {
                        sw.runs.push(i);
                        sw.blocked.insert(i);
                    }
                }
                Ok(Some(Arc::new(sw)))
            })
            .collect()
    }

    /// Host `index` of the fleet: generated from `seed`, then shaped by its group.
    pub fn host_spec(&self, seed: u64, index: usize, group: usize, in_group: usize) -> HostSpec {
        let g = &self.groups[group];
        let gens = g.santa.as_deref().and_then(|m| Generation::parse_mix(m).ok());
        let default_gens = [(Generation::Nps2026_7, 1)];
        let gens = gens.as_deref().unwrap_or(&default_gens);
        let mut rng = fleet::rng_for(seed ^ 0x5ce0, index as u64);
        let wanted: Vec<(&str, u32)> = g.macos.iter().filter_map(|m| version_weight(m).ok()).collect();
        let prefix = pick_weighted(&mut rng, &wanted);
        // Re-draw the model (a different generation stream) until it can run the version.
        let mut spec = fleet::generate_spec(seed, index as u64, gens);
        let mut attempt = 1u64;
        let release = loop {
            let candidates: Vec<fleet::Release> = match prefix {
                None => break None,
                Some(p) => fleet::releases()
                    .filter(|r| version_matches(r.0, p) && fleet::model_runs(&spec.model, major(r.0)))
                    .collect(),
            };
            if !candidates.is_empty() {
                break Some(candidates[rng.random_range(0..candidates.len())]);
            }
            if attempt > 64 {
                break None;
            }
            spec = fleet::generate_spec(seed ^ attempt.wrapping_mul(0x9e37_79b9), index as u64, gens);
            attempt += 1;
        };
        if let Some((version, build, date)) = release {
            spec.os_version = version.to_owned();
            spec.os_build = build.to_owned();
            spec.os_date = date.to_owned();
        }
        if let Some(user) = g.users.get(in_group % g.users.len().max(1)) {
            spec.primary_user = user.clone();
        }
        if !g.user_groups.is_empty() {
            spec.groups = g.user_groups.clone();
        }
        if let Some(serial) = g.serials.get(in_group) {
            spec.serial = serial.clone();
        }
        if let Some(pattern) = &g.hostname {
            spec.hostname = pattern.replace("{n}", &(in_group + 1).to_string()).replace("{user}", &spec.primary_user);
        }
        spec
    }
}

/// `"14.8:3"` → (`"14.8"`, 3); no weight is 1.
fn version_weight(s: &str) -> Result<(&str, u32), String> {
    let (v, w) = match s.split_once(':') {
        Some((v, w)) => (v.trim(), w.trim().parse::<u32>().map_err(|_| format!("bad weight in {s:?}"))?),
        None => (s.trim(), 1),
    };
    if v.is_empty() || !v.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("{s:?} is not a version prefix like 13, 14.8 or 26.6.1"));
    }
    Ok((v, w))
}

/// True if `version` is `prefix` or starts with `prefix.` (so `13` matches `13.7.8`, not `130`).
fn version_matches(version: &str, prefix: &str) -> bool {
    version == prefix || version.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.'))
}

fn major(version: &str) -> u32 {
    version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or(0)
}

fn pick_weighted<'a>(rng: &mut impl Rng, items: &[(&'a str, u32)]) -> Option<&'a str> {
    let total: u32 = items.iter().map(|i| i.1).sum();
    if total == 0 {
        return None;
    }
    let mut x = rng.random_range(0..total);
    for (v, w) in items {
        if x < *w {
            return Some(v);
        }
        x -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(toml: &str) -> Scenario {
        let s: Scenario = toml::from_str(toml).unwrap();
        s.check().unwrap();
        s
    }

    #[test]
    fn shares_split_hosts_exactly() {
        let s = scenario("[[group]]\nname='a'\nshare=1\n[[group]]\nname='b'\nshare=2\n[[group]]\nname='c'\nshare=1\n");
        let a = s.assign(10);
        assert_eq!(a.len(), 10);
        let count = |g| a.iter().filter(|x| x.0 == g).count();
        assert_eq!((count(0), count(1), count(2)), (3, 5, 2));
        assert_eq!(a[3], (1, 0), "groups are contiguous and indexed from 0");
        assert_eq!(s.assign(0), vec![]);
    }

    #[test]
    fn groups_shape_hosts() {
        let s = scenario(
            r#"
            [[group]]
            name = "kiosks"
            hostname = "kiosk-{n}.corp"
            macos = ["13"]
            santa = "2025.6"
            users = ["kiosk"]
            user_groups = ["kiosk-users"]
            serials = ["C02KIOSK0001"]
            "#,
        );
        for i in 0..20 {
            let spec = s.host_spec(7, i, 0, i);
            assert_eq!(spec.hostname, format!("kiosk-{}.corp", i + 1));
            assert!(spec.os_version.starts_with("13."), "{}", spec.os_version);
            assert!(fleet::model_runs(&spec.model, 13), "{} cannot run macOS 13", spec.model);
            assert_eq!(spec.generation, Generation::from_name("2025.6").unwrap());
            assert_eq!((spec.primary_user.as_str(), spec.groups.clone()), ("kiosk", vec!["kiosk-users".to_owned()]));
            let host = fleet::Host::from_spec(&spec).expect("documents still parse");
            assert_eq!(host.device.os_version, spec.os_version);
        }
        assert_eq!(s.host_spec(7, 0, 0, 0).serial, "C02KIOSK0001");
        assert_ne!(s.host_spec(7, 1, 0, 1).serial, "C02KIOSK0001");
    }

    #[test]
    fn mistakes_name_the_group_and_field() {
        let bad =
            |t: &str| toml::from_str::<Scenario>(t).map_err(|e| e.to_string()).and_then(|s| s.check()).unwrap_err();
        assert!(
            bad("[[group]]\nname='k'\nmacos=['11']\n").contains("group \"k\": macos: no known release matches \"11\"")
        );
        assert!(bad("[[group]]\nname='k'\nsanta='1999.1'\n").contains("santa: unknown generation"));
        assert!(bad("[[group]]\nname='k'\nshare=0\n").contains("share"));
        assert!(bad("[[group]]\nname='k'\n[[group]]\nname='k'\n").contains("unique"));
        assert!(bad("[[group]]\nname='k'\nmacoss=['13']\n").contains("unknown field"));
        assert!(bad("hosts = 3\n").contains("group"));
        let s = scenario("[[group]]\nname='k'\nblocked=['nope']\n");
        let e = s.software(&Catalog::new(1)).unwrap_err();
        assert!(e.contains("unknown binary \"nope\"") && e.contains("Slack"), "{e}");
    }

    #[test]
    fn shipped_scenarios_load_and_resolve() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            s.software(&Catalog::new(1)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
        assert!(n >= 3, "one scenario per example plugin");
    }

    #[test]
    fn software_resolves_names_and_signing_ids() {
        let s = scenario("[[group]]\nname='k'\nruns=['Slack']\nblocked=['BJ4HAAB9B3:us.zoom.xos']\n");
        let catalog = Catalog::new(1);
        let sw = s.software(&catalog).unwrap()[0].clone().unwrap();
        assert_eq!(sw.runs.len(), 4, "both versions of each app");
        assert_eq!(sw.blocked.len(), 2);
        assert!(sw.blocked.iter().all(|&i| catalog.binaries[i].name == "zoom.us"));
        assert!(version_matches("13.7.8", "13") && !version_matches("130.1", "13") && version_matches("14.8", "14.8"));
    }
}
