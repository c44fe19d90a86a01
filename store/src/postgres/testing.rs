//! Helpers for tests that need a PostgreSQL server (this crate's and the end-to-end tests).
//!
//! The server comes from [`URL_ENV`] (`.ci/postgres.sh` starts one and sets it). Without it, a
//! test skips with a message on the terminal, except under CI (`CI` set), where it fails:
//! CI must never pass by skipping. Each test gets its own fresh database ([`TestDatabase`]).

use super::{PgUrl, pg_err};
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio_postgres::NoTls;

/// Environment variable with the URL of a PostgreSQL server tests may create databases on.
pub const URL_ENV: &str = "DASHER_TEST_POSTGRES_URL";

/// The test server's URL, or `None` (after telling the terminal the test is skipped) when
/// [`URL_ENV`] is unset outside CI.
///
/// # Panics
/// When [`URL_ENV`] is unset and `CI` is set (to anything but `false`/`0`).
pub fn server_url(test: &str) -> Option<String> {
    match std::env::var(URL_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(!ci, "{URL_ENV} is not set but CI is: PostgreSQL tests must run in CI (see .ci/postgres.sh)");
            // Straight to stderr: libtest captures `eprintln!` of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: {URL_ENV} is not set (run `bash .ci/postgres.sh cargo test …` to start a server)"
            );
            None
        }
    }
}

/// A fresh, empty database on the test server, for one test.
pub struct TestDatabase {
    /// URL of the new database (same server and user as the server URL).
    pub url: PgUrl,
    name: String,
    server: String,
}

impl TestDatabase {
    /// Creates a database named after `test`, the process and a counter.
    ///
    /// # Panics
    /// If the server cannot be reached or refuses (a test setup failure).
    pub async fn create(server_url: &str, test: &str) -> TestDatabase {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let clean: String = test
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .take(30)
            .collect();
        let name = format!("dasher_t_{clean}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let client = admin(server_url).await;
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.map_err(pg_err).unwrap();
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.map_err(pg_err).unwrap();
        let url = with_database(server_url, &name).parse().expect("server URL with a database name is valid");
        TestDatabase { url, name, server: server_url.to_owned() }
    }

    /// Drops the database (best effort; a failed test leaves it for inspection).
    pub async fn drop_database(self) {
        let client = admin(&self.server).await;
        if let Err(e) = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).await {
            let _ = writeln!(std::io::stderr(), "could not drop test database {}: {}", self.name, pg_err(e));
        }
    }
}

async fn admin(server_url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(server_url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL server {}: {e}", super::redact(server_url)));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// `url` with its database (the path) replaced by `db`; query parameters are kept.
pub fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{scheme}://{authority}/{db}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database() {
        assert_eq!(with_database("postgres://u@h:1/postgres", "x"), "postgres://u@h:1/x");
        assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
        assert_eq!(with_database("postgres://u@h/d?connect_timeout=3", "x"), "postgres://u@h/x?connect_timeout=3");
    }
}
