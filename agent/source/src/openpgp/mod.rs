//! Verifying git's OpenPGP commit signatures (`gpg.format=openpgp`, git's default) in process.
//!
//! The `gpgsig` header holds an armored detached signature over the commit object without that
//! header, as `gpg -bsau KEY` makes it. A commit passes when the signing key (primary key or
//! subkey) is in the configured keyring, was valid when the commit was signed (see
//! [`validity`]), and the signature verifies. Keyring membership is the authorisation, as the
//! allowed-signers file is for SSH: there is no web of trust or trust database.
//!
//! Done with rpgp (`pgp`) rather than by running `gpg --verify`, so the agent image needs no
//! GnuPG and the rules are ours, tested here. rpgp checks signatures but judges no key
//! validity (revocation, expiry, flags), so [`validity`] does.

mod keyring;
mod validity;

pub use keyring::OpenPgpKeyring;

use jiff::Timestamp;
use pgp::{
    composed::{Deserializable, DetachedSignature, SignedPublicKey},
    crypto::hash::HashAlgorithm,
    packet::{Signature, SignatureType},
    types::KeyDetails,
};

use crate::VerifiedSigner;
use validity::{Issuer, KeyRef};

/// Check the armored detached signature `armored` over `signed_data` against `keyring`.
/// `committer_time` is the commit's committer time: a key that had expired by then is refused
/// too (see [`validity`]). `committer_email` is reported as principal when one of the key's
/// user IDs carries it.
pub(crate) fn verify(
    keyring: &OpenPgpKeyring,
    armored: &str,
    signed_data: &[u8],
    committer_time: Timestamp,
    committer_email: &str,
) -> Result<VerifiedSigner, String> {
    let (detached, _headers) = DetachedSignature::from_string(armored)
        .map_err(|err| format!("malformed OpenPGP signature: {err}"))?;
    let signature = detached.signature;
    check_signature_packet(&signature)?;
    let issuer = Issuer::of(&signature)?;
    let mut candidates = keyring
        .certificates()
        .iter()
        .flat_map(|cert| validity::keys_of(cert, &issuer))
        .peekable();
    if candidates.peek().is_none() {
        return Err(format!(
            "signing key {issuer} is not in the OpenPGP keyring"
        ));
    }
    // Normally exactly one key matches; with several (a key listed twice, a key id collision)
    // the first that verifies wins and otherwise the last reason is reported.
    let mut why = String::new();
    for key in candidates {
        match verify_with(&key, &signature, &issuer, signed_data, committer_time) {
            Ok(()) => return Ok(signer(key.cert, committer_email)),
            Err(err) => why = err,
        }
    }
    Err(why)
}

/// What the signature packet itself must be: a document signature (binary, or text when a
/// user has `textmode` in gpg.conf) with a creation time and a collision-resistant hash.
/// rpgp does not refuse SHA-1 or MD5, whose collisions let a signature be moved to another
/// commit with the same digest, so we do.
fn check_signature_packet(signature: &Signature) -> Result<(), String> {
    match signature.typ() {
        Some(SignatureType::Binary | SignatureType::Text) => {}
        other => {
            return Err(format!(
                "the OpenPGP signature is not a document signature (type {other:?})"
            ));
        }
    }
    match signature.hash_alg() {
        Some(
            HashAlgorithm::Sha256
            | HashAlgorithm::Sha384
            | HashAlgorithm::Sha512
            | HashAlgorithm::Sha224
            | HashAlgorithm::Sha3_256
            | HashAlgorithm::Sha3_512,
        ) => Ok(()),
        Some(weak) => Err(format!(
            "the OpenPGP signature uses the hash algorithm {weak}, which is not collision-resistant; sign with SHA-256 or better (gpg.conf: personal-digest-preferences SHA256)"
        )),
        None => Err("the OpenPGP signature uses an unknown hash algorithm".into()),
    }
}

/// Key validity at signing (and committer) time, then the signature itself.
fn verify_with(
    key: &KeyRef<'_>,
    signature: &Signature,
    issuer: &Issuer,
    signed_data: &[u8],
    committer_time: Timestamp,
) -> Result<(), String> {
    validity::check(key, issuer.created, committer_time)?;
    let checked = match key.subkey {
        None => signature.verify(&key.cert.primary_key, signed_data),
        Some(subkey) => signature.verify(&subkey.key, signed_data),
    };
    // rpgp's reason ("invalid signed hash value", an assertion text) says nothing more to an
    // operator than this sentence does; keep it for debugging only.
    checked.map_err(|err| {
        tracing::debug!(error = %err, "OpenPGP signature check failed");
        format!(
            "bad signature by {}: the commit was altered after signing, or the signature is not over it",
            key.describe()
        )
    })
}

/// The identity reported for a verified commit: the committer's email when one of the key's
/// self-certified user IDs carries it (as for SSH, where the committer's email is reported when
/// the allowed-signers line covers it), otherwise the primary user ID's email; and the primary
/// key's fingerprint, the one `gpg --list-keys` shows and the keyring is managed by.
fn signer(cert: &SignedPublicKey, committer_email: &str) -> VerifiedSigner {
    let user_ids = validity::user_ids(cert);
    let email_of = |uid: &str| match (uid.rfind('<'), uid.rfind('>')) {
        (Some(start), Some(end)) if start < end => uid[start + 1..end].to_string(),
        _ => uid.to_string(),
    };
    let principal = user_ids
        .iter()
        .map(|uid| email_of(uid))
        .find(|email| email.eq_ignore_ascii_case(committer_email))
        .or_else(|| user_ids.first().map(|uid| email_of(uid)))
        .unwrap_or_default();
    VerifiedSigner {
        principal,
        key_fingerprint: format!("{:X}", cert.primary_key.fingerprint()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_signature_that_is_not_armored_openpgp_is_malformed() {
        let keyring = OpenPgpKeyring::default();
        let err = verify(
            &keyring,
            "-----BEGIN PGP SIGNATURE-----\n\nnot base64 !!\n-----END PGP SIGNATURE-----\n",
            b"tree 0\n",
            Timestamp::UNIX_EPOCH,
            "a@example.com",
        )
        .unwrap_err();
        assert!(err.starts_with("malformed OpenPGP signature"), "{err}");
    }
}
