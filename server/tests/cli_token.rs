//! `dasher token hash` prints what `[[admin.tokens]] sha256` and `sync_auth` expect.

use std::io::Write;
use std::process::{Command, Stdio};

fn hash(stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dasher"))
        .args(["token", "hash"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn token_hash_matches_the_server_and_drops_one_newline() {
    // `printf %s s3cret | sha256sum`
    let expected = "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0";
    assert_eq!(dasher_server::credentials::sha256_hex("s3cret"), expected);
    for input in [&b"s3cret"[..], b"s3cret\n", b"s3cret\r\n"] {
        let out = hash(input);
        assert!(out.status.success());
        assert_eq!(String::from_utf8(out.stdout).unwrap().trim_end(), expected);
    }
    let out = hash(b"");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no token on stdin"));
}
