//! The console's Binaries, Proposals, Rules and Audit pages over real HTTP (no browser): a
//! user signs in through the login form (token + CSRF token from the page, cookies kept),
//! views a binary after an event upload, blocks it for one host from the binary page (the
//! host's effective rules and next sync get it), approves proposals with a chosen scope one
//! at a time and in bulk, adds / changes / removes a rule, is refused every write as a
//! read-only user (403), and finds each action on the audit page.

use dasher_sdk::domain::{RuleKey, RuleSpec};
use dasher_sdk::wire::{Policy, RuleType};
use dasher_server::config::{Role, TokenConfig};
use dasher_server::credentials::sha256_hex;
use dasher_store::{NewProposal, ProposalScope, StoreSpec};
use dasher_tests::{ClientRules, Reply, TestServer};
use http::{Method, StatusCode, header};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const EDITOR: &str = "editor-secret";
const VIEWER: &str = "viewer-secret";
const HOST: &str = "mac-1";
const OTHER_HOST: &str = "mac-2";

fn sha(n: u32) -> String {
    format!("{n:064x}")
}

/// A signed-in console user: cookies kept between requests like a browser.
struct Browser<'a> {
    s: &'a TestServer,
    cookies: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    async fn sign_in(s: &'a TestServer, token: &str) -> Browser<'a> {
        let mut b = Browser { s, cookies: BTreeMap::new() };
        let login = b.get("/ui/login").await;
        assert_eq!(login.status, StatusCode::OK);
        let r = b.post("/ui/login", &[("token", token)]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "sign-in: {}", text(&r));
        assert!(b.cookies.contains_key("dasher_session"), "a session cookie");
        b
    }

    fn keep_cookies(&mut self, r: &Reply) {
        for v in r.headers.get_all(header::SET_COOKIE) {
            let pair = v.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.insert(k.trim().to_owned(), v.to_owned());
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn get(&mut self, path: &str) -> Reply {
        let cookie = self.cookie_header();
        let r = self.s.send(Method::GET, path, &[("cookie", &cookie)], vec![]).await;
        self.keep_cookies(&r);
        r
    }

    /// POSTs a form with the CSRF token the pages carry (the `dasher_csrf` cookie's value).
    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let token = self.cookies.get("dasher_csrf").cloned().expect("a page set the CSRF cookie");
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in fields {
            form.append_pair(k, v);
        }
        form.append_pair("csrf_token", &token);
        let cookie = self.cookie_header();
        let headers = [("cookie", cookie.as_str()), ("content-type", "application/x-www-form-urlencoded")];
        let r = self.s.send(Method::POST, path, &headers, form.finish().into_bytes()).await;
        self.keep_cookies(&r);
        r
    }
}

fn text(r: &Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The hidden CSRF input of a page's forms.
fn csrf_input(html: &str) -> Option<String> {
    let at = html.find(r#"name="csrf_token" value=""#)? + r#"name="csrf_token" value=""#.len();
    Some(html[at..].split('"').next()?.to_owned())
}

fn preflight(id: &str) -> Value {
    json!({"hostname": format!("{id}.example.com"), "santa_version": "2026.7.1", "machine_id": id,
           "client_mode": "LOCKDOWN", "os_version": "15.5", "model_identifier": "Mac15,7"})
}

/// Proposals stored before the server starts (as triage or the block page would make them).
fn seed_proposals(spec: StoreSpec) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let store = dasher_store::open(&spec).unwrap();
            for (i, id) in
                ["EQHXZ8M8AV:com.d", "EQHXZ8M8AV:com.a", "EQHXZ8M8AV:com.b", "EQHXZ8M8AV:com.c"].iter().enumerate()
            {
                let rule = RuleSpec {
                    identifier: (*id).into(),
                    rule_type: RuleType::SigningId,
                    policy: Policy::Allowlist,
                    custom_msg: None,
                    custom_url: None,
                    cel_expr: None,
                    notification_app_name: None,
                    event_detail_button_label: None,
                    comment: None,
                };
                let p = NewProposal {
                    scope: ProposalScope::Host,
                    rule_set: format!("host:{HOST}"),
                    key: RuleKey { rule_type: RuleType::SigningId, identifier: (*id).into() },
                    rule,
                    reason: format!("seen blocked ({i})"),
                    machine_id: HOST.into(),
                    proposed_by: vec![],
                    at_unix: 1_767_225_600,
                };
                store.record_proposal(&p).await.unwrap();
            }
        });
    })
    .join()
    .unwrap();
}

async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.admin.tokens = vec![
            TokenConfig { name: "erin".into(), role: Role::RulesEditor, sha256: sha256_hex(EDITOR) },
            TokenConfig { name: "vic".into(), role: Role::ReadOnly, sha256: sha256_hex(VIEWER) },
        ];
        seed_proposals(c.store_spec());
    })
    .await
}

async fn effective(s: &TestServer, id: &str) -> Value {
    let r = s.admin(Method::GET, &format!("/api/v1/hosts/{id}/effective-rules"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_view_and_change_rules_through_the_admin_code_path() {
    let s = server().await;
    let binary = sha(7);
    let mut client = ClientRules::default();
    client.sync(&s, HOST, preflight(HOST)).await;
    ClientRules::default().sync(&s, OTHER_HOST, preflight(OTHER_HOST)).await;
    let event = json!({"file_sha256": binary, "file_path": "/Applications/Tool.app/Contents/MacOS", "file_name": "tool",
        "execution_time": 1_767_225_600.0, "decision": "BLOCK_UNKNOWN", "pid": 1, "team_id": "EQHXZ8M8AV",
        "signing_id": "EQHXZ8M8AV:com.vendor.tool",
        "signing_chain": [{"sha256": "c".repeat(64), "cn": "Developer ID Application: Vendor", "org": "Vendor Inc"}]});
    let r = s.stage("eventupload", HOST, &json!({"events": [event], "machine_id": HOST})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));

    let mut editor = Browser::sign_in(&s, EDITOR).await;

    // The binary page: names, signer, hosts, the forms carry the CSRF token.
    let page = editor.get(&format!("/ui/binaries/{binary}")).await;
    let html = text(&page);
    assert_eq!(page.status, StatusCode::OK, "{html}");
    for want in ["tool", "EQHXZ8M8AV:com.vendor.tool", "Developer ID Application: Vendor", HOST, "Decisions per day"] {
        assert!(html.contains(want), "binary page shows {want:?}");
    }
    assert_eq!(csrf_input(&html).as_deref(), editor.cookies.get("dasher_csrf").map(String::as_str));
    let search = editor.get(&format!("/ui/binaries?sha256={}", binary.to_uppercase())).await;
    assert_eq!(search.status, StatusCode::SEE_OTHER, "a whole SHA-256 goes to its page");
    let prefix = editor.get(&format!("/ui/binaries?sha256={}", &binary[..20])).await;
    assert_eq!(prefix.status, StatusCode::OK);
    assert!(text(&prefix).contains(&format!("/ui/binaries/{binary}")), "a prefix finds it");
    let other = text(&editor.get("/ui/binaries?sha256=ffff").await);
    assert!(!other.contains(&format!("/ui/binaries/{binary}")), "another prefix does not");
    assert!(text(&editor.get("/ui/binaries").await).contains(&binary[..16]), "recently seen binaries");
    assert_eq!(editor.get("/ui/binaries?sha256=xyz").await.status, StatusCode::BAD_REQUEST);

    // Block it for one host by its signing ID, with a message.
    let r = editor
        .post(
            &format!("/ui/binaries/{binary}/rule"),
            &[
                ("rule_type", "SIGNINGID"),
                ("policy", "BLOCKLIST"),
                ("scope", "host"),
                ("machine_id", HOST),
                ("custom_msg", "Ask IT first"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    assert!(text(&r).contains("host:mac-1"), "the page says where it went");
    let eff = effective(&s, HOST).await;
    let rule = eff["rules"].as_array().unwrap().iter().find(|r| r["identifier"] == "EQHXZ8M8AV:com.vendor.tool");
    let rule = rule.unwrap_or_else(|| panic!("the host's effective rules hold the block: {eff}"));
    assert_eq!((rule["policy"].as_str(), rule["custom_msg"].as_str()), (Some("BLOCKLIST"), Some("Ask IT first")));
    assert!(effective(&s, OTHER_HOST).await["rules"].as_array().unwrap().is_empty(), "only that host");
    client.sync(&s, HOST, preflight(HOST)).await;
    let got = client.0.get(&("SIGNINGID".to_owned(), "EQHXZ8M8AV:com.vendor.tool".to_owned()));
    assert_eq!(got.map(|r| r["policy"].clone()), Some(json!("BLOCKLIST")), "the next sync delivers it: {client:?}");
    let page = text(&editor.get(&format!("/ui/binaries/{binary}")).await);
    assert!(page.contains("by its SIGNINGID rule in"), "the binary page names the deciding rule");
    // A bad scope is named.
    let r = editor
        .post(
            &format!("/ui/binaries/{binary}/rule"),
            &[("rule_type", "BINARY"), ("policy", "ALLOWLIST"), ("scope", "tag"), ("tag", "host:x")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let page = text(&r);
    assert!(page.contains("Not saved") && page.contains("<code>tag</code>"), "the field is named: {page}");
    assert!(page.contains("Allow or block"), "shown on the binary page, its form beneath");
    let head = s.admin(Method::GET, "/api/v1/rules", None).await.json()["version"].clone();
    let r = editor
        .post(
            &format!("/ui/binaries/{binary}/rule"),
            &[("rule_type", "CDHASH"), ("policy", "BLOCKLIST"), ("scope", "global")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "no host reported a CD hash for it");
    assert_eq!(s.admin(Method::GET, "/api/v1/rules", None).await.json()["version"], head, "nothing committed");

    // The proposal queue: four pending; approve one into global, two in bulk into a tag's set.
    let queue = text(&editor.get("/ui/proposals").await);
    for id in ["EQHXZ8M8AV:com.a", "EQHXZ8M8AV:com.b", "EQHXZ8M8AV:com.c"] {
        assert!(queue.contains(id), "{id} is in the queue");
    }
    let list = s.admin(Method::GET, "/api/v1/proposals?status=pending", None).await.json();
    let ids: Vec<String> = list["proposals"].as_array().unwrap().iter().map(|p| p["id"].to_string()).collect();
    assert_eq!(ids.len(), 4, "newest first: com.c, com.b, com.a, com.d");
    let r = editor.post("/ui/proposals/decide", &[("id", &ids[0]), ("verb", "approve"), ("scope", "global")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    let r = editor
        .post(
            "/ui/proposals/decide",
            &[("id", &ids[1]), ("id", &ids[2]), ("verb", "approve"), ("scope", "rule_set"), ("rule_set", "eng")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    for (id, set) in [(&ids[0], "global"), (&ids[1], "eng"), (&ids[2], "eng")] {
        let p = s.admin(Method::GET, &format!("/api/v1/proposals/{id}"), None).await.json();
        assert_eq!((p["status"].as_str(), p["decided_by"].as_str()), (Some("approved"), Some("erin")), "{p}");
        assert_eq!(p["applied_rule_set"], set, "{p}");
    }
    let again = editor.post("/ui/proposals/decide", &[("id", &ids[0]), ("verb", "reject")]).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "a decided proposal is not decided again");
    let eff = effective(&s, OTHER_HOST).await;
    assert!(eff["rules"].as_array().unwrap().iter().any(|r| r["identifier"] == "EQHXZ8M8AV:com.c"), "global: {eff}");

    // The admin API takes the same scope (same code path); a bad one is named.
    let path = format!("/api/v1/proposals/{}/approve", ids[3]);
    let r = s.admin(Method::POST, &path, Some(json!({"scope": {"rule_set": "host:mac-2"}}))).await;
    assert_eq!((r.status, r.json()["field"].as_str()), (StatusCode::BAD_REQUEST, Some("scope")), "{}", text(&r));
    let r = s.admin(Method::POST, &path, Some(json!({"scope": {"host": OTHER_HOST}}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    assert_eq!(r.json()["applied_rule_set"], "host:mac-2");
    let eff = effective(&s, OTHER_HOST).await;
    assert!(eff["rules"].as_array().unwrap().iter().any(|r| r["identifier"] == "EQHXZ8M8AV:com.d"), "host: {eff}");
    let queue = text(&editor.get("/ui/proposals?status=approved").await);
    assert!(queue.contains("host:mac-2") && queue.contains("erin"), "the queue shows who decided and where");

    // Rules: add, change (a refused field is shown next to it), remove.
    let rule = [("rule_set", "eng"), ("rule_type", "TEAMID"), ("identifier", "abcde12345"), ("policy", "BLOCKLIST")];
    let r = editor.post("/ui/rules", &rule).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", text(&r));
    let set_page = text(&editor.get("/ui/rules?set=eng").await);
    assert!(set_page.contains("ABCDE12345") && set_page.contains("EQHXZ8M8AV:com.b"), "{set_page}");
    let sets_page = text(&editor.get("/ui/rules").await);
    assert!(sets_page.contains("eng") && sets_page.contains("global"));
    let search = text(&editor.get("/ui/rules?set=eng&type=SIGNINGID&q=EQHXZ8M8AV:com.a").await);
    assert!(search.contains("EQHXZ8M8AV:com.a") && !search.contains("EQHXZ8M8AV:com.b"), "prefix search: {search}");
    let bad = [
        ("rule_set", "eng"),
        ("rule_type", "TEAMID"),
        ("identifier", "abcde12345"),
        ("policy", "ALLOWLIST"),
        ("custom_url", "javascript:alert(1)"),
    ];
    let r = editor.post("/ui/rules", &bad).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let page = text(&r);
    let at = page.find(r#"name="custom_url""#).expect("the form is shown again");
    assert!(page[at..].find("role=\"alert\"").is_some_and(|i| i < 400), "the error is next to custom_url: {page}");
    let changed = [("rule_set", "eng"), ("rule_type", "TEAMID"), ("identifier", "ABCDE12345"), ("policy", "ALLOWLIST")];
    assert_eq!(editor.post("/ui/rules", &changed).await.status, StatusCode::SEE_OTHER);
    let got = s.admin(Method::GET, "/api/v1/rules?rule_set=eng", None).await.json();
    let team = got["rules"].as_array().unwrap().iter().find(|r| r["identifier"] == "ABCDE12345").cloned();
    assert_eq!(team.map(|r| r["policy"].clone()), Some(json!("ALLOWLIST")), "changed: {got}");
    let r = editor
        .post("/ui/rules/remove", &[("rule_set", "eng"), ("rule_type", "TEAMID"), ("identifier", "ABCDE12345")])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", text(&r));
    let got = s.admin(Method::GET, "/api/v1/rules?rule_set=eng", None).await.json();
    assert!(!got["rules"].as_array().unwrap().iter().any(|r| r["identifier"] == "ABCDE12345"), "removed: {got}");

    // A read-only user sees every page and is refused every write.
    let mut viewer = Browser::sign_in(&s, VIEWER).await;
    for path in [
        format!("/ui/binaries/{binary}"),
        "/ui/binaries".into(),
        "/ui/proposals?status=all".into(),
        "/ui/rules".into(),
        "/ui/rules?set=eng".into(),
        "/ui/audit".into(),
    ] {
        let r = viewer.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let page = text(&r);
        let forms = page.matches("<form").count();
        assert!(forms >= 2, "{path} has forms");
        assert_eq!(page.matches(r#"name="csrf_token""#).count(), forms, "{path}: every form carries the CSRF token");
        assert!(!page.contains("<script>") && !page.contains(" style="), "{path}: no inline script or style");
    }
    let writes: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            format!("/ui/binaries/{binary}/rule"),
            vec![("rule_type", "BINARY"), ("policy", "BLOCKLIST"), ("scope", "global")],
        ),
        ("/ui/proposals/decide".into(), vec![("id", "1"), ("verb", "reject")]),
        ("/ui/rules".into(), rule.to_vec()),
        (
            "/ui/rules/remove".into(),
            vec![("rule_set", "eng"), ("rule_type", "SIGNINGID"), ("identifier", "EQHXZ8M8AV:com.b")],
        ),
    ];
    let head = s.admin(Method::GET, "/api/v1/rules", None).await.json()["version"].clone();
    for (path, fields) in &writes {
        let r = viewer.post(path, fields).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", text(&r));
        assert!(text(&r).contains("rules-editor"), "the 403 page names the role needed");
    }
    assert_eq!(s.admin(Method::GET, "/api/v1/rules", None).await.json()["version"], head, "nothing changed");

    // The audit page lists the actions, newest first, and filters by target.
    let audit = text(&editor.get("/ui/audit").await);
    for want in ["rules.commit", "proposal.approve", "erin", "host:mac-1"] {
        assert!(audit.contains(want), "the audit page shows {want:?}: {audit}");
    }
    let one = text(&editor.get(&format!("/ui/audit?target=proposal:{}", ids[0])).await);
    assert!(one.contains("proposal.approve") && !one.contains("rules.commit"), "{one}");
}
