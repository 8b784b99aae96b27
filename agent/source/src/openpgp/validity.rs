//! Whether a key in the keyring could sign a commit: rpgp verifies signatures but judges no
//! key validity, so the rules are here.
//!
//! With `t` the signature's creation time, the signing key must be, at `t`:
//!
//! - **not revoked** — any self-issued revocation of the primary key, or of the signing subkey,
//!   refuses it, hard (compromised, no reason) or soft (superseded, retired) alike and whatever
//!   its date. OpenPGP would let soft revocations spare older signatures, but a GitOps agent
//!   re-verifies the head at every fetch, and a revoked key's commits staying deployable is the
//!   surprise an operator revoking a key does not want; re-signing the head is cheap.
//! - **bound**: the primary key has a valid self-signature (direct-key or user ID
//!   certification) made at or before `t`, the newest of which carries the key's flags and
//!   expiry; a subkey has a valid binding signature made at or before `t` (the newest counts)
//!   with an embedded primary-key binding ("back") signature, which RFC 4880 §11.1 requires of
//!   signing subkeys and GnuPG enforces: without it anyone could claim someone else's signing
//!   subkey as theirs.
//! - **signing-capable**: that self-signature's or binding's key flags include "sign" (a
//!   certification-only primary key with a signing subkey signs through the subkey).
//! - **not expired** — judged at `t`, and also at the commit's committer time: a key that had
//!   expired by either is refused, and the error says which.
//!
//! Not checked: a signature dated long after the committer time is accepted (re-signing an
//! old commit, e.g. by `git commit --amend -S` with a kept date, is legitimate, and the key
//! must be valid at both times anyway); nor are third-party certifications or the hash
//! algorithms of self-signatures, and designated revokers are not honoured (their revocations
//! cannot be verified without their key; remove such a key from the keyring instead).

use pgp::{
    composed::{SignedPublicKey, SignedPublicSubKey},
    packet::{RevocationCode, Signature, SignatureType},
    types::{Fingerprint, KeyDetails, KeyId, Tag},
};

/// Who made a signature, as its issuer subpackets say, and when.
#[derive(Debug)]
pub(super) struct Issuer {
    /// Issuer fingerprints (v4 and later signatures by GnuPG 2.2+ carry one).
    fingerprints: Vec<Fingerprint>,
    /// Issuer key ids (the 64-bit legacy ids; older signers carry only these).
    key_ids: Vec<KeyId>,
    /// The signature creation time, in seconds since the epoch.
    pub(super) created: i64,
}

impl Issuer {
    /// The issuer and creation time of `signature`, which must name at least one issuer.
    pub(super) fn of(signature: &Signature) -> Result<Self, String> {
        let created = signature
            .created()
            .map(|at| i64::from(at.as_secs()))
            .ok_or("the OpenPGP signature has no creation time")?;
        let issuer = Issuer {
            fingerprints: signature
                .issuer_fingerprint()
                .into_iter()
                .cloned()
                .collect(),
            key_ids: signature.issuer_key_id().into_iter().cloned().collect(),
            created,
        };
        if issuer.fingerprints.is_empty() && issuer.key_ids.is_empty() {
            return Err("the OpenPGP signature does not name its signing key".into());
        }
        Ok(issuer)
    }

    fn matches(&self, key: &impl KeyDetails) -> bool {
        self.fingerprints.contains(&key.fingerprint())
            || self.key_ids.contains(&key.legacy_key_id())
    }
}

impl std::fmt::Display for Issuer {
    /// The fingerprint when the signature has one, else the key id, in upper-case hex as
    /// `gpg --list-keys` prints them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.fingerprints.first(), self.key_ids.first()) {
            (Some(fingerprint), _) => write!(f, "{fingerprint:X}"),
            (None, Some(key_id)) => write!(f, "{}", hex::encode_upper(key_id)),
            (None, None) => f.write_str("(unnamed)"),
        }
    }
}

/// A key of the keyring that a signature's issuer names: a primary key or one of its subkeys.
#[derive(Debug, Clone, Copy)]
pub(super) struct KeyRef<'a> {
    /// The certificate (primary key with its user IDs and subkeys).
    pub(super) cert: &'a SignedPublicKey,
    /// The subkey that signed, `None` when the primary key did.
    pub(super) subkey: Option<&'a SignedPublicSubKey>,
}

impl KeyRef<'_> {
    /// `key FPR (Name <email>)` or `subkey SFPR of key FPR (Name <email>)`, for errors.
    pub(super) fn describe(&self) -> String {
        let primary = format!("{:X}", self.cert.primary_key.fingerprint());
        let owner = user_ids(self.cert)
            .into_iter()
            .next()
            .map(|uid| format!(" ({uid})"))
            .unwrap_or_default();
        match self.subkey {
            None => format!("key {primary}{owner}"),
            Some(subkey) => format!(
                "subkey {:X} of key {primary}{owner}",
                subkey.key.fingerprint()
            ),
        }
    }
}

/// The keys of `cert` that `issuer` names.
pub(super) fn keys_of<'a>(cert: &'a SignedPublicKey, issuer: &Issuer) -> Vec<KeyRef<'a>> {
    let primary = issuer
        .matches(&cert.primary_key)
        .then_some(KeyRef { cert, subkey: None });
    let subkeys = cert
        .public_subkeys
        .iter()
        .filter(|subkey| issuer.matches(&subkey.key))
        .map(|subkey| KeyRef {
            cert,
            subkey: Some(subkey),
        });
    primary.into_iter().chain(subkeys).collect()
}

/// Apply the rules of this module to `key` for a signature made at `signed_at` (epoch seconds)
/// on a commit with `committer_time`.
pub(super) fn check(
    key: &KeyRef<'_>,
    signed_at: i64,
    committer_time: jiff::Timestamp,
) -> Result<(), String> {
    let cert = key.cert;
    let primary = &cert.primary_key;
    if let Some(revocation) = cert
        .details
        .revocation_signatures
        .iter()
        .find(|rev| rev.verify_key(primary).is_ok())
    {
        return Err(format!(
            "{} is revoked ({})",
            KeyRef { cert, subkey: None }.describe(),
            reason(revocation)
        ));
    }
    let self_signature = primary_self_signature(cert, signed_at).ok_or_else(|| {
        format!(
            "{} has no valid self-signature made before the commit was signed",
            KeyRef { cert, subkey: None }.describe()
        )
    })?;
    check_expiry(
        &KeyRef { cert, subkey: None },
        expiry(primary, self_signature),
        signed_at,
        committer_time,
    )?;
    let Some(subkey) = key.subkey else {
        return require_signing_flag(key, self_signature);
    };
    if let Some(revocation) = subkey.signatures.iter().find(|sig| {
        sig.typ() == Some(SignatureType::SubkeyRevocation)
            && sig.verify_subkey_binding(primary, &subkey.key).is_ok()
    }) {
        return Err(format!(
            "{} is revoked ({})",
            key.describe(),
            reason(revocation)
        ));
    }
    let binding = subkey
        .signatures
        .iter()
        .filter(|sig| sig.typ() == Some(SignatureType::SubkeyBinding))
        .filter(|sig| created(sig).is_some_and(|at| at <= signed_at))
        .filter(|sig| sig.verify_subkey_binding(primary, &subkey.key).is_ok())
        .max_by_key(|sig| created(sig))
        .ok_or_else(|| {
            format!(
                "{} has no valid binding signature made before the commit was signed",
                key.describe()
            )
        })?;
    require_signing_flag(key, binding)?;
    let cross_certified = binding.embedded_signature().is_some_and(|back| {
        back.verify_primary_key_binding(&subkey.key, primary)
            .is_ok()
    });
    if !cross_certified {
        return Err(format!(
            "{} is not cross-certified (its binding lacks a valid back-signature), so it cannot be trusted to sign for the key",
            key.describe()
        ));
    }
    check_expiry(key, expiry(&subkey.key, binding), signed_at, committer_time)
}

/// The user IDs of `cert` self-certified by its primary key and not revoked, the one marked
/// primary first, then in file order.
pub(super) fn user_ids(cert: &SignedPublicKey) -> Vec<String> {
    let primary = &cert.primary_key;
    let mut valid: Vec<(bool, String)> = cert
        .details
        .users
        .iter()
        .filter_map(|user| {
            let verified = |sig: &&Signature| {
                sig.verify_certification(primary, Tag::UserId, &user.id)
                    .is_ok()
            };
            let certified: Vec<&Signature> = user
                .signatures
                .iter()
                .filter(|sig| is_certification(sig))
                .filter(verified)
                .collect();
            let revoked = user
                .signatures
                .iter()
                .filter(|sig| sig.typ() == Some(SignatureType::CertRevocation))
                .any(|sig| verified(&sig));
            let name = user.id.as_str()?;
            (!certified.is_empty() && !revoked).then(|| {
                (
                    certified.iter().any(|sig| sig.is_primary()),
                    name.to_string(),
                )
            })
        })
        .collect();
    valid.sort_by_key(|(is_primary, _)| !is_primary);
    valid.into_iter().map(|(_, name)| name).collect()
}

/// The newest valid self-signature of the primary key made at or before `at`: direct-key
/// signatures and user ID certifications both carry the key's flags and expiry.
fn primary_self_signature(cert: &SignedPublicKey, at: i64) -> Option<&Signature> {
    let primary = &cert.primary_key;
    let direct = cert
        .details
        .direct_signatures
        .iter()
        .filter(|sig| sig.verify_key(primary).is_ok());
    let certifications = cert.details.users.iter().flat_map(|user| {
        user.signatures.iter().filter(move |sig| {
            is_certification(sig)
                && sig
                    .verify_certification(primary, Tag::UserId, &user.id)
                    .is_ok()
        })
    });
    direct
        .chain(certifications)
        .filter(|sig| created(sig).is_some_and(|created| created <= at))
        .max_by_key(|sig| (created(sig), sig.is_primary()))
}

fn is_certification(sig: &Signature) -> bool {
    matches!(
        sig.typ(),
        Some(
            SignatureType::CertGeneric
                | SignatureType::CertPersona
                | SignatureType::CertCasual
                | SignatureType::CertPositive
        )
    )
}

fn require_signing_flag(key: &KeyRef<'_>, self_signature: &Signature) -> Result<(), String> {
    if self_signature.key_flags().sign() {
        Ok(())
    } else {
        Err(format!(
            "{} is not allowed to sign (its key flags lack \"sign\")",
            key.describe()
        ))
    }
}

/// Refuse `key` when its `expires_at` is at or before the signature time or the committer
/// time, naming which.
fn check_expiry(
    key: &KeyRef<'_>,
    expires_at: Option<i64>,
    signed_at: i64,
    committer_time: jiff::Timestamp,
) -> Result<(), String> {
    let Some(expires_at) = expires_at else {
        return Ok(());
    };
    let show = |secs: i64| {
        jiff::Timestamp::from_second(secs)
            .map(|at| at.to_string())
            .unwrap_or_else(|_| secs.to_string())
    };
    if expires_at <= signed_at {
        return Err(format!(
            "{} had expired ({}) when the commit was signed ({})",
            key.describe(),
            show(expires_at),
            show(signed_at)
        ));
    }
    if expires_at <= committer_time.as_second() {
        return Err(format!(
            "{} had expired ({}) before the commit's committer time ({committer_time})",
            key.describe(),
            show(expires_at)
        ));
    }
    Ok(())
}

/// When a key expires according to its self-signature or binding: key creation plus the Key
/// Expiration Time subpacket, whose absence or zero means never.
fn expiry(key: &impl KeyDetails, self_signature: &Signature) -> Option<i64> {
    let lifetime = self_signature.key_expiration_time()?.as_secs();
    (lifetime != 0).then(|| i64::from(key.created_at().as_secs()) + i64::from(lifetime))
}

fn created(sig: &Signature) -> Option<i64> {
    sig.created().map(|at| i64::from(at.as_secs()))
}

/// A revocation's reason as a phrase, with the revoker's own words when given.
fn reason(revocation: &Signature) -> String {
    let code = match revocation.revocation_reason_code() {
        None | Some(RevocationCode::NoReason) => "no reason given".to_string(),
        Some(RevocationCode::KeySuperseded) => "key superseded".to_string(),
        Some(RevocationCode::KeyCompromised) => "key compromised".to_string(),
        Some(RevocationCode::KeyRetired) => "key retired".to_string(),
        Some(other) => format!("reason {other:?}"),
    };
    match revocation
        .revocation_reason_string()
        .map(|text| String::from_utf8_lossy(text).trim().to_string())
    {
        Some(text) if !text.is_empty() => format!("{code}: {text}"),
        _ => code,
    }
}
