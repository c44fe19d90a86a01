//! The web console: server-rendered HTML (maud) at `/ui/`, enhanced by htmx, every asset
//! embedded ([`assets`]). Served on the admin listener when `admin.listen` is set, otherwise
//! on the main one; routes marked `main` (the block page, static files) are served on the
//! main listener too, because users' Macs reach that one.
//!
//! One request: find the route in [`ROUTES`] (the only list), look up the session
//! ([`session`]), read and CSRF-check a posted form ([`csrf`]), send the unsigned to the
//! sign-in page, run the handler, render a [`UiError`] as an HTML page, and add the security
//! headers ([`security`]) to every answer.
//!
//! Writes go through [`crate::actions`], the code the admin API runs, with the role of the
//! equivalent admin API route ([`authorize`] looks it up in [`crate::http::admin::ROUTES`]).

pub mod assets;
pub mod audit;
pub mod binaries;
pub mod blocked;
mod cookies;
pub mod csrf;
pub mod error;
pub mod events;
pub mod export;
pub mod fmt;
pub mod hosts;
pub mod layout;
pub mod login;
pub mod oidc;
pub mod overview;
pub mod plugins;
pub mod proposals;
pub mod rules;
pub mod security;
pub mod session;

use crate::actions::{Actor, Via};
use crate::http::admin;
use crate::http::{AppState, ConnInfo, Surface};
use crate::sync::now_unix;
use bytes::Bytes;
use error::UiError;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use layout::PageCtx;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

/// A console response.
pub type Resp = Response<Full<Bytes>>;
/// What a handler returns.
pub type Result<T = Resp> = std::result::Result<T, UiError>;
/// A handler's future.
pub type BoxFut<'a> = Pin<Box<dyn Future<Output = Result> + Send + 'a>>;
/// A route handler.
pub type Handler = for<'a> fn(&'a Cx<'a>) -> BoxFut<'a>;

/// Largest form body.
pub const MAX_FORM_BYTES: usize = 64 << 10;

/// Who may reach a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone (sign-in, static files, the block page).
    Public,
    /// A signed-in user of any role (writes check their role through [`authorize`]).
    Signed,
}

/// One console route.
pub struct Route {
    /// Method (`GET` also answers `HEAD`).
    pub method: Method,
    /// Path; `{}` matches one segment (percent-decoded into [`Cx::params`]).
    pub path: &'static str,
    /// Who may reach it.
    pub access: Access,
    /// Also served on the main listener when `admin.listen` is set.
    pub main: bool,
    /// The handler.
    pub handler: Handler,
}

const fn get(path: &'static str, access: Access, handler: Handler) -> Route {
    Route { method: Method::GET, path, access, main: false, handler }
}

/// A public `GET` route also served on the main listener (the block page, static files).
const fn main_get(path: &'static str, handler: Handler) -> Route {
    Route { method: Method::GET, path, access: Access::Public, main: true, handler }
}

/// A public `POST` route also served on the main listener (the block page's form).
const fn main_post(path: &'static str, handler: Handler) -> Route {
    Route { method: Method::POST, path, access: Access::Public, main: true, handler }
}

const fn post(path: &'static str, access: Access, handler: Handler) -> Route {
    Route { method: Method::POST, path, access, main: false, handler }
}

/// Every console route: add a page with one line.
pub static ROUTES: &[Route] = &[
    get("/ui", Access::Signed, |cx| Box::pin(overview::page(cx))),
    get("/ui/", Access::Signed, |cx| Box::pin(overview::page(cx))),
    get("/ui/login", Access::Public, |cx| Box::pin(login::form(cx))),
    post("/ui/login", Access::Public, |cx| Box::pin(login::submit(cx))),
    post("/ui/logout", Access::Public, |cx| Box::pin(login::logout(cx))),
    get("/ui/oidc/start", Access::Public, |cx| Box::pin(oidc::start(cx))),
    get("/ui/oidc/callback", Access::Public, |cx| Box::pin(oidc::callback(cx))),
    main_get("/ui/static/{}", |cx| Box::pin(static_file(cx))),
    main_get("/ui/blocked", |cx| Box::pin(blocked::view(cx))),
    main_post("/ui/blocked", |cx| Box::pin(blocked::request(cx))),
    get("/ui/hosts", Access::Signed, |cx| Box::pin(hosts::list(cx))),
    get("/ui/hosts/{}", Access::Signed, |cx| Box::pin(hosts::detail(cx))),
    post("/ui/hosts/{}/tags", Access::Signed, |cx| Box::pin(hosts::put_tags(cx))),
    post("/ui/hosts/{}/clean-sync", Access::Signed, |cx| Box::pin(hosts::clean_sync(cx))),
    get("/ui/events", Access::Signed, |cx| Box::pin(events::list(cx))),
    get("/ui/plugins", Access::Signed, |cx| Box::pin(plugins::page(cx))),
    post("/ui/plugins/reload", Access::Signed, |cx| Box::pin(plugins::reload(cx))),
    post("/ui/plugins/{}/rollback", Access::Signed, |cx| Box::pin(plugins::rollback(cx))),
    get("/ui/binaries", Access::Signed, |cx| Box::pin(binaries::search(cx))),
    get("/ui/binaries/{}", Access::Signed, |cx| Box::pin(binaries::detail(cx))),
    post("/ui/binaries/{}/rule", Access::Signed, |cx| Box::pin(binaries::add_rule(cx))),
    get("/ui/proposals", Access::Signed, |cx| Box::pin(proposals::list(cx))),
    post("/ui/proposals/decide", Access::Signed, |cx| Box::pin(proposals::decide(cx))),
    get("/ui/rules", Access::Signed, |cx| Box::pin(rules::page_get(cx))),
    post("/ui/rules", Access::Signed, |cx| Box::pin(rules::post(cx))),
    post("/ui/rules/remove", Access::Signed, |cx| Box::pin(rules::remove(cx))),
    get("/ui/audit", Access::Signed, |cx| Box::pin(audit::list(cx))),
    get("/ui/export", Access::Signed, |cx| Box::pin(export::page(cx))),
];

/// A request as a handler sees it.
pub struct Cx<'a> {
    /// Server state.
    pub state: &'a AppState,
    /// The connection.
    pub conn: &'a ConnInfo,
    /// Method (`HEAD` arrives as `GET`).
    pub method: Method,
    /// Path.
    pub path: String,
    /// The path's `{}` segments, percent-decoded.
    pub params: Vec<String>,
    /// Query parameters (a repeated key keeps its last value).
    pub query: HashMap<String, String>,
    /// The posted form (empty for `GET`); its CSRF token was checked.
    pub form: HashMap<String, String>,
    /// Every value of each posted form key, in order (for repeated fields).
    pub form_all: Vec<(String, String)>,
    /// Request headers.
    pub headers: HeaderMap,
    /// The session, if signed in.
    pub session: Option<session::Session>,
    /// The CSRF token for forms on this response.
    pub csrf: String,
}

impl Cx<'_> {
    /// What the page frame needs.
    pub fn page_ctx(&self) -> PageCtx {
        PageCtx {
            user: self.session.as_ref().map(|s| (s.name.clone(), s.role)),
            csrf: self.csrf.clone(),
            export: self.state.export.configured(),
        }
    }

    /// A query parameter, trimmed, `None` when absent or empty.
    pub fn q(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// A form field, `None` when absent.
    pub fn f(&self, key: &str) -> Option<&str> {
        self.form.get(key).map(String::as_str)
    }
}

/// The actor for a console write equivalent to the admin API route `method api_path`, if the
/// signed-in user has that route's role (from [`admin::ROUTES`], the one table); else a 403
/// page naming the role needed.
pub fn authorize(cx: &Cx<'_>, method: &Method, api_path: &str, what: &str) -> Result<Actor> {
    let Some(s) = &cx.session else {
        return Err(UiError::NotSignedIn { next: "/ui/".into() });
    };
    let (route, _) =
        admin::find(method, api_path).map_err(|_| UiError::NotFound(format!("no admin route {api_path}")))?;
    if s.role < route.role {
        return Err(UiError::Forbidden {
            what: what.to_owned(),
            name: s.name.clone(),
            have: s.role,
            needed: route.role,
        });
    }
    Ok(Actor { name: s.name.clone(), role: s.role, via: Via::Ui })
}

/// An HTML response.
pub fn html(status: StatusCode, markup: maud::Markup) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(markup.into_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

/// A `303 See Other` to a local path.
pub fn redirect(location: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = http::HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// `n` random bytes as lowercase hex (from the thread's CSPRNG).
pub(crate) fn random_hex<const N: usize>() -> String {
    let bytes: [u8; N] = rand::random();
    hex(&bytes)
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Percent-encodes a query value or path segment.
pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn find(method: &Method, path: &str) -> std::result::Result<(&'static Route, Vec<String>), UiError> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut path_matched = false;
    for r in ROUTES {
        let pattern: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
        if pattern.len() != segments.len() {
            continue;
        }
        let mut params = Vec::new();
        let matched = pattern.iter().zip(&segments).all(|(p, s)| {
            if *p == "{}" {
                params.push(percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned());
                !s.is_empty()
            } else {
                p == s
            }
        });
        if !matched {
            continue;
        }
        if r.method == method {
            return Ok((r, params));
        }
        path_matched = true;
    }
    Err(if path_matched { UiError::MethodNotAllowed } else { UiError::NotFound(format!("no console page {path}")) })
}

async fn static_file(cx: &Cx<'_>) -> Result {
    assets::serve(&cx.params[0], &cx.headers).ok_or_else(|| UiError::NotFound(format!("no file {}", cx.params[0])))
}

/// Answers a request for `/ui` or `/ui/...` (never fails: errors become pages).
pub async fn handle(state: &AppState, req: Request<hyper::body::Incoming>, conn: &ConnInfo) -> Resp {
    let path = req.uri().path().to_owned();
    let is_static = path.starts_with("/ui/static/");
    let mut resp = if !state.sync.config.get().ui.enabled {
        plain(StatusCode::NOT_FOUND, "the web console is disabled ([ui] enabled = false)")
    } else {
        dispatch(state, req, conn, &path).await
    };
    security::apply(resp.headers_mut(), is_static);
    resp
}

fn plain(status: StatusCode, text: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(text.to_owned())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

async fn dispatch(state: &AppState, req: Request<hyper::body::Incoming>, conn: &ConnInfo, path: &str) -> Resp {
    let (csrf, minted) = csrf::ensure(req.headers());
    let secure = conn.tls;
    let mut resp = match prepare_and_run(state, req, conn, path, &csrf).await {
        Ok(r) => r,
        Err((e, ctx)) => error_response(&e, &ctx),
    };
    // Static files and redirects carry no forms; every page does (the sign-out form).
    let is_page = resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if minted
        && is_page
        && let Ok(v) = http::HeaderValue::from_str(&csrf::set_cookie(&csrf, secure))
    {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// The response for an error: a redirect to sign in, or an error page.
pub fn error_response(e: &UiError, ctx: &PageCtx) -> Resp {
    match e {
        UiError::NotSignedIn { next } => redirect(&format!("/ui/login?next={}", enc(next))),
        e => html(e.status(), e.page(ctx)),
    }
}

async fn prepare_and_run(
    state: &AppState,
    req: Request<hyper::body::Incoming>,
    conn: &ConnInfo,
    path: &str,
    csrf_token: &str,
) -> std::result::Result<Resp, (UiError, PageCtx)> {
    let bare = || PageCtx { user: None, csrf: csrf_token.to_owned(), export: false };
    let (route, params) = find(req.method(), path).map_err(|e| (e, bare()))?;
    if conn.surface == Surface::Sync && !route.main {
        return Err((UiError::NotFound("the console is served on admin.listen".into()), bare()));
    }
    let query: HashMap<String, String> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()).into_owned().collect();
    let next = match req.uri().query() {
        Some(q) if req.method() == Method::GET => format!("{path}?{q}"),
        _ if req.method() == Method::GET => path.to_owned(),
        _ => "/ui/".to_owned(),
    };
    let method = req.method().clone();
    let (parts, body) = req.into_parts();
    let session = if route.access == Access::Public && path.starts_with("/ui/static/") {
        None
    } else {
        session::lookup(state.sync.store.as_ref(), &state.admin_auth, &parts.headers, now_unix())
            .await
            .map_err(|e| (UiError::from(e), bare()))?
    };
    let ctx = PageCtx {
        user: session.as_ref().map(|s| (s.name.clone(), s.role)),
        csrf: csrf_token.to_owned(),
        export: state.export.configured(),
    };
    let mut form_all = Vec::new();
    if method == Method::POST {
        match read_form(state, &parts.headers, body).await {
            Ok(f) => form_all = f,
            Err(e) => return Err((e, ctx)),
        }
        let token = form_all.iter().find(|(k, _)| k == csrf::FIELD).map(|(_, v)| v.as_str());
        if let Err(e) = csrf::check(&parts.headers, token) {
            return Err((UiError::Csrf(e.to_string()), ctx));
        }
    }
    if route.access == Access::Signed && session.is_none() {
        return Err((UiError::NotSignedIn { next }, ctx));
    }
    let cx = Cx {
        state,
        conn,
        method,
        path: path.to_owned(),
        params,
        query,
        form: form_all.iter().cloned().collect(),
        form_all,
        headers: parts.headers,
        session,
        csrf: csrf_token.to_owned(),
    };
    (route.handler)(&cx).await.map_err(|e| (e, ctx))
}

async fn read_form(
    state: &AppState,
    headers: &HeaderMap,
    body: hyper::body::Incoming,
) -> std::result::Result<Vec<(String, String)>, UiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return Err(UiError::BadRequest {
            field: None,
            message: "forms must be sent as application/x-www-form-urlencoded".into(),
        });
    }
    let timeout = std::time::Duration::from_secs(state.sync.config.get().limits.body_read_timeout_secs);
    let bytes = tokio::time::timeout(timeout, crate::http::read_limited(body, MAX_FORM_BYTES))
        .await
        .map_err(|_| UiError::BadRequest { field: None, message: "the form was not received in time".into() })?
        .map_err(UiError::from)?;
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

/// Background work of the console (the overview snapshot), started with the server.
pub struct UiState {
    /// The latest overview snapshot.
    pub overview: overview::SnapshotCell,
    /// Rate limits of the block page ([`blocked`]).
    pub blocked: crate::blocked::BlockPageLimits,
    /// OpenID Connect sign-in, when `[ui.oidc]` is set.
    pub oidc: Option<std::sync::Arc<crate::oidc::Oidc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_under_ui_and_match_one_segment_per_placeholder() {
        for r in ROUTES {
            assert!(r.path == "/ui" || r.path.starts_with("/ui/"), "{}", r.path);
            // Writes are never public except sign-in/out (which check CSRF like every POST).
            if r.method == Method::POST && r.access == Access::Public {
                assert!(matches!(r.path, "/ui/login" | "/ui/logout") || r.main, "{}", r.path);
            }
        }
        let (r, params) = find(&Method::GET, "/ui/hosts/a%2Fb%20c").unwrap();
        assert_eq!((r.path, params), ("/ui/hosts/{}", vec!["a/b c".to_owned()]));
        let (r, _) = find(&Method::POST, "/ui/hosts/m1/tags").unwrap();
        assert_eq!(r.path, "/ui/hosts/{}/tags");
        assert!(matches!(find(&Method::POST, "/ui/hosts"), Err(UiError::MethodNotAllowed)));
        assert!(matches!(find(&Method::GET, "/ui/hosts/"), Err(UiError::NotFound(_))), "empty segment");
        assert!(matches!(find(&Method::GET, "/ui/nope"), Err(UiError::NotFound(_))));
        assert!(find(&Method::GET, "/ui/static/htmx.min.js").unwrap().0.main, "static files on the main listener");
    }

    #[test]
    fn console_writes_have_the_admin_api_role() {
        use crate::config::Role;
        for (method, path, role) in [
            (Method::PUT, "/api/v1/hosts/m1/tags", Role::RulesEditor),
            (Method::POST, "/api/v1/hosts/m1/clean-sync", Role::RulesEditor),
            (Method::POST, "/api/v1/plugins/reload", Role::Admin),
            (Method::POST, "/api/v1/plugins/p/rollback", Role::Admin),
        ] {
            assert_eq!(admin::find(&method, path).unwrap().0.role, role, "{path}");
        }
    }
}
