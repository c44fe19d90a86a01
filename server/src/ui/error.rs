//! The console's errors and their HTML pages (the JSON `ApiError` shape is for the API).

use super::layout::{Nav, PageCtx, page};
use crate::actions::ActionError;
use crate::config::Role;
use crate::http::error::ApiError;
use maud::html;

/// Why a console request was not served.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// Not signed in: redirect to the sign-in page, then back to `next`.
    #[error("sign in first")]
    NotSignedIn {
        /// Where to go after signing in (a local `/ui/` path).
        next: String,
    },
    /// Signed in, but the role is too low.
    #[error("{what} needs role {needed}; you are signed in as {name} with role {have}")]
    Forbidden {
        /// What was attempted.
        what: String,
        /// Who.
        name: String,
        /// Their role.
        have: Role,
        /// The role needed.
        needed: Role,
    },
    /// Refused for another reason (a 403 from a layer below).
    #[error("{0}")]
    Refused(String),
    /// A form without a valid CSRF token.
    #[error("this form could not be accepted ({0}); reload the page and try again")]
    Csrf(String),
    /// Bad input; names the field when known.
    #[error("{message}")]
    BadRequest {
        /// Field.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// No such page or thing.
    #[error("{0}")]
    NotFound(String),
    /// Wrong method.
    #[error("this page does not accept that method")]
    MethodNotAllowed,
    /// Conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// Too large.
    #[error("{0}")]
    TooLarge(String),
    /// Storage or a dependency failed; retry.
    #[error("{0}")]
    Unavailable(String),
}

impl UiError {
    /// A bad request naming a field.
    pub fn field(field: &str, message: impl Into<String>) -> UiError {
        UiError::BadRequest { field: Some(field.to_owned()), message: message.into() }
    }

    /// The HTTP status.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            UiError::NotSignedIn { .. } => S::SEE_OTHER,
            UiError::Forbidden { .. } | UiError::Refused(_) | UiError::Csrf(_) => S::FORBIDDEN,
            UiError::BadRequest { .. } => S::BAD_REQUEST,
            UiError::NotFound(_) => S::NOT_FOUND,
            UiError::MethodNotAllowed => S::METHOD_NOT_ALLOWED,
            UiError::Conflict(_) => S::CONFLICT,
            UiError::TooLarge(_) => S::PAYLOAD_TOO_LARGE,
            UiError::Unavailable(_) => S::SERVICE_UNAVAILABLE,
        }
    }

    /// The error page (not for [`UiError::NotSignedIn`], which redirects).
    pub fn page(&self, ctx: &PageCtx) -> maud::Markup {
        let title = match self.status().as_u16() {
            400 => "Bad request",
            403 => "Not allowed",
            404 => "Not found",
            405 => "Method not allowed",
            409 => "Conflict",
            413 => "Too large",
            _ => "Unavailable",
        };
        let body = html! {
            div.flash.error { (self.to_string()) }
            @if let UiError::BadRequest { field: Some(f), .. } = self {
                p.muted { "Field: " code { (f) } }
            }
            p { a href="/ui/" { "Back to the overview" } }
        };
        page(ctx, title, Nav::None, body)
    }
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::BadRequest { field, message } => UiError::BadRequest { field, message },
            ApiError::NotFound(m) => UiError::NotFound(m),
            ApiError::MethodNotAllowed => UiError::MethodNotAllowed,
            ApiError::Conflict(m) => UiError::Conflict(m),
            ApiError::TooLarge(m) => UiError::TooLarge(m),
            ApiError::Forbidden(m) => UiError::Refused(m),
            e => UiError::Unavailable(e.to_string()),
        }
    }
}

impl From<ActionError> for UiError {
    fn from(e: ActionError) -> Self {
        match e {
            ActionError::Invalid { field, message } => UiError::BadRequest { field: Some(field), message },
            ActionError::NotFound(m) => UiError::NotFound(m),
            ActionError::Conflict(m) => UiError::Conflict(m),
            ActionError::Store(e) => e.into(),
            ActionError::Unavailable(m) => UiError::Unavailable(m),
        }
    }
}

impl From<dasher_store::StoreError> for UiError {
    fn from(e: dasher_store::StoreError) -> Self {
        tracing::error!(error = %e, "store error (console)");
        UiError::Unavailable(format!("storage unavailable: {e}; retry in a moment"))
    }
}
