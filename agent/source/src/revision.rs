//! What a fetch hands to the agent: one commit's manifests, and who signed it.

use jiff::Timestamp;

/// A fetched (and, when configured, verified) revision, ready to be parsed and applied.
///
/// Holding the file contents rather than a checkout path means the agent applies exactly the
/// bytes of this commit even if the next fetch runs concurrently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRevision {
    /// Full hex id of the commit; the revision the agent records and reports.
    pub commit: String,
    /// The branch or tag name as configured, or the commit id for a pinned commit.
    pub branch_or_tag: String,
    /// Manifest files below the spec's path, sorted by path.
    pub files: Vec<SourceFile>,
    /// Who signed the commit, when verification is configured (always `Some` then: an
    /// unverified commit is an error, never a revision).
    pub signer: Option<VerifiedSigner>,
    /// When this fetch completed, for status ("last fetched").
    pub fetched_at: Timestamp,
}

/// One manifest file of a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path relative to the spec's path, `/`-separated: what the agent names in errors
    /// (`apps/web.yaml:12`).
    pub path: String,
    /// The file's bytes as committed.
    pub content: Vec<u8>,
}

/// The identity behind a verified commit signature, for status and audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSigner {
    /// SSH: the committer's email when the allowed-signers line covers it, otherwise that
    /// line's principal patterns as written. OpenPGP: the committer's email when one of the
    /// key's user IDs carries it, otherwise the email of the key's primary user ID.
    pub principal: String,
    /// SSH: `SHA256:…` fingerprint of the signing key, as `ssh-keygen -l` prints it. OpenPGP:
    /// the primary key's fingerprint in upper-case hex, as `gpg --list-keys` prints it (also
    /// when a subkey signed).
    pub key_fingerprint: String,
}
