//! CSRF protection by double submit: a random token in the `dasher_csrf` cookie
//! (`HttpOnly; SameSite=Strict; Path=/ui`), set by any page that renders a form when missing,
//! and the same value in each form's hidden `csrf_token` field. Every `POST` under `/ui/`
//! must carry both, equal (compared in constant time), or is refused with 403.

use super::cookies;
use http::HeaderMap;
use subtle::ConstantTimeEq;

/// The cookie's name.
pub const COOKIE: &str = "dasher_csrf";
/// The form field's name.
pub const FIELD: &str = "csrf_token";
/// Random bytes in a token (hex in the cookie).
const TOKEN_BYTES: usize = 32;

/// The request's CSRF token, and whether it was minted now (then the response must set the
/// cookie, see [`set_cookie`]).
pub fn ensure(headers: &HeaderMap) -> (String, bool) {
    match cookies::get(headers, COOKIE).filter(|v| well_formed(v)) {
        Some(v) => (v.to_owned(), false),
        None => (super::random_hex::<TOKEN_BYTES>(), true),
    }
}

fn well_formed(v: &str) -> bool {
    v.len() == 2 * TOKEN_BYTES && v.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Why a form was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    /// No `dasher_csrf` cookie (cookies blocked, or the page is from before a sign-out).
    #[error("the request carries no CSRF cookie")]
    NoCookie,
    /// No `csrf_token` field.
    #[error("the form carries no csrf_token field")]
    NoField,
    /// Both present, different.
    #[error("the form's csrf_token does not match the CSRF cookie")]
    Mismatch,
}

/// Checks a posted form's `csrf_token` against the request's cookie.
pub fn check(headers: &HeaderMap, form_token: Option<&str>) -> Result<(), CsrfError> {
    let cookie = cookies::get(headers, COOKIE).filter(|v| well_formed(v)).ok_or(CsrfError::NoCookie)?;
    let field = form_token.filter(|v| !v.is_empty()).ok_or(CsrfError::NoField)?;
    if field.len() != cookie.len() || !bool::from(field.as_bytes().ct_eq(cookie.as_bytes())) {
        return Err(CsrfError::Mismatch);
    }
    Ok(())
}

/// The `Set-Cookie` value for a token.
pub fn set_cookie(token: &str, secure: bool) -> String {
    cookies::set(COOKIE, token, None, secure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;

    fn with_cookie(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, v.parse().unwrap());
        h
    }

    #[test]
    fn ensure_keeps_a_good_cookie_and_mints_otherwise() {
        let good = "ab".repeat(32);
        assert_eq!(ensure(&with_cookie(&format!("x=1; {COOKIE}={good}"))), (good.clone(), false));
        let (minted, new) = ensure(&HeaderMap::new());
        assert!(new && well_formed(&minted));
        let (other, _) = ensure(&HeaderMap::new());
        assert_ne!(minted, other, "tokens are random");
        // A cookie that is not a token we would mint is replaced.
        let (t, new) = ensure(&with_cookie(&format!("{COOKIE}=short")));
        assert!(new && well_formed(&t));
    }

    #[test]
    fn check_needs_cookie_and_equal_field() {
        let good = "0f".repeat(32);
        let h = with_cookie(&format!("{COOKIE}={good}"));
        assert_eq!(check(&h, Some(&good)), Ok(()));
        assert_eq!(check(&h, None), Err(CsrfError::NoField));
        assert_eq!(check(&h, Some("")), Err(CsrfError::NoField));
        assert_eq!(check(&h, Some(&"0e".repeat(32))), Err(CsrfError::Mismatch));
        assert_eq!(check(&h, Some("0f")), Err(CsrfError::Mismatch));
        assert_eq!(check(&HeaderMap::new(), Some(&good)), Err(CsrfError::NoCookie));
    }
}
