//! Reserved names (issue 11, item 6) are refused everywhere they can enter: a tag named
//! `host:Y` used to hand Y's host rules to the tagged host, and machine ids `global`, `.` and
//! `host:B` were accepted. Also: admin query strings are percent-decoded properly.

use dasher_tests::{ClientRules, TestServer};
use http::{Method, StatusCode};
use serde_json::{Value, json};

fn preflight(id: &str) -> Value {
    json!({"hostname": format!("{id}.example.com"), "santa_version": "2026.7.1", "machine_id": id,
           "client_mode": "MONITOR", "os_version": "15.5", "model_identifier": "Mac15,7"})
}

#[tokio::test]
async fn a_tag_naming_another_hosts_set_is_refused_and_leaks_nothing() {
    let s = TestServer::start().await;
    s.put_rules(json!([{"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "BLOCKLIST",
                        "rule_set": "host:victim"}]))
        .await;
    let mut attacker = ClientRules::default();
    attacker.sync(&s, "attacker", preflight("attacker")).await;
    for tag in ["host:victim", "plugin-host:victim", "a b"] {
        let r = s.admin(Method::PUT, "/api/v1/hosts/attacker/tags", Some(json!({"tags": ["eng", tag]}))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{tag}: {}", r.json());
        assert_eq!(r.json()["field"], "tags[1]", "{}", r.json());
    }
    let r = s.admin(Method::PUT, "/api/v1/hosts/attacker/tags", Some(json!({"tags": ["host:victim"]}))).await;
    assert!(r.json()["error"].as_str().unwrap().contains("reserved"), "{}", r.json());
    let (_, n, _) = attacker.sync(&s, "attacker", preflight("attacker")).await;
    assert_eq!(n, 0, "the attacker received none of the victim's rules");
    let effective = s.admin(Method::GET, "/api/v1/hosts/attacker/effective-rules", None).await.json();
    assert_eq!(effective["rule_sets"], json!(["host:attacker", "global"]), "{effective}");
}

#[tokio::test]
async fn reserved_machine_ids_are_refused_at_every_stage() {
    let s = TestServer::start().await;
    for id in ["global", ".", "host:B", "host%3AB", "plugin-host:B"] {
        for stage in ["preflight", "eventupload", "ruledownload", "postflight"] {
            let r = s.stage(stage, id, &json!({})).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{stage}/{id}");
            assert_eq!(r.json()["field"], "machine_id", "{stage}/{id}: {}", r.json());
        }
        let r = s.admin(Method::GET, &format!("/api/v1/hosts/{id}"), None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "admin host route, {id}");
    }
    let r = s.stage("preflight", "global", &preflight("global")).await;
    assert!(r.json()["error"].as_str().unwrap().contains("reserved"), "{}", r.json());
    let hosts = s.admin(Method::GET, "/api/v1/hosts", None).await.json();
    assert_eq!(hosts["hosts"], json!([]), "nothing was stored for a refused id");
}

#[tokio::test]
async fn rules_go_only_into_sets_admins_may_write() {
    let s = TestServer::start().await;
    let rule = |set: &str| json!({"rules": [{"identifier": "EQHXZ8M8AV", "rule_type": "TEAMID", "policy": "ALLOWLIST", "rule_set": set}]});
    for set in ["plugin-host:m1", "host:", "host:global", "host:a b"] {
        let r = s.admin(Method::POST, "/api/v1/rules", Some(rule(set))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{set}: {}", r.json());
        assert_eq!(r.json()["field"], "rules[0].rule_set", "{}", r.json());
    }
    for set in ["host:m1", "eng", "global"] {
        let r = s.admin(Method::POST, "/api/v1/rules", Some(rule(set))).await;
        assert_eq!(r.status, StatusCode::OK, "{set}: {}", r.json());
    }
    // Query strings are form-decoded: `%3A` and `+` as well as plain `:`.
    for query in ["rule_set=host:m1", "rule_set=host%3Am1", "rule_set=host%3am1"] {
        let r = s.admin(Method::GET, &format!("/api/v1/rules?{query}"), None).await;
        assert_eq!(r.status, StatusCode::OK, "{query}");
        assert_eq!(r.json()["rules"].as_array().unwrap().len(), 1, "{query}: {}", r.json());
    }
}
