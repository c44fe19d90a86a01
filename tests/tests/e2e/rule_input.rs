//! Rule input real clients choke on, over real loopback HTTP: CEL that santad would not
//! compile (NPS 2025.6–2025.11 then fail the whole rule download), text santad would cut
//! short, URLs that are not web pages; and `REMOVE`s for rules a client generation could
//! never hold (it drops them: `rules_processed < rules_received`).

use dasher_tests::{ClientRules, TestServer};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn preflight(id: &str, santa_version: &str) -> Value {
    json!({"hostname": format!("{id}.example.com"), "santa_version": santa_version, "machine_id": id,
           "client_mode": "MONITOR", "os_version": "15.5", "model_identifier": "Mac15,7"})
}

fn sha(c: char) -> String {
    c.to_string().repeat(64)
}

/// POSTs one rule; returns the status and the JSON error body.
async fn post_rule(s: &TestServer, rule: Value) -> (StatusCode, Value) {
    let r = s.admin(Method::POST, "/api/v1/rules", Some(json!({ "rules": [rule] }))).await;
    (r.status, r.json())
}

fn cel_rule(expr: &str) -> Value {
    json!({"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "CEL", "cel_expr": expr})
}

#[tokio::test]
async fn cel_that_santad_would_not_compile_is_refused_naming_field_and_position() {
    let s = TestServer::start().await;
    for (expr, position, what) in [
        ("this is ((( not cel", "line 1, column 6", "syntax error"),
        ("euid == 0 &&\n  uid == 0", "line 2, column 3", "undeclared reference to 'uid'"),
        ("target.signing_tme > timestamp('2025-01-01T00:00:00Z')", "line 1, column 7", "no field 'signing_tme'"),
        ("cwd.lowerAscii() == '/'", "line 1, column 15", "undeclared function 'lowerAscii'"),
        ("euid == 'root'", "line 1, column 6", "no matching overload"),
        ("cwd", "line 1, column 1", "must give a bool"),
        ("euid == 0 ? REQUIRE_TOUCHID : ALLOWLIST", "line 1, column 13", "undeclared reference"),
    ] {
        let (status, body) = post_rule(&s, cel_rule(expr)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{expr}: {body}");
        assert_eq!(body["field"], "rules[0].cel_expr", "{expr}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(position) && error.contains(what), "{expr}: {error}");
    }
    let r = s.admin(Method::GET, "/api/v1/rules?rule_set=global", None).await.json();
    assert_eq!(r["rules"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn control_characters_and_non_web_urls_are_refused_by_field() {
    let s = TestServer::start().await;
    let blocked = |extra: Value| {
        let mut rule = json!({"identifier": sha('a'), "rule_type": "BINARY", "policy": "BLOCKLIST"});
        rule.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        rule
    };
    for (extra, field) in [
        (json!({"custom_msg": "Blocked\u{0}, see IT"}), "custom_msg"),
        (json!({"custom_msg": "bell\u{7}"}), "custom_msg"),
        (json!({"event_detail_button_label": "Open\r"}), "event_detail_button_label"),
        (json!({"notification_app_name": "App\u{1b}[2J"}), "notification_app_name"),
        (json!({"custom_url": "javascript:alert(document.cookie)"}), "custom_url"),
        (json!({"custom_url": "file:///Applications/Calculator.app"}), "custom_url"),
        (json!({"custom_url": "https://"}), "custom_url"),
    ] {
        let (status, body) = post_rule(&s, blocked(extra.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{extra}: {body}");
        assert_eq!(body["field"], format!("rules[0].{field}"), "{extra}: {body}");
    }
    let r = s.admin(Method::GET, "/api/v1/rules?rule_set=global", None).await.json();
    assert_eq!(r["rules"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn valid_cel_text_and_urls_are_accepted_and_delivered() {
    let s = TestServer::start().await;
    let expr = "has(target.secure_signing_time) && target.secure_signing_time < timestamp('2024-01-01T00:00:00Z') ? BLOCKLIST : ALLOWLIST";
    s.put_rules(json!([
        cel_rule("target.signing_time >= timestamp('2025-05-31T00:00:00Z')"),
        {"identifier": "ABCDE12345", "rule_type": "TEAMID", "policy": "CEL", "cel_expr": expr},
        {"identifier": sha('b'), "rule_type": "BINARY", "policy": "BLOCKLIST",
         "custom_msg": "Not allowed here.\n\tAsk IT.", "custom_url": "https://it.example.com/req?sha=%file_sha%"},
    ]))
    .await;
    let mut client = ClientRules::default();
    let (sync_type, received, _) = client.sync(&s, "m1", preflight("m1", "2025.8")).await;
    assert_eq!((sync_type.as_str(), received), ("CLEAN", 3));
    let team = &client.0[&("TEAMID".to_owned(), "ABCDE12345".to_owned())];
    assert_eq!((team["policy"].as_str(), team["cel_expr"].as_str()), (Some("CEL"), Some(expr)));
    let binary = &client.0[&("BINARY".to_owned(), sha('b'))];
    assert_eq!(binary["custom_msg"], "Not allowed here.\n\tAsk IT.");
    assert_eq!(binary["custom_url"], "https://it.example.com/req?sha=%file_sha%");
}

/// What a client of `version` does with a rule it receives (reference §5.5, §6.1): it
/// processes it only if it knows the rule type (SIGNINGID 2023.5, CDHASH 2024.3) and the
/// policy (CEL 2025.6).
fn processes(rule: &Value, version: &str) -> bool {
    let v: Vec<u32> = version.split('.').map(|p| p.parse().unwrap()).collect();
    let at_least = |year: u32, release: u32| (v[0], v[1]) >= (year, release);
    let known_type = match rule["rule_type"].as_str() {
        Some("CDHASH") => at_least(2024, 3),
        Some("SIGNINGID") => at_least(2023, 5),
        Some("BINARY" | "CERTIFICATE" | "TEAMID") => true,
        _ => false,
    };
    known_type && (rule["policy"] != "CEL" || at_least(2025, 6))
}

/// A client of one Santa version with its rule table (type, identifier) → policy.
struct OldClient {
    id: &'static str,
    version: &'static str,
    rules: BTreeMap<(String, String), String>,
}

impl OldClient {
    fn new(id: &'static str, version: &'static str) -> Self {
        OldClient { id, version, rules: BTreeMap::new() }
    }

    /// One sync: preflight with the rule counts it holds, every ruledownload page, the rules
    /// it processes applied, postflight with received/processed as the client counts them.
    /// Returns the sync type and the rules received.
    async fn sync(&mut self, s: &TestServer) -> (String, Vec<Value>) {
        let count = |t: &str| self.rules.keys().filter(|(rt, _)| rt == t).count();
        let mut pre = preflight(self.id, self.version);
        for (field, t) in
            [("binary_rule_count", "BINARY"), ("teamid_rule_count", "TEAMID"), ("cdhash_rule_count", "CDHASH")]
        {
            pre[field] = count(t).into();
        }
        let pre = s.stage("preflight", self.id, &pre).await;
        assert_eq!(pre.status, StatusCode::OK, "{}", String::from_utf8_lossy(&pre.body));
        let pre = pre.json();
        let clean = pre["sync_type"].as_str().is_some_and(|t| t != "NORMAL") || pre["clean_sync"] == true;
        let mut rules = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let mut body = json!({ "machine_id": self.id });
            if let Some(c) = &cursor {
                body["cursor"] = c.clone().into();
            }
            let page = s.stage("ruledownload", self.id, &body).await;
            assert_eq!(page.status, StatusCode::OK, "{}", String::from_utf8_lossy(&page.body));
            let page = page.json();
            rules.extend(page["rules"].as_array().unwrap().iter().cloned());
            match page.get("cursor").and_then(Value::as_str) {
                Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
                _ => break,
            }
        }
        let processed: Vec<&Value> = rules.iter().filter(|r| processes(r, self.version)).collect();
        if clean && !processed.is_empty() {
            self.rules.clear();
        }
        for r in &processed {
            let key = (r["rule_type"].as_str().unwrap().to_owned(), r["identifier"].as_str().unwrap().to_owned());
            match r["policy"].as_str().unwrap() {
                "REMOVE" => self.rules.remove(&key),
                policy => self.rules.insert(key, policy.to_owned()),
            };
        }
        let post = json!({"rules_received": rules.len(), "rules_processed": processed.len(), "machine_id": self.id});
        assert_eq!(s.stage("postflight", self.id, &post).await.status, StatusCode::OK);
        (if clean { "CLEAN" } else { "NORMAL" }.to_owned(), rules)
    }
}

fn summary(rules: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = rules
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["policy"].as_str().unwrap(),
                r["rule_type"].as_str().unwrap(),
                r["identifier"].as_str().unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn old_clients_get_no_remove_for_cdhash_or_cel_rules_they_never_held() {
    let s = TestServer::start().await;
    let (cdhash, binary) = ("c".repeat(40), sha('b'));
    s.put_rules(json!([
        {"identifier": binary, "rule_type": "BINARY", "policy": "BLOCKLIST"},
        {"identifier": cdhash, "rule_type": "CDHASH", "policy": "BLOCKLIST"},
        cel_rule("euid == 0 && !target.is_platform_binary"),
        {"identifier": "ABCDE12345", "rule_type": "TEAMID", "policy": "ALLOWLIST"},
    ]))
    .await;
    let mut old = OldClient::new("old-2023", "2023.10");
    let mut pre_cel = OldClient::new("pre-cel-2025", "2025.5");
    let (sync_type, rules) = old.sync(&s).await;
    let want = ["ALLOWLIST TEAMID ABCDE12345".to_owned(), format!("BLOCKLIST BINARY {binary}")];
    assert_eq!((sync_type.as_str(), summary(&rules)), ("CLEAN", want.to_vec()), "2023.10 knows neither CDHASH nor CEL");
    let (sync_type, rules) = pre_cel.sync(&s).await;
    let want = [
        "ALLOWLIST TEAMID ABCDE12345".to_owned(),
        format!("BLOCKLIST BINARY {binary}"),
        format!("BLOCKLIST CDHASH {cdhash}"),
    ];
    assert_eq!((sync_type.as_str(), summary(&rules)), ("CLEAN", want.to_vec()), "2025.5 knows CDHASH, not CEL");

    s.put_rules(json!([
        {"identifier": binary, "rule_type": "BINARY", "policy": "REMOVE"},
        {"identifier": cdhash, "rule_type": "CDHASH", "policy": "REMOVE"},
        {"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "REMOVE"},
    ]))
    .await;
    for (client, want) in [
        (&mut old, vec![format!("REMOVE BINARY {binary}")]),
        (&mut pre_cel, vec![format!("REMOVE BINARY {binary}"), format!("REMOVE CDHASH {cdhash}")]),
    ] {
        let version = client.version;
        let (sync_type, rules) = client.sync(&s).await;
        assert_eq!((sync_type.as_str(), summary(&rules)), ("NORMAL", want), "{version}");
        assert!(rules.iter().all(|r| processes(r, version)), "{version}: rules_processed < rules_received: {rules:?}");
        let host = s.admin(Method::GET, &format!("/api/v1/hosts/{}", client.id), None).await.json();
        let state = &host["sync"];
        let counts = (state["last_rules_received"].as_u64(), state["last_rules_processed"].as_u64());
        assert_eq!(counts, (Some(rules.len() as u64), Some(rules.len() as u64)), "{version}: {host}");
        assert_eq!(client.rules.len(), 1, "{version}: only the TEAMID allow is left: {:?}", client.rules);
    }
}
