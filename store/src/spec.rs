//! [`StoreSpec`]: which engine and where, as one config string (`redb:PATH`, `sled:PATH`,
//! `postgres://USER@HOST:PORT/DB`), [`OpenOptions`] (engine tuning such as the page cache),
//! and [`open`] / [`connect`] (with `_with` variants taking options). Owns parsing and engine
//! selection; must never create directories (the caller decides where data lives) nor print a
//! database password (`Display` redacts it).

use crate::kv::{RedbEngine, SledEngine};
use crate::kvstore::KvStore;
use crate::postgres::{PgStore, PgUrl};
use crate::{Result, Store, StoreError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

/// A storage engine and where its data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSpec {
    /// redb single-file database (the default).
    Redb(PathBuf),
    /// sled database directory.
    Sled(PathBuf),
    /// A PostgreSQL database, which several Dasher replicas can share.
    Postgres(PgUrl),
}

/// A store spec string that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid store {spec:?}: {reason}")]
pub struct BadStoreSpec {
    /// The given string (truncated, password redacted).
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
}

const EXPECTED: &str = "expected redb:PATH, sled:PATH or postgres://USER@HOST:PORT/DB";

impl StoreSpec {
    /// The path of an embedded engine (`None` for a database server).
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            StoreSpec::Redb(p) | StoreSpec::Sled(p) => Some(p),
            StoreSpec::Postgres(_) => None,
        }
    }
}

impl FromStr for StoreSpec {
    type Err = BadStoreSpec;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return s.parse::<PgUrl>().map(StoreSpec::Postgres).map_err(|reason| BadStoreSpec {
                spec: crate::postgres::redact(s).chars().take(200).collect(),
                reason,
            });
        }
        let bad = || BadStoreSpec { spec: s.chars().take(200).collect(), reason: EXPECTED.to_owned() };
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
            StoreSpec::Postgres(url) => url.fmt(f),
        }
    }
}

impl Serialize for StoreSpec {
    /// The spec as written, password included (so a serialised config opens the same store).
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            StoreSpec::Postgres(url) => s.serialize_str(url.as_str()),
            _ => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for StoreSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Engine tuning applied when a store is opened. `Default` leaves every engine at its own
/// defaults (what [`open`] and [`connect`] use).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Page cache of an embedded engine in bytes (redb's cache size, sled's `cache_capacity`);
    /// `None` keeps the engine default (1 GiB for both). PostgreSQL ignores it.
    pub cache_bytes: Option<usize>,
}

/// Opens (creating if needed) the embedded store `spec` names with engine defaults. The parent
/// directory must exist. A PostgreSQL spec needs [`connect`] (it is asynchronous) and is an
/// error here.
pub fn open(spec: &StoreSpec) -> Result<Arc<dyn Store>> {
    open_with(spec, &OpenOptions::default())
}

/// [`open`] with engine tuning.
pub fn open_with(spec: &StoreSpec, options: &OpenOptions) -> Result<Arc<dyn Store>> {
    let Some(path) = spec.path() else {
        return Err(StoreError::Engine(format!("store {spec} is a database server: open it with connect()")));
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        return Err(StoreError::Engine(format!(
            "cannot open store {spec}: directory {} does not exist",
            parent.display()
        )));
    }
    Ok(match spec {
        StoreSpec::Redb(p) => Arc::new(KvStore::new(RedbEngine::open_with(p, options.cache_bytes)?)?),
        StoreSpec::Sled(p) => Arc::new(KvStore::new(SledEngine::open_with(p, options.cache_bytes)?)?),
        StoreSpec::Postgres(_) => unreachable!("handled above"),
    })
}

/// Opens any store: embedded engines as [`open`] does; for PostgreSQL, connects and brings
/// the schema up to date (safe while other replicas start at the same time).
pub async fn connect(spec: &StoreSpec) -> Result<Arc<dyn Store>> {
    connect_with(spec, &OpenOptions::default()).await
}

/// [`connect`] with engine tuning (which PostgreSQL ignores: its memory is the database
/// server's to configure).
pub async fn connect_with(spec: &StoreSpec, options: &OpenOptions) -> Result<Arc<dyn Store>> {
    match spec {
        StoreSpec::Postgres(url) => Ok(Arc::new(PgStore::connect(url).await?)),
        _ => open_with(spec, options),
    }
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

    #[test]
    fn parses_postgres_urls_and_hides_passwords() {
        for s in ["postgres://dasher@db.internal:5432/dasher", "postgresql://u@127.0.0.1/d?connect_timeout=5"] {
            let spec: StoreSpec = s.parse().unwrap();
            assert!(matches!(spec, StoreSpec::Postgres(_)), "{s}");
            assert_eq!(spec.to_string(), s);
            assert_eq!(spec.path(), None);
            let json = serde_json::to_string(&spec).unwrap();
            assert_eq!(serde_json::from_str::<StoreSpec>(&json).unwrap(), spec);
        }
        let secret: StoreSpec = "postgres://u:hunter2@h:5432/d".parse().unwrap();
        assert_eq!(secret.to_string(), "postgres://u:***@h:5432/d", "Display redacts the password");
        assert!(serde_json::to_string(&secret).unwrap().contains("hunter2"), "serialising keeps it");
        for bad in ["postgres://", "postgres://h:5432/", "postgres://u@h:notaport/d", "postgres://u:pw@h/d?bogus=1"] {
            let err = bad.parse::<StoreSpec>().unwrap_err();
            assert!(!err.to_string().contains("pw@"), "error hides the password: {err}");
            assert!(err.to_string().contains("postgres"), "{err}");
        }
    }
}
