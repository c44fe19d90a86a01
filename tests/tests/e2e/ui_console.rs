//! The web console over real HTTP on 127.0.0.1 (no browser: cookies are kept by hand, as a
//! browser would): sign-in with right and wrong tokens, the session and CSRF cookies' flags,
//! CSRF refusals, roles from the admin route table, pages populated by real syncs, sign-out,
//! the separate admin listener, and the Content-Security-Policy with no inline script.

use bytes::Bytes;
use dasher_server::config::{Role, TokenConfig};
use dasher_server::credentials::sha256_hex;
use dasher_tests::{TOKEN, TestServer};
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

const VIEWER: &str = "viewer-secret";
const EDITOR: &str = "editor-secret";
const HOST: &str = "UI-HOST-0001";

/// A cookie-keeping client of one listener.
pub(crate) struct Browser {
    addr: SocketAddr,
    cookies: HashMap<String, String>,
    client: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Page {
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    fn location(&self) -> &str {
        self.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

impl Browser {
    pub(crate) fn new(addr: SocketAddr) -> Browser {
        Browser {
            addr,
            cookies: HashMap::new(),
            client: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
        }
    }

    async fn send(&mut self, method: Method, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let mut req = Request::builder().method(method).uri(format!("http://{}{path}", self.addr));
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header(header::COOKIE, jar.join("; "));
        }
        let body = match form {
            Some(fields) => {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                let mut s = form_urlencoded_serialize(fields);
                s.shrink_to_fit();
                s
            }
            None => String::new(),
        };
        let resp = self.client.request(req.body(Full::new(Bytes::from(body))).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        for v in headers.get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()) {
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
        Page { status, headers, body }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, None).await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.send(Method::POST, path, Some(fields)).await
    }

    fn csrf(&self) -> String {
        self.cookies.get("dasher_csrf").cloned().expect("a CSRF cookie")
    }

    /// Signs in with `token` (loading the sign-in page first, as a person would).
    pub(crate) async fn sign_in(&mut self, token: &str) -> Page {
        let form = self.get("/ui/login").await;
        assert_eq!(form.status, StatusCode::OK);
        let csrf = self.csrf();
        assert!(form.body.contains(&format!(r#"name="csrf_token" value="{csrf}""#)), "{}", form.body);
        self.post("/ui/login", &[("token", token), ("csrf_token", &csrf), ("next", "/ui/hosts")]).await
    }
}

fn form_urlencoded_serialize(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            let enc = |s: &str| {
                s.bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
                        _ => format!("%{b:02X}"),
                    })
                    .collect::<String>()
            };
            format!("{}={}", enc(k), enc(v))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// With `DASHER_UI_DUMP=DIR`, pages are also written there for a reviewer to open.
fn dump(path: &str, p: &Page) {
    if let Some(dir) = std::env::var_os("DASHER_UI_DUMP") {
        let name: String = path.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(std::path::Path::new(&dir).join(format!("{name}.html")), &p.body).unwrap();
    }
}

/// Every console page must work under `script-src 'self'; style-src 'self'`: no inline
/// script, no inline style attribute, no inline event handler.
fn assert_no_inline_code(path: &str, p: &Page) {
    dump(path, p);
    let csp = p.headers.get(header::CONTENT_SECURITY_POLICY).and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{path}: CSP {csp:?}");
    assert_eq!(p.headers.get(header::X_CONTENT_TYPE_OPTIONS).map(|v| v.as_bytes()), Some(&b"nosniff"[..]));
    assert_eq!(p.headers.get(header::CACHE_CONTROL).map(|v| v.as_bytes()), Some(&b"no-store"[..]), "{path}");
    let html = p.body.to_ascii_lowercase();
    let mut rest = html.as_str();
    while let Some(at) = rest.find("<script") {
        let tag_end = rest[at..].find('>').map(|e| at + e).expect("closed tag");
        let tag = &rest[at..tag_end];
        assert!(tag.contains(" src="), "{path}: inline script {tag}");
        assert!(rest[tag_end + 1..].starts_with("</script>"), "{path}: script with content after {tag}");
        rest = &rest[tag_end..];
    }
    assert!(!html.contains(" style="), "{path}: inline style attribute");
    assert!(!html.contains("<style"), "{path}: inline style element");
    for handler in [" onclick=", " onload=", " onsubmit=", " onchange=", " onerror=", "javascript:"] {
        assert!(!html.contains(handler), "{path}: inline handler {handler}");
    }
    // Every form that posts carries the CSRF field.
    for (i, form) in html.split("<form").skip(1).enumerate() {
        let form = &form[..form.find("</form>").unwrap_or(form.len())];
        if form.contains(r#"method="post""#) {
            assert!(form.contains(r#"name="csrf_token""#), "{path}: form {i} without csrf_token");
        }
    }
}

async fn server(tweak: impl FnOnce(&mut dasher_server::config::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.admin.tokens = vec![
            TokenConfig { name: "viewer".into(), role: Role::ReadOnly, sha256: sha256_hex(VIEWER) },
            TokenConfig { name: "editor".into(), role: Role::RulesEditor, sha256: sha256_hex(EDITOR) },
        ];
        c.ui.overview_refresh_secs = 5;
        tweak(c);
    })
    .await
}

/// One full sync of `HOST` with one blocked execution, over the sync protocol.
async fn sync_host(s: &TestServer) {
    let pre = json!({"hostname": "ui-mac.example.com", "serial_number": "C02UI0001", "santa_version": "2026.7.1",
                     "machine_id": HOST, "primary_user": "alice", "client_mode": "LOCKDOWN", "os_version": "15.5",
                     "model_identifier": "Mac15,7"});
    let r = s.stage("preflight", HOST, &pre).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let event = json!({"file_sha256": "ab".repeat(32), "file_path": "/Applications/Tool.app/Contents/MacOS",
                       "file_name": "tool", "execution_time": 1_767_225_600.0, "decision": "BLOCK_UNKNOWN", "pid": 7});
    let r = s.stage("eventupload", HOST, &json!({"events": [event], "machine_id": HOST})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let r = s.stage("ruledownload", HOST, &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let rules = r.json()["rules"].as_array().map(Vec::len).unwrap_or(0);
    let r = s
        .stage("postflight", HOST, &json!({"rules_received": rules, "rules_processed": rules, "sync_type": "normal"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
}

fn addr(s: &TestServer) -> SocketAddr {
    s.handle.as_ref().unwrap().addr()
}

#[tokio::test]
async fn sign_in_csrf_roles_pages_and_sign_out() {
    let s = server(|_| {}).await;
    s.put_rules(json!([{"identifier": "cd".repeat(32), "rule_type": "BINARY", "policy": "BLOCKLIST",
                        "custom_msg": "Not on this fleet"}]))
        .await;
    sync_host(&s).await;
    let mut b = Browser::new(addr(&s));

    // Not signed in: to the sign-in page, coming back afterwards.
    let p = b.get("/ui/hosts?q=UI").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(p.location(), "/ui/login?next=%2Fui%2Fhosts%3Fq%3DUI");

    // A wrong token: the form again, with an error, and no session.
    let p = b.sign_in("not-a-token").await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(p.body.contains("That token is not valid"), "{}", p.body);
    assert!(p.set_cookie("dasher_session").is_none());
    assert_no_inline_code("/ui/login (refused)", &p);

    // A POST without csrf_token, or with another one, is refused.
    let p = b.post("/ui/login", &[("token", EDITOR)]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.body.contains("reload the page and try again"), "{}", p.body);
    let p = b.post("/ui/login", &[("token", EDITOR), ("csrf_token", &"0".repeat(64))]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(!b.cookies.contains_key("dasher_session"));

    // The right token: a session cookie, HttpOnly and SameSite=Strict, then back to `next`.
    let p = b.sign_in(EDITOR).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location(), "/ui/hosts");
    let cookie = p.set_cookie("dasher_session").expect("session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: no Secure flag ({cookie})");

    // Pages, filled by the sync above.
    let digest = "ab".repeat(32);
    let rule_id = "cd".repeat(32);
    let pages: Vec<(String, Vec<&str>)> = vec![
        ("/ui/hosts".into(), vec![HOST, "ui-mac.example.com", "C02UI0001", "alice", "2026.7.1"]),
        ("/ui/hosts?q=UI-HOST".into(), vec![HOST]),
        ("/ui/hosts?q=ui-mac".into(), vec![HOST, "hostname"]),
        ("/ui/hosts?q=c02ui".into(), vec![HOST, "serial"]),
        ("/ui/hosts?q=ALI".into(), vec![HOST, "user"]),
        (
            format!("/ui/hosts/{HOST}"),
            vec![
                "ui-mac.example.com",
                "Effective rules",
                &rule_id,
                "Not on this fleet",
                "BLOCK_UNKNOWN",
                "sync.decided",
                "Clean sync next time",
            ],
        ),
        ("/ui/events".into(), vec![HOST, "BLOCK_UNKNOWN", &digest[..16]]),
        (format!("/ui/events?machine_id={HOST}&decision=BLOCK_UNKNOWN"), vec![&digest[..16]]),
        (format!("/ui/events?file_sha256={digest}"), vec![HOST]),
        ("/ui/plugins".into(), vec!["Plugins are not configured"]),
    ];
    for (path, expected) in &pages {
        let p = b.get(path).await;
        assert_eq!(p.status, StatusCode::OK, "{path}: {}", p.body);
        for e in expected {
            assert!(p.body.contains(e), "{path} lacks {e:?}");
        }
        for nav in ["Overview", "Hosts", "Events", "Binaries", "Proposals", "Rules", "Plugins", "Audit", "Sign out"] {
            assert!(p.body.contains(nav), "{path} lacks nav {nav}");
        }
        assert!(p.body.contains("editor") && p.body.contains("rules-editor"), "{path}: who is signed in");
        assert_no_inline_code(path, &p);
    }
    // Other hosts' filters find nothing; bad filters name their field.
    assert!(b.get("/ui/hosts?q=zzz").await.body.contains("No hosts match."));
    assert_eq!(b.get("/ui/hosts?after=garbage").await.status, StatusCode::BAD_REQUEST);
    let p = b.get("/ui/events?machine_id=nobody").await;
    assert!(p.body.contains("No events.") && !p.body.contains(&digest[..16]));
    assert!(b.get("/ui/events?since=2000-01-01").await.body.contains(&digest[..16]));
    assert!(b.get("/ui/events?since=2999-01-01").await.body.contains("No events."));
    let p = b.get("/ui/events?since=yesterday").await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.body.contains("since must be a date"), "{}", p.body);
    let p = b.get("/ui/events?file_sha256=xyz").await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.body.contains("file_sha256"), "{}", p.body);
    assert_eq!(b.get("/ui/hosts/no-such-host").await.status, StatusCode::NOT_FOUND);

    // The overview: its snapshot is taken in the background.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let p = b.get("/ui/").await;
        assert_eq!(p.status, StatusCode::OK);
        assert_no_inline_code("/ui/", &p);
        if p.body.contains("By Santa version") && p.body.contains("2026.7.1") && p.body.contains("LOCKDOWN") {
            // Charts from the store's counters: one blocked event today, one sync this hour.
            let series = p.body.split("data-series=\"").nth(1).expect("a chart").split('"').next().unwrap();
            assert!(series.starts_with("blocked|"), "{series}");
            let blocked: Vec<&str> = series.split(';').next().unwrap().rsplit('|').next().unwrap().split(',').collect();
            assert_eq!((blocked.len(), *blocked.last().unwrap()), (30, "1"), "{series}");
            assert!(p.body.contains("Syncs per hour"));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no overview snapshot with the host: {}", p.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The editor tags the host (the admin API's role for PUT /hosts/{id}/tags).
    let csrf = b.csrf();
    let p = b.post(&format!("/ui/hosts/{HOST}/tags"), &[("tags", "eng, canary"), ("csrf_token", &csrf)]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let host = s.admin(Method::GET, &format!("/api/v1/hosts/{HOST}"), None).await.json();
    assert_eq!(host["tags"], json!(["eng", "canary"]));
    let p = b.get(&format!("/ui/hosts/{HOST}?done=tags")).await;
    assert!(p.body.contains("Tags saved") && p.body.contains(r#"value="eng canary""#), "{}", p.body);
    // The host's page shows who changed it (the audit log).
    assert!(p.body.contains("host.tags.set") && p.body.contains("rules-editor"), "{}", p.body);
    // Without the CSRF field: refused, nothing changed.
    let p = b.post(&format!("/ui/hosts/{HOST}/tags"), &[("tags", "evil")]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    // A bad tag names the field.
    let p = b.post(&format!("/ui/hosts/{HOST}/tags"), &[("tags", "bad/tag"), ("csrf_token", &csrf)]).await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    assert!(p.body.contains("tags[0]"), "{}", p.body);
    // Clean sync next time.
    let p = b.post(&format!("/ui/hosts/{HOST}/clean-sync"), &[("csrf_token", &csrf)]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let host = s.admin(Method::GET, &format!("/api/v1/hosts/{HOST}"), None).await.json();
    assert_eq!(host["clean_requested"], json!(true));
    assert_eq!(host["tags"], json!(["eng", "canary"]));
    // An editor may not reload plugins (admin role in the admin route table).
    let p = b.post("/ui/plugins/reload", &[("csrf_token", &csrf)]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.body.contains("needs role admin"), "{}", p.body);

    // Signing in again replaces the session: the previous id stops working.
    let before = b.cookies.get("dasher_session").cloned().unwrap();
    assert_eq!(b.sign_in(EDITOR).await.status, StatusCode::SEE_OTHER);
    assert_ne!(b.cookies["dasher_session"], before);
    let mut stale = Browser::new(addr(&s));
    stale.cookies.insert("dasher_session".into(), before);
    assert_eq!(stale.get("/ui/hosts").await.status, StatusCode::SEE_OTHER, "the replaced session is gone");

    // A read-only user sees but may not write.
    let mut viewer = Browser::new(addr(&s));
    assert_eq!(viewer.sign_in(VIEWER).await.status, StatusCode::SEE_OTHER);
    assert_eq!(viewer.get(&format!("/ui/hosts/{HOST}")).await.status, StatusCode::OK);
    let csrf = viewer.csrf();
    let p = viewer.post(&format!("/ui/hosts/{HOST}/tags"), &[("tags", "viewer-was-here"), ("csrf_token", &csrf)]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    assert!(p.body.contains("needs role rules-editor") && p.body.contains("read-only"), "{}", p.body);
    assert_no_inline_code("403 page", &p);
    let host = s.admin(Method::GET, &format!("/api/v1/hosts/{HOST}"), None).await.json();
    assert_eq!(host["tags"], json!(["eng", "canary"]), "the refused edit changed nothing");

    // Sign-out ends the session on the server: the old cookie no longer works.
    let old = b.cookies.get("dasher_session").cloned().unwrap();
    let csrf = b.csrf();
    let p = b.post("/ui/logout", &[("csrf_token", &csrf)]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert!(p.set_cookie("dasher_session").unwrap().contains("Max-Age=0"));
    assert_eq!(b.get("/ui/hosts").await.status, StatusCode::SEE_OTHER);
    b.cookies.insert("dasher_session".into(), old);
    let p = b.get("/ui/hosts").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "a signed-out session id is dead");

    // The audit log holds each write with who, role and surface; the refused ones are absent.
    let dir = s.dir.clone();
    let mut s = s;
    s.handle.take().unwrap().shutdown().await;
    let store = dasher_store::open(&dasher_server::config::Config::for_tests(&dir).store_spec()).unwrap();
    let log = store.list_audit(None, None, 100).await.unwrap();
    let summary: Vec<(String, String, String, String)> =
        log.iter().rev().map(|e| (e.actor.clone(), e.role.clone(), e.action.clone(), e.target.clone())).collect();
    let host_target = format!("host:{HOST}");
    let expected = [
        ("admin_token", "admin", "rules.commit"),
        ("editor", "rules-editor", "ui.sign_in"),
        ("editor", "rules-editor", "host.tags.set"),
        ("editor", "rules-editor", "host.clean_sync"),
        ("editor", "rules-editor", "ui.sign_in"),
        ("viewer", "read-only", "ui.sign_in"),
        ("editor", "rules-editor", "ui.sign_out"),
    ];
    let got: Vec<(&str, &str, &str)> =
        summary.iter().map(|(a, r, act, _)| (a.as_str(), r.as_str(), act.as_str())).collect();
    assert_eq!(got, expected, "{log:?}");
    let tags = log.iter().find(|e| e.action == "host.tags.set").unwrap();
    assert_eq!((tags.target.as_str(), &tags.detail), (host_target.as_str(), &json!({"tags": ["eng", "canary"]})));
    assert_eq!(tags.via, dasher_store::AuditVia::Ui);
    assert_eq!(log.iter().find(|e| e.action == "rules.commit").unwrap().via, dasher_store::AuditVia::Api);
}

#[tokio::test]
async fn static_files_are_embedded_cached_and_served_on_both_listeners() {
    let s = server(|c| c.admin.listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let admin = s.handle.as_ref().unwrap().admin_addr().unwrap();
    let mut main = Browser::new(addr(&s));
    let mut console = Browser::new(admin);
    // The console lives on the admin listener; the main one serves only static files (and
    // the block page), which users' Macs reach.
    assert_eq!(main.get("/ui/login").await.status, StatusCode::NOT_FOUND);
    assert_eq!(main.get("/ui/hosts").await.status, StatusCode::NOT_FOUND);
    let p = console.get("/ui/login").await;
    assert_eq!(p.status, StatusCode::OK);
    assert_no_inline_code("/ui/login", &p);
    let csrf = p.set_cookie("dasher_csrf").expect("the sign-in form sets the CSRF cookie");
    assert!(csrf.contains("HttpOnly") && csrf.contains("SameSite=Strict"), "{csrf}");
    // Every linked asset is served, with immutable caching and a content ETag.
    let links: Vec<String> =
        p.body.split(['"', '\'']).filter(|s| s.starts_with("/ui/static/")).map(str::to_owned).collect();
    assert!(links.iter().any(|l| l.contains("htmx.min.js")) && links.iter().any(|l| l.contains("uPlot")), "{links:?}");
    for link in &links {
        let a = main.get(link).await;
        assert_eq!(a.status, StatusCode::OK, "{link}");
        assert!(!a.body.is_empty());
        assert_eq!(a.headers[header::CACHE_CONTROL], "public, max-age=31536000, immutable", "{link}");
        let etag = a.headers[header::ETAG].to_str().unwrap().to_owned();
        let url = format!("http://{}{link}", addr(&s));
        let req = Request::get(url).header(header::IF_NONE_MATCH, &etag).body(Full::new(Bytes::new())).unwrap();
        let r = main.client.request(req).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{link}");
    }
    assert_eq!(main.get("/ui/static/htmx.LICENSE").await.status, StatusCode::OK);
    assert_eq!(main.get("/ui/static/nope.js").await.status, StatusCode::NOT_FOUND);
    // Sign-in works on the admin listener.
    let p = console.sign_in(TOKEN).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    let p = console.get("/ui/plugins").await;
    assert_eq!(p.status, StatusCode::OK);
    assert!(p.body.contains("admin_token") && p.body.contains(">admin<"), "{}", p.body);
}

#[tokio::test]
async fn the_console_can_be_turned_off() {
    let s = server(|c| c.ui.enabled = false).await;
    let mut b = Browser::new(addr(&s));
    let p = b.get("/ui/login").await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert!(p.body.contains("[ui] enabled = false"));
    let v: Value = s.admin(Method::GET, "/api/v1/hosts", None).await.json();
    assert!(v["hosts"].is_array(), "the admin API is unaffected");
}

/// Appends a custom section to a wasm binary: the same plugin, a new file hash (generation).
fn with_custom_section(wasm: &[u8], payload: &[u8]) -> Vec<u8> {
    let name = b"dasher-test";
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name);
    section.extend_from_slice(payload);
    assert!(section.len() < 128, "one-byte LEB128 size");
    let mut out = wasm.to_vec();
    out.push(0); // custom section id
    out.push(section.len() as u8);
    out.extend_from_slice(&section);
    out
}

#[tokio::test]
async fn plugins_page_reloads_and_rolls_back_as_admin() {
    let (s, plugins) = dasher_tests::plugin_server(&["staged-rollout"], |_| {}).await;
    let mut admin = Browser::new(addr(&s));
    assert_eq!(admin.sign_in(TOKEN).await.status, StatusCode::SEE_OTHER);
    let status = s.admin(Method::GET, "/api/v1/plugins", None).await.json();
    let first = status["plugins"][0]["hash"].as_str().unwrap().to_owned();
    let p = admin.get("/ui/plugins").await;
    assert_eq!(p.status, StatusCode::OK);
    assert_no_inline_code("/ui/plugins", &p);
    assert!(
        p.body.contains("staged-rollout") && p.body.contains(&first[..12]) && p.body.contains("configure"),
        "{}",
        p.body
    );
    assert!(!p.body.contains("Roll back"), "one generation: nothing to roll back to");

    // A new file for the plugin, then "Reload now".
    let file = plugins.path().join("staged-rollout.wasm");
    let wasm = std::fs::read(&file).unwrap();
    std::fs::write(&file, with_custom_section(&wasm, b"v2")).unwrap();
    let csrf = admin.csrf();
    let p = admin.post("/ui/plugins/reload", &[("csrf_token", &csrf)]).await;
    assert_eq!((p.status, p.location()), (StatusCode::SEE_OTHER, "/ui/plugins?done=reload"), "{}", p.body);
    let status = s.admin(Method::GET, "/api/v1/plugins", None).await.json();
    let second = status["plugins"][0]["hash"].as_str().unwrap().to_owned();
    assert_ne!(first, second, "the new file is a new generation");
    let p = admin.get("/ui/plugins?done=reload").await;
    assert!(p.body.contains("Plugins reloaded") && p.body.contains(&second[..12]) && p.body.contains("Roll back"));

    // Roll back to the first generation.
    let p = admin.post("/ui/plugins/staged-rollout/rollback", &[("csrf_token", &csrf)]).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    let status = s.admin(Method::GET, "/api/v1/plugins", None).await.json();
    assert_eq!(status["plugins"][0]["hash"].as_str().unwrap(), first);
    // An unknown plugin is a 404 naming it, as in the admin API.
    let p = admin.post("/ui/plugins/nope/rollback", &[("csrf_token", &csrf)]).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
    assert!(p.body.contains("nope"), "{}", p.body);
}

/// One HTTPS request to the console, trusting `ca`; returns the `Set-Cookie` values.
async fn https_cookies(
    addr: SocketAddr,
    ca: &rustls_pki_types::CertificateDer<'static>,
    method: Method,
    path: &str,
    cookie: &str,
    form: &str,
) -> (StatusCode, Vec<String>) {
    use hyper_util::rt::TokioIo;
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form.to_owned())))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let cookies = resp.headers().get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    (resp.status(), cookies)
}

#[tokio::test]
async fn cookies_are_secure_over_tls() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "console test CA");
    let ca_der = ca_params.self_signed(&ca_key).unwrap().der().clone();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.signed_by(&key, &issuer).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("server.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
    let certs = dir.path().to_owned();
    let s = server(move |c| {
        c.tls = Some(dasher_server::config::TlsSettings {
            cert: certs.join("server.crt"),
            key: certs.join("server.key"),
            client_ca: None,
            require_client_cert: false,
            bind_identity: false,
        })
    })
    .await;
    let (status, cookies) = https_cookies(addr(&s), &ca_der, Method::GET, "/ui/login", "", "").await;
    assert_eq!(status, StatusCode::OK);
    let csrf = cookies.iter().find(|c| c.starts_with("dasher_csrf=")).expect("CSRF cookie");
    assert!(csrf.contains("; Secure") && csrf.contains("HttpOnly") && csrf.contains("SameSite=Strict"), "{csrf}");
    let token = csrf.split(';').next().unwrap().trim_start_matches("dasher_csrf=").to_owned();
    let form = format!("token={EDITOR}&csrf_token={token}");
    let (status, cookies) =
        https_cookies(addr(&s), &ca_der, Method::POST, "/ui/login", &format!("dasher_csrf={token}"), &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let session = cookies.iter().find(|c| c.starts_with("dasher_session=")).expect("session cookie");
    assert!(session.contains("; Secure") && session.contains("HttpOnly") && session.contains("SameSite=Strict"));
}
