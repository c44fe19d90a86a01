//! The page frame every console page shares: head (stylesheets, scripts, htmx settings),
//! the navigation, the signed-in user with their role and a sign-out button, and the body.
//! No inline script or style (the Content-Security-Policy forbids both).

use super::assets;
use crate::config::Role;
use maud::{DOCTYPE, Markup, html};

/// What the frame needs to know about the request.
pub struct PageCtx {
    /// The signed-in user (name, role), if any.
    pub user: Option<(String, Role)>,
    /// The CSRF token every form carries.
    pub csrf: String,
    /// Whether event export is configured (the Export entry shows only then).
    pub export: bool,
}

/// The navigation entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    /// `/ui/`
    Overview,
    /// `/ui/hosts`
    Hosts,
    /// `/ui/events`
    Events,
    /// `/ui/binaries`
    Binaries,
    /// `/ui/proposals`
    Proposals,
    /// `/ui/rules`
    Rules,
    /// `/ui/plugins`
    Plugins,
    /// `/ui/audit`
    Audit,
    /// `/ui/export` (shown when export is configured)
    Export,
    /// No entry is current (sign-in, errors).
    None,
}

/// The navigation, in order: (entry, label, URL).
pub const NAV: &[(Nav, &str, &str)] = &[
    (Nav::Overview, "Overview", "/ui/"),
    (Nav::Hosts, "Hosts", "/ui/hosts"),
    (Nav::Events, "Events", "/ui/events"),
    (Nav::Binaries, "Binaries", "/ui/binaries"),
    (Nav::Proposals, "Proposals", "/ui/proposals"),
    (Nav::Rules, "Rules", "/ui/rules"),
    (Nav::Plugins, "Plugins", "/ui/plugins"),
    (Nav::Audit, "Audit", "/ui/audit"),
    (Nav::Export, "Export", "/ui/export"),
];

/// The hidden CSRF field every form must contain.
pub fn csrf_field(ctx: &PageCtx) -> Markup {
    html! { input type="hidden" name=(super::csrf::FIELD) value=(ctx.csrf); }
}

/// A whole page.
pub fn page(ctx: &PageCtx, title: &str, active: Nav, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // htmx must not inject its own <style> or evaluate strings (CSP).
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;
                title { (title) " · Dasher" }
                link rel="stylesheet" href=(assets::url("uPlot.min.css"));
                link rel="stylesheet" href=(assets::url("dasher.css"));
                script src=(assets::url("htmx.min.js")) defer {}
                script src=(assets::url("uPlot.iife.min.js")) defer {}
                script src=(assets::url("dasher.js")) defer {}
            }
            body {
                header.top {
                    a.brand href="/ui/" { "Dasher" }
                    @if let Some((name, role)) = &ctx.user {
                        nav.main {
                            @for (entry, label, url) in NAV.iter().filter(|n| n.0 != Nav::Export || ctx.export) {
                                @if *entry == active {
                                    a.current href=(url) aria-current="page" { (label) }
                                } @else {
                                    a href=(url) { (label) }
                                }
                            }
                        }
                        div.who {
                            span.user { (name) }
                            " "
                            span.role { (role.as_str()) }
                            form.inline method="post" action="/ui/logout" {
                                (csrf_field(ctx))
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}
