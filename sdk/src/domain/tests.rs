use super::*;

fn spec(policy: Policy) -> RuleSpec {
    RuleSpec {
        identifier: "EQHXZ8M8AV".into(),
        rule_type: RuleType::TeamId,
        policy,
        custom_msg: None,
        custom_url: None,
        cel_expr: None,
        notification_app_name: None,
        event_detail_button_label: None,
        comment: None,
    }
}

fn field_of(s: RuleSpec) -> Result<&'static str, ()> {
    match s.validate() {
        Ok(_) => Err(()),
        Err(e) => Ok(e.field()),
    }
}

#[test]
fn control_characters_are_refused_in_every_text_field_but_newline_and_tab() {
    let ok = RuleSpec { custom_msg: Some("line one\n\tline two".into()), ..spec(Policy::Blocklist) };
    assert!(ok.validate().is_ok());
    let nul = RuleSpec { custom_msg: Some("Blocked\u{0}hidden".into()), ..spec(Policy::Blocklist) };
    assert_eq!(nul.validate().unwrap_err(), RuleError::ControlCharacter { field: "custom_msg", code: 0, index: 7 });
    let name = RuleSpec { notification_app_name: Some("App\u{1b}[31m".into()), ..spec(Policy::Allowlist) };
    assert_eq!(field_of(name), Ok("notification_app_name"));
    let label = RuleSpec { event_detail_button_label: Some("Open\r".into()), ..spec(Policy::Blocklist) };
    assert_eq!(field_of(label), Ok("event_detail_button_label"));
    let del = RuleSpec { custom_url: Some("https://example.com/\u{7f}".into()), ..spec(Policy::Blocklist) };
    assert_eq!(field_of(del), Ok("custom_url"));
    let id = RuleSpec {
        identifier: "EQHXZ8M8AV:com.example\u{0}.app".into(),
        rule_type: RuleType::SigningId,
        ..spec(Policy::Blocklist)
    };
    assert_eq!(field_of(id), Ok("identifier"));
}

#[test]
fn custom_url_must_be_http_or_https_with_a_host() {
    for good in ["https://example.com/block?sha=%file_sha%", "HTTP://intranet:8080", "https://user@example.com/#x"] {
        let s = RuleSpec { custom_url: Some(good.into()), ..spec(Policy::Blocklist) };
        assert!(s.validate().is_ok(), "{good}");
    }
    for bad in [
        "javascript:alert(1)",
        "JavaScript://%0aalert(1)",
        "file:///etc/passwd",
        "example.com/path",
        "https:/example.com",
        "https:///path",
        "https://:443/x",
        "https://example.com/a b",
    ] {
        let s = RuleSpec { custom_url: Some(bad.into()), ..spec(Policy::Blocklist) };
        assert!(matches!(s.validate(), Err(RuleError::BadUrl { field: "custom_url", .. })), "{bad}");
    }
}

#[cfg(feature = "cel")]
#[test]
fn cel_expressions_are_checked_with_the_cel_feature() {
    let cel = |expr: &str| RuleSpec { cel_expr: Some(expr.into()), ..spec(Policy::Cel) };
    assert!(cel("target.signing_time >= timestamp('2025-05-31T00:00:00Z')").validate().is_ok());
    let err = cel("this is ((( not cel").validate().unwrap_err();
    assert_eq!(err.field(), "cel_expr");
    assert!(matches!(err, RuleError::CelInvalid { line: 1, column: 6, .. }), "{err:?}");
    assert!(err.to_string().starts_with("cel_expr does not compile at line 1, column 6: syntax error"), "{err}");
}
