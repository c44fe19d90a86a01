//! The `[ui]` section: the web console (see `crate::ui`).

use serde::{Deserialize, Serialize};

/// Longest session the console allows (`ui.session_ttl_secs`), 7 days.
pub const MAX_SESSION_TTL_SECS: u64 = 7 * 86_400;

/// The `[ui]` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiSettings {
    /// Serve the web console at `/ui/` (default true).
    pub enabled: bool,
    /// Seconds a console sign-in lasts (default 28800, 8 hours; at most 7 days).
    pub session_ttl_secs: u64,
    /// Seconds between refreshes of the overview's fleet snapshot (default 60).
    pub overview_refresh_secs: u64,
    /// Hosts whose last preflight is older than this many days are listed as stale on the
    /// overview (default 7).
    pub stale_after_days: u64,
    /// OpenID Connect sign-in (`[ui.oidc]`); off unless set.
    pub oidc: Option<crate::oidc::OidcSettings>,
}

impl Default for UiSettings {
    fn default() -> Self {
        UiSettings {
            enabled: true,
            session_ttl_secs: 28_800,
            overview_refresh_secs: 60,
            stale_after_days: 7,
            oidc: None,
        }
    }
}

impl UiSettings {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), String> {
        if self.session_ttl_secs < 60 || self.session_ttl_secs > MAX_SESSION_TTL_SECS {
            return Err(format!(
                "ui.session_ttl_secs must be between 60 and {MAX_SESSION_TTL_SECS} (7 days), not {}",
                self.session_ttl_secs
            ));
        }
        if self.overview_refresh_secs < 5 || self.overview_refresh_secs > 86_400 {
            return Err(format!(
                "ui.overview_refresh_secs must be between 5 and 86400, not {}",
                self.overview_refresh_secs
            ));
        }
        if self.stale_after_days == 0 || self.stale_after_days > 3650 {
            return Err(format!("ui.stale_after_days must be between 1 and 3650, not {}", self.stale_after_days));
        }
        if let Some(oidc) = &self.oidc {
            oidc.validate()?;
        }
        Ok(())
    }
}
