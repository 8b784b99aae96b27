//! Authenticating push notifications (`POST /hook`) before they trigger a fetch.
//!
//! A hook only makes the agent fetch sooner — what it applies still comes from git and its
//! signatures — but an unauthenticated hook would let anyone make the agent hammer the git
//! server. The check runs in constant time so the secret cannot be guessed byte by byte (bearer
//! tokens are compared by `gitwarden_runtime::bearer`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header GitHub (and Gitea, Forgejo) send the body's HMAC-SHA256 in.
pub const HUB_SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

/// Whether `header` (the value of `X-Hub-Signature-256`, `sha256=<hex>`) is the HMAC-SHA256 of
/// `body` under `secret`. Anything malformed is simply `false`; an empty secret never matches,
/// so a missing secret file cannot turn verification off.
pub fn verify_hub_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    if secret.is_empty() {
        return false;
    }
    let Some(hex_digest) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The example from GitHub's "Validating webhook deliveries" documentation.
    const GITHUB_SECRET: &[u8] = b"It's a Secret to Everybody";
    const GITHUB_BODY: &[u8] = b"Hello, World!";
    const GITHUB_SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_documentation_vector_verifies() {
        assert!(verify_hub_signature(
            GITHUB_SECRET,
            GITHUB_BODY,
            GITHUB_SIGNATURE
        ));
    }

    #[test]
    fn rfc_style_vector_verifies_with_uppercase_hex() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
        let header = "sha256=F7BC83F430538424B13298E6AA6FB143EF4D59A14946175997479DBC2D1A3CD8";
        assert!(verify_hub_signature(
            b"key",
            b"The quick brown fox jumps over the lazy dog",
            header
        ));
    }

    #[test]
    fn altered_body_fails() {
        assert!(!verify_hub_signature(
            GITHUB_SECRET,
            b"Hello, World?",
            GITHUB_SIGNATURE
        ));
    }

    #[test]
    fn wrong_secret_fails() {
        assert!(!verify_hub_signature(
            b"another secret",
            GITHUB_BODY,
            GITHUB_SIGNATURE
        ));
    }

    #[test]
    fn malformed_headers_fail() {
        for header in [
            "",
            "sha256=",
            "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha256=not-hex",
            "sha256=757107ea",
        ] {
            assert!(
                !verify_hub_signature(GITHUB_SECRET, GITHUB_BODY, header),
                "{header:?}"
            );
        }
    }

    #[test]
    fn empty_secret_never_verifies() {
        // A correct MAC under the empty key must still be refused.
        let mut mac = HmacSha256::new_from_slice(b"").unwrap();
        mac.update(b"x");
        let header = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(!verify_hub_signature(b"", b"x", &header));
    }
}
