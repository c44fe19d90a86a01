//! Single sign-on for the console against an identity provider the test starts itself
//! ([`dasher_tests::idp::TestIdp`], HTTPS on 127.0.0.1 with its own CA given to Dasher as
//! `ui.oidc.ca_file`). A cookie-keeping client follows the redirects by hand, as a browser
//! would: console → `/ui/oidc/start` → the provider's authorization endpoint → back to
//! `/ui/oidc/callback`. Covers: a user in the admin group gets an admin session that reaches
//! `/ui/plugins`; the highest mapped role wins; a user with no mapped group gets 403; a
//! tampered state, a callback in another browser, a wrong nonce, a token for another audience,
//! an expired token, a token signed by an unknown key and a refusal by the provider each get a
//! page that says why, and no session; discovery is fetched once; the client secret appears
//! in no page and no log line.
//!
//! Dasher's public URL is `http://dasher.test` (`redirect_url`): the provider sends the
//! browser there, and this browser resolves that name to the test server, like a hosts entry.

use bytes::Bytes;
use dasher_server::oidc::OidcSettings;
use dasher_tests::TestServer;
use dasher_tests::idp::{Fault, IdpUser, TestIdp};
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

const CLIENT_ID: &str = "dasher-console";
const SECRET: &str = "oidc-client-secret-7f3a9c-must-never-be-shown";
const PUBLIC: &str = "http://dasher.test";

/// Collects every log line the server writes on this test's thread.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> String {
        self.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }

    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }
}

/// A cookie-keeping client of the console; every page it saw is kept for the secret check.
struct Browser {
    addr: SocketAddr,
    cookies: HashMap<String, String>,
    seen: Arc<Mutex<Vec<String>>>,
    client: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Browser {
    fn new(addr: SocketAddr, seen: Arc<Mutex<Vec<String>>>) -> Browser {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Browser { addr, cookies: HashMap::new(), seen, client }
    }

    /// GET a console path, or a `http://dasher.test/...` URL.
    async fn get(&mut self, target: &str) -> Page {
        let path = target.strip_prefix(PUBLIC).unwrap_or(target);
        assert!(path.starts_with('/'), "not a console URL: {target}");
        let mut req = Request::get(format!("http://{}{path}", self.addr));
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header(header::COOKIE, jar.join("; "));
        }
        let resp = self.client.request(req.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
        for v in parts.headers.get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()) {
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
        self.seen.lock().unwrap().push(format!("{}\n{:?}\n{body}", parts.status, parts.headers));
        Page { status: parts.status, headers: parts.headers, body }
    }

    /// Starts single sign-on and follows it to the provider and back: the callback's page.
    /// `tamper` may change the callback URL before it is visited.
    async fn sign_in(&mut self, idp: &TestIdp, next: &str, tamper: impl FnOnce(String) -> String) -> Page {
        let start = self.get(&format!("/ui/oidc/start?next={next}")).await;
        assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
        let to_idp = start.location();
        assert!(to_idp.starts_with(&format!("{}/authorize?", idp.issuer)), "{to_idp}");
        let (status, headers, body) = idp.browse(&to_idp).await;
        assert_eq!(status, StatusCode::FOUND, "{}", String::from_utf8_lossy(&body));
        let back = headers.get(header::LOCATION).unwrap().to_str().unwrap().to_owned();
        assert!(back.starts_with(&format!("{PUBLIC}/ui/oidc/callback?")), "{back}");
        self.get(&tamper(back)).await
    }
}

fn user(sub: &str, email: &str, groups: &[&str]) -> IdpUser {
    IdpUser { sub: sub.into(), email: Some(email.into()), groups: groups.iter().map(|g| g.to_string()).collect() }
}

fn query_of(url: &str) -> HashMap<String, String> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn settings(issuer: &str, secret_file: &std::path::Path, ca_file: &std::path::Path) -> OidcSettings {
    OidcSettings {
        issuer: issuer.to_owned(),
        client_id: CLIENT_ID.into(),
        client_secret_file: Some(secret_file.to_owned()),
        client_secret_env: None,
        redirect_url: format!("{PUBLIC}/ui/oidc/callback"),
        scopes: vec!["email".into(), "profile".into(), "groups".into()],
        role_claim: "groups".into(),
        roles: BTreeMap::from([
            ("dasher-admins".to_owned(), dasher_server::config::Role::Admin),
            ("secops".to_owned(), dasher_server::config::Role::RulesEditor),
            ("it-staff".to_owned(), dasher_server::config::Role::ReadOnly),
        ]),
        ca_file: Some(ca_file.to_owned()),
        flow_ttl_secs: 600,
        discovery_ttl_secs: 3600,
        request_timeout_secs: 10,
    }
}

/// A refused sign-in: `status`, a page saying `reason`, the way back, and no session.
fn assert_refused(b: &Browser, page: &Page, status: StatusCode, reason: &str) {
    assert_eq!(page.status, status, "{}", page.body);
    assert!(page.body.contains(reason), "expected {reason:?} in:\n{}", page.body);
    assert!(page.body.contains(r#"href="/ui/login""#), "a way back: {}", page.body);
    assert!(page.set_cookie("dasher_session").is_none(), "no session for a refused sign-in");
    assert!(!b.cookies.contains_key("dasher_session"));
    assert!(!b.cookies.contains_key("dasher_oidc"), "the flow cookie is dropped: {:?}", b.cookies);
}

#[tokio::test]
async fn single_sign_on_against_a_test_identity_provider() {
    let logs = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let idp = TestIdp::start(
        CLIENT_ID,
        SECRET,
        &format!("{PUBLIC}/ui/oidc/callback"),
        user("u-alice", "alice@example.com", &["it-staff", "dasher-admins"]),
    )
    .await;
    let files = tempfile::tempdir().unwrap();
    let (secret_file, ca_file) = (files.path().join("oidc-secret"), files.path().join("idp-ca.pem"));
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    std::fs::write(&ca_file, &idp.ca_pem).unwrap();
    let oidc = settings(&idp.issuer, &secret_file, &ca_file);
    let server = TestServer::start_with(|c| c.ui.oidc = Some(oidc)).await;
    let addr = server.handle.as_ref().unwrap().addr();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let browser = || Browser::new(addr, seen.clone());

    // The sign-in page offers single sign-on, keeping where the user was going.
    let mut alice = browser();
    let login = alice.get("/ui/login?next=/ui/plugins").await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(login.body.contains("Sign in with single sign-on"), "{}", login.body);
    assert!(login.body.contains("/ui/oidc/start?next=%2Fui%2Fplugins"), "{}", login.body);
    assert_eq!(idp.discovery_fetches(), 0, "the provider is not contacted before the first sign-in");

    // Start: the flow cookie is scoped to the OIDC routes, and the request carries PKCE,
    // state and nonce.
    let start = alice.get("/ui/oidc/start?next=/ui/plugins").await;
    assert_eq!(start.status, StatusCode::SEE_OTHER);
    let flow = start.set_cookie("dasher_oidc").expect("a flow cookie");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/ui/oidc", "Max-Age=600"] {
        assert!(flow.contains(attr), "{attr} in {flow}");
    }
    let auth = query_of(&start.location());
    assert_eq!(auth["code_challenge_method"], "S256");
    assert_eq!(auth["client_id"], CLIENT_ID);
    assert_eq!(auth["redirect_uri"], format!("{PUBLIC}/ui/oidc/callback"));
    assert!(auth["scope"].split(' ').any(|s| s == "openid") && auth["scope"].contains("groups"), "{auth:?}");
    assert!(auth["state"].len() >= 16 && auth["nonce"].len() >= 16, "{auth:?}");

    // Alice (it-staff and dasher-admins) gets an admin session: the highest mapped role.
    let signed = alice.sign_in(&idp, "/ui/plugins", |u| u).await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.body);
    assert!(signed.body.contains("alice@example.com") && signed.body.contains("(admin)"), "{}", signed.body);
    assert!(signed.body.contains(r#"http-equiv="refresh" content="0;url=/ui/plugins""#), "{}", signed.body);
    let cookie = signed.set_cookie("dasher_session").expect("a session cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!alice.cookies.contains_key("dasher_oidc"), "the flow cookie is used once");
    let plugins = alice.get("/ui/plugins").await;
    assert_eq!(plugins.status, StatusCode::OK, "{}", plugins.body);
    assert!(plugins.body.contains("alice@example.com") && plugins.body.contains(">admin<"), "{}", plugins.body);
    assert_eq!(idp.discovery_fetches(), 1);

    // A rules editor by group, and a user with no mapped group.
    idp.set_user(user("u-carol", "carol@example.com", &["it-staff", "secops"]));
    let mut carol = browser();
    let signed = carol.sign_in(&idp, "/ui/hosts", |u| u).await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.body);
    assert!(signed.body.contains("carol@example.com") && signed.body.contains("(rules-editor)"), "{}", signed.body);
    assert_eq!(carol.get("/ui/hosts").await.status, StatusCode::OK);
    idp.set_user(user("u-bob", "bob@example.com", &["contractors"]));
    let mut bob = browser();
    let page = bob.sign_in(&idp, "/ui/", |u| u).await;
    assert_refused(
        &bob,
        &page,
        StatusCode::FORBIDDEN,
        "(bob@example.com) has no Dasher role; ask an admin to map one of your groups",
    );
    assert_eq!(bob.get("/ui/plugins").await.status, StatusCode::SEE_OTHER, "still signed out");

    // A tampered state is refused before any code exchange.
    idp.set_user(user("u-alice", "alice@example.com", &["dasher-admins"]));
    let mut mallory = browser();
    let tokens_before = idp.token_requests();
    let page = mallory
        .sign_in(&idp, "/ui/", |u| {
            let state = query_of(&u)["state"].clone();
            u.replace(&format!("state={state}"), "state=forged-state-value")
        })
        .await;
    assert_refused(&mallory, &page, StatusCode::BAD_REQUEST, "state mismatch");
    assert_eq!(idp.token_requests(), tokens_before, "no code exchange for a foreign state");

    // A callback carried to another browser (no flow cookie there) is refused.
    let mut victim = browser();
    let mut attacker = browser();
    let start = attacker.get("/ui/oidc/start").await;
    let (_, headers, _) = idp.browse(&start.location()).await;
    let callback = headers.get(header::LOCATION).unwrap().to_str().unwrap().to_owned();
    let page = victim.get(&callback).await;
    assert_refused(&victim, &page, StatusCode::BAD_REQUEST, "not started from this browser");

    // ID tokens that fail verification.
    for (fault, reason) in [
        (Fault::WrongNonce, "does not carry the nonce of this sign-in"),
        (Fault::OtherAudience, "issued for another application (audience)"),
        (Fault::Expired, "it has expired"),
        (Fault::UnknownKey, "signature does not verify"),
        (Fault::Deny, "did not sign you in: access_denied (The user is not assigned to this application.)"),
    ] {
        idp.set_fault(fault);
        let mut b = browser();
        let page = b.sign_in(&idp, "/ui/", |u| u).await;
        assert_refused(&b, &page, StatusCode::FORBIDDEN, reason);
        assert!(page.body.contains("Sign-in failed"), "{fault:?}: {}", page.body);
    }
    idp.set_fault(Fault::None);
    let mut again = browser();
    assert_eq!(again.sign_in(&idp, "/ui/", |u| u).await.status, StatusCode::OK, "a good token still works");
    assert_eq!(
        idp.discovery_fetches(),
        1,
        "discovery and keys are cached (an unknown key refetches at most once a minute)"
    );

    // The client secret went to the provider only: in no page, no header, no log line.
    let logs = logs.text();
    assert!(logs.contains("OIDC sign-in"), "the log capture works: {logs}");
    assert!(!logs.contains(SECRET), "the client secret is in the server log");
    for page in seen.lock().unwrap().iter() {
        assert!(!page.contains(SECRET), "the client secret is in a page: {page}");
    }
}

/// Setup errors name what to fix; an unreachable provider is a page, not a hang or a 500.
#[tokio::test]
async fn misconfiguration_and_an_unreachable_provider_are_explained() {
    let files = tempfile::tempdir().unwrap();
    let (secret_file, ca_file) = (files.path().join("secret"), files.path().join("ca.pem"));
    std::fs::write(&secret_file, SECRET).unwrap();
    // Port 9 (discard) on loopback: nothing listens there in the test environment.
    let mut oidc = settings("https://127.0.0.1:9", &secret_file, &ca_file);
    oidc.ca_file = None;

    let tmp = tempfile::tempdir().unwrap();
    let mut config = dasher_server::config::Config::for_tests(tmp.path());
    let mut missing = oidc.clone();
    missing.client_secret_file = None;
    missing.client_secret_env = Some("DASHER_TEST_OIDC_SECRET_NEVER_SET".into());
    config.ui.oidc = Some(missing);
    let err = format!("{:#}", dasher_server::start(config.clone()).await.err().expect("refused"));
    assert!(err.contains("DASHER_TEST_OIDC_SECRET_NEVER_SET") && err.contains("not set"), "{err}");
    let mut bad_ca = oidc.clone();
    bad_ca.ca_file = Some(ca_file.clone());
    config.ui.oidc = Some(bad_ca);
    let err = format!("{:#}", dasher_server::start(config).await.err().expect("refused"));
    assert!(err.contains("ui.oidc.ca_file") && !err.contains(SECRET), "{err}");

    let server = TestServer::start_with(|c| c.ui.oidc = Some(oidc)).await;
    let mut b = Browser::new(server.handle.as_ref().unwrap().addr(), Arc::new(Mutex::new(Vec::new())));
    let page = b.get("/ui/oidc/start?next=/ui/").await;
    assert_eq!(page.status, StatusCode::BAD_GATEWAY, "{}", page.body);
    assert!(page.body.contains("could not connect to 127.0.0.1:9"), "{}", page.body);
    assert!(page.body.contains("try again later or tell an admin"), "{}", page.body);
    assert!(!page.body.contains(SECRET));
}
