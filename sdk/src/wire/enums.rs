//! The protocol's enums (`santa.sync.v1`), with their proto numbers, canonical names and the
//! aliases real clients and servers use (reference §4.2, §4.4, §5.2).
//!
//! Typed `Deserialize` is strict (used by the admin API and config: an unknown name is an
//! error that names it). Message fields hold the raw `i32` like prost does and go through
//! [`super::lenient`], which maps unknown names to "unset" the way Santa's own parser does.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A protocol enum: numbers, canonical wire names and accepted aliases.
pub trait WireEnum: Sized + Copy + 'static {
    /// The enum's name in messages, e.g. `"Policy"`.
    const TYPE_NAME: &'static str;
    /// The value with this proto number, if any.
    fn from_number(n: i32) -> Option<Self>;
    /// The value with this exact-case name or alias, if any.
    fn from_name(name: &str) -> Option<Self>;
    /// The name Dasher emits; understood by every client generation.
    fn name(self) -> &'static str;
    /// The proto number.
    fn number(self) -> i32;
    /// Every accepted name, for error messages.
    fn names() -> &'static [&'static str];
}

macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $num:literal => $wire:literal $(| $alias:literal)* ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
        #[repr(i32)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $num ),+
        }

        impl WireEnum for $name {
            const TYPE_NAME: &'static str = stringify!($name);
            fn from_number(n: i32) -> Option<Self> {
                match n {
                    $( $num => Some(Self::$variant), )+
                    _ => None,
                }
            }
            fn from_name(name: &str) -> Option<Self> {
                match name {
                    $( $wire $(| $alias)* => Some(Self::$variant), )+
                    _ => None,
                }
            }
            fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => $wire, )+
                }
            }
            fn number(self) -> i32 {
                self as i32
            }
            fn names() -> &'static [&'static str] {
                &[$( $wire $(, $alias)* ),+]
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownEnumName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <Self as WireEnum>::from_name(s).ok_or_else(|| UnknownEnumName::new::<Self>(s))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A name that is not one of an enum's names or aliases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {type_name} {name:?} (expected one of: {expected})")]
pub struct UnknownEnumName {
    /// The enum, e.g. `RuleType`.
    pub type_name: &'static str,
    /// The name that was given.
    pub name: String,
    /// The accepted names, comma-separated.
    pub expected: String,
}

impl UnknownEnumName {
    fn new<E: WireEnum>(name: &str) -> Self {
        UnknownEnumName {
            type_name: E::TYPE_NAME,
            name: name.chars().take(64).collect(),
            expected: E::names().join(", "),
        }
    }
}

wire_enum! {
    /// How a client treats executions that match no rule.
    ClientMode {
        /// Not set (proto default).
        Unknown = 0 => "UNKNOWN_CLIENT_MODE",
        /// Allow and report.
        Monitor = 1 => "MONITOR",
        /// Block.
        Lockdown = 2 => "LOCKDOWN",
        /// Block, but the user may approve by authenticating (NPS ≥ 2024.11).
        Standalone = 3 => "STANDALONE",
    }
}

wire_enum! {
    /// How the client applies downloaded rules (§5.2).
    SyncType {
        /// Not set; the client treats it as NORMAL.
        Unspecified = 0 => "SYNC_TYPE_UNSPECIFIED",
        /// Apply rules on top of the existing ones.
        Normal = 1 => "NORMAL" | "normal",
        /// Delete non-transitive rules first.
        Clean = 2 => "CLEAN" | "clean",
        /// Delete all rules first.
        CleanAll = 3 => "CLEAN_ALL" | "clean_all",
        /// Treated as NORMAL by current clients.
        CleanStandalone = 4 => "CLEAN_STANDALONE",
    }
}

wire_enum! {
    /// File-access-authorization override. The emitted names are the legacy spellings that
    /// every generation understands (§4.2 #15).
    FileAccessAction {
        /// Not set.
        Unspecified = 0 => "FILE_ACCESS_ACTION_UNSPECIFIED",
        /// Apply the FAA policy as written.
        None = 1 => "None" | "NONE",
        /// Log denials but allow.
        AuditOnly = 2 => "AuditOnly" | "AUDIT_ONLY",
        /// Take no action.
        Disable = 3 => "Disable" | "DISABLE",
    }
}

wire_enum! {
    /// What a client decided about an execution.
    Decision {
        /// Unknown (legacy clients send `"UNKNOWN"`).
        Unknown = 0 => "DECISION_UNKNOWN" | "UNKNOWN",
        /// Allowed in MONITOR mode, no rule matched.
        AllowUnknown = 1 => "ALLOW_UNKNOWN",
        /// Allowed by a BINARY rule.
        AllowBinary = 2 => "ALLOW_BINARY",
        /// Allowed by a CERTIFICATE rule.
        AllowCertificate = 3 => "ALLOW_CERTIFICATE",
        /// Allowed by scope (path regex, scripts).
        AllowScope = 4 => "ALLOW_SCOPE",
        /// Allowed by a TEAMID rule.
        AllowTeamId = 5 => "ALLOW_TEAMID",
        /// Allowed by a SIGNINGID rule.
        AllowSigningId = 6 => "ALLOW_SIGNINGID",
        /// Allowed by a CDHASH rule.
        AllowCdHash = 7 => "ALLOW_CDHASH",
        /// Blocked in LOCKDOWN mode, no rule matched.
        BlockUnknown = 8 => "BLOCK_UNKNOWN",
        /// Blocked by a BINARY rule.
        BlockBinary = 9 => "BLOCK_BINARY",
        /// Blocked by a CERTIFICATE rule.
        BlockCertificate = 10 => "BLOCK_CERTIFICATE",
        /// Blocked by scope.
        BlockScope = 11 => "BLOCK_SCOPE",
        /// Blocked by a TEAMID rule.
        BlockTeamId = 12 => "BLOCK_TEAMID",
        /// Blocked by a SIGNINGID rule.
        BlockSigningId = 13 => "BLOCK_SIGNINGID",
        /// Blocked by a CDHASH rule.
        BlockCdHash = 14 => "BLOCK_CDHASH",
        /// Not an execution: a binary of a bundle the server asked about.
        BundleBinary = 15 => "BUNDLE_BINARY",
        /// Defined, not emitted by current clients.
        BlockBinaryMismatch = 18 => "BLOCK_BINARY_MISMATCH",
        /// Allowed as a platform binary (NPS ≥ 2026.5).
        AllowPlatform = 19 => "ALLOW_PLATFORM",
    }
}

impl Decision {
    /// True for every block decision.
    pub fn is_block(self) -> bool {
        matches!(
            self,
            Decision::BlockUnknown
                | Decision::BlockBinary
                | Decision::BlockCertificate
                | Decision::BlockScope
                | Decision::BlockTeamId
                | Decision::BlockSigningId
                | Decision::BlockCdHash
                | Decision::BlockBinaryMismatch
        )
    }
}

wire_enum! {
    /// Code-signing status of an executable (NPS ≥ 2025.1).
    SigningStatus {
        /// Not set.
        Unspecified = 0 => "SIGNING_STATUS_UNSPECIFIED",
        /// Unsigned.
        Unsigned = 1 => "SIGNING_STATUS_UNSIGNED",
        /// Invalid signature.
        Invalid = 2 => "SIGNING_STATUS_INVALID",
        /// Ad-hoc signed.
        Adhoc = 3 => "SIGNING_STATUS_ADHOC",
        /// Development certificate.
        Development = 4 => "SIGNING_STATUS_DEVELOPMENT",
        /// Production certificate.
        Production = 5 => "SIGNING_STATUS_PRODUCTION",
    }
}

wire_enum! {
    /// A rule's policy (§4.4). Names are case-sensitive in every client generation.
    Policy {
        /// Not set; clients drop such rules.
        Unknown = 0 => "POLICY_UNKNOWN",
        /// Allow.
        Allowlist = 1 => "ALLOWLIST" | "WHITELIST",
        /// Allow, and allow files it creates when transitive rules are enabled.
        AllowlistCompiler = 2 => "ALLOWLIST_COMPILER" | "WHITELIST_COMPILER",
        /// Block with a dialog.
        Blocklist = 3 => "BLOCKLIST" | "BLACKLIST",
        /// Block silently.
        SilentBlocklist = 4 => "SILENT_BLOCKLIST" | "SILENT_BLACKLIST",
        /// Remove the rule with this identifier and type.
        Remove = 5 => "REMOVE",
        /// Decide with a CEL expression (NPS ≥ 2025.6).
        Cel = 6 => "CEL",
        /// Block without GUI notification (NPS ≥ 2026.6).
        SilentGuiBlocklist = 8 => "SILENT_GUI_BLOCKLIST",
        /// Block without TTY message (NPS ≥ 2026.6).
        SilentTtyBlocklist = 9 => "SILENT_TTY_BLOCKLIST",
    }
}

wire_enum! {
    /// What a rule's identifier names (§5.5).
    RuleType {
        /// Not set; clients drop such rules.
        Unknown = 0 => "RULETYPE_UNKNOWN",
        /// SHA-256 of a binary.
        Binary = 1 => "BINARY",
        /// SHA-256 of the leaf signing certificate.
        Certificate = 2 => "CERTIFICATE",
        /// 10-character Apple Team ID.
        TeamId = 3 => "TEAMID",
        /// `TEAMID:signing.id` or `platform:signing.id` (GS ≥ 2023.5).
        SigningId = 4 => "SIGNINGID",
        /// 40-hex code-directory hash (GS ≥ 2024.3).
        CdHash = 5 => "CDHASH",
    }
}

wire_enum! {
    /// File-access decision in a `FileAccessEvent` (NPS ≥ 2025.9).
    FileAccessDecision {
        /// Not set.
        Unspecified = 0 => "FILE_ACCESS_DECISION_UNSPECIFIED",
        /// Denied.
        Denied = 1 => "FILE_ACCESS_DECISION_DENIED",
        /// Denied: invalid signature.
        DeniedInvalidSignature = 2 => "FILE_ACCESS_DECISION_DENIED_INVALID_SIGNATURE",
        /// Would have been denied; audit only.
        AuditOnly = 3 => "FILE_ACCESS_DECISION_AUDIT_ONLY",
    }
}
