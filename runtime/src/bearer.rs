//! Bearer tokens on gitwarden's own HTTP endpoints (`/audit`, the agent's
//! push hook), compared without leaking anything through timing.
//!
//! Both sides are hashed with SHA-256 first and the digests compared in
//! constant time: a plain byte loop stops early or, if it checks the length
//! first, tells an attacker the token's length.

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

/// The token of an `Authorization: Bearer …` header, if there is one.
pub fn from_headers(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether `given` (surrounding whitespace ignored) equals `expected`, in
/// time independent of both. An empty `expected` never matches, so an empty
/// token file cannot switch authentication off.
pub fn matches(given: &str, expected: &str) -> bool {
    if expected.is_empty() {
        return false;
    }
    let (a, b) = (Sha256::digest(given.trim()), Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Whether the request carries `Authorization: Bearer <expected>`.
pub fn authorized(headers: &HeaderMap, expected: &str) -> bool {
    from_headers(headers).is_some_and(|given| matches(given, expected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("")),
        );
        h
    }

    #[test]
    fn the_right_token_is_accepted() {
        assert!(authorized(&headers("Bearer s3cret"), "s3cret"));
    }

    #[test]
    fn surrounding_whitespace_is_ignored_and_an_empty_token_never_matches() {
        assert!(matches(" s3cret-token\n", "s3cret-token"));
        assert!(!matches("", ""));
        assert!(!matches("s3cret", ""));
    }

    #[test]
    fn a_wrong_shorter_or_longer_token_is_refused() {
        for given in [
            "Bearer s3cre",
            "Bearer s3cret!",
            "Bearer other",
            "Basic s3cret",
            "",
        ] {
            assert!(!authorized(&headers(given), "s3cret"), "{given}");
        }
        assert!(!authorized(&HeaderMap::new(), "s3cret"));
    }
}
