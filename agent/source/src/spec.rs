//! What to fetch: the user-facing description of a git source.
//!
//! Kept free of gix types so the agent's configuration can build it without knowing how
//! fetching works.

use std::{
    fmt,
    path::{Path, PathBuf},
};

/// Cap on a single manifest file: large enough for any sane manifest (a big CRD is ~1 MiB),
/// small enough that a mistaken commit of a binary cannot exhaust the agent's memory.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The user name sent with a bare token, as GitHub expects for installation and fine-grained
/// tokens (GitLab and Gitea accept any user name with a token).
pub const DEFAULT_TOKEN_USERNAME: &str = "x-access-token";

/// A git repository, the revision to follow in it and where the manifests live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    /// `https://…`, `ssh://…`, scp-like `git@host:path`, `file://…` or a local path. Must not
    /// contain a password: credentials come from files so they can rotate and never end up in
    /// status output.
    pub url: String,
    /// Which revision to follow.
    pub reference: GitRef,
    /// How to authenticate to the remote.
    pub auth: Auth,
    /// Directory of manifests inside the repository, `/`-separated; `.` (the default) is the
    /// root. Files are returned relative to it.
    pub path: String,
    /// When set, the head commit must be signed by an allowed key (SSH or OpenPGP) or it is
    /// never returned.
    pub verify: Option<Verification>,
}

impl SourceSpec {
    /// A spec with no authentication, the repository root as path and no verification: the
    /// common starting point, adjusted field by field.
    pub fn new(url: impl Into<String>, reference: GitRef) -> Self {
        SourceSpec {
            url: url.into(),
            reference,
            auth: Auth::None,
            path: ".".into(),
            verify: None,
        }
    }
}

/// The revision to follow. Branches and tags are resolved on every fetch; a commit pins the
/// source to one immutable revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRef {
    /// Follow the tip of `refs/heads/<name>`.
    Branch(String),
    /// Follow `refs/tags/<name>` (peeled to its commit; a moved tag is picked up).
    Tag(String),
    /// Exactly this commit, as a full hex object id.
    Commit(String),
}

impl GitRef {
    /// The name as configured (branch or tag name, or the commit id); this is what
    /// [`crate::FetchedRevision::branch_or_tag`] reports.
    pub fn name(&self) -> &str {
        match self {
            GitRef::Branch(name) | GitRef::Tag(name) | GitRef::Commit(name) => name,
        }
    }
}

impl fmt::Display for GitRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GitRef::Branch(name) => write!(f, "branch {name:?}"),
            GitRef::Tag(name) => write!(f, "tag {name:?}"),
            GitRef::Commit(id) => write!(f, "commit {id}"),
        }
    }
}

/// How to authenticate. Secrets are named by file and read at every fetch, so a rotated
/// Kubernetes Secret mounted as a volume takes effect without a restart.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// Anonymous access (public https, local paths).
    #[default]
    None,
    /// HTTPS basic authentication with a token as password.
    Token {
        /// File holding the token; surrounding whitespace is ignored.
        token_file: PathBuf,
        /// User name sent with the token; [`DEFAULT_TOKEN_USERNAME`] when `None`.
        username: Option<String>,
    },
    /// HTTPS basic authentication with a user name and password.
    Basic {
        /// The user name.
        username: String,
        /// File holding the password; a trailing newline is ignored.
        password_file: PathBuf,
    },
    /// SSH with a deploy key; the host key must be in `known_hosts_file` (strict checking).
    Ssh {
        /// OpenSSH private key file (unencrypted: there is nobody to type a passphrase).
        private_key_file: PathBuf,
        /// known_hosts file listing the server's host key.
        known_hosts_file: PathBuf,
    },
}

/// Which signatures make a commit applicable: SSH signatures checked against an
/// `allowed_signers` file, OpenPGP signatures checked against an armored keyring, or either.
/// A commit signed with a kind whose trust source is not configured is refused. The files are
/// re-read at every fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The head commit must carry a git SSH signature (`gpg.format=ssh`) by a key in this file,
    /// in git's / OpenSSH's `allowed_signers` format.
    SshSignatures {
        /// The `allowed_signers` file.
        allowed_signers_file: PathBuf,
    },
    /// The head commit must carry an OpenPGP signature (`gpg.format=openpgp`, git's default)
    /// by a key, or a subkey of a key, in this armored keyring (`gpg --armor --export`).
    OpenPgpSignatures {
        /// The armored keyring file.
        openpgp_keyring_file: PathBuf,
    },
    /// The head commit must carry either an SSH signature by a key in `allowed_signers_file`
    /// or an OpenPGP signature by a key in `openpgp_keyring_file`: a team that signs both ways.
    SshOrOpenPgpSignatures {
        /// The `allowed_signers` file.
        allowed_signers_file: PathBuf,
        /// The armored keyring file.
        openpgp_keyring_file: PathBuf,
    },
}

impl Verification {
    /// The verification for whichever of the two trust sources are given; `None` (no
    /// verification) when neither is.
    pub fn from_files(
        allowed_signers_file: Option<PathBuf>,
        openpgp_keyring_file: Option<PathBuf>,
    ) -> Option<Self> {
        match (allowed_signers_file, openpgp_keyring_file) {
            (None, None) => None,
            (Some(allowed_signers_file), None) => Some(Verification::SshSignatures {
                allowed_signers_file,
            }),
            (None, Some(openpgp_keyring_file)) => Some(Verification::OpenPgpSignatures {
                openpgp_keyring_file,
            }),
            (Some(allowed_signers_file), Some(openpgp_keyring_file)) => {
                Some(Verification::SshOrOpenPgpSignatures {
                    allowed_signers_file,
                    openpgp_keyring_file,
                })
            }
        }
    }

    /// The `allowed_signers` file, when SSH signatures are accepted.
    pub fn allowed_signers_file(&self) -> Option<&Path> {
        match self {
            Verification::SshSignatures {
                allowed_signers_file,
            }
            | Verification::SshOrOpenPgpSignatures {
                allowed_signers_file,
                ..
            } => Some(allowed_signers_file),
            Verification::OpenPgpSignatures { .. } => None,
        }
    }

    /// The armored OpenPGP keyring, when OpenPGP signatures are accepted.
    pub fn openpgp_keyring_file(&self) -> Option<&Path> {
        match self {
            Verification::OpenPgpSignatures {
                openpgp_keyring_file,
            }
            | Verification::SshOrOpenPgpSignatures {
                openpgp_keyring_file,
                ..
            } => Some(openpgp_keyring_file),
            Verification::SshSignatures { .. } => None,
        }
    }
}

/// Knobs an operator tunes rather than a repository owner; defaults suit most installations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceOptions {
    /// A manifest file larger than this fails the revision (see [`crate::SourceError::FileTooLarge`]).
    pub max_file_bytes: u64,
    /// The ssh program to run for ssh remotes; `ssh` from `PATH` by default. Useful when the
    /// image ships it elsewhere, and lets tests stand in a fake.
    pub ssh_program: PathBuf,
    /// Fetch only the commit itself (depth 1) when the server supports it: the agent never
    /// needs history, and a big repository then costs one tree instead of its whole past.
    pub shallow: bool,
    /// Extra git configuration as `key=value`, applied in memory to the cache repository, for
    /// what the environment needs rather than the repository: `http.proxy=http://proxy:3128`,
    /// `http.sslCAInfo=/etc/ssl/private-ca.pem`, `protocol.version=1`. As in git, the
    /// `GIT_SSL_CAINFO` environment variable wins over `http.sslCAInfo`; [`Self::ca_file`]
    /// wins over both.
    pub git_config: Vec<String>,
    /// PEM file of the CA certificates to trust for https remotes, instead of the system roots:
    /// how a git server with a certificate from a private CA is reached. Re-read at every
    /// fetch. Takes precedence over `http.sslCAInfo` and `GIT_SSL_CAINFO`, which an agent's
    /// environment may set for other programs; `None` leaves trust to those and the system.
    pub ca_file: Option<PathBuf>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            ssh_program: PathBuf::from("ssh"),
            shallow: true,
            git_config: Vec::new(),
            ca_file: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_from_files_accepts_either_or_both_trust_sources() {
        let ssh = || Some(PathBuf::from("/etc/gitwarden/allowed_signers"));
        let pgp = || Some(PathBuf::from("/etc/gitwarden/keyring.asc"));
        assert_eq!(Verification::from_files(None, None), None);
        for (ssh_file, pgp_file) in [(ssh(), None), (None, pgp()), (ssh(), pgp())] {
            let verification = Verification::from_files(ssh_file.clone(), pgp_file.clone());
            let verification = verification.as_ref();
            assert_eq!(
                verification.and_then(Verification::allowed_signers_file),
                ssh_file.as_deref()
            );
            assert_eq!(
                verification.and_then(Verification::openpgp_keyring_file),
                pgp_file.as_deref()
            );
        }
    }
}
