//! Verifying git's commit signatures in process: SSH (`gpg.format=ssh`) and OpenPGP
//! (`gpg.format=openpgp`, git's default).
//!
//! The `gpgsig` header holds the armored signature over the commit object without that header;
//! its armor says which kind it is. An SSH signature is an SSHSIG (PROTOCOL.sshsig) in namespace
//! `git`, and passes when valid and its key is allowed (see [`crate::AllowedSigners`]) for
//! namespace `git` at the committer time. An OpenPGP signature passes when valid and made by a
//! key of the keyring that was valid then (see [`crate::OpenPgpKeyring`]). Each kind is checked
//! only against its own trust source: a commit of a kind whose source is not configured is
//! refused, naming the flag that configures it.

use jiff::Timestamp;
use ssh_key::{HashAlg, PublicKey, SshSig};

use crate::{AllowedSigners, OpenPgpKeyring, SourceError, Verification, VerifiedSigner, openpgp};

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
    /// The committer's email, reported as principal when the allowed signer's patterns (SSH) or
    /// one of the key's user IDs (OpenPGP) cover it.
    pub committer_email: &'a str,
    /// The committer time, against which `valid-after`/`valid-before` are checked (as git does)
    /// and by which an OpenPGP key must not have expired.
    pub committer_time: Timestamp,
}

/// The trust sources a commit is verified against, read from the files a [`Verification`]
/// names. At least one is set when read from a [`Verification`].
#[derive(Debug, Clone, Default)]
pub struct Signers {
    /// Keys allowed to make SSH signatures.
    pub ssh: Option<AllowedSigners>,
    /// Keys allowed to make OpenPGP signatures.
    pub openpgp: Option<OpenPgpKeyring>,
}

impl Signers {
    /// Read the files `verification` names; both are re-read at every fetch so a rotated list
    /// applies to the next one.
    pub fn read(verification: &Verification) -> Result<Self, SourceError> {
        Ok(Signers {
            ssh: verification
                .allowed_signers_file()
                .map(AllowedSigners::read)
                .transpose()?,
            openpgp: verification
                .openpgp_keyring_file()
                .map(OpenPgpKeyring::read)
                .transpose()?,
        })
    }
}

/// Check `commit` against `signers`; `Err` carries the human-readable reason it is not
/// applicable.
pub fn verify_commit(
    commit: &SignedCommit<'_>,
    signers: &Signers,
) -> Result<VerifiedSigner, String> {
    let Some(armored) = commit.signature else {
        return Err("the commit is not signed".into());
    };
    let armored = armored.trim();
    if armored.starts_with(PGP_ARMOR) {
        let Some(keyring) = &signers.openpgp else {
            return Err("the commit has an OpenPGP signature but no OpenPGP keyring is configured (set --openpgp-keyring)".into());
        };
        return openpgp::verify(
            keyring,
            armored,
            commit.signed_data,
            commit.committer_time,
            commit.committer_email,
        );
    }
    if armored.starts_with(X509_ARMOR) {
        return Err(
            "X.509 signatures are not supported; use SSH or OpenPGP signing (git config gpg.format ssh|openpgp)"
                .into(),
        );
    }
    if !armored.starts_with(SSH_ARMOR) {
        return Err(
            "the commit signature is in an unknown format; use SSH or OpenPGP signing".into(),
        );
    }
    let Some(allowed) = &signers.ssh else {
        return Err("the commit has an SSH signature but no allowed signers file is configured (set --allowed-signers)".into());
    };
    verify_ssh(commit, armored, allowed)
}

/// The SSH half of [`verify_commit`]: `armored` is an SSHSIG.
fn verify_ssh(
    commit: &SignedCommit<'_>,
    armored: &str,
    signers: &AllowedSigners,
) -> Result<VerifiedSigner, String> {
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
    signers: &Signers,
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
