//! Sign-in with an admin token (`POST /ui/login`, fields `token` and `csrf_token`), and
//! sign-out (`POST /ui/logout`). A signed-in user has the token's name and role.

use super::layout::{Nav, PageCtx, csrf_field, page};
use super::{Cx, Resp, Result, UiError, html, redirect, session};
use crate::actions::{Actor, Via, audit};
use crate::sync::now_unix;
use http::{StatusCode, header};
use maud::html as m;

/// Longest token accepted in the form.
const MAX_TOKEN_BYTES: usize = 1024;

/// `next` if it is a local console path, else `/ui/` (no open redirect).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if (n == "/ui" || n.starts_with("/ui/"))
                && !n.starts_with("/ui//")
                && !n.contains('\\')
                && !n.bytes().any(|b| b.is_ascii_control())
                && n.len() <= 2048 =>
        {
            n.to_owned()
        }
        _ => "/ui/".to_owned(),
    }
}

/// `sso`: `[ui.oidc]` is configured, so the page offers single sign-on first.
fn login_page(ctx: &PageCtx, next: &str, error: Option<&str>, sso: bool) -> maud::Markup {
    let body = m! {
        div.login.card {
            @if let Some(e) = error {
                div.flash.error { (e) }
            }
            @if let Some((name, role)) = &ctx.user {
                p.muted { "Signed in as " (name) " (" (role.as_str()) "). Sign in again to switch." }
            }
            @if sso {
                a.sso href={ "/ui/oidc/start?next=" (super::enc(next)) } { "Sign in with single sign-on" }
                p.muted.or { "or with an admin token:" }
            }
            form method="post" action="/ui/login" {
                (csrf_field(ctx))
                input type="hidden" name="next" value=(next);
                label for="token" { "Admin token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { "Sign in" }
            }
            p.muted { "Use a token from " code { "[[admin.tokens]]" } " (its role applies) or the admin token." }
        }
    };
    page(ctx, "Sign in", Nav::None, body)
}

/// `GET /ui/login[?next=/ui/...]`.
pub async fn form(cx: &Cx<'_>) -> Result {
    let next = safe_next(cx.q("next"));
    Ok(html(StatusCode::OK, login_page(&cx.page_ctx(), &next, None, cx.state.ui.oidc.is_some())))
}

/// `POST /ui/login`: a valid token starts a session and goes to `next`; a wrong one gets
/// the form again with 401.
pub async fn submit(cx: &Cx<'_>) -> Result {
    let next = safe_next(cx.f("next"));
    let token = cx.f("token").unwrap_or("").trim();
    let refused = |msg: &str| {
        Ok(html(StatusCode::UNAUTHORIZED, login_page(&cx.page_ctx(), &next, Some(msg), cx.state.ui.oidc.is_some())))
    };
    if token.is_empty() {
        return refused("Enter a token.");
    }
    if token.len() > MAX_TOKEN_BYTES {
        return refused("That token is too long to be one of ours.");
    }
    let state = cx.state;
    let who = match state.admin_auth.authenticate_token(token) {
        Ok(who) => who,
        Err(e) => {
            state.metrics.record_auth_failure(e.metric_reason());
            return refused("That token is not valid. Check it and try again.");
        }
    };
    // A sign-in replaces the browser's previous session (if any) rather than leaving it alive.
    session::delete(state.sync.store.as_ref(), &cx.headers).await?;
    let ttl = state.sync.config.get().ui.session_ttl_secs;
    let id = session::create(state.sync.store.as_ref(), &who, ttl, now_unix()).await?;
    let actor = Actor { name: who.name.clone(), role: who.role, via: Via::Ui };
    audit::record(&state.sync, &actor, "ui.sign_in", &format!("user:{}", who.name), serde_json::Value::Null).await;
    let mut resp = redirect(&next);
    set_cookie(&mut resp, &session::set_cookie(&id, ttl, cx.conn.tls));
    Ok(resp)
}

/// `POST /ui/logout`: deletes the session and its cookie.
pub async fn logout(cx: &Cx<'_>) -> Result {
    session::delete(cx.state.sync.store.as_ref(), &cx.headers).await.map_err(UiError::from)?;
    if let Some(s) = &cx.session {
        let actor = Actor { name: s.name.clone(), role: s.role, via: Via::Ui };
        audit::record(&cx.state.sync, &actor, "ui.sign_out", &format!("user:{}", s.name), serde_json::Value::Null)
            .await;
    }
    let mut resp = redirect("/ui/login");
    set_cookie(&mut resp, &session::clear_cookie(cx.conn.tls));
    Ok(resp)
}

fn set_cookie(resp: &mut Resp, value: &str) {
    if let Ok(v) = http::HeaderValue::from_str(value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_in_the_console() {
        assert_eq!(safe_next(Some("/ui/hosts?q=a")), "/ui/hosts?q=a");
        assert_eq!(safe_next(Some("/ui")), "/ui");
        for bad in ["https://evil.example/", "//evil.example", "/ui//evil.example", "/api/v1/rules", "/uix", "/ui\\x"] {
            assert_eq!(safe_next(Some(bad)), "/ui/", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui/");
    }
}
