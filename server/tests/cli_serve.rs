//! `dasher serve` flags that reach the configuration check: a bad value stops the server
//! before it opens anything, with a message naming the setting.

use std::process::{Command, Stdio};

#[test]
fn store_cache_mb_0_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dasher"))
        .args(["serve", "--listen", "127.0.0.1:0", "--store-cache-mb", "0", "--log", "warn"])
        .arg("--data-dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "a 0 MiB cache must not start a server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("storage.cache_mb"), "names the setting: {stderr}");
    assert!(!dir.path().join("dasher.redb").exists(), "refused before opening the store");
}
