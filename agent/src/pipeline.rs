//! One sync: fetch (and verify) the revision, load its manifests, resolve
//! namespaces against the live API, and apply — or diff.
//!
//! Each stage fails with its own error, so the operator reads *where* a sync
//! stopped: git, the manifests (with file:line), or the cluster.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tracing::Instrument;

use gitwarden_agent::admission_chain::GitObjects;
use gitwarden_agent::status::{Synced, WorkloadHealth};

use crate::rendering::{RenderConfig, path_components, render_revision};
use gitwarden_apply::{Applier, ApplyConfig, Diff, Discovery, SyncReport};
use gitwarden_manifests::{
    AgeKeys, LoadErrors, LoadOptions, ManifestFile, PlaintextSecrets, ResolvedSet, load_with,
};
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
    /// The revision's kustomizations were refused or failed to build; nothing
    /// was applied.
    #[error("revision {revision}: cannot render:\n{source}")]
    Render {
        /// The commit.
        revision: String,
        /// Every kustomization's problem, one per line.
        #[source]
        source: crate::rendering::RenderFailure,
    },
    /// The age key file for SOPS cannot be read; nothing was applied.
    #[error("revision {revision}: {message}")]
    SopsKeys {
        /// The commit.
        revision: String,
        /// Which file and why (never key material).
        message: String,
    },
    /// Talking to the API server failed before applying.
    #[error("talking to the Kubernetes API")]
    Kube(#[from] kube::Error),
    /// A blocking task panicked or was cancelled.
    #[error("a background task failed")]
    Join(#[from] tokio::task::JoinError),
}

/// The apply bodies of the revision's admission-configuration objects.
fn admission_bodies(set: &ResolvedSet) -> Vec<(gitwarden_manifests::ObjectRef, serde_json::Value)> {
    use gitwarden_agent::admission_chain::{ADMISSION_GROUP, AdmissionKind};
    set.manifests()
        .iter()
        .filter(|m| {
            m.gvk.group == ADMISSION_GROUP && AdmissionKind::from_kind(&m.gvk.kind).is_some()
        })
        .map(|m| (m.object_ref(), gitwarden_manifests::prepare_for_apply(m)))
        .collect()
}

/// The configured source and the cluster, ready to sync repeatedly.
pub struct Pipeline {
    /// The objects of the revision loaded last, for the admission guard:
    /// `None` until a verified revision loaded.
    git: tokio::sync::watch::Sender<Option<Arc<GitObjects>>>,
    source: Arc<Mutex<Source>>,
    applier: Applier,
    default_namespace: String,
    client: kube::Client,
    health_timeout: std::time::Duration,
    secrets: SecretsConfig,
    render: RenderConfig,
}

/// How the revision's Secrets are read: SOPS decryption and plain text.
#[derive(Debug, Clone, Default)]
pub struct SecretsConfig {
    /// The age key file (re-read at every sync, so a rotated key mounted
    /// from a Secret takes effect without a restart).
    pub sops_age_key_file: Option<PathBuf>,
    /// Whether Secrets with plain-text values in git are refused.
    pub plaintext: PlaintextSecrets,
}

/// Everything a pipeline is configured with, from the command line.
pub struct PipelineConfig {
    /// The git source.
    pub spec: SourceSpec,
    /// Where fetched repositories are cached.
    pub cache_dir: PathBuf,
    /// Namespace for namespaced objects that name none.
    pub default_namespace: String,
    /// How to apply and prune.
    pub apply: ApplyConfig,
    /// How long to wait for changed workloads to be ready.
    pub health_timeout: std::time::Duration,
    /// How Secrets are read.
    pub secrets: SecretsConfig,
    /// How kustomizations are rendered.
    pub render: RenderConfig,
}

impl Pipeline {
    /// Opens the source cache and discovers the API server's resources.
    pub async fn new(client: kube::Client, config: PipelineConfig) -> Result<Self, PipelineError> {
        let PipelineConfig {
            spec,
            cache_dir,
            default_namespace,
            apply,
            health_timeout,
            secrets,
            render,
        } = config;
        let source = tokio::task::spawn_blocking(move || Source::open(spec, &cache_dir)).await??;
        let discovery = Arc::new(Discovery::new(client.clone()).await?);
        Ok(Pipeline {
            git: tokio::sync::watch::Sender::new(None),
            source: Arc::new(Mutex::new(source)),
            applier: Applier::new(client.clone(), discovery, apply),
            default_namespace,
            client,
            health_timeout,
            secrets,
            render,
        })
    }

    /// What git contains: the objects of the revision the last sync loaded
    /// (published before it is applied), `None` until one loaded.
    pub fn git_objects(&self) -> tokio::sync::watch::Receiver<Option<Arc<GitObjects>>> {
        self.git.subscribe()
    }

    /// The API discovery the applier uses (shared, refreshed per sync).
    pub fn discovery(&self) -> Arc<gitwarden_apply::Discovery> {
        self.applier.discovery().clone()
    }

    /// The configured path as a prefix of repository paths (`""` for the
    /// root, `clusters/prod/` otherwise).
    fn repository_prefix(&self) -> String {
        let source = self.source.lock().unwrap_or_else(|e| e.into_inner());
        path_components(&source.spec().path)
            .map(|c| format!("{c}/"))
            .collect()
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
    ) -> Result<ResolvedSet, PipelineError> {
        let rendered = {
            let (source, config) = (self.source.clone(), self.render.clone());
            let commit = revision.commit.clone();
            let paths: Vec<String> = revision.files.iter().map(|f| f.path.clone()).collect();
            tokio::task::spawn_blocking(move || render_revision(&source, &commit, &paths, &config))
                .await?
                .map_err(|source| PipelineError::Render {
                    revision: revision.commit.clone(),
                    source,
                })?
        };
        // Every location names a file from the repository root, as rendered
        // objects do: it is the file a person edits (and the webhook quotes).
        let prefix = self.repository_prefix();
        let paths: Vec<String> = rendered
            .plain
            .iter()
            .map(|&i| format!("{prefix}{}", revision.files[i].path))
            .collect();
        let files: Vec<ManifestFile<'_>> = rendered
            .plain
            .iter()
            .zip(&paths)
            .map(|(&i, path)| ManifestFile {
                path,
                content: &revision.files[i].content,
            })
            .collect();
        let invalid = |errors| PipelineError::Manifests {
            revision: revision.commit.clone(),
            errors,
        };
        let keys = match &self.secrets.sops_age_key_file {
            Some(path) => Some(
                AgeKeys::read(path).map_err(|message| PipelineError::SopsKeys {
                    revision: revision.commit.clone(),
                    message,
                })?,
            ),
            None => None,
        };
        let options = LoadOptions {
            sops_keys: keys.as_ref(),
            plaintext_secrets: self.secrets.plaintext,
        };
        let set = load_with(&files, rendered.rendered, &options).map_err(invalid)?;
        self.applier.discovery().refresh().await?;
        set.resolve_namespaces(self.applier.discovery().as_ref(), &self.default_namespace)
            .map_err(invalid)
    }

    /// Fetch, load, apply and prune once.
    pub async fn sync(&self) -> Result<Synced, PipelineError> {
        let mut revision = self.fetch().await?;
        let span = tracing::info_span!("sync", commit = %revision.commit, reference = %revision.branch_or_tag);
        async move {
            let set = self.manifests(&revision).await?;
            // The webhook registers these itself; they are git's all the same.
            // A repository without gitwarden's install keeps the installed ones.
            let registered = match gitwarden_agent::admission_chain::registered_configurations(
                set.manifests(),
            ) {
                Some(in_git) => in_git,
                None => {
                    gitwarden_agent::admission_chain::live_registered_configurations(&self.client)
                        .await
                }
            };
            let git = GitObjects::new(
                revision.commit.clone(),
                set.object_refs()
                    .into_iter()
                    .chain(registered.iter().map(|(object, _)| object.clone())),
            )
            .with_admission_bodies(admission_bodies(&set).into_iter().chain(registered));
            self.git.send_replace(Some(Arc::new(git.clone())));
            // The files' bytes are not needed once loaded; with thousands of
            // objects they are megabytes the rest of the sync would hold.
            revision.files = Vec::new();
            let report = self
                .applier
                .sync(&set, &revision.commit)
                .await
                .map_err(|source| PipelineError::Apply {
                    revision: revision.commit.clone(),
                    source,
                })?;
            self.git.send_replace(Some(Arc::new(git.into_applied())));
            let url = self
                .source
                .lock()
                .map(|s| s.spec().url.clone())
                .unwrap_or_default();
            let health = self.workload_health(&set, &report).await;
            Ok(Synced {
                source: url,
                commit: revision.commit,
                signer: revision
                    .signer
                    .map(|s| format!("{} ({})", s.principal, s.key_fingerprint)),
                report,
                health,
            })
        }
        .instrument(span)
        .await
    }

    /// Waits (bounded) for the workloads this sync created or changed to be
    /// ready, and says which are not: an apply that the API server accepted
    /// can still be a rollout that never becomes available.
    async fn workload_health(&self, set: &ResolvedSet, report: &SyncReport) -> Vec<WorkloadHealth> {
        use gitwarden_agent::health::{HealthRef, wait_for_health};
        const WORKLOADS: [&str; 4] = ["Deployment", "StatefulSet", "DaemonSet", "Job"];
        if self.health_timeout.is_zero() {
            return Vec::new();
        }
        let changed: std::collections::HashSet<_> = report
            .applied
            .iter()
            .filter(|o| {
                matches!(
                    o.action,
                    gitwarden_apply::Action::Created
                        | gitwarden_apply::Action::Configured
                        | gitwarden_apply::Action::Recreated
                )
            })
            .map(|o| o.object.clone())
            .collect();
        let (refs, objects): (Vec<HealthRef>, Vec<_>) = set
            .manifests()
            .iter()
            .filter(|m| {
                WORKLOADS.contains(&m.gvk.kind.as_str()) && changed.contains(&m.object_ref())
            })
            .filter_map(|m| {
                let resolved = self.applier.discovery().resolve(&m.gvk)?;
                let r = HealthRef::new(resolved.resource.clone(), m.namespace.as_deref(), &m.name);
                Some((r, m.object_ref()))
            })
            .unzip();
        if refs.is_empty() {
            return Vec::new();
        }
        // In the order of `refs`, so each result has its object beside it.
        let results = wait_for_health(&self.client, &refs, self.health_timeout).await;
        results
            .into_iter()
            .zip(objects)
            .map(|((r, health), reference)| {
                if !health.status.is_settled() || health.status == gitwarden_agent::health::HealthStatus::Failed {
                    tracing::warn!(object = %r, status = ?health.status, message = %health.message, "workload not ready");
                }
                WorkloadHealth { object: r.to_string(), reference: Some(reference), health }
            })
            .collect()
    }

    /// How long a sync waits for the workloads it changed to be ready.
    pub fn health_timeout(&self) -> std::time::Duration {
        self.health_timeout
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
