//! A small OpenID Connect identity provider for tests: HTTPS on 127.0.0.1 with a certificate
//! from its own rcgen CA ([`TestIdp::ca_pem`], for `ui.oidc.ca_file`), a discovery document, a
//! JWKS, an authorization endpoint that signs in the configured [`IdpUser`] at once and
//! redirects back with a code, and a token endpoint that checks the client secret, the
//! redirect URI and PKCE (S256) and issues RS256-signed ID tokens (openidconnect's own
//! signing types). [`Fault`] makes it misbehave in one chosen way for the next tokens.
//!
//! The RSA keys under `tests/data/oidc-test-idp-*.pem` are test-only (made with
//! `openssl genrsa -traditional 2048`) and protect nothing.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use openidconnect::core::{
    CoreClientAuthMethod, CoreGenderClaim, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreResponseType, CoreRsaPrivateSigningKey,
    CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalClaims, Audience, AuthUrl, EmptyAdditionalProviderMetadata, EndUserEmail, IdToken, IdTokenClaims,
    IssuerUrl, JsonWebKeyId, JsonWebKeySetUrl, Nonce, PrivateSigningKey, ResponseTypes, StandardClaims,
    SubjectIdentifier, TokenUrl,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio_rustls::rustls;

const KEY_PEM: &str = include_str!("../data/oidc-test-idp-key.pem");
const OTHER_KEY_PEM: &str = include_str!("../data/oidc-test-idp-other-key.pem");
const KEY_ID: &str = "test-key-1";

/// Who the provider signs in.
#[derive(Clone, Debug)]
pub struct IdpUser {
    /// `sub`.
    pub sub: String,
    /// `email` (sent as verified).
    pub email: Option<String>,
    /// The `groups` claim.
    pub groups: Vec<String>,
}

/// One way for the provider to misbehave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Behave.
    None,
    /// The ID token carries another nonce.
    WrongNonce,
    /// The ID token is for another client (audience).
    OtherAudience,
    /// The ID token expired ten minutes ago.
    Expired,
    /// The ID token is signed by a key the JWKS does not list.
    UnknownKey,
    /// The authorization endpoint answers `error=access_denied`.
    Deny,
}

/// The `groups` claim.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Groups {
    groups: Vec<String>,
}
impl AdditionalClaims for Groups {}

struct Pending {
    nonce: String,
    challenge: String,
    redirect_uri: String,
    user: IdpUser,
}

struct State {
    user: IdpUser,
    fault: Fault,
    codes: HashMap<String, Pending>,
    discovery_fetches: usize,
    token_requests: usize,
    next_code: u64,
}

struct Shared {
    issuer: String,
    client_id: String,
    client_secret: String,
    redirect_url: String,
    key: CoreRsaPrivateSigningKey,
    other_key: CoreRsaPrivateSigningKey,
    state: Mutex<State>,
}

/// A running test identity provider.
pub struct TestIdp {
    /// Its address.
    pub addr: SocketAddr,
    /// Its issuer URL (`https://127.0.0.1:PORT`).
    pub issuer: String,
    /// The CA certificate (PEM) its TLS certificate chains to.
    pub ca_pem: String,
    ca_der: CertificateDer<'static>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestIdp {
    /// Starts a provider that knows one client (`client_id`, `client_secret`, which must
    /// redirect to `redirect_url`) and signs in `user`.
    pub async fn start(client_id: &str, client_secret: &str, redirect_url: &str, user: IdpUser) -> TestIdp {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "dasher test IdP CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        leaf.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let leaf_cert = leaf.signed_by(&leaf_key, &ca).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf_cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .unwrap();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = format!("https://127.0.0.1:{}", addr.port());
        let shared = Arc::new(Shared {
            issuer: issuer.clone(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            redirect_url: redirect_url.to_owned(),
            key: CoreRsaPrivateSigningKey::from_pem(KEY_PEM, Some(JsonWebKeyId::new(KEY_ID.into()))).unwrap(),
            other_key: CoreRsaPrivateSigningKey::from_pem(OTHER_KEY_PEM, Some(JsonWebKeyId::new("gone".into())))
                .unwrap(),
            state: Mutex::new(State {
                user,
                fault: Fault::None,
                codes: HashMap::new(),
                discovery_fetches: 0,
                token_requests: 0,
                next_code: 1,
            }),
        });
        let served = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, shared) = (acceptor.clone(), served.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&shared, req).await) }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        TestIdp { addr, issuer, ca_pem: ca_cert.pem(), ca_der: ca_cert.der().clone(), shared, task }
    }

    /// Signs in `user` from now on.
    pub fn set_user(&self, user: IdpUser) {
        self.shared.state.lock().unwrap().user = user;
    }

    /// Misbehaves as `fault` from now on.
    pub fn set_fault(&self, fault: Fault) {
        self.shared.state.lock().unwrap().fault = fault;
    }

    /// How often the discovery document was fetched.
    pub fn discovery_fetches(&self) -> usize {
        self.shared.state.lock().unwrap().discovery_fetches
    }

    /// How many token requests came in.
    pub fn token_requests(&self) -> usize {
        self.shared.state.lock().unwrap().token_requests
    }

    /// A GET to `url` (on this provider) over HTTPS, trusting its CA: what a browser does when
    /// sent to the authorization endpoint. Returns status, headers and body.
    pub async fn browse(&self, url: &str) -> (StatusCode, HeaderMap, Bytes) {
        let uri: http::Uri = url.parse().unwrap();
        assert_eq!(uri.port_u16(), Some(self.addr.port()), "{url} is not on this provider");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("127.0.0.1").unwrap().to_owned(), tcp)
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        let path = uri.path_and_query().unwrap().as_str().to_owned();
        let req = Request::get(path).header(header::HOST, format!("127.0.0.1:{}", self.addr.port()));
        let resp = sender.send_request(req.body(Full::new(Bytes::new())).unwrap()).await.unwrap();
        let (parts, body) = resp.into_parts();
        (parts.status, parts.headers, body.collect().await.unwrap().to_bytes())
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder().status(status).header(header::CONTENT_TYPE, content_type).body(Full::new(body.into())).unwrap()
}

fn json(status: StatusCode, v: &impl Serialize) -> Response<Full<Bytes>> {
    reply(status, "application/json", serde_json::to_vec(v).unwrap())
}

fn oauth_error(error: &str, description: &str) -> Response<Full<Bytes>> {
    json(StatusCode::BAD_REQUEST, &serde_json::json!({"error": error, "error_description": description}))
}

async fn handle(s: &Shared, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    match path.as_str() {
        "/.well-known/openid-configuration" => {
            s.state.lock().unwrap().discovery_fetches += 1;
            json(StatusCode::OK, &metadata(&s.issuer))
        }
        "/jwks" => json(StatusCode::OK, &CoreJsonWebKeySet::new(vec![s.key.as_verification_key()])),
        "/authorize" => authorize(s, &query),
        "/token" => {
            let headers = req.headers().clone();
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            token(s, &headers, &body)
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found"),
    }
}

fn metadata(issuer: &str) -> CoreProviderMetadata {
    CoreProviderMetadata::new(
        IssuerUrl::new(issuer.to_owned()).unwrap(),
        AuthUrl::new(format!("{issuer}/authorize")).unwrap(),
        JsonWebKeySetUrl::new(format!("{issuer}/jwks")).unwrap(),
        vec![ResponseTypes::new(vec![CoreResponseType::Code])],
        vec![CoreSubjectIdentifierType::Public],
        vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256],
        EmptyAdditionalProviderMetadata {},
    )
    .set_token_endpoint(Some(TokenUrl::new(format!("{issuer}/token")).unwrap()))
    .set_token_endpoint_auth_methods_supported(Some(vec![CoreClientAuthMethod::ClientSecretBasic]))
}

fn params(text: &str) -> HashMap<String, String> {
    form_urlencoded::parse(text.as_bytes()).into_owned().collect()
}

fn authorize(s: &Shared, query: &str) -> Response<Full<Bytes>> {
    let p = params(query);
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or_default();
    if get("client_id") != s.client_id || get("redirect_uri") != s.redirect_url {
        // A real provider never redirects to an unregistered URI.
        return reply(StatusCode::BAD_REQUEST, "text/plain", "unknown client or redirect_uri");
    }
    let scopes: Vec<&str> = get("scope").split(' ').collect();
    if get("response_type") != "code"
        || !scopes.contains(&"openid")
        || get("code_challenge_method") != "S256"
        || get("code_challenge").is_empty()
        || get("state").is_empty()
        || get("nonce").is_empty()
    {
        return reply(StatusCode::BAD_REQUEST, "text/plain", format!("incomplete authorization request: {query}"));
    }
    let mut st = s.state.lock().unwrap();
    let back = |pairs: &[(&str, &str)]| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
        Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, format!("{}?{}", s.redirect_url, q.finish()))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    if st.fault == Fault::Deny {
        return back(&[
            ("error", "access_denied"),
            ("error_description", "The user is not assigned to this application."),
            ("state", get("state")),
        ]);
    }
    let code = format!("code-{}", st.next_code);
    st.next_code += 1;
    let pending = Pending {
        nonce: get("nonce").to_owned(),
        challenge: get("code_challenge").to_owned(),
        redirect_uri: get("redirect_uri").to_owned(),
        user: st.user.clone(),
    };
    st.codes.insert(code.clone(), pending);
    back(&[("code", &code), ("state", get("state")), ("iss", &s.issuer)])
}

fn token(s: &Shared, headers: &HeaderMap, body: &[u8]) -> Response<Full<Bytes>> {
    let mut st = s.state.lock().unwrap();
    st.token_requests += 1;
    // client_secret_basic: each part form-urlencoded, then Basic (RFC 6749 §2.3.1).
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!(
            "{}:{}",
            form_urlencoded::byte_serialize(s.client_id.as_bytes()).collect::<String>(),
            form_urlencoded::byte_serialize(s.client_secret.as_bytes()).collect::<String>()
        ))
    );
    if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({"error": "invalid_client", "error_description": "Client authentication failed."}),
        );
    }
    let p = params(std::str::from_utf8(body).unwrap_or_default());
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or_default();
    if get("grant_type") != "authorization_code" {
        return oauth_error("unsupported_grant_type", "Only authorization_code is supported.");
    }
    let Some(pending) = st.codes.remove(get("code")) else {
        return oauth_error("invalid_grant", "The authorization code is unknown or was already used.");
    };
    if get("redirect_uri") != pending.redirect_uri {
        return oauth_error("invalid_grant", "redirect_uri differs from the authorization request.");
    }
    if URL_SAFE_NO_PAD.encode(Sha256::digest(get("code_verifier").as_bytes())) != pending.challenge {
        return oauth_error("invalid_grant", "PKCE verification failed.");
    }
    let now = chrono::Utc::now();
    let (audience, expires, issued, nonce, key) = match st.fault {
        Fault::OtherAudience => {
            ("another-app".to_owned(), now + chrono::Duration::minutes(5), now, pending.nonce, &s.key)
        }
        Fault::Expired => (
            s.client_id.clone(),
            now - chrono::Duration::minutes(10),
            now - chrono::Duration::minutes(70),
            pending.nonce,
            &s.key,
        ),
        Fault::WrongNonce => {
            (s.client_id.clone(), now + chrono::Duration::minutes(5), now, "not-the-nonce".into(), &s.key)
        }
        Fault::UnknownKey => {
            (s.client_id.clone(), now + chrono::Duration::minutes(5), now, pending.nonce, &s.other_key)
        }
        Fault::None | Fault::Deny => {
            (s.client_id.clone(), now + chrono::Duration::minutes(5), now, pending.nonce, &s.key)
        }
    };
    let user = pending.user;
    let standard = StandardClaims::new(SubjectIdentifier::new(user.sub.clone()))
        .set_email(user.email.clone().map(EndUserEmail::new))
        .set_email_verified(user.email.as_ref().map(|_| true));
    let claims = IdTokenClaims::new(
        IssuerUrl::new(s.issuer.clone()).unwrap(),
        vec![Audience::new(audience)],
        expires,
        issued,
        standard,
        Groups { groups: user.groups.clone() },
    )
    .set_nonce(Some(Nonce::new(nonce)));
    let id_token = IdToken::<Groups, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>::new(
        claims,
        key,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        None,
        None,
    )
    .unwrap();
    json(
        StatusCode::OK,
        &serde_json::json!({
            "access_token": "test-access-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token.to_string(),
        }),
    )
}
