//! Single sign-on routes (`[ui.oidc]`, the relying party is [`crate::oidc`]):
//!
//! - `GET /ui/oidc/start?next=/ui/...` sets the flow cookie and sends the browser to the
//!   identity provider;
//! - `GET /ui/oidc/callback` completes the sign-in and starts the same kind of session as a
//!   token sign-in (`via = "oidc"`), recorded in the audit log.
//!
//! The callback answers with a short page that moves on to `next` by itself (meta refresh)
//! rather than a redirect: the session cookie is `SameSite=Strict`, and browsers leave such
//! cookies off every step of a redirect chain that began on another site (the identity
//! provider), so a redirect would land on the sign-in page again. A failed sign-in gets a
//! page with the reason as a sentence and a way back to the sign-in page.

use super::layout::{Nav, page};
use super::{Cx, Resp, Result, UiError, cookies, html, login, redirect, session};
use crate::actions::{Actor, Via, audit};
use crate::http::admin::auth::Identity;
use crate::oidc::{OidcError, flow};
use crate::sync::now_unix;
use http::{StatusCode, header};
use maud::{DOCTYPE, html as m};

fn add_cookie(resp: &mut Resp, value: &str) {
    if let Ok(v) = http::HeaderValue::from_str(value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn not_configured() -> UiError {
    UiError::NotFound("single sign-on is not configured on this server ([ui.oidc]); sign in with a token".into())
}

/// The status of a failed sign-in.
fn status(e: &OidcError) -> StatusCode {
    match e {
        OidcError::NoFlow | OidcError::FlowExpired(_) | OidcError::StateMismatch | OidcError::BadCallback(_) => {
            StatusCode::BAD_REQUEST
        }
        OidcError::Denied(_) | OidcError::BadToken(_) | OidcError::NoRole(_) => StatusCode::FORBIDDEN,
        OidcError::Upstream(_) => StatusCode::BAD_GATEWAY,
        OidcError::Config(_) | OidcError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The page for a failed sign-in: the reason, and the way back.
fn failed(cx: &Cx<'_>, e: &OidcError) -> Resp {
    let mut reason = e.to_string();
    if let Some(first) = reason.get(..1) {
        reason = first.to_uppercase() + &reason[1..];
    }
    let body = m! {
        div.login.card {
            div.flash.error { (reason) "." }
            p { a href="/ui/login" { "Back to the sign-in page" } }
        }
    };
    let mut resp = html(status(e), page(&cx.page_ctx(), "Sign-in failed", Nav::None, body));
    add_cookie(&mut resp, &flow::clear_cookie(cx.conn.tls));
    resp
}

/// `GET /ui/oidc/start[?next=/ui/...]`.
pub async fn start(cx: &Cx<'_>) -> Result {
    let oidc = cx.state.ui.oidc.as_ref().ok_or_else(not_configured)?;
    let next = login::safe_next(cx.q("next"));
    match oidc.start(&next, cx.conn.tls).await {
        Ok(start) => {
            let mut resp = redirect(&start.location);
            add_cookie(&mut resp, &start.set_cookie);
            Ok(resp)
        }
        Err(e) => Ok(failed(cx, &e)),
    }
}

/// `GET /ui/oidc/callback?code=…&state=…` (or `?error=…&state=…`).
pub async fn callback(cx: &Cx<'_>) -> Result {
    let oidc = cx.state.ui.oidc.as_ref().ok_or_else(not_configured)?;
    let signed = match oidc.finish(&cx.query, cookies::get(&cx.headers, flow::COOKIE)).await {
        Ok(signed) => signed,
        Err(e) => {
            tracing::info!(error = %e, "single sign-on refused");
            return Ok(failed(cx, &e));
        }
    };
    let state = cx.state;
    let who = Identity { name: signed.name.clone(), role: signed.role };
    let ttl = state.sync.config.get().ui.session_ttl_secs;
    let id = session::create_via(state.sync.store.as_ref(), &who, ttl, now_unix(), "oidc").await?;
    let actor = Actor { name: who.name.clone(), role: who.role, via: Via::Ui };
    let detail = serde_json::json!({ "via": "oidc" });
    audit::record(&state.sync, &actor, "ui.sign_in", &format!("user:{}", who.name), detail).await;
    let mut resp = html(StatusCode::OK, continue_page(&who, &signed.next));
    add_cookie(&mut resp, &session::set_cookie(&id, ttl, cx.conn.tls));
    add_cookie(&mut resp, &flow::clear_cookie(cx.conn.tls));
    Ok(resp)
}

/// "Signed in", moving on to `next` (a local `/ui/` path) by meta refresh, with a link.
fn continue_page(who: &Identity, next: &str) -> maud::Markup {
    m! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content={ "0;url=" (next) };
                title { "Signed in · Dasher" }
                link rel="stylesheet" href=(super::assets::url("dasher.css"));
            }
            body {
                main {
                    div.login.card {
                        p { "Signed in as " strong { (who.name) } " (" (who.role.as_str()) ")." }
                        p { a href=(next) { "Continue" } }
                    }
                }
            }
        }
    }
}
