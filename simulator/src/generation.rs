//! Santa client generations the simulator can emulate (reference §6.1), and the behaviour
//! switches each implies (§10.4). Only this module decides "which generation does what".

use dasher_sdk::version::SantaVersion;
use rand::Rng;

/// A client generation: one representative release per distinct wire behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Generation {
    /// google/santa 2023.6: legacy JSON, empty postflight body, `clean_sync` only (deletes all).
    Gs2023_6,
    /// google/santa 2024.5: legacy JSON, `sync_type`, counts in postflight.
    Gs2024_5,
    /// google/santa 2024.6: proto-JSON with proto field names (`serial_number`), octet-stream,
    /// uint64 counters as strings.
    Gs2024_6,
    /// google/santa 2024.7: `serial_num` restored; still octet-stream and string counters.
    Gs2024_7,
    /// NPS 2025.6: proto-JSON, postflight `syncType`, `sipStatus`, no `rulesHash`; retries every non-200.
    Nps2025_6,
    /// NPS 2026.7: current client (`rulesHash`, no retry on non-transient 4xx).
    Nps2026_7,
}

impl Generation {
    /// Every generation, oldest first.
    pub const ALL: [Generation; 6] = [
        Generation::Gs2023_6,
        Generation::Gs2024_5,
        Generation::Gs2024_6,
        Generation::Gs2024_7,
        Generation::Nps2025_6,
        Generation::Nps2026_7,
    ];

    /// The short name used on the command line (`2024.6`).
    pub fn name(self) -> &'static str {
        match self {
            Generation::Gs2023_6 => "2023.6",
            Generation::Gs2024_5 => "2024.5",
            Generation::Gs2024_6 => "2024.6",
            Generation::Gs2024_7 => "2024.7",
            Generation::Nps2025_6 => "2025.6",
            Generation::Nps2026_7 => "2026.7",
        }
    }

    /// Parses a short name.
    pub fn from_name(s: &str) -> Option<Generation> {
        Generation::ALL.into_iter().find(|g| g.name() == s.trim())
    }

    /// The release.
    pub fn version(self) -> SantaVersion {
        SantaVersion::parse(self.name()).expect("generation names are versions")
    }

    /// A `CFBundleVersion` like the generation's clients send (`2024.6.655965194` Google-era,
    /// `2026.7.203` NPS).
    pub fn bundle_version(self, build: u32) -> String {
        if self.is_nps() {
            format!("{}.{build}", self.name())
        } else {
            format!("{}.{}", self.name(), 655_000_000 + build)
        }
    }

    /// North Pole Security release (≥ 2024.10).
    pub fn is_nps(self) -> bool {
        self.version() >= SantaVersion::new(2024, 10)
    }

    /// Protobuf-JSON on the wire (≥ 2024.6).
    pub fn is_proto_era(self) -> bool {
        self.version().is_proto_era()
    }

    /// True if the version is at least `y.r`.
    pub fn at_least(self, y: u32, r: u32) -> bool {
        self.version() >= SantaVersion::new(y, r)
    }

    /// Parses a mix like `2026.7:70,2024.5:10,legacy` (weight defaults to 1; `all` = every generation).
    pub fn parse_mix(s: &str) -> Result<Vec<(Generation, u32)>, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = match part.split_once(':') {
                Some((n, w)) => (n, w.trim().parse::<u32>().map_err(|_| format!("bad weight in {part:?}"))?),
                None => (part, 1),
            };
            if name == "all" {
                out.extend(Generation::ALL.iter().map(|g| (*g, w)));
                continue;
            }
            let g = Generation::from_name(name).ok_or_else(|| {
                let known: Vec<_> = Generation::ALL.iter().map(|g| g.name()).collect();
                format!("unknown generation {name:?} (known: {})", known.join(", "))
            })?;
            out.push((g, w));
        }
        if out.is_empty() || out.iter().all(|(_, w)| *w == 0) {
            return Err("empty generation mix".into());
        }
        Ok(out)
    }

    /// Picks a generation from a weighted mix.
    pub fn pick_weighted(rng: &mut impl Rng, mix: &[(Generation, u32)]) -> Generation {
        let total: u32 = mix.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return Generation::Nps2026_7;
        }
        let mut x = rng.random_range(0..total);
        for (g, w) in mix {
            if x < *w {
                return *g;
            }
            x -= w;
        }
        Generation::Nps2026_7
    }

    /// Per-request retry policy: stop early on non-transient 4xx (NPS ≥ 2026.4, §2.6).
    pub fn stops_on_4xx(self) -> bool {
        self.at_least(2026, 4)
    }

    /// Back-off before attempt `n` (2-based): `2^n` s since 2023.7, `2n` s before (§2.6).
    pub fn backoff_secs(self, attempt: u32) -> u64 {
        if self.at_least(2023, 7) { 1u64 << attempt } else { u64::from(attempt) * 2 }
    }

    /// Understands `sync_type` (≥ 2024.1); older clients only read `clean_sync`.
    pub fn reads_sync_type(self) -> bool {
        self.at_least(2024, 1)
    }
}

impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_generation_mixes() {
        assert_eq!(Generation::parse_mix("2026.7").unwrap(), [(Generation::Nps2026_7, 1)]);
        assert_eq!(
            Generation::parse_mix("2026.7:70, 2024.6:5").unwrap(),
            [(Generation::Nps2026_7, 70), (Generation::Gs2024_6, 5)]
        );
        assert_eq!(Generation::parse_mix("all").unwrap().len(), 6);
        assert!(Generation::parse_mix("2019.1").is_err());
        assert!(Generation::parse_mix("2026.7:x").is_err());
        assert!(Generation::parse_mix("").is_err());
        assert_eq!(Generation::Gs2024_6.bundle_version(1), "2024.6.655000001");
        assert_eq!(Generation::Nps2026_7.bundle_version(203), "2026.7.203");
        assert_eq!((1..=4).map(|n| Generation::Nps2026_7.backoff_secs(n + 1)).collect::<Vec<_>>(), [4, 8, 16, 32]);
    }
}
