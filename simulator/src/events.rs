//! The local decision engine: simulated executions of realistic binaries (paths, signing
//! chains, Team IDs and signing IDs from fleet-data §4) decided against a host's rules and
//! mode, producing the events a real client stores and uploads (§5.4 of the protocol).

use crate::ruledb::RuleDb;
use dasher_sdk::domain::RuleKey;
use dasher_sdk::wire::{Certificate, Decision, EntitlementInfo, Event, Policy, RuleType, SigningStatus};
use rand::Rng;
use std::sync::Arc;

/// Apple Root CA (fleet-data §4.3).
fn apple_root() -> Certificate {
    Certificate {
        sha256: "b0b1730ecbc7ff4505142c49f1295e6eda6bcaed7e2c68c5be91b5a11001f024".into(),
        cn: "Apple Root CA".into(),
        org: "Apple Inc.".into(),
        ou: "Apple Certification Authority".into(),
        valid_from: 1146001236,
        valid_until: 2054670036,
    }
}

fn platform_chain() -> Vec<Certificate> {
    vec![
        Certificate {
            sha256: "d84db96af8c2e60ac4c851a21ec460f6f84e0235beb17d24a78712b9b021ed57".into(),
            cn: "Software Signing".into(),
            org: "Apple Inc.".into(),
            ou: "Apple Software".into(),
            valid_from: 1603996358,
            valid_until: 1792863581,
        },
        Certificate {
            sha256: "5bdab1288fc16892fef50c658db54f1e2e19cf8f71cc55f77de2b95e051e2562".into(),
            cn: "Apple Code Signing Certification Authority".into(),
            org: "Apple Inc.".into(),
            ou: "Apple Certification Authority".into(),
            valid_from: 1319477981,
            valid_until: 1792863581,
        },
        apple_root(),
    ]
}

fn developer_id_chain(org: &str, team: &str, leaf_sha: String) -> Vec<Certificate> {
    vec![
        Certificate {
            sha256: leaf_sha,
            cn: format!("Developer ID Application: {org} ({team})"),
            org: org.into(),
            ou: team.into(),
            valid_from: 1762280530,
            valid_until: 1920046929,
        },
        Certificate {
            sha256: "f16cd3c54c7f83cea4bf1a3e6a0819c8aaa8e4a1528fd144715f350643d2df3a".into(),
            cn: "Developer ID Certification Authority".into(),
            org: "Apple Inc.".into(),
            ou: "G2".into(),
            valid_from: 1632336910,
            valid_until: 1947369600,
        },
        apple_root(),
    ]
}

/// `(org, team id, bundle id, app dir, executable)` — Team IDs verified in fleet-data §4.4.
const VENDORS: &[(&str, &str, &str, &str, &str)] = &[
    ("Google LLC", "EQHXZ8M8AV", "com.google.Chrome", "/Applications/Google Chrome.app", "Google Chrome"),
    ("Microsoft Corporation", "UBF8T346G9", "com.microsoft.VSCode", "/Applications/Visual Studio Code.app", "Electron"),
    ("Zoom Video Communications, Inc.", "BJ4HAAB9B3", "us.zoom.xos", "/Applications/zoom.us.app", "zoom.us"),
    ("Slack Technologies, Inc.", "BQR82RBBHL", "com.tinyspeck.slackmacgap", "/Applications/Slack.app", "Slack"),
    ("Mozilla Corporation", "43AQ936H96", "org.mozilla.firefox", "/Applications/Firefox.app", "firefox"),
    ("Docker Inc", "9BNSXJN65R", "com.docker.docker", "/Applications/Docker.app", "Docker Desktop"),
    ("Spotify", "2FNC3A47ZF", "com.spotify.client", "/Applications/Spotify.app", "Spotify"),
    ("Figma, Inc.", "T8RA8NE3B7", "com.figma.Desktop", "/Applications/Figma.app", "Figma"),
    ("Dynalist Inc.", "6JSW4SJWN9", "md.obsidian", "/Applications/Obsidian.app", "Obsidian"),
    ("North Pole Security, Inc.", "ZMCG7MLDV9", "com.northpolesec.santa", "/Applications/Santa.app", "Santa"),
    ("Discord, Inc.", "53Q6R32WPB", "com.hnc.Discord", "/Applications/Discord.app", "Discord"),
    ("Brave Software, Inc.", "KL8N8XSYF4", "com.brave.Browser", "/Applications/Brave Browser.app", "Brave Browser"),
    ("Raycast Technologies Inc.", "SY64MV22J9", "com.raycast.macos", "/Applications/Raycast.app", "Raycast"),
    ("GitHub", "VEKTX9H2N7", "com.github.GitHubClient", "/Applications/GitHub Desktop.app", "GitHub Desktop"),
];

const PLATFORM: &[&str] = &[
    "/usr/bin/yes",
    "/usr/bin/curl",
    "/usr/bin/python3",
    "/usr/bin/git",
    "/usr/bin/ssh",
    "/bin/ls",
    "/bin/zsh",
    "/usr/bin/osascript",
];
const UNSIGNED: &[&str] =
    &["kubectl-neat_darwin_arm64", "terraform", "ngrok", "gh_2.63.0_macOS_arm64", "jq-macos-arm64"];

/// A binary some host may execute.
#[derive(Clone, Debug)]
pub struct Binary {
    /// Directory.
    pub dir: String,
    /// File name.
    pub name: String,
    /// SHA-256.
    pub sha256: String,
    /// Team ID (Developer ID only).
    pub team_id: Option<String>,
    /// Signing ID.
    pub signing_id: Option<String>,
    /// CD hash.
    pub cdhash: Option<String>,
    /// Leaf → root.
    pub chain: Vec<Certificate>,
    /// Signing status.
    pub status: SigningStatus,
    /// `csFlags`.
    pub cs_flags: u32,
    /// `(bundle id, bundle path, version)` for app binaries.
    pub bundle: Option<(String, String, String)>,
    /// Bundle hash and number of binaries in the bundle.
    pub bundle_hash: Option<(String, u32)>,
}

fn hex(rng: &mut impl Rng, n: usize) -> String {
    (0..n).map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0')).collect()
}

/// The fleet's software catalog (shared by every host; deterministic per seed).
#[derive(Debug)]
pub struct Catalog {
    /// All binaries.
    pub binaries: Vec<Binary>,
}

impl Catalog {
    /// Builds the catalog for `seed`.
    pub fn new(seed: u64) -> Arc<Catalog> {
        let mut rng = crate::fleet::rng_for(seed, u64::MAX);
        let mut binaries = Vec::new();
        for path in PLATFORM {
            let (dir, name) = path.rsplit_once('/').unwrap_or(("/", path));
            binaries.push(Binary {
                dir: dir.into(),
                name: name.into(),
                sha256: hex(&mut rng, 64),
                team_id: None,
                signing_id: Some(format!("platform:com.apple.{name}")),
                cdhash: Some(hex(&mut rng, 40)),
                chain: platform_chain(),
                status: SigningStatus::Production,
                cs_flags: 603980545,
                bundle: None,
                bundle_hash: None,
            });
        }
        for (org, team, bundle_id, app, exe) in VENDORS {
            let leaf = hex(&mut rng, 64);
            for version in ["1.0", "1.1"] {
                binaries.push(Binary {
                    dir: format!("{app}/Contents/MacOS"),
                    name: (*exe).into(),
                    sha256: hex(&mut rng, 64),
                    team_id: Some((*team).into()),
                    signing_id: Some(format!("{team}:{bundle_id}")),
                    cdhash: Some(hex(&mut rng, 40)),
                    chain: developer_id_chain(org, team, leaf.clone()),
                    status: SigningStatus::Production,
                    cs_flags: 536937217,
                    bundle: Some(((*bundle_id).into(), (*app).into(), version.into())),
                    bundle_hash: Some((hex(&mut rng, 64), rng.random_range(3..40))),
                });
            }
        }
        for name in UNSIGNED {
            let adhoc = rng.random_bool(0.5);
            binaries.push(Binary {
                dir: "/Users/jdoe/Downloads".into(),
                name: (*name).into(),
                sha256: hex(&mut rng, 64),
                team_id: None,
                signing_id: None,
                cdhash: adhoc.then(|| hex(&mut rng, 40)),
                chain: Vec::new(),
                status: if adhoc { SigningStatus::Adhoc } else { SigningStatus::Unsigned },
                cs_flags: if adhoc { 537001987 } else { 0 },
                bundle: None,
                bundle_hash: None,
            });
        }
        Arc::new(Catalog { binaries })
    }
}

/// Settings the decision engine depends on (synced from the server, applied at postflight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineSettings {
    /// LOCKDOWN (true) or MONITOR.
    pub lockdown: bool,
    /// `enable_all_event_upload`.
    pub all_events: bool,
    /// `disable_unknown_event_upload`.
    pub no_unknown_events: bool,
    /// `enable_bundles`.
    pub bundles: bool,
}

/// Decides an execution (rule precedence CDHASH → BINARY → SIGNINGID → CERTIFICATE → TEAMID
/// → mode, fleet-data §4.1). SIGNINGID/TEAMID rules only match production-signed code.
pub fn decide(db: &RuleDb, b: &Binary, lockdown: bool) -> Decision {
    let production = b.status == SigningStatus::Production;
    let lookups: [(RuleType, Option<String>, Decision, Decision); 5] = [
        (RuleType::CdHash, b.cdhash.clone(), Decision::AllowCdHash, Decision::BlockCdHash),
        (RuleType::Binary, Some(b.sha256.clone()), Decision::AllowBinary, Decision::BlockBinary),
        (
            RuleType::SigningId,
            b.signing_id.clone().filter(|_| production),
            Decision::AllowSigningId,
            Decision::BlockSigningId,
        ),
        (
            RuleType::Certificate,
            b.chain.first().map(|c| c.sha256.clone()),
            Decision::AllowCertificate,
            Decision::BlockCertificate,
        ),
        (RuleType::TeamId, b.team_id.clone().filter(|_| production), Decision::AllowTeamId, Decision::BlockTeamId),
    ];
    for (rule_type, id, allow, block) in lookups {
        let Some(identifier) = id else { continue };
        if let Some(rule) = db.get(&RuleKey { rule_type, identifier }) {
            return match rule.policy {
                Policy::Allowlist | Policy::AllowlistCompiler => allow,
                Policy::Cel => allow, // CEL is not evaluated by the simulator; treated as allow
                _ => block,
            };
        }
    }
    if lockdown { Decision::BlockUnknown } else { Decision::AllowUnknown }
}

/// Whether santad stores (and so uploads) an event for `d` (§5.4).
pub fn is_uploaded(d: Decision, s: EngineSettings) -> bool {
    s.all_events || d.is_block() || (d == Decision::AllowUnknown && !s.no_unknown_events)
}

/// Builds the event for an execution of `b` by `user` at `now` (Unix seconds).
pub fn event_for(b: &Binary, d: Decision, user: &str, now: f64, rng: &mut impl Rng, s: EngineSettings) -> Event {
    let mut e = Event {
        file_sha256: b.sha256.clone(),
        file_path: b.dir.clone(),
        file_name: b.name.clone(),
        executing_user: user.into(),
        execution_time: (now * 1e6).round() / 1e6,
        logged_in_users: vec![user.into()],
        current_sessions: vec![format!("{user}@console"), format!("{user}@ttys00{}", rng.random_range(0..4))],
        decision: d as i32,
        pid: rng.random_range(300..99999),
        ppid: 1,
        parent_name: "launchd".into(),
        team_id: b.team_id.clone().unwrap_or_default(),
        signing_id: b.signing_id.clone().unwrap_or_default(),
        cdhash: b.cdhash.clone().unwrap_or_default(),
        signing_chain: b.chain.clone(),
        entitlement_info: Some(EntitlementInfo { entitlements_filtered: Some(false), entitlements: Vec::new() }),
        cs_flags: b.cs_flags,
        signing_status: b.status as i32,
        ..Default::default()
    };
    if b.bundle.is_none() {
        e.ppid = rng.random_range(300..99999);
        e.parent_name = "zsh".into();
    }
    if let Some((id, path, version)) = &b.bundle {
        e.file_bundle_id = id.clone();
        e.file_bundle_path = path.clone();
        e.file_bundle_executable_rel_path = format!("Contents/MacOS/{}", b.name);
        e.file_bundle_name = b.name.clone();
        e.file_bundle_version = version.clone();
        e.file_bundle_version_string = version.clone();
        if s.bundles
            && let Some((hash, count)) = &b.bundle_hash
        {
            e.file_bundle_hash = hash.clone();
            e.file_bundle_binary_count = *count;
            e.file_bundle_hash_millis = rng.random_range(50..2000);
        }
    }
    e
}

/// The `BUNDLE_BINARY` events for a bundle the server asked about (§5.4): one per binary, no
/// `execution_time`.
pub fn bundle_binary_events(b: &Binary, rng: &mut impl Rng) -> Vec<Event> {
    let Some((hash, count)) = &b.bundle_hash else { return Vec::new() };
    (0..*count)
        .map(|i| Event {
            file_sha256: hex(rng, 64),
            file_path: format!(
                "{}/Contents/Frameworks/Helper{i}.app/Contents/MacOS",
                b.bundle.as_ref().map_or("", |x| x.1.as_str())
            ),
            file_name: format!("Helper{i}"),
            decision: Decision::BundleBinary as i32,
            file_bundle_hash: hash.clone(),
            file_bundle_binary_count: *count,
            team_id: b.team_id.clone().unwrap_or_default(),
            signing_id: b.signing_id.clone().map(|s| format!("{s}.helper{i}")).unwrap_or_default(),
            signing_chain: b.chain.clone(),
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruledb::{Cleanup, validate_wire_rule};
    use dasher_sdk::wire;

    #[test]
    fn decisions_follow_rule_precedence_and_mode() {
        let cat = Catalog::new(1);
        let chrome = cat.binaries.iter().find(|b| b.name == "Google Chrome").unwrap();
        let mut db = RuleDb::default();
        assert_eq!(decide(&db, chrome, false), Decision::AllowUnknown);
        assert_eq!(decide(&db, chrome, true), Decision::BlockUnknown);
        let rule = |id: &str, t: RuleType, p: Policy| {
            validate_wire_rule(&wire::Rule {
                identifier: id.into(),
                rule_type: t as i32,
                policy: p as i32,
                ..Default::default()
            })
            .unwrap()
        };
        db.apply(&[rule("EQHXZ8M8AV", RuleType::TeamId, Policy::Allowlist)], Cleanup::Normal);
        assert_eq!(decide(&db, chrome, true), Decision::AllowTeamId);
        db.apply(&[rule(&chrome.sha256, RuleType::Binary, Policy::Blocklist)], Cleanup::Normal);
        assert_eq!(decide(&db, chrome, true), Decision::BlockBinary, "BINARY beats TEAMID");
        let unsigned = cat.binaries.iter().find(|b| b.status == SigningStatus::Unsigned).unwrap();
        assert!(unsigned.chain.is_empty() && unsigned.team_id.is_none());
        let s = EngineSettings { lockdown: false, all_events: false, no_unknown_events: false, bundles: true };
        assert!(is_uploaded(Decision::AllowUnknown, s));
        assert!(!is_uploaded(Decision::AllowTeamId, s));
        assert!(is_uploaded(Decision::BlockBinary, EngineSettings { no_unknown_events: true, ..s }));
    }
}
