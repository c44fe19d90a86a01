//! A real browser for end-to-end tests: Debian's headless Chromium driven over WebDriver
//! (chromedriver, on a free 127.0.0.1 port) with `fantoccini`.
//!
//! [`Browser::start`] returns `None` (and prints `SKIPPED`) when `chromium` or `chromedriver` is
//! not installed, so a developer without them still gets a passing run — except when the `CI`
//! environment variable is set, where a missing browser is a failure (`.ci/chromium.sh` installs
//! both). Screenshots go to [`screenshot_dir`]`/<test name>/NN-label.png`, recreated per run.

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Window size of every session (screenshots are this size).
pub const WINDOW: (u32, u32) = (1280, 900);

/// How long a page or element may take (2 shared cores, several engineers building at once).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The browser programs found on `PATH` (or named by `DASHER_CHROMIUM` / `DASHER_CHROMEDRIVER`).
#[derive(Clone, Debug)]
pub struct Programs {
    /// The Chromium executable.
    pub chromium: PathBuf,
    /// The chromedriver executable.
    pub chromedriver: PathBuf,
}

/// Finds `chromium` and `chromedriver`; `Err` names what is missing.
pub fn find_programs() -> Result<Programs, String> {
    let find = |env: &str, names: &[&str]| -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(env) {
            return Some(PathBuf::from(p)).filter(|p| p.is_file());
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).flat_map(|dir| names.iter().map(move |n| dir.join(n))).find(|p| p.is_file())
    };
    let chromium = find("DASHER_CHROMIUM", &["chromium", "chromium-browser"]);
    let chromedriver = find("DASHER_CHROMEDRIVER", &["chromedriver"]);
    match (chromium, chromedriver) {
        (Some(chromium), Some(chromedriver)) => Ok(Programs { chromium, chromedriver }),
        (c, d) => {
            let missing: Vec<&str> = [c.is_none().then_some("chromium"), d.is_none().then_some("chromedriver")]
                .into_iter()
                .flatten()
                .collect();
            Err(format!("{} not found (install with `bash .ci/chromium.sh`)", missing.join(" and ")))
        }
    }
}

/// True when running under CI (the `CI` environment variable is set and not empty/`false`/`0`).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Where screenshots go: `$CARGO_TARGET_DIR/ui-screenshots`, or `target/ui-screenshots` in
/// the workspace.
pub fn screenshot_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("ui-screenshots")
}

/// A chromedriver process, killed (and reaped) on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session and where its screenshots go.
pub struct Browser {
    /// The WebDriver client (navigate, find, click, …).
    pub client: Client,
    shots: PathBuf,
    taken: AtomicU32,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session for the test `test_name` (used as
    /// the screenshot subdirectory). `None` with a printed `SKIPPED` when the programs are
    /// missing; panics instead under CI, or if they are installed but do not start.
    pub async fn start(test_name: &str) -> Option<Browser> {
        let programs = match find_programs() {
            Ok(p) => p,
            Err(why) if under_ci() => panic!("browser test {test_name}: {why}, and CI is set: failing"),
            Err(why) => {
                println!("SKIPPED browser test {test_name}: {why}");
                return None;
            }
        };
        Some(Browser::start_with(&programs, test_name).await)
    }

    async fn start_with(programs: &Programs, test_name: &str) -> Browser {
        let driver = spawn_driver(&programs.chromedriver).await;
        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless=new".to_owned(),
            // Chromium refuses to start its sandbox as root (CI runs as root).
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-extensions".to_owned(),
            "--hide-scrollbars".to_owned(),
            "--force-device-scale-factor=1".to_owned(),
            format!("--window-size={},{}", WINDOW.0, WINDOW.1),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": programs.chromium.display().to_string(), "args": args }),
        );
        let url = format!("http://127.0.0.1:{}", driver.port);
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("could not start a Chromium session through chromedriver at {url}: {e}"));
        let shots = screenshot_dir().join(sanitize(test_name));
        let _ = std::fs::remove_dir_all(&shots);
        std::fs::create_dir_all(&shots).unwrap_or_else(|e| panic!("cannot create {}: {e}", shots.display()));
        println!("browser test {test_name}: screenshots in {}", shots.display());
        Browser { client, shots, taken: AtomicU32::new(0), _driver: driver, _profile: profile }
    }

    /// The directory this session's screenshots go to.
    pub fn screenshots(&self) -> &Path {
        &self.shots
    }

    /// Opens `url` and waits until the document has loaded.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("goto {url}: {e}"));
        self.wait_loaded().await;
    }

    /// Waits until `document.readyState` is `complete`.
    pub async fn wait_loaded(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let state = self.client.execute("return document.readyState", vec![]).await;
            if matches!(&state, Ok(v) if v == "complete") {
                return;
            }
            assert!(Instant::now() < deadline, "page did not finish loading: {state:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to [`PATIENCE`]) for an element matching the CSS selector.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.client.wait().at_most(PATIENCE).for_element(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => panic!("no element {css:?} on {}: {e}\n{}", self.url().await, self.source_text().await),
        }
    }

    async fn source_text(&self) -> String {
        self.client.source().await.unwrap_or_default()
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default()
    }

    /// The visible text of the page body.
    pub async fn text(&self) -> String {
        self.find("body").await.text().await.unwrap_or_default()
    }

    /// Saves a PNG of the viewport as `NN-label.png` and returns its path.
    pub async fn screenshot(&self, label: &str) -> PathBuf {
        let n = self.taken.fetch_add(1, Ordering::Relaxed) + 1;
        let png = self.client.screenshot().await.unwrap_or_else(|e| panic!("screenshot {label}: {e}"));
        assert!(png.starts_with(b"\x89PNG"), "screenshot {label} is not a PNG");
        let path = self.shots.join(format!("{n:02}-{}.png", sanitize(label)));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Ends the session (the browser quits; chromedriver is killed on drop).
    pub async fn close(self) {
        let Browser { client, _driver, _profile, .. } = self;
        let _ = client.close().await;
    }
}

/// Starts chromedriver on a free loopback port and waits until it answers `/status`.
async fn spawn_driver(program: &Path) -> Driver {
    let mut last_error = String::new();
    for _attempt in 0..5 {
        // Ask the OS for a free port, release it, and hand it to chromedriver (a race with
        // another process taking it is retried).
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        let mut driver = Driver { child, port };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = driver.child.try_wait() {
                last_error = format!("chromedriver exited with {status} (port {port} taken?)");
                break;
            }
            if driver_ready(port).await {
                return driver;
            }
            if Instant::now() > deadline {
                last_error = format!("chromedriver did not answer on 127.0.0.1:{port} within {PATIENCE:?}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = driver.child.kill();
    }
    panic!("could not start chromedriver: {last_error}");
}

/// True once chromedriver's `GET /status` says it is ready.
async fn driver_ready(port: u16) -> bool {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, http_body_util::Empty<bytes::Bytes>>(HttpConnector::new());
    let Ok(uri) = format!("http://127.0.0.1:{port}/status").parse::<http::Uri>() else { return false };
    let Ok(Ok(resp)) = tokio::time::timeout(Duration::from_secs(5), client.get(uri)).await else { return false };
    let Ok(body) = resp.into_body().collect().await else { return false };
    serde_json::from_slice::<serde_json::Value>(&body.to_bytes())
        .is_ok_and(|v| v["value"]["ready"].as_bool() == Some(true))
}

/// A file-name-safe form of `s`.
fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect()
}
