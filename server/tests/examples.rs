//! `dasher serve --examples` (the README's first command) builds the example plugins from
//! this checkout and serves with them loaded.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain HTTP/1.1 GET; `None` while nothing answers.
fn get(port: u16, path: &str, token: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, out.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_owned())))
}

#[test]
fn serve_with_examples_loads_the_three_example_plugins() {
    let data = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // A build directory that outlives the test, so later runs compile incrementally.
    let build_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("example-plugins");
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_dasher"))
            .args(["serve", "--examples", "--listen", &format!("127.0.0.1:{port}"), "--log", "warn"])
            .arg("--data-dir")
            .arg(data.path())
            .env("DASHER_ADMIN_TOKEN", "t")
            .env("DASHER_PLUGIN_BUILD_DIR", &build_dir)
            .env_remove("DASHER_CONFIG")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The first build of three plugins can take minutes on a busy machine.
    let deadline = Instant::now() + Duration::from_secs(900);
    let plugins = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("dasher serve --examples exited early: {status}");
        }
        if let Some((200, body)) = get(port, "/api/v1/plugins", "t") {
            break body;
        }
        assert!(Instant::now() < deadline, "the server did not come up with --examples");
        std::thread::sleep(Duration::from_millis(500));
    };
    for name in ["staged-rollout", "ruleset-targeting", "event-triage"] {
        assert!(plugins.contains(&format!("\"{name}\"")), "{name} not loaded: {plugins}");
        assert!(data.path().join("plugins").join(format!("{name}.wasm")).is_file());
    }
}
