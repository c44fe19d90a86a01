//! Rules as code against a real server: plan/apply through the admin API with sets read from
//! real rules files, atomicity, `expect_version`, the GitOps watcher, managed sets, imports.
//! The CLI itself is driven in `server/tests/cli_rules.rs`.

use dasher_server::rules::{PlanRequest, files, import};
use dasher_tests::TestServer;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

fn write(dir: &Path, name: &str, text: &str) {
    // Temporary file beside it, renamed into place: what git-sync and CI copies do.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn body(dir: &Path, prune: bool, expect_version: Option<u64>) -> Value {
    let sets = files::load_dir(dir).unwrap().sets;
    serde_json::to_value(PlanRequest { sets, prune, expect_version }).unwrap()
}

async fn rules_of(s: &TestServer, set: &str) -> Vec<Value> {
    let r = s.admin(Method::GET, &format!("/api/v1/rules?rule_set={set}"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    r.json()["rules"].as_array().unwrap().clone()
}

async fn head(s: &TestServer) -> u64 {
    s.admin(Method::GET, "/api/v1/rules?rule_set=global", None).await.json()["version"].as_u64().unwrap()
}

const ENG: &str = r#"
rule_set = "engineering"
[[rules]]
identifier = "EQHXZ8M8AV"
rule_type  = "TEAMID"
policy     = "ALLOWLIST"
custom_msg = "Google software"
comment    = "why this rule exists"
[[rules]]
identifier = "platform:com.apple.Terminal"
rule_type  = "SIGNINGID"
policy     = "BLOCKLIST"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_apply_add_change_remove_and_export_round_trips() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "eng.toml", ENG);
    let plan = s.admin(Method::POST, "/api/v1/rules/plan", Some(body(dir.path(), false, None))).await.json();
    assert_eq!((plan["add"].as_u64(), plan["change"].as_u64(), plan["remove"].as_u64()), (Some(2), Some(0), Some(0)));
    assert_eq!(plan["sets"]["engineering"]["source"], "eng.toml");
    assert_eq!(head(&s).await, 0, "a plan writes nothing");
    let r = s.admin(Method::POST, "/api/v1/rules/apply", Some(body(dir.path(), false, Some(0)))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["applied_version"], 1, "the whole plan is one version");
    let stored = rules_of(&s, "engineering").await;
    assert_eq!(stored.len(), 2);
    let team = stored.iter().find(|r| r["rule_type"] == "TEAMID").unwrap();
    assert_eq!(team["comment"], "why this rule exists", "the comment is stored and returned");

    // Export (the rules as the API returns them, written as a file) then apply: no-op.
    let rules: Vec<dasher_sdk::domain::Rule> = serde_json::from_value(Value::Array(stored)).unwrap();
    let exported = tempfile::tempdir().unwrap();
    write(exported.path(), &files::file_name_for("engineering"), &files::to_toml("engineering", &rules));
    let again = s.admin(Method::POST, "/api/v1/rules/apply", Some(body(exported.path(), false, None))).await.json();
    assert_eq!(
        (again["add"].as_u64(), again["change"].as_u64(), again["remove"].as_u64()),
        (Some(0), Some(0), Some(0))
    );
    assert_eq!(again["applied_version"], 1, "export then apply creates no version");

    // Change one field, drop one rule, add one: one version, fields named.
    write(
        dir.path(),
        "eng.toml",
        r#"
rule_set = "engineering"
[[rules]]
identifier = "EQHXZ8M8AV"
rule_type  = "TEAMID"
policy     = "ALLOWLIST"
custom_msg = "Google LLC software"
comment    = "why this rule exists"
[[rules]]
identifier = "2dc104631939b4bdf5d6bccab76e166e37fe5e1605340cf68dab919df58b8eda"
rule_type  = "BINARY"
policy     = "SILENT_BLOCKLIST"
"#,
    );
    let plan = s.admin(Method::POST, "/api/v1/rules/plan", Some(body(dir.path(), false, None))).await.json();
    let eng = &plan["sets"]["engineering"];
    assert_eq!((eng["add"].as_u64(), eng["change"].as_u64(), eng["remove"].as_u64()), (Some(1), Some(1), Some(1)));
    assert_eq!(eng["changed"][0]["fields"], json!(["custom_msg"]));
    assert_eq!(eng["removed"][0]["identifier"], "platform:com.apple.Terminal");
    let r = s.admin(Method::POST, "/api/v1/rules/apply", Some(body(dir.path(), false, Some(1)))).await.json();
    assert_eq!(r["applied_version"], 2);
    let ids: Vec<String> =
        rules_of(&s, "engineering").await.iter().map(|r| r["identifier"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 2);
    assert!(!ids.contains(&"platform:com.apple.Terminal".to_owned()));

    // Sets no file names are left alone, unless prune.
    s.put_rules(json!([{"identifier": "ABCDE12345", "rule_type": "TEAMID", "policy": "BLOCKLIST"}])).await;
    let plan = s.admin(Method::POST, "/api/v1/rules/plan", Some(body(dir.path(), false, None))).await.json();
    assert_eq!(plan["sets"], json!({}), "global is not named: untouched");
    let plan = s.admin(Method::POST, "/api/v1/rules/plan", Some(body(dir.path(), true, None))).await.json();
    assert_eq!(plan["sets"]["global"]["remove"], 1);
    assert_eq!(plan["sets"]["global"]["pruned"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_rule_applies_nothing_and_a_moved_head_conflicts() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "eng.toml", ENG);
    write(
        dir.path(),
        "kiosk.toml",
        "[[rules]]\nidentifier = \"EQHXZ8M8AV\"\nrule_type = \"TEAMID\"\npolicy = \"ALLOWLIST\"\n\
         [[rules]]\nidentifier = \"not-a-team-id\"\nrule_type = \"TEAMID\"\npolicy = \"BLOCKLIST\"\n",
    );
    let r = s.admin(Method::POST, "/api/v1/rules/apply", Some(body(dir.path(), false, None))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let e = r.json();
    assert_eq!(e["field"], "sets[1].rules[1].identifier");
    let msg = e["error"].as_str().unwrap();
    assert!(msg.starts_with("kiosk.toml: rules[1] (identifier \"not-a-team-id\"): identifier: "), "{msg}");
    assert_eq!(head(&s).await, 0, "nothing applied, not even the good file");
    assert!(rules_of(&s, "engineering").await.is_empty());

    std::fs::remove_file(dir.path().join("kiosk.toml")).unwrap();
    s.put_rules(json!([{"identifier": "ABCDE12345", "rule_type": "TEAMID", "policy": "BLOCKLIST"}])).await;
    let r = s.admin(Method::POST, "/api/v1/rules/apply", Some(body(dir.path(), false, Some(0)))).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "the head moved since the plan at 0");
    assert!(r.json()["error"].as_str().unwrap().contains("version 1"));
    assert_eq!(head(&s).await, 1, "nothing written");
    let r = s.admin(Method::POST, "/api/v1/rules/apply", Some(body(dir.path(), false, Some(1)))).await;
    assert_eq!(r.status, StatusCode::OK);
    // A read-only token may plan (CI on pull requests) but not apply.
    let ro = TestServer::start_with(|c| {
        c.admin_token = None;
        c.admin.tokens = vec![dasher_server::config::TokenConfig {
            name: "ci".into(),
            role: dasher_server::config::Role::ReadOnly,
            sha256: dasher_server::credentials::sha256_hex("ro-token"),
        }];
    })
    .await;
    let auth = [("authorization", "Bearer ro-token"), ("content-type", "application/json")];
    let b = serde_json::to_vec(&body(dir.path(), false, None)).unwrap();
    assert_eq!(ro.send(Method::POST, "/api/v1/rules/plan", &auth, b.clone()).await.status, StatusCode::OK);
    assert_eq!(ro.send(Method::POST, "/api/v1/rules/apply", &auth, b).await.status, StatusCode::FORBIDDEN);
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitops_dir_applies_renames_into_place_keeps_last_good_on_a_broken_file_and_owns_its_sets() {
    let rules = tempfile::tempdir().unwrap();
    write(rules.path(), "engineering.toml", ENG);
    let path = rules.path().to_owned();
    let s = TestServer::start_with(move |c| {
        c.rules_dir = Some(dasher_server::config::RulesDirSettings {
            path,
            debounce_ms: 50,
            // The watch normally sees changes at once; a 1 s rescan backs it up, because the
            // one e2e test process runs many servers and can run out of inotify instances
            // (128 per user by default), which a real server does not.
            poll_secs: 1,
            ..Default::default()
        });
    })
    .await;
    assert_eq!(rules_of(&s, "engineering").await.len(), 2, "applied at start");
    let status = s.admin(Method::GET, "/api/v1/rules-dir", None).await.json();
    assert_eq!(status["applied_version"], 1);
    assert_eq!(status["last_error"], Value::Null);
    let first_hash = status["applied_sha256"].as_str().unwrap().to_owned();

    // A new file renamed into place is applied.
    write(
        rules.path(),
        "kiosk.toml",
        "[[rules]]\nidentifier = \"ABCDE12345\"\nrule_type = \"TEAMID\"\npolicy = \"BLOCKLIST\"\n",
    );
    wait_for("kiosk.toml to be applied", || async { rules_of(&s, "kiosk").await.len() == 1 }).await;
    let status = s.admin(Method::GET, "/api/v1/rules-dir", None).await.json();
    assert_ne!(status["applied_sha256"], first_hash.as_str());
    assert_eq!(status["sets"]["kiosk"], rules.path().join("kiosk.toml").display().to_string());

    // A broken file: nothing of the change applies, the error is shown and counted.
    write(
        rules.path(),
        "kiosk.toml",
        "[[rules]]\nidentifier = \"ABCDE12345\"\nrule_type = \"TEAMID\"\npolicy = \"NOPE\"\n",
    );
    write(
        rules.path(),
        "engineering.toml",
        "rule_set = \"engineering\"\n[[rules]]\nidentifier = \"EQHXZ8M8AV\"\nrule_type = \"TEAMID\"\npolicy = \"ALLOWLIST\"\n",
    );
    wait_for("the broken file to be reported", || async {
        s.admin(Method::GET, "/api/v1/rules-dir", None).await.json()["last_error"].is_string()
    })
    .await;
    let status = s.admin(Method::GET, "/api/v1/rules-dir", None).await.json();
    let error = status["last_error"].as_str().unwrap();
    assert!(error.contains("kiosk.toml: rules[0]") && error.contains("NOPE"), "{error}");
    assert_eq!(rules_of(&s, "engineering").await.len(), 2, "the good file's change waits too: last good state kept");
    assert_eq!(rules_of(&s, "kiosk").await.len(), 1);
    // The console shows the directory, its last error, and which file owns a set.
    let mut console = crate::ui_console::Browser::new(s.handle.as_ref().unwrap().addr());
    console.sign_in(dasher_tests::TOKEN).await;
    let page = console.get("/ui/rules?set=kiosk").await;
    assert_eq!(page.status, http::StatusCode::OK);
    for shown in ["Rules directory", "The last apply failed", "NOPE", "This set is managed by", "kiosk.toml"] {
        assert!(page.body.contains(shown), "{shown:?} missing from the console: {}", page.body);
    }
    let metrics = s.admin(Method::GET, "/metrics", None).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(text.lines().any(|l| l.starts_with("dasher_rules_dir_errors_total ") && !l.ends_with(" 0")), "{text}");

    // Managed sets refuse API writes, naming the file; other sets stay writable.
    let r = s
        .admin(
            Method::POST,
            "/api/v1/rules",
            Some(json!({"rules": [{"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "BLOCKLIST", "rule_set": "engineering"}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.json()["error"].as_str().unwrap().contains("engineering.toml"));
    let r = s.admin(Method::POST, "/api/v1/rules/apply", Some(body(rules.path(), false, None))).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "the API cannot apply over the directory either");
    s.put_rules(json!([{"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "BLOCKLIST"}])).await;

    // Fixing the file applies everything at once.
    write(
        rules.path(),
        "kiosk.toml",
        "[[rules]]\nidentifier = \"ABCDE12345\"\nrule_type = \"TEAMID\"\npolicy = \"ALLOWLIST\"\n",
    );
    wait_for("the fixed directory to be applied", || async {
        rules_of(&s, "engineering").await.len() == 1 && rules_of(&s, "kiosk").await[0]["policy"] == "ALLOWLIST"
    })
    .await;
    assert_eq!(s.admin(Method::GET, "/api/v1/rules-dir", None).await.json()["last_error"], Value::Null);
}

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moroz_and_santactl_imports_apply() {
    let moroz = import::from_moroz(&fixtures().join("moroz"), 1000).unwrap();
    let names: Vec<&str> = moroz.sets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["host:C02XK1ABJGH5", "global"]);
    assert!(
        moroz.warnings.iter().any(|w| w.contains("global.toml") && w.contains("client_mode")),
        "{:?}",
        moroz.warnings
    );
    let santactl = import::from_santactl(&fixtures().join("santactl-export.json"), "lab", 1000).unwrap();
    assert_eq!(santactl.sets[0].rules.len(), 3, "the local-only rule is skipped");
    assert!(santactl.warnings.iter().any(|w| w.contains("ALLOWLIST_LOCAL_BINARY")));
    assert!(santactl.warnings.iter().any(|w| w.contains("CDHASH")));

    let out = tempfile::tempdir().unwrap();
    for set in moroz.sets.iter().chain(&santactl.sets) {
        let rules: Vec<_> = set.rules.values().cloned().collect();
        write(out.path(), &files::file_name_for(&set.name), &files::to_toml(&set.name, &rules));
    }
    let s = TestServer::start().await;
    let r = s.admin(Method::POST, "/api/v1/rules/apply", Some(body(out.path(), false, None))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let global = rules_of(&s, "global").await;
    assert_eq!(global.len(), 4);
    let blocked = global.iter().find(|r| r["rule_type"] == "BINARY" && r["policy"] == "BLOCKLIST").unwrap();
    assert_eq!(blocked["identifier"], "2dc104631939b4bdf5d6bccab76e166e37fe5e1605340cf68dab919df58b8eda");
    assert!(global.iter().any(|r| r["policy"] == "ALLOWLIST_COMPILER"));
    assert_eq!(rules_of(&s, "host:C02XK1ABJGH5").await.len(), 1);
    let lab = rules_of(&s, "lab").await;
    let cel = lab.iter().find(|r| r["policy"] == "CEL").unwrap();
    assert_eq!(cel["event_detail_button_label"], "Details");
    assert!(lab.iter().any(|r| r["rule_type"] == "CDHASH"));
    assert!(lab.iter().any(|r| r["comment"] == "added by hand on a test Mac"));
}
