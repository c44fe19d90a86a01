//! Reading and checking a component's `dasher:plugin` metadata section, before compiling.

use crate::error::LoadError;
use dasher_sdk::plugin::{CONTRACT, METADATA_SECTION, PluginMetadata};
use wasmparser::{Parser, Payload};

/// This server's version, compared with a plugin's `min_server_version`.
pub const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Parses the whole file with wasmparser and returns the `dasher:plugin` section: the last
/// one at the component's top level (written by `dasher plugin build`), else the first one
/// inside an embedded core module (written by `export_plugin!`). A truncated or corrupt file
/// fails here, before wasmtime sees it.
pub fn read_metadata(bytes: &[u8]) -> Result<PluginMetadata, LoadError> {
    let mut best: Option<(usize, &[u8])> = None;
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| LoadError::Corrupt(e.to_string()))?;
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::CustomSection(section) if section.name() == METADATA_SECTION => {
                let better = match best {
                    None => true,
                    Some((d, _)) => depth < d || (depth == 0 && d == 0),
                };
                if better {
                    best = Some((depth, section.data()));
                }
            }
            _ => {}
        }
    }
    let (_, data) = best.ok_or(LoadError::BadMetadata(format!(
        "no {METADATA_SECTION} section (build the plugin with dasher_sdk::export_plugin!)"
    )))?;
    serde_json::from_slice(data)
        .map_err(|e| LoadError::BadMetadata(format!("section {METADATA_SECTION} is not valid: {e}")))
}

/// `major.minor.patch`, pre-release suffixes ignored.
pub(crate) fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.trim().split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    Some((major, minor, patch))
}

/// The oldest contract minor (of major 0) this server still links: 0.2.0, whose `host`
/// interface lacks only the atomic kv imports of 0.3.0 (see `runtime/contract.rs`).
pub const OLDEST_CONTRACT_MINOR: u64 = 2;

/// Refuses plugins this server cannot run: a contract outside `dasher:plugin@0.2` ..= ours,
/// or a newer `min_server_version`. Messages name both versions.
pub fn check_compatible(meta: &PluginMetadata) -> Result<(), LoadError> {
    let ours = CONTRACT.rsplit_once('@').and_then(|(_, v)| parse_version(v)).expect("SDK contract is semver");
    let (pkg, theirs) = meta.contract.rsplit_once('@').unwrap_or((meta.contract.as_str(), ""));
    let theirs = parse_version(theirs);
    let compatible = pkg == "dasher:plugin"
        && theirs.is_some_and(|t| {
            if ours.0 == 0 {
                t.0 == 0 && (OLDEST_CONTRACT_MINOR..=ours.1).contains(&t.1)
            } else {
                t.0 == ours.0 && t.1 <= ours.1
            }
        });
    if !compatible {
        return Err(LoadError::Incompatible(format!(
            "plugin {} implements contract {}, this server implements {CONTRACT} and loads plugins built \
             for dasher:plugin@0.{OLDEST_CONTRACT_MINOR}.0 or newer; rebuild it with a matching dasher-sdk",
            meta.name, meta.contract
        )));
    }
    let needed = parse_version(&meta.min_server_version).ok_or_else(|| {
        LoadError::BadMetadata(format!("min_server_version {:?} is not a version", meta.min_server_version))
    })?;
    let server = parse_version(SERVER_VERSION).expect("crate version is semver");
    if needed > server {
        return Err(LoadError::Incompatible(format!(
            "plugin {} {} needs Dasher server {} or newer; this server is {SERVER_VERSION}",
            meta.name, meta.version, meta.min_server_version
        )));
    }
    if meta.name.is_empty()
        || meta.name.len() > 64
        || !meta.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
    {
        return Err(LoadError::BadMetadata(format!("plugin name {:?} must be 1-64 of [A-Za-z0-9_-]", meta.name)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(contract: &str) -> PluginMetadata {
        PluginMetadata {
            name: "p".into(),
            version: "1.0.0".into(),
            sdk_version: "0.1.0".into(),
            contract: contract.into(),
            hooks: vec![],
            min_server_version: "0.1.0".into(),
            settings_schema: None,
        }
    }

    #[test]
    fn contract_0_2_and_0_3_load_others_are_refused_naming_both() {
        for ok in ["dasher:plugin@0.2.0", "dasher:plugin@0.2.5", CONTRACT] {
            assert!(check_compatible(&meta(ok)).is_ok(), "{ok}");
        }
        for bad in ["dasher:plugin@0.1.0", "dasher:plugin@0.4.0", "dasher:plugin@1.0.0", "other:plugin@0.3.0", "x"] {
            let err = check_compatible(&meta(bad)).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains(CONTRACT) && err.contains("0.2.0 or newer"), "{err}");
        }
    }
}
