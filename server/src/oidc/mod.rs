//! OpenID Connect sign-in for the web console (`[ui.oidc]`), on the `openidconnect` crate.
//!
//! Flow: [`Oidc::start`] makes `state`, `nonce` and a PKCE verifier, seals them into the flow
//! cookie ([`flow`]) and sends the browser to the identity provider's authorization endpoint
//! (authorization code flow, `S256` challenge). The provider sends it back to
//! `/ui/oidc/callback`, where [`Oidc::finish`] opens the cookie, checks `state` against it,
//! exchanges the code (with the verifier and the client secret), and verifies the ID token:
//! signature against the provider's JWKS (asymmetric algorithms only), issuer, audience, expiry
//! and nonce. The role is the highest one mapped from `role_claim`; the name is the verified
//! email, else `sub`.
//!
//! Discovery (document and JWKS) is fetched at the first sign-in, cached for
//! `discovery_ttl_secs`, and refetched early when a token names a key the cached set lacks
//! (key rotation), at most once a minute. Requests go through [`http_client`] (hyper + rustls).
//! Must never: log or show the client secret, or accept an ID token that failed any check.

pub mod flow;
pub mod http_client;
pub mod settings;

pub use settings::OidcSettings;

use crate::config::Role;
use dasher_store::{Store, StoreError};
use flow::{BadFlow, Flow, FlowSealer};
use http_client::{IdpHttpClient, IdpHttpError};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClientAuthMethod, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthType, AuthorizationCode, ClaimsVerificationError, Client, ClientId, ClientSecret, CsrfToken,
    DiscoveryError, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields, IssuerUrl,
    Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, SignatureVerificationError,
    StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Longest callback query parameter accepted.
pub const MAX_CALLBACK_PARAM_BYTES: usize = 8 << 10;
/// Longest name kept for a session (a longer email falls back to `sub`).
pub const MAX_NAME_BYTES: usize = 256;
/// Soonest the keys are refetched after the last fetch when a token names an unknown key.
const MIN_REFRESH: Duration = Duration::from_secs(60);

/// The ID token's claims beyond the standard ones (where the role claim usually lives).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExtraClaims(pub serde_json::Map<String, serde_json::Value>);
impl AdditionalClaims for ExtraClaims {}

type Fields = IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type OidcClient = Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    StandardTokenResponse<Fields, CoreTokenType>,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why a sign-in (or setting up OIDC) failed. Each message is a sentence for the person
/// signing in; none carries the client secret.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// `[ui.oidc]` is unusable (at start).
    #[error("invalid config: {0}")]
    Config(String),
    /// The flow key could not be loaded (at start).
    #[error("loading the OIDC flow key: {0}")]
    Store(#[from] StoreError),
    /// The callback came without a usable flow cookie.
    #[error(
        "this sign-in was not started from this browser, or its cookie was lost; \
         go back to the sign-in page and choose single sign-on again"
    )]
    NoFlow,
    /// The flow cookie is past its lifetime.
    #[error("the sign-in took longer than {0} minutes; go back to the sign-in page and try again")]
    FlowExpired(u64),
    /// `state` differs from the one this browser's flow was started with.
    #[error(
        "the answer from the identity provider does not belong to the sign-in this browser started \
         (state mismatch); go back to the sign-in page and try again"
    )]
    StateMismatch,
    /// The callback is malformed (missing code, oversized query, wrong issuer).
    #[error("the answer from the identity provider is unusable: {0}; go back to the sign-in page and try again")]
    BadCallback(String),
    /// The identity provider answered the authorization request with an error.
    #[error("the identity provider did not sign you in: {0}")]
    Denied(String),
    /// The identity provider could not be reached or its answer was unusable.
    #[error("Dasher could not complete the sign-in with the identity provider: {0}; try again later or tell an admin")]
    Upstream(String),
    /// The ID token failed verification.
    #[error("the identity provider's ID token was refused: {0}")]
    BadToken(String),
    /// Signed in, but no claim value maps to a role.
    #[error("your account ({0}) has no Dasher role; ask an admin to map one of your groups")]
    NoRole(String),
}

/// Where [`Oidc::start`] sends the browser.
#[derive(Debug)]
pub struct Start {
    /// The identity provider's authorization URL (for `Location`).
    pub location: String,
    /// The `Set-Cookie` value carrying the flow.
    pub set_cookie: String,
}

/// A verified sign-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedIn {
    /// Session name: the verified email, else the subject.
    pub name: String,
    /// The role mapped from the role claim.
    pub role: Role,
    /// The local `/ui/` path to land on.
    pub next: String,
}

struct Provider {
    metadata: CoreProviderMetadata,
    fetched: Instant,
}

/// The OIDC relying party: settings, secret, HTTP client and cached discovery.
pub struct Oidc {
    settings: OidcSettings,
    client_id: ClientId,
    secret: ClientSecret,
    issuer: IssuerUrl,
    redirect: RedirectUrl,
    http: IdpHttpClient,
    sealer: FlowSealer,
    provider: tokio::sync::Mutex<Option<Provider>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.settings.issuer)
            .field("client_id", &self.settings.client_id)
            .finish()
    }
}

impl Oidc {
    /// Checks the settings, reads the client secret and the TLS trust, and loads the flow key
    /// from `store`. The provider is not contacted until the first sign-in.
    pub async fn new(settings: OidcSettings, store: &dyn Store) -> Result<Oidc, OidcError> {
        settings.validate().map_err(OidcError::Config)?;
        let secret = ClientSecret::new(settings.read_client_secret().map_err(OidcError::Config)?);
        let issuer = IssuerUrl::new(settings.issuer.clone()).map_err(|e| OidcError::Config(e.to_string()))?;
        let redirect = RedirectUrl::new(settings.redirect_url.clone()).map_err(|e| OidcError::Config(e.to_string()))?;
        let timeout = Duration::from_secs(settings.request_timeout_secs);
        let http =
            IdpHttpClient::new(settings.ca_file.as_deref(), timeout).map_err(|e| OidcError::Config(e.to_string()))?;
        let sealer = FlowSealer::load(store).await?;
        Ok(Oidc {
            client_id: ClientId::new(settings.client_id.clone()),
            settings,
            secret,
            issuer,
            redirect,
            http,
            sealer,
            provider: tokio::sync::Mutex::new(None),
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// Begins a sign-in that lands on `next` (the caller checked it is a local `/ui/` path):
    /// the authorization URL and the flow cookie (`Secure` when `secure`).
    pub async fn start(&self, next: &str, secure: bool) -> Result<Start, OidcError> {
        let client = self.client(false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_scopes(self.settings.scopes.iter().filter(|s| *s != "openid").map(|s| Scope::new(s.clone())))
            .set_pkce_challenge(challenge)
            .url();
        let flow = Flow {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            next: next.to_owned(),
            expires_unix: now_unix() + self.settings.flow_ttl_secs,
        };
        let set_cookie = flow::set_cookie(&self.sealer.seal(&flow), self.settings.flow_ttl_secs, secure);
        Ok(Start { location: url.to_string(), set_cookie })
    }

    /// Completes a sign-in from the callback's query parameters and the flow cookie's value.
    pub async fn finish(
        &self,
        query: &HashMap<String, String>,
        flow_cookie: Option<&str>,
    ) -> Result<SignedIn, OidcError> {
        let flow = match flow_cookie.map(|c| self.sealer.open(c, now_unix())) {
            None | Some(Err(BadFlow::Format | BadFlow::Signature)) => return Err(OidcError::NoFlow),
            Some(Err(BadFlow::Expired)) => return Err(OidcError::FlowExpired(self.settings.flow_ttl_secs / 60)),
            Some(Ok(flow)) => flow,
        };
        let params = Callback::parse(query)?;
        // Only a state that matches gets its error shown: a crafted link cannot put words on
        // this page.
        let state = params.state.as_deref().unwrap_or_default();
        if !bool::from(state.as_bytes().ct_eq(flow.state.as_bytes())) {
            return Err(OidcError::StateMismatch);
        }
        if let Some(error) = params.error {
            return Err(OidcError::Denied(describe(&error, params.error_description.as_deref())));
        }
        // RFC 9207: a provider that names itself must be the configured one (mix-up defence).
        if let Some(iss) = params.iss.as_deref()
            && iss != self.issuer.as_str()
        {
            return Err(OidcError::BadCallback(format!("it names issuer {iss:?}, not {:?}", self.issuer.as_str())));
        }
        let code =
            params.code.filter(|c| !c.is_empty()).ok_or_else(|| OidcError::BadCallback("it has no code".into()))?;
        let client = self.client(false).await?;
        let token = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|_| OidcError::Upstream("the discovery document names no token endpoint".into()))?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let id_token =
            token.id_token().ok_or_else(|| OidcError::Upstream("the token endpoint returned no ID token".into()))?;
        let nonce = Nonce::new(flow.nonce.clone());
        let claims = match verify(&client, id_token, &nonce) {
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                // Perhaps the provider rotated its keys: refetch (rate-limited) and try again.
                let client = self.client(true).await?;
                verify(&client, id_token, &nonce)
            }
            other => other,
        }
        .map_err(|e| OidcError::BadToken(token_refusal(&e)))?;
        let subject = claims.subject().as_str();
        let verified_email =
            claims.email().filter(|_| claims.email_verified() != Some(false)).map(|e| e.as_str().to_owned());
        let name = verified_email
            .clone()
            .filter(|e| e.len() <= MAX_NAME_BYTES)
            .unwrap_or_else(|| subject.chars().take(MAX_NAME_BYTES).collect());
        let claim = match self.settings.role_claim.as_str() {
            "email" => verified_email.map(serde_json::Value::String),
            "sub" => Some(serde_json::Value::String(subject.to_owned())),
            other => settings::find_claim(&claims.additional_claims().0, other).cloned(),
        };
        let Some(role) = self.settings.role_for(claim.as_ref()) else {
            tracing::info!(%name, claim = %self.settings.role_claim, "OIDC sign-in refused: no mapped role");
            return Err(OidcError::NoRole(name));
        };
        tracing::info!(%name, %role, "OIDC sign-in");
        Ok(SignedIn { name, role, next: flow.next })
    }

    /// The client built from (cached) discovery; `refresh` refetches unless fetched within
    /// the last minute.
    async fn client(&self, refresh: bool) -> Result<OidcClient, OidcError> {
        let mut cached = self.provider.lock().await;
        let ttl = Duration::from_secs(self.settings.discovery_ttl_secs);
        let stale = match cached.as_ref() {
            None => true,
            Some(p) => p.fetched.elapsed() >= ttl || (refresh && p.fetched.elapsed() >= MIN_REFRESH),
        };
        if stale {
            let metadata = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
                .await
                .map_err(|e| discovery_error(&self.issuer, e))?;
            *cached = Some(Provider { metadata, fetched: Instant::now() });
        }
        let metadata = &cached.as_ref().expect("just filled").metadata;
        let mut client: OidcClient =
            Client::from_provider_metadata(metadata.clone(), self.client_id.clone(), Some(self.secret.clone()))
                .set_redirect_uri(self.redirect.clone());
        // client_secret_basic unless the provider says it only takes client_secret_post.
        if let Some(methods) = metadata.token_endpoint_auth_methods_supported()
            && !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
            && methods.contains(&CoreClientAuthMethod::ClientSecretPost)
        {
            client = client.set_auth_type(AuthType::RequestBody);
        }
        Ok(client)
    }
}

/// Verifies an ID token's signature (asymmetric algorithms the provider lists, else RS256),
/// issuer, audience, expiry and nonce.
fn verify<'a>(
    client: &OidcClient,
    id_token: &'a openidconnect::IdToken<
        ExtraClaims,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    nonce: &Nonce,
) -> Result<&'a openidconnect::IdTokenClaims<ExtraClaims, CoreGenderClaim>, ClaimsVerificationError> {
    use CoreJwsSigningAlgorithm as A;
    let asymmetric = [
        A::RsaSsaPkcs1V15Sha256,
        A::RsaSsaPkcs1V15Sha384,
        A::RsaSsaPkcs1V15Sha512,
        A::RsaSsaPssSha256,
        A::RsaSsaPssSha384,
        A::RsaSsaPssSha512,
        A::EcdsaP256Sha256,
        A::EcdsaP384Sha384,
        A::EdDsa,
    ];
    // The verifier otherwise takes the discovery list as is, which may name HMAC (keyed with
    // the client secret) or `none`.
    let verifier = client.id_token_verifier().set_allowed_algs(asymmetric);
    id_token.claims(&verifier, nonce)
}

/// The callback's query parameters.
#[derive(Debug, Default)]
struct Callback {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

impl Callback {
    /// Takes the parameters it knows from `query`, each bounded.
    fn parse(query: &HashMap<String, String>) -> Result<Callback, OidcError> {
        let take = |key: &str| -> Result<Option<String>, OidcError> {
            match query.get(key) {
                Some(v) if v.len() > MAX_CALLBACK_PARAM_BYTES => {
                    Err(OidcError::BadCallback(format!("its {key} parameter is longer than 8 KiB")))
                }
                v => Ok(v.cloned()),
            }
        };
        Ok(Callback {
            state: take("state")?,
            code: take("code")?,
            error: take("error")?,
            error_description: take("error_description")?,
            iss: take("iss")?,
        })
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// An OAuth error code and its description as one phrase (bounded).
fn describe(error: &str, description: Option<&str>) -> String {
    let clip = |s: &str| s.chars().take(300).collect::<String>();
    match description.filter(|d| !d.is_empty()) {
        Some(d) => format!("{} ({})", clip(error), clip(d)),
        None => clip(error),
    }
}

fn discovery_error(issuer: &IssuerUrl, e: DiscoveryError<IdpHttpError>) -> OidcError {
    let what = match e {
        DiscoveryError::Request(e) => e.to_string(),
        DiscoveryError::Response(status, _, _) => {
            format!("its discovery document or key set answered HTTP {status}")
        }
        DiscoveryError::Parse(e) => format!("its discovery document or key set is not valid ({})", e.path()),
        DiscoveryError::Validation(m) => format!("its discovery document is invalid: {m}"),
        DiscoveryError::UrlParse(e) => format!("the discovery URL is invalid: {e}"),
        DiscoveryError::Other(m) => m,
        _ => "discovery failed".into(),
    };
    tracing::warn!(issuer = %issuer.as_str(), error = %what, "OIDC discovery failed");
    OidcError::Upstream(format!("the identity provider at {} could not be used: {what}", issuer.as_str()))
}

fn token_error(e: RequestTokenError<IdpHttpError, StandardErrorResponse<CoreErrorResponseType>>) -> OidcError {
    let err = match e {
        RequestTokenError::ServerResponse(r) => {
            return OidcError::Denied(format!(
                "it refused the authorization code: {}",
                describe(r.error().as_ref(), r.error_description().map(String::as_str))
            ));
        }
        RequestTokenError::Request(e) => e.to_string(),
        RequestTokenError::Parse(e, _) => format!("its token answer is not valid ({})", e.path()),
        RequestTokenError::Other(m) => format!("its token endpoint answered unexpectedly: {m}"),
    };
    tracing::warn!(error = %err, "OIDC code exchange failed");
    OidcError::Upstream(err)
}

/// A sentence for an ID token refusal.
fn token_refusal(e: &ClaimsVerificationError) -> String {
    let s = match e {
        ClaimsVerificationError::Expired(_) => "it has expired (check that this server's clock is right)".into(),
        ClaimsVerificationError::InvalidAudience(_) => "it was issued for another application (audience)".into(),
        ClaimsVerificationError::InvalidIssuer(_) => "it was issued by another identity provider (issuer)".into(),
        ClaimsVerificationError::InvalidNonce(_) => {
            "it does not carry the nonce of this sign-in (a replayed or mixed-up token)".into()
        }
        ClaimsVerificationError::SignatureVerification(e) => {
            format!("its signature does not verify against the identity provider's keys ({e})")
        }
        other => other.to_string(),
    };
    tracing::info!(error = %e, "OIDC ID token refused");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_parameters_are_bounded() {
        let q = |pairs: &[(&str, String)]| pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let c = Callback::parse(&q(&[("state", "s".into()), ("code", "c".into()), ("x", "1".into())])).unwrap();
        assert_eq!((c.state.as_deref(), c.code.as_deref(), c.iss.as_deref()), (Some("s"), Some("c"), None));
        let long = "a".repeat(MAX_CALLBACK_PARAM_BYTES + 1);
        assert!(matches!(Callback::parse(&q(&[("code", long)])), Err(OidcError::BadCallback(m)) if m.contains("code")));
    }

    #[test]
    fn provider_errors_read_as_sentences() {
        assert_eq!(describe("access_denied", Some("User cancelled")), "access_denied (User cancelled)");
        assert_eq!(describe("x", Some("")), "x");
        assert_eq!(describe(&"e".repeat(1000), None).len(), 300);
    }
}
