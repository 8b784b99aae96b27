//! Verifying git's SSH commit signatures (`gpg.format=ssh`) in process.
//!
//! The `gpgsig` header holds an armored SSHSIG (PROTOCOL.sshsig) in namespace `git` over the
//! commit object without that header. A commit passes when the signature is valid and its key is
//! allowed (see [`crate::AllowedSigners`]) for namespace `git` at the committer time.

use jiff::Timestamp;
use ssh_key::{HashAlg, PublicKey, SshSig};

use crate::{AllowedSigners, VerifiedSigner};

/// The SSHSIG namespace git signs commits and tags in.
pub const GIT_NAMESPACE: &str = "git";

const SSH_ARMOR: &str = "-----BEGIN SSH SIGNATURE-----";
const PGP_ARMOR: &str = "-----BEGIN PGP SIGNATURE-----";
const X509_ARMOR: &str = "-----BEGIN SIGNED MESSAGE-----";

/// What [`verify_commit`] needs from a commit, independent of gix so it can be tested on bytes.
#[derive(Debug, Clone)]
pub struct SignedCommit<'a> {
    /// The armored signature from the `gpgsig` header, `None` when unsigned.
    pub signature: Option<&'a str>,
    /// The commit object without the `gpgsig` header: what was signed.
    pub signed_data: &'a [u8],
    /// The committer's email, reported as principal when the allowed signer's patterns cover it.
    pub committer_email: &'a str,
    /// The committer time, against which `valid-after`/`valid-before` are checked (as git does).
    pub committer_time: Timestamp,
}

/// Check `commit` against `signers`; `Err` carries the human-readable reason it is not
/// applicable.
pub fn verify_commit(
    commit: &SignedCommit<'_>,
    signers: &AllowedSigners,
) -> Result<VerifiedSigner, String> {
    let Some(armored) = commit.signature else {
        return Err("the commit is not signed".into());
    };
    let armored = armored.trim();
    if armored.starts_with(PGP_ARMOR) {
        return Err(
            "OpenPGP signatures are not supported yet; use SSH signing (git config gpg.format ssh)"
                .into(),
        );
    }
    if armored.starts_with(X509_ARMOR) {
        return Err(
            "X.509 signatures are not supported; use SSH signing (git config gpg.format ssh)"
                .into(),
        );
    }
    if !armored.starts_with(SSH_ARMOR) {
        return Err("the commit signature is in an unknown format; use SSH signing".into());
    }
    let signature =
        SshSig::from_pem(armored).map_err(|err| format!("malformed SSH signature: {err}"))?;
    let key = PublicKey::from(signature.public_key().clone());
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    if signature.namespace() != GIT_NAMESPACE {
        return Err(format!(
            "signature by {fingerprint} is for namespace {:?}, not {GIT_NAMESPACE:?}",
            signature.namespace()
        ));
    }
    if !signers.contains_key(signature.public_key()) {
        return Err(format!(
            "signing key {fingerprint} is not in allowed signers"
        ));
    }
    let allowed: Vec<_> = signers
        .matching(signature.public_key(), GIT_NAMESPACE, commit.committer_time)
        .collect();
    if allowed.is_empty() {
        return Err(format!(
            "signing key {fingerprint} is in allowed signers but not for namespace {GIT_NAMESPACE:?} at the commit time {}",
            commit.committer_time
        ));
    }
    key.verify(GIT_NAMESPACE, commit.signed_data, &signature)
        .map_err(|err| {
            format!("bad signature by {fingerprint} (commit altered after signing?): {err}")
        })?;
    let principal = match allowed
        .iter()
        .find(|entry| entry.allows_principal(commit.committer_email))
    {
        Some(_) => commit.committer_email.to_string(),
        None => allowed[0].principals.clone(),
    };
    Ok(VerifiedSigner {
        principal,
        key_fingerprint: fingerprint,
    })
}

/// Pull what [`verify_commit`] needs out of a gix commit and verify it.
pub(crate) fn verify_gix_commit(
    commit: &gix::Commit<'_>,
    signers: &AllowedSigners,
) -> Result<VerifiedSigner, String> {
    let signature = commit
        .signature()
        .map_err(|err| format!("cannot parse the commit's signature header: {err}"))?;
    let committer = commit
        .committer()
        .map_err(|err| format!("cannot parse the commit's committer: {err}"))?;
    let committer_time = committer
        .time()
        .ok()
        .and_then(|time| Timestamp::from_second(time.seconds).ok())
        .ok_or("cannot parse the commit's committer time")?;
    let email = committer.email.to_string();
    match signature {
        None => verify_commit(
            &SignedCommit {
                signature: None,
                signed_data: &commit.data,
                committer_email: &email,
                committer_time,
            },
            signers,
        ),
        Some((armored, signed)) => {
            let signed = signed.to_bstring();
            let armored = std::str::from_utf8(armored.as_ref())
                .map_err(|_| "the signature header is not UTF-8".to_string())?;
            verify_commit(
                &SignedCommit {
                    signature: Some(armored),
                    signed_data: &signed,
                    committer_email: &email,
                    committer_time,
                },
                signers,
            )
        }
    }
}
