//! What the two Secrets hold, read once before anything is decided.
//!
//! `deploy/base` ships both Secrets empty (no `data`, no `type`: the API
//! server defaults it to `Opaque`), because the service account that fills
//! them may `get` and `update` them by name but not `create` Secrets (RBAC
//! cannot limit `create` by name). A Secret is therefore one of:
//! - absent: nobody applied the manifests (or `install` has not run);
//! - empty: none of `tls.crt`, `tls.key`, `ca.crt` has content — shipped,
//!   not issued yet, so issuing into it loses nothing;
//! - issued: at least one of them has content, usable or not; what to do
//!   with it is [`crate::rotation`]'s decision, which never replaces a
//!   stored CA it cannot use.
//!
//! The manifests carry neither `data` nor `type` on purpose: a key in the
//! manifest (even `""`) is reset by every `kubectl apply` and by the agent's
//! forced server-side apply, and a `type` different from the live one (an
//! earlier `install` wrote `kubernetes.io/tls`) makes every apply fail, the
//! type being immutable.

use k8s_openapi::api::core::v1::Secret;

use crate::rotation::Stored;

/// The serving certificate (TLS Secret) or the CA certificate (CA Secret).
pub const TLS_CRT: &str = "tls.crt";
/// The private key of [`TLS_CRT`].
pub const TLS_KEY: &str = "tls.key";
/// The CA bundle, in both Secrets.
pub const CA_CRT: &str = "ca.crt";

/// The keys this program reads and writes; any other key is left as it is.
const KEYS: [&str; 3] = [TLS_CRT, TLS_KEY, CA_CRT];

/// The Secret types this program writes into: what `install` creates and
/// what the API server defaults the shipped, typeless Secrets to. Any other
/// type (a token, registry credentials) means the name is taken by
/// something else.
const WRITABLE_TYPES: [&str; 2] = ["kubernetes.io/tls", "Opaque"];

/// What one Secret holds, as far as certificates go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    /// The Secret does not exist.
    Absent,
    /// It exists without certificates: shipped by `deploy/base`, not issued yet.
    Empty,
    /// It holds at least one of the certificate keys.
    Issued,
}

/// Classifies one Secret (see the module docs).
pub fn contents(secret: Option<&Secret>) -> Contents {
    let Some(secret) = secret else {
        return Contents::Absent;
    };
    if KEYS.iter().any(|key| text(Some(secret), key).is_some()) {
        Contents::Issued
    } else {
        Contents::Empty
    }
}

/// Refuses a Secret of a type this program does not write, before any
/// write: failing on the second Secret after writing the first would leave
/// a CA that nothing serves with.
pub fn check_type(secret: &Secret) -> Result<(), String> {
    // The API server always sets a type; a missing one would be Opaque.
    let type_ = secret.type_.as_deref().unwrap_or("Opaque");
    if WRITABLE_TYPES.contains(&type_) {
        Ok(())
    } else {
        Err(format!(
            "has type {type_:?}, not one gitwarden-certs writes ({})",
            WRITABLE_TYPES.join(" or ")
        ))
    }
}

/// The PEM texts stored in the two Secrets, for [`crate::rotation::plan`].
pub fn stored(ca: Option<&Secret>, tls: Option<&Secret>) -> Stored {
    Stored {
        ca_cert: text(ca, TLS_CRT),
        ca_key: text(ca, TLS_KEY),
        bundle: text(ca, CA_CRT),
        serving_cert: text(tls, TLS_CRT),
        serving_key: text(tls, TLS_KEY),
    }
}

/// The value of one key, `None` when missing or blank. Bytes that are not
/// UTF-8 are kept (lossily) rather than read as missing: they are stored
/// data, which must be refused as unreadable, not overwritten as absent.
fn text(secret: Option<&Secret>, key: &str) -> Option<String> {
    let bytes = secret?.data.as_ref()?.get(key)?;
    Some(String::from_utf8_lossy(&bytes.0).into_owned()).filter(|s| !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    fn secret(type_: Option<&str>, data: &[(&str, &[u8])]) -> Secret {
        Secret {
            type_: type_.map(str::to_string),
            data: (!data.is_empty()).then(|| {
                data.iter()
                    .map(|(k, v)| ((*k).to_string(), ByteString(v.to_vec())))
                    .collect::<BTreeMap<_, _>>()
            }),
            ..Secret::default()
        }
    }

    #[test]
    fn a_missing_secret_is_absent() {
        assert_eq!(contents(None), Contents::Absent);
    }

    #[test]
    fn the_shipped_secret_without_data_is_empty() {
        assert_eq!(
            contents(Some(&secret(Some("Opaque"), &[]))),
            Contents::Empty
        );
    }

    #[test]
    fn blank_values_and_foreign_keys_are_still_empty() {
        let blank = secret(
            Some("kubernetes.io/tls"),
            &[("tls.crt", b""), ("tls.key", b"  \n"), ("note", b"kept")],
        );
        assert_eq!(contents(Some(&blank)), Contents::Empty);
        let stored = stored(Some(&blank), Some(&blank));
        assert!(stored.ca_cert.is_none() && stored.ca_key.is_none());
        assert!(stored.serving_cert.is_none() && stored.serving_key.is_none());
    }

    #[test]
    fn any_certificate_key_with_content_is_issued() {
        for key in KEYS {
            let one = secret(Some("Opaque"), &[(key, b"something")]);
            assert_eq!(contents(Some(&one)), Contents::Issued, "{key}");
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_issued_data_not_missing() {
        let binary = secret(Some("Opaque"), &[("tls.key", &[0xff, 0xfe, 0x00])]);
        assert_eq!(contents(Some(&binary)), Contents::Issued);
        assert!(stored(Some(&binary), None).ca_key.is_some());
    }

    #[test]
    fn only_tls_and_opaque_secrets_are_written() {
        for ok in [Some("Opaque"), Some("kubernetes.io/tls"), None] {
            check_type(&secret(ok, &[])).unwrap();
        }
        let err =
            check_type(&secret(Some("kubernetes.io/service-account-token"), &[])).unwrap_err();
        assert!(err.contains("service-account-token"), "{err}");
    }
}
