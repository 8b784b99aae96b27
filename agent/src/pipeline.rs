//! One sync: fetch (and verify) the revision, load its manifests, resolve
//! namespaces against the live API, and apply — or diff.
//!
//! Each stage fails with its own error, so the operator reads *where* a sync
//! stopped: git, the manifests (with file:line), or the cluster.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use gitwarden_apply::{Applier, ApplyConfig, Diff, Discovery, SyncReport};
use gitwarden_manifests::{LoadErrors, ManifestFile, ManifestSet, load};
use gitwarden_source::{FetchedRevision, Source, SourceError, SourceSpec};

/// Where a sync stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Fetching or verifying the git revision failed; nothing was applied.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The revision's manifests are invalid; nothing was applied.
    #[error("revision {revision}: invalid manifests:\n{errors}")]
    Manifests {
        /// The commit.
        revision: String,
        /// Every problem, one `file:line: message` per line.
        errors: LoadErrors,
    },
    /// The cluster refused or failed.
    #[error("revision {revision}")]
    Apply {
        /// The commit.
        revision: String,
        /// What the apply engine reported.
        #[source]
        source: gitwarden_apply::SyncError,
    },
    /// Talking to the API server failed before applying.
    #[error("talking to the Kubernetes API")]
    Kube(#[from] kube::Error),
    /// A blocking task panicked or was cancelled.
    #[error("a background task failed")]
    Join(#[from] tokio::task::JoinError),
}

/// The configured source and the cluster, ready to sync repeatedly.
pub struct Pipeline {
    source: Arc<Mutex<Source>>,
    applier: Applier,
    default_namespace: String,
}

/// A synced revision and its report.
#[derive(Debug, serde::Serialize)]
pub struct Synced {
    /// The source URL (never with credentials: they come from files).
    pub source: String,
    /// The commit and who signed it.
    pub commit: String,
    /// The signer, when verification is on.
    pub signer: Option<String>,
    /// What the apply engine did.
    pub report: SyncReport,
}

impl Pipeline {
    /// Opens the source cache and discovers the API server's resources.
    pub async fn new(
        client: kube::Client,
        spec: SourceSpec,
        cache_dir: PathBuf,
        default_namespace: String,
        config: ApplyConfig,
    ) -> Result<Self, PipelineError> {
        let source = tokio::task::spawn_blocking(move || Source::open(spec, &cache_dir)).await??;
        let discovery = Arc::new(Discovery::new(client.clone()).await?);
        Ok(Pipeline {
            source: Arc::new(Mutex::new(source)),
            applier: Applier::new(client, discovery, config),
            default_namespace,
        })
    }

    /// Fetches the revision (blocking git work off the async runtime).
    pub async fn fetch(&self) -> Result<FetchedRevision, PipelineError> {
        let source = self.source.clone();
        let revision = tokio::task::spawn_blocking(move || {
            let mut source = source.lock().unwrap_or_else(|e| e.into_inner());
            source.fetch()
        })
        .await??;
        Ok(revision)
    }

    /// Loads and resolves the manifests of a fetched revision.
    pub async fn manifests(
        &self,
        revision: &FetchedRevision,
    ) -> Result<ManifestSet, PipelineError> {
        let files: Vec<ManifestFile<'_>> = revision
            .files
            .iter()
            .map(|f| ManifestFile {
                path: &f.path,
                content: &f.content,
            })
            .collect();
        let invalid = |errors| PipelineError::Manifests {
            revision: revision.commit.clone(),
            errors,
        };
        let mut set = load(&files).map_err(invalid)?;
        self.applier.discovery().refresh().await?;
        set.resolve_namespaces(self.applier.discovery().as_ref(), &self.default_namespace)
            .map_err(invalid)?;
        Ok(set)
    }

    /// Fetch, load, apply and prune once.
    pub async fn sync(&self) -> Result<Synced, PipelineError> {
        let revision = self.fetch().await?;
        let span = tracing::info_span!("sync", commit = %revision.commit, reference = %revision.branch_or_tag);
        let _enter = span.enter();
        let set = self.manifests(&revision).await?;
        let report = self
            .applier
            .sync(&set, &revision.commit)
            .await
            .map_err(|source| PipelineError::Apply {
                revision: revision.commit.clone(),
                source,
            })?;
        let url = self
            .source
            .lock()
            .map(|s| s.spec().url.clone())
            .unwrap_or_default();
        Ok(Synced {
            source: url,
            commit: revision.commit,
            signer: revision
                .signer
                .map(|s| format!("{} ({})", s.principal, s.key_fingerprint)),
            report,
        })
    }

    /// What a sync would do, without writing.
    pub async fn diff(&self) -> Result<(String, Diff), PipelineError> {
        let revision = self.fetch().await?;
        let set = self.manifests(&revision).await?;
        let diff = self
            .applier
            .diff(&set)
            .await
            .map_err(|source| PipelineError::Apply {
                revision: revision.commit.clone(),
                source,
            })?;
        Ok((revision.commit, diff))
    }
}
