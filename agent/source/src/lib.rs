//! gitwarden's git source: fetch a repository with gix, verify the head commit's SSH or
//! OpenPGP signature, and hand the agent the manifests of exactly that commit.
//!
//! Fetching is kept apart from applying (as in Flux's source-controller): this crate never
//! talks to Kubernetes, and the agent never talks to git. The API is blocking; the agent runs
//! [`Source::fetch`] inside `tokio::task::spawn_blocking`.
//!
//! ```no_run
//! use gitwarden_source::{GitRef, Source, SourceSpec};
//! # fn main() -> Result<(), gitwarden_source::SourceError> {
//! let mut spec = SourceSpec::new("https://git.example/org/deploy.git", GitRef::Branch("main".into()));
//! spec.path = "clusters/prod".into();
//! let mut source = Source::open(spec, std::path::Path::new("/var/cache/gitwarden"))?;
//! let revision = source.fetch()?;
//! for file in &revision.files {
//!     println!("{} ({} bytes) at {}", file.path, file.content.len(), revision.commit);
//! }
//! # Ok(()) }
//! ```

mod allowed_signers;
pub mod backoff;
mod credentials;
mod error;
mod fetch;
pub mod hook;
mod openpgp;
mod remote_url;
mod revision;
mod spec;
mod tls;
mod tree;
mod verify;

pub use allowed_signers::{AllowedSigner, AllowedSigners, ParseError};
pub use backoff::{Backoff, RandomSource, SeededRandom, backoff_delay, interval_with_jitter};
pub use error::SourceError;
pub use fetch::Source;
pub use hook::verify_hub_signature;
pub use openpgp::OpenPgpKeyring;
pub use revision::{FetchedRevision, SourceFile, VerifiedSigner};
pub use spec::{
    Auth, DEFAULT_MAX_FILE_BYTES, DEFAULT_TOKEN_USERNAME, GitRef, SourceOptions, SourceSpec,
    Verification,
};
pub use tree::KUSTOMIZATION_FILES;
pub use verify::{GIT_NAMESPACE, SignedCommit, Signers, verify_commit};
