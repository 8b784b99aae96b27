//! The one error type of this crate.
//!
//! Every variant carries enough context (URL without credentials, reference, commit, path) for
//! the agent's status to say what went wrong without a log dive, and [`SourceError::is_transient`]
//! tells the agent whether backing off and retrying can help.

use std::path::PathBuf;

/// Why fetching or reading a revision failed.
///
/// URLs in these errors never carry credentials: specs with an embedded password are rejected
/// up front and user names are stripped from http(s) URLs before they are shown.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source specification cannot work as written (bad URL, `..` in the path, …); retrying
    /// will not help until the configuration changes.
    #[error("invalid source specification: {why}")]
    InvalidSpec {
        /// What is wrong with it.
        why: String,
    },

    /// The remote could not be reached or the connection broke (network down, DNS, git server
    /// gone, repository path missing on a local remote). The agent keeps its last revision and
    /// retries with backoff.
    #[error("cannot reach git remote {url}: {detail}")]
    Unreachable {
        /// The remote URL, without credentials.
        url: String,
        /// What the transport reported.
        detail: String,
    },

    /// The remote refused our credentials (HTTP 401/403, ssh `Permission denied`, unknown host
    /// key). Retrying does not help until the secret or known_hosts changes.
    #[error("authentication to {url} failed: {detail}")]
    AuthFailed {
        /// The remote URL, without credentials.
        url: String,
        /// What the transport reported (never the secret itself).
        detail: String,
    },

    /// A credential file named in the spec could not be read. Not transient: the mount is wrong.
    #[error("cannot read credential file {}", path.display())]
    Credentials {
        /// The file that was named in the spec.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },

    /// The branch, tag or commit does not exist on the remote.
    #[error("{reference} not found on {url}")]
    UnknownRef {
        /// The remote URL, without credentials.
        url: String,
        /// The reference as configured, e.g. `branch main`.
        reference: String,
    },

    /// Talking to the remote failed after the connection was established (pack transfer,
    /// negotiation). Usually a network hiccup, hence transient.
    #[error("fetching {reference} from {url} failed: {detail}")]
    Fetch {
        /// The remote URL, without credentials.
        url: String,
        /// The reference as configured.
        reference: String,
        /// What gix reported.
        detail: String,
    },

    /// The local cache repository could not be created, opened or locked.
    #[error("git cache at {}: {detail}", path.display())]
    Cache {
        /// The cache directory of this source.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },

    /// Objects of the fetched commit could not be read from the cache (corrupt or incomplete).
    #[error("cannot read commit {commit}: {detail}")]
    Object {
        /// The commit being read.
        commit: String,
        /// What went wrong.
        detail: String,
    },

    /// The manifest path is not a directory in the commit's tree.
    #[error("path {path:?} not found in commit {commit}")]
    PathNotFound {
        /// The commit that was searched.
        commit: String,
        /// The path from the spec.
        path: String,
    },

    /// The commit could not be written out for rendering (disk full, or the
    /// repository is larger than the export cap).
    #[error("commit {commit}: cannot export the repository for rendering: {detail}")]
    Export {
        /// The commit.
        commit: String,
        /// What failed.
        detail: String,
    },

    /// A manifest file is larger than the configured cap. An error rather than a skip: silently
    /// leaving a manifest out would make the agent prune its objects.
    #[error("{path} in commit {commit} is {size} bytes, more than the limit of {limit} bytes")]
    FileTooLarge {
        /// The commit that holds the file.
        commit: String,
        /// The file's path from the repository root.
        path: String,
        /// Its size in bytes.
        size: u64,
        /// The configured cap.
        limit: u64,
    },

    /// The commit failed signature verification and must not be applied.
    #[error("commit {commit} is not verified: {why}")]
    Unverified {
        /// The commit that was checked.
        commit: String,
        /// Why it was rejected (unsigned, bad signature, unknown, expired or revoked key, …).
        why: String,
    },

    /// The `allowed_signers` file could not be read or parsed; verification cannot happen, so
    /// nothing is applied.
    #[error("allowed signers file {}: {why}", path.display())]
    AllowedSigners {
        /// The file named in the spec.
        path: PathBuf,
        /// What is wrong with it (with the line number when parsing failed).
        why: String,
    },

    /// The OpenPGP keyring file could not be read or parsed; verification cannot happen, so
    /// nothing is applied.
    #[error("OpenPGP keyring file {}: {why}", path.display())]
    OpenPgpKeyring {
        /// The file named in the spec.
        path: PathBuf,
        /// What is wrong with it (with the failing key block's number when parsing failed).
        why: String,
    },
}

impl SourceError {
    /// Whether backing off and retrying soon can succeed without anyone changing anything:
    /// network and server trouble yes; configuration, credentials, missing refs, oversized files
    /// and above all verification failures no (the agent waits for the next interval or hook).
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Unreachable { .. }
            | SourceError::Fetch { .. }
            | SourceError::Cache { .. } => true,
            SourceError::InvalidSpec { .. }
            | SourceError::AuthFailed { .. }
            | SourceError::Credentials { .. }
            | SourceError::UnknownRef { .. }
            | SourceError::Object { .. }
            | SourceError::PathNotFound { .. }
            | SourceError::FileTooLarge { .. }
            | SourceError::Export { .. }
            | SourceError::Unverified { .. }
            | SourceError::AllowedSigners { .. }
            | SourceError::OpenPgpKeyring { .. } => false,
        }
    }

    /// Whether this is a verification failure, which the agent reports as "not applied because
    /// unverified" rather than as a fetch problem.
    pub fn is_unverified(&self) -> bool {
        matches!(self, SourceError::Unverified { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_errors_are_transient_and_verification_errors_are_not() {
        let unreachable = SourceError::Unreachable {
            url: "https://example.invalid/repo.git".into(),
            detail: "connection refused".into(),
        };
        let unverified = SourceError::Unverified {
            commit: "abc".into(),
            why: "unsigned".into(),
        };
        assert!(unreachable.is_transient());
        assert!(!unverified.is_transient());
        assert!(unverified.is_unverified());
    }
}
