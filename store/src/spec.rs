//! [`StoreSpec`]: which engine and where, as one config string (`redb:PATH`, `sled:PATH`),
//! and [`open`]. Owns parsing and engine selection; must never create directories (the
//! caller decides where data lives).

use crate::kv::{RedbEngine, SledEngine};
use crate::kvstore::KvStore;
use crate::{Result, Store, StoreError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

/// An embedded engine and its path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSpec {
    /// redb single-file database (the default).
    Redb(PathBuf),
    /// sled database directory.
    Sled(PathBuf),
}

/// A store spec string that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid store {spec:?}: expected redb:PATH or sled:PATH")]
pub struct BadStoreSpec {
    /// The given string (truncated).
    pub spec: String,
}

impl StoreSpec {
    /// The path.
    pub fn path(&self) -> &std::path::Path {
        match self {
            StoreSpec::Redb(p) | StoreSpec::Sled(p) => p,
        }
    }
}

impl FromStr for StoreSpec {
    type Err = BadStoreSpec;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let bad = || BadStoreSpec { spec: s.chars().take(200).collect() };
        let (engine, path) = s.split_once(':').ok_or_else(bad)?;
        if path.is_empty() {
            return Err(bad());
        }
        match engine {
            "redb" => Ok(StoreSpec::Redb(path.into())),
            "sled" => Ok(StoreSpec::Sled(path.into())),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Redb(p) => write!(f, "redb:{}", p.display()),
            StoreSpec::Sled(p) => write!(f, "sled:{}", p.display()),
        }
    }
}

impl Serialize for StoreSpec {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StoreSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Opens (creating if needed) the store `spec` names. The parent directory must exist.
pub fn open(spec: &StoreSpec) -> Result<Arc<dyn Store>> {
    let path = spec.path();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        return Err(StoreError::Engine(format!(
            "cannot open store {spec}: directory {} does not exist",
            parent.display()
        )));
    }
    Ok(match spec {
        StoreSpec::Redb(p) => Arc::new(KvStore::new(RedbEngine::open(p)?)?),
        StoreSpec::Sled(p) => Arc::new(KvStore::new(SledEngine::open(p)?)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for s in ["redb:/var/lib/dasher/dasher.redb", "sled:data/sled", "redb:C:/x"] {
            let spec: StoreSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
            let json = serde_json::to_string(&spec).unwrap();
            assert_eq!(serde_json::from_str::<StoreSpec>(&json).unwrap(), spec);
        }
        assert_eq!("redb:x".parse::<StoreSpec>().unwrap(), StoreSpec::Redb("x".into()));
        for bad in ["", "redb", "redb:", "rocks:/x", "/x"] {
            assert!(bad.parse::<StoreSpec>().is_err(), "{bad}");
        }
    }
}
