//! The console and the block page in a real browser (headless Chromium over WebDriver, see
//! `dasher_tests::browser`), as an admin and a blocked user would use them: sign in, find a
//! host the simulator synced, tag it, approve a proposal triage made and see the next sync
//! deliver the rule, request approval from the block page and find the request in the queue,
//! a read-only user refused a write, a form without its CSRF token refused, sign out.
//!
//! Without Chromium installed these tests print SKIPPED and pass, except under `CI`.
//! Screenshots of every page visited go to `ui-screenshots/<test>/` in the target directory
//! (printed by the test). The browser cannot see HTTP statuses, so statuses are checked over
//! plain HTTP beside it.

use dasher_sdk::domain::RuleKey;
use dasher_sdk::wire::RuleType;
use dasher_server::config::{Role, TokenConfig};
use dasher_sim::Generation;
use dasher_sim::runner::{self, Fleet, RunConfig};
use dasher_tests::browser::{Browser, PATIENCE};
use dasher_tests::{TOKEN, TestServer, component};
use fantoccini::Locator;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const VIEWER_TOKEN: &str = "viewer-token-for-the-browser-test";
const TEAM: &str = "EQHXZ8M8AV";
const APP: &str = "EQHXZ8M8AV:com.vendor.app";
const BLOCKED_MESSAGE: &str = "Games are not allowed on work Macs. Ask IT if you need it.";

fn sha(n: u32) -> String {
    format!("{n:064x}")
}

/// A server running the `event-triage` example plugin (proposes allowing an approved vendor's
/// signing id once 3 hosts were blocked on it), with a read-only token besides the admin one.
async fn server(plugins: &std::path::Path) -> TestServer {
    let dir = plugins.to_owned();
    TestServer::start_with(move |c| {
        let mut p = dasher_policy::PluginsConfig::for_dir(&dir);
        p.watch = false;
        p.limits.deadline_ms = 5_000;
        p.limits.triage_deadline_ms = 5_000;
        p.plugin.entry("event-triage".into()).or_default().settings =
            json!({"approved_team_ids": [TEAM], "propose_after_hosts": 3});
        c.plugins = Some(p);
        // The overview's snapshot is refreshed every 5 s (the least), so it shows the fleet.
        c.ui.overview_refresh_secs = 5;
        c.admin.tokens.push(TokenConfig {
            name: "viewer".into(),
            role: Role::ReadOnly,
            sha256: Sha256::digest(VIEWER_TOKEN.as_bytes()).iter().map(|b| format!("{b:02x}")).collect(),
        });
    })
    .await
}

fn fleet(s: &TestServer, hosts: usize) -> Fleet {
    let cfg = RunConfig {
        server: s.handle.as_ref().unwrap().sync_base_url(),
        hosts,
        generations: vec![(Generation::Nps2026_7, 1)],
        backoff_scale: 0.0,
        seed: 12,
        ..Default::default()
    };
    runner::build_fleet(&cfg).unwrap()
}

async fn sync(f: &Fleet, i: usize) {
    let (r, _) = f.clients[i].full_sync(&f.ctx).await;
    r.unwrap_or_else(|e| panic!("host {i} sync: {e}"));
}

fn blocked_event(n: u32, decision: &str, team: &str, signing_id: &str, name: &str) -> Value {
    json!({"file_sha256": sha(n), "file_path": "/Applications/Vendor.app/Contents/MacOS", "file_name": name,
           "execution_time": 1_767_225_600.0 + f64::from(n), "decision": decision, "pid": n,
           "executing_user": "alice", "team_id": team, "signing_id": signing_id,
           "file_bundle_name": name, "file_bundle_id": "com.vendor.app"})
}

async fn upload(s: &TestServer, id: &str, events: Vec<Value>) {
    let r = s.stage("eventupload", id, &json!({"events": events, "machine_id": id})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
}

/// Polls the admin API until `done` holds (triage runs off the request path).
async fn poll(s: &TestServer, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let v = s.admin(Method::GET, path, None).await.json();
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{path}: condition not met; last answer: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs in through the form with `token`.
async fn sign_in(b: &Browser, base: &str, token: &str, shot: &str) {
    b.goto(&format!("{base}/ui/login")).await;
    b.screenshot(shot).await;
    b.find("input[name=token]").await.send_keys(token).await.unwrap();
    b.find("form[action='/ui/login'] button[type=submit]").await.click().await.unwrap();
    wait_until(b, |url, _| !url.contains("/ui/login")).await;
}

async fn sign_out(b: &Browser) {
    b.find("form[action='/ui/logout'] button").await.click().await.unwrap();
    wait_until(b, |url, _| url.contains("/ui/login")).await;
}

/// Waits until the current page's URL and text satisfy `done`.
async fn wait_until(b: &Browser, done: impl Fn(&str, &str) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        b.wait_loaded().await;
        let (url, text) = (b.url().await, b.text().await);
        if done(&url, &text) {
            return;
        }
        assert!(Instant::now() < deadline, "page never got there; at {url}:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Submits the form containing the element found by `css`, by clicking it.
async fn click(b: &Browser, css: &str) {
    b.find(css).await.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
    b.wait_loaded().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_and_a_blocked_user_use_the_console_in_a_browser() {
    let Some(b) = Browser::start("console").await else { return };
    let plugins = tempfile::tempdir().unwrap();
    component("event-triage", plugins.path());
    let s = server(plugins.path()).await;
    let base = format!("http://{}", s.handle.as_ref().unwrap().addr());

    // A simulated fleet syncs; one vendor binary gets blocked on all three hosts, so triage
    // proposes allowing it; a game is blocked on host 0 by a rule with a message.
    let f = fleet(&s, 3);
    let ids: Vec<String> = f.clients.iter().map(|c| c.host.machine_id.clone()).collect();
    let game = sha(900);
    let rule = json!({"identifier": game, "rule_type": "BINARY", "policy": "BLOCKLIST", "custom_msg": BLOCKED_MESSAGE});
    s.put_rules(json!([rule])).await;
    for i in 0..3 {
        sync(&f, i).await;
    }
    for (i, id) in ids.iter().enumerate() {
        upload(&s, id, vec![blocked_event(10 + i as u32, "BLOCK_UNKNOWN", TEAM, APP, "Vendor")]).await;
    }
    upload(&s, &ids[0], vec![blocked_event(900, "BLOCK_BINARY", "ZMCG7MLDV9", "ZMCG7MLDV9:com.games.x", "Solitaire")])
        .await;
    let pending = poll(&s, "/api/v1/proposals?status=pending", |v| {
        v["proposals"].as_array().is_some_and(|p| p.iter().any(|p| p["rule"]["identifier"] == APP))
    })
    .await;
    let app_id =
        pending["proposals"].as_array().unwrap().iter().find(|p| p["rule"]["identifier"] == APP).unwrap()["id"]
            .as_u64()
            .unwrap();

    let host = &ids[0];

    // The blocked user's page (not signed in): what, why (the rule's message), and a request.
    let page = format!("{base}/ui/blocked?sha256={game}&machine_id={host}&username=alice&bundle_id=com.vendor.app");
    b.goto(&page).await;
    b.screenshot("blocked").await;
    let text = b.text().await;
    assert!(text.contains("Solitaire") && text.contains(BLOCKED_MESSAGE), "{text}");
    assert!(!text.contains("global"), "no rule-set names on the block page: {text}");
    b.find("textarea[name=justification]").await.send_keys("I test the games we ship to customers.").await.unwrap();
    click(&b, "form[action='/ui/blocked'] button[type=submit]").await;
    wait_until(&b, |_, text| text.contains("Your request was sent")).await;
    b.screenshot("blocked-requested").await;

    // Another machine, or one that never reported this block, gets the neutral page.
    b.goto(&format!("{base}/ui/blocked?sha256={game}&machine_id={}", ids[1])).await;
    let text = b.text().await;
    assert!(text.contains("No block of this software has been reported") && !text.contains("Solitaire"), "{text}");
    b.screenshot("blocked-neutral").await;

    // Sign in as the admin.
    sign_in(&b, &base, TOKEN, "login").await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        // The first count on the overview is the hosts'.
        if b.find(".cards .card .big").await.text().await.unwrap() == "3" {
            break;
        }
        assert!(Instant::now() < deadline, "the overview never showed the 3 hosts");
        tokio::time::sleep(Duration::from_millis(500)).await;
        b.goto(&format!("{base}/ui/")).await;
    }
    b.screenshot("overview").await;

    // Find host 0 by the start of its machine id, open it, tag it.
    b.goto(&format!("{base}/ui/hosts")).await;
    b.find("input[name=q]").await.send_keys(&host[..8]).await.unwrap();
    click(&b, "form[action='/ui/hosts'] button[type=submit]").await;
    // The link's path is percent-encoded; find it by its text.
    let link = format!("//a[text()='{host}']");
    b.client.wait().at_most(PATIENCE).for_element(Locator::XPath(&link)).await.unwrap();
    b.screenshot("hosts-search").await;
    b.client.find(Locator::XPath(&link)).await.unwrap().click().await.unwrap();
    wait_until(&b, |url, text| {
        url.contains(&format!("/ui/hosts/{}", &host[..8])) && text.contains("Save tags") && text.contains(host)
    })
    .await;
    b.screenshot("host").await;
    let tags = b.find("input[name=tags]").await;
    tags.clear().await.unwrap();
    tags.send_keys("engineering browser-tested").await.unwrap();
    click(&b, "form[action$='/tags'] button[type=submit]").await;
    wait_until(&b, |url, _| url.contains("done=tags")).await;
    b.screenshot("host-tagged").await;
    let h = s.admin(Method::GET, &format!("/api/v1/hosts/{host}"), None).await.json();
    assert_eq!(h["tags"], json!(["engineering", "browser-tested"]), "{h}");

    // Approve triage's proposal in the queue; the next sync delivers the rule.
    b.goto(&format!("{base}/ui/proposals")).await;
    b.screenshot("proposals").await;
    let approve = format!("//tr[.//code[text()='{APP}']]//button[@value='approve']");
    b.client.find(Locator::XPath(&approve)).await.unwrap_or_else(|e| panic!("{approve}: {e}")).click().await.unwrap();
    b.wait_loaded().await;
    b.screenshot("proposal-approved").await;
    let p = s.admin(Method::GET, &format!("/api/v1/proposals/{app_id}"), None).await.json();
    assert_eq!((p["status"].as_str(), p["decided_by"].as_str()), (Some("approved"), Some("admin_token")), "{p}");
    sync(&f, 1).await;
    let key = RuleKey { rule_type: RuleType::SigningId, identifier: APP.into() };
    assert!(f.clients[1].state.lock().unwrap().db.get(&key).is_some(), "host 1 received the approved rule");

    // The user's request is in the queue.
    b.goto(&format!("{base}/ui/proposals")).await;
    let row = format!("//tr[.//code[text()='{game}']]");
    let row = b.client.find(Locator::XPath(&row)).await.unwrap_or_else(|e| panic!("request in the queue: {e}"));
    let row = row.text().await.unwrap();
    assert!(row.contains("alice") && row.contains("I test the games"), "{row}");
    b.screenshot("proposals-with-request").await;

    // A form whose CSRF token was removed is refused (403 page).
    b.goto(&format!("{base}/ui/hosts/{host}")).await;
    b.client
        .execute("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())", vec![])
        .await
        .unwrap();
    click(&b, "form[action$='/tags'] button[type=submit]").await;
    wait_until(&b, |_, text| text.contains("reload the page and try again")).await;
    b.screenshot("csrf-refused").await;

    sign_out(&b).await;
    b.screenshot("signed-out").await;
    b.goto(&format!("{base}/ui/hosts")).await;
    wait_until(&b, |url, _| url.contains("/ui/login")).await;

    // A read-only user sees the host but may not change its tags.
    sign_in(&b, &base, VIEWER_TOKEN, "login-viewer").await;
    b.goto(&format!("{base}/ui/hosts/{host}")).await;
    let tags = b.find("input[name=tags]").await;
    tags.clear().await.unwrap();
    tags.send_keys("hacked").await.unwrap();
    click(&b, "form[action$='/tags'] button[type=submit]").await;
    wait_until(&b, |_, text| text.contains("needs role rules-editor")).await;
    b.screenshot("read-only-refused").await;
    let h = s.admin(Method::GET, &format!("/api/v1/hosts/{host}"), None).await.json();
    assert_eq!(h["tags"], json!(["engineering", "browser-tested"]), "unchanged: {h}");
    sign_out(&b).await;

    println!("screenshots: {}", b.screenshots().display());
    b.close().await;
}

/// Statuses the browser cannot see, over plain HTTP: the block page's form without a CSRF
/// token is 403; bad parameters are 400 naming the field; the neutral page is 200 like a real
/// one; views are rate-limited per machine (429 with Retry-After).
#[tokio::test]
async fn the_block_page_over_http() {
    let s = TestServer::start().await;
    let id = "M-BLOCK-1";
    let pre =
        json!({"hostname": "m.example.com", "santa_version": "2026.7.1", "machine_id": id, "client_mode": "LOCKDOWN"});
    assert_eq!(s.stage("preflight", id, &pre).await.status, StatusCode::OK);
    upload(&s, id, vec![blocked_event(7, "BLOCK_UNKNOWN", TEAM, APP, "Vendor")]).await;

    let get = |q: String| {
        let s = &s;
        async move { s.send(Method::GET, &format!("/ui/blocked?{q}"), &[], vec![]).await }
    };
    let r = get(format!("sha256={}&machine_id={id}", sha(7))).await;
    assert_eq!(r.status, StatusCode::OK);
    let page = String::from_utf8_lossy(&r.body).into_owned();
    assert!(page.contains("Lockdown mode") && page.contains("name=\"csrf_token\""), "{page}");
    let cookie = r
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("dasher_csrf="))
        .expect("the page sets the CSRF cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let neutral = get(format!("sha256={}&machine_id=M-OTHER", sha(7))).await;
    assert_eq!(neutral.status, StatusCode::OK, "same status as a real page");
    assert!(String::from_utf8_lossy(&neutral.body).contains("No block of this software"));

    for (q, field) in [
        (format!("machine_id={id}"), "sha256"),
        (format!("sha256=xyz&machine_id={id}"), "sha256"),
        (format!("sha256={}", sha(7)), "machine_id"),
        (format!("sha256={}&machine_id=a%2Fb", sha(7)), "machine_id"),
        (format!("sha256={}&machine_id={id}&team_id={}", sha(7), "x".repeat(600)), "team_id"),
    ] {
        let r = get(q.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert!(String::from_utf8_lossy(&r.body).contains(field), "{q}: names {field}");
    }

    // POST without the token: 403, nothing recorded; with it: recorded.
    let form = |csrf: &str| {
        format!("sha256={}&machine_id={id}&username=bob&justification=needed+for+work{csrf}", sha(7)).into_bytes()
    };
    let ct = ("content-type", "application/x-www-form-urlencoded");
    let r = s.send(Method::POST, "/ui/blocked", &[ct, ("cookie", &cookie)], form("")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(s.admin(Method::GET, "/api/v1/proposals", None).await.json()["proposals"].as_array().unwrap().is_empty());
    let token = cookie.trim_start_matches("dasher_csrf=");
    let r =
        s.send(Method::POST, "/ui/blocked", &[ct, ("cookie", &cookie)], form(&format!("&csrf_token={token}"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let list = s.admin(Method::GET, "/api/v1/proposals?status=pending", None).await.json();
    let p = &list["proposals"][0];
    assert_eq!(
        (p["rule_set"].as_str(), p["rule"]["identifier"].as_str()),
        // One proposal per binary (requests from many Macs add up); the admin picks the scope.
        (Some("global"), Some(&*sha(7)))
    );
    assert_eq!(s.admin(Method::GET, "/api/v1/rules?rule_set=host:M-BLOCK-1", None).await.json()["rules"], json!([]));

    // Views per machine are limited; another machine is not affected.
    let mut limited = None;
    for _ in 0..100 {
        let r = get(format!("sha256={}&machine_id={id}", sha(7))).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("views are rate-limited");
    assert!(r.headers.get("retry-after").is_some());
    assert_eq!(get(format!("sha256={}&machine_id=M-OTHER", sha(7))).await.status, StatusCode::OK);
}
