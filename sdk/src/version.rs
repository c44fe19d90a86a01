//! Santa client versions (`CFBundleVersion`, e.g. `2024.6.655965194`) and what each
//! generation understands (reference §6.1).

use std::fmt;

/// A Santa release, `YYYY.N`; pre-2022 `1.x`/`2021.x` versions compare as older than all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SantaVersion {
    /// Release year (or the major for `1.x`).
    pub year: u32,
    /// Release number within the year.
    pub release: u32,
}

impl SantaVersion {
    /// Builds a version.
    pub const fn new(year: u32, release: u32) -> Self {
        SantaVersion { year, release }
    }

    /// Parses `CFBundleVersion`: the year must be a number; the release is the leading
    /// digits of the second part (`2026.7-beta` is 2026.7), 0 when absent. An empty or
    /// unparseable string gives `None` (unknown client).
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('.');
        let year = parts.next()?.parse().ok()?;
        let release = parts
            .next()
            .and_then(|p| {
                let digits = p.bytes().take_while(u8::is_ascii_digit).count();
                p[..digits].parse().ok()
            })
            .unwrap_or(0);
        Some(SantaVersion { year, release })
    }

    /// Client speaks protobuf-JSON (google/santa ≥ 2024.6 and every NPS release).
    pub fn is_proto_era(self) -> bool {
        self >= Self::new(2024, 6)
    }
}

impl fmt::Display for SantaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.year, self.release)
    }
}

/// A macOS version, `major.minor.patch` (`14.6.1`; `15` is `15.0.0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacOsVersion {
    /// Major (`14` for Sonoma).
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl MacOsVersion {
    /// Builds a version.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        MacOsVersion { major, minor, patch }
    }

    /// Parses `14.6.1`, `15.0` or `26`; missing parts are 0. Anything else (empty, letters,
    /// more than three parts) is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('.');
        let mut next = |required: bool| match parts.next() {
            None if !required => Some(0),
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok(),
            _ => None,
        };
        let v = MacOsVersion { major: next(true)?, minor: next(false)?, patch: next(false)? };
        parts.next().is_none().then_some(v)
    }
}

impl fmt::Display for MacOsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Protocol features whose support depends on the client version (reference §6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// `SIGNINGID` rules (GS 2023.5).
    SigningIdRules,
    /// `CDHASH` rules (GS 2024.3).
    CdHashRules,
    /// `sync_type` in the preflight response (GS 2024.1); older clients only read `clean_sync`.
    SyncType,
    /// `STANDALONE` client mode (NPS 2024.11).
    StandaloneMode,
    /// `CEL` policy (NPS 2025.6).
    CelRules,
    /// `event_detail_url`/`event_detail_text` in preflight (NPS 2025.12).
    EventDetailSettings,
    /// `removable_media_policy` (NPS 2026.3).
    RemovableMediaPolicy,
    /// `SILENT_GUI_BLOCKLIST` / `SILENT_TTY_BLOCKLIST` policies (NPS 2026.6).
    SilentGuiTtyPolicies,
    /// Absent settings keep their value; absent bools are not "false" (GS 2023.7).
    AbsentMeansUnchanged,
    /// `rulesHash` in preflight and postflight (NPS 2025.7).
    RulesHash,
}

impl Feature {
    /// The first release with the feature.
    pub fn since(self) -> SantaVersion {
        match self {
            Feature::SigningIdRules => SantaVersion::new(2023, 5),
            Feature::CdHashRules => SantaVersion::new(2024, 3),
            Feature::SyncType => SantaVersion::new(2024, 1),
            Feature::StandaloneMode => SantaVersion::new(2024, 11),
            Feature::CelRules => SantaVersion::new(2025, 6),
            Feature::EventDetailSettings => SantaVersion::new(2025, 12),
            Feature::RemovableMediaPolicy => SantaVersion::new(2026, 3),
            Feature::SilentGuiTtyPolicies => SantaVersion::new(2026, 6),
            Feature::AbsentMeansUnchanged => SantaVersion::new(2023, 7),
            Feature::RulesHash => SantaVersion::new(2025, 7),
        }
    }
}

/// What the server knows about a client's version. An unknown version (`None`: empty or
/// unparseable `santa_version`) is treated as the oldest supported generation: it supports
/// no [`Feature`], so it is never sent a setting, mode or rule an old client would misread
/// (every generation sends `santa_version`, so a client without one is not a known Santa).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ClientCaps(pub Option<SantaVersion>);

impl ClientCaps {
    /// A client that supports every feature (e.g. the admin's view of a host that never
    /// said which version it runs).
    pub const EVERY_FEATURE: ClientCaps = ClientCaps(Some(SantaVersion::new(u32::MAX, u32::MAX)));

    /// From the preflight's `santa_version`.
    pub fn from_version_str(s: &str) -> Self {
        ClientCaps(SantaVersion::parse(s))
    }

    /// True when the client said which version it runs (in a form we could parse).
    pub fn is_known(self) -> bool {
        self.0.is_some()
    }

    /// Whether the client understands `feature`; an unknown version understands none.
    pub fn supports(self, feature: Feature) -> bool {
        self.0.is_some_and(|v| v >= feature.since())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macos_versions_parse_and_order() {
        assert_eq!(MacOsVersion::parse("14.6.1"), Some(MacOsVersion::new(14, 6, 1)));
        assert_eq!(MacOsVersion::parse("15"), Some(MacOsVersion::new(15, 0, 0)));
        assert_eq!(MacOsVersion::parse(" 13.7 "), Some(MacOsVersion::new(13, 7, 0)));
        for bad in ["", "14.", "fourteen", "14.6.1.2", "14.-1", "1.2b"] {
            assert_eq!(MacOsVersion::parse(bad), None, "{bad:?}");
        }
        assert!(MacOsVersion::parse("13.7.2").unwrap() < MacOsVersion::parse("14.0").unwrap());
        assert!(MacOsVersion::parse("14.10").unwrap() > MacOsVersion::parse("14.9.9").unwrap());
        assert_eq!(MacOsVersion::new(26, 1, 0).to_string(), "26.1.0");
    }

    #[test]
    fn parses_bundle_versions() {
        assert_eq!(SantaVersion::parse("2024.6.655965194"), Some(SantaVersion::new(2024, 6)));
        assert_eq!(SantaVersion::parse("2026.7"), Some(SantaVersion::new(2026, 7)));
        assert_eq!(SantaVersion::parse("1.13"), Some(SantaVersion::new(1, 13)));
        assert_eq!(SantaVersion::parse("2026.7-beta.1"), Some(SantaVersion::new(2026, 7)));
        assert_eq!(SantaVersion::parse("2026"), Some(SantaVersion::new(2026, 0)));
        assert_eq!(SantaVersion::parse(""), None);
        assert_eq!(SantaVersion::parse("   "), None);
        assert_eq!(SantaVersion::parse("banana"), None);
        assert_eq!(SantaVersion::parse("v2026.7"), None);
    }

    #[test]
    fn gates_features_by_version() {
        let old = ClientCaps::from_version_str("2023.10.1");
        assert!(old.supports(Feature::SigningIdRules));
        assert!(!old.supports(Feature::CdHashRules));
        assert!(!old.supports(Feature::SyncType));
        assert!(ClientCaps::EVERY_FEATURE.supports(Feature::SilentGuiTtyPolicies));
        assert!(!SantaVersion::new(2024, 5).is_proto_era());
        assert!(SantaVersion::new(2024, 10).is_proto_era());
    }

    /// Issue 11 item 9: an empty or garbage `santa_version` used to count as the newest
    /// client and was sent STANDALONE, silent TTY rules and `removable_media_policy`.
    #[test]
    fn unknown_versions_are_the_oldest_generation() {
        const EVERY: [Feature; 10] = [
            Feature::SigningIdRules,
            Feature::CdHashRules,
            Feature::SyncType,
            Feature::StandaloneMode,
            Feature::CelRules,
            Feature::EventDetailSettings,
            Feature::RemovableMediaPolicy,
            Feature::SilentGuiTtyPolicies,
            Feature::AbsentMeansUnchanged,
            Feature::RulesHash,
        ];
        for garbage in ["", " ", "banana", "santa", "-1.5", "\u{0}"] {
            let caps = ClientCaps::from_version_str(garbage);
            assert!(!caps.is_known(), "{garbage:?}");
            for f in EVERY {
                assert!(!caps.supports(f), "{garbage:?} must not get {f:?}");
            }
        }
        let oldest = ClientCaps::from_version_str("1.13");
        assert!(oldest.is_known());
        assert!(EVERY.iter().all(|f| !oldest.supports(*f)), "1.x supports nothing either");
        let current = ClientCaps::from_version_str("2026.7.1");
        assert!(EVERY.iter().all(|f| current.supports(*f)));
    }
}
