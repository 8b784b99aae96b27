//! The applier and its sync: plan (read the inventory and the live state,
//! [`crate::plan`]), decide each object ([`crate::decide`], pure), and carry
//! the decisions out ([`crate::execute`]: validate, apply phase by phase,
//! record the inventory, prune what left git, settle break-glass windows).

use crate::decide::decide;
use crate::discovery::Discovery;
use crate::error::SyncError;
use crate::execute::Run;
use crate::inventory::{Inventory, InventoryStore};
use crate::plan::{Planned, plan};
use crate::prune::PrunePolicy;
use crate::report::SyncReport;
use crate::sync_context::SyncContext;
use gitwarden_manifests::ResolvedSet;
use gitwarden_shared::names::{FIELD_MANAGER, SYSTEM_NAMESPACE};
use kube::Client;
use std::sync::Arc;
use std::time::Duration;
use tracing::{Instrument, info_span};

/// How the applier behaves; [`Default`] is what the agent ships with.
#[derive(Debug, Clone)]
pub struct ApplyConfig {
    /// Requests in flight at once within a phase (8): enough to apply
    /// thousands of objects quickly without flooding the API server.
    pub concurrency: usize,
    /// The server-side-apply field manager (`gitwarden`).
    pub field_manager: String,
    /// Namespace of the inventory ConfigMaps (`gitwarden-system`).
    pub inventory_namespace: String,
    /// Name prefix of the inventory ConfigMaps (`gitwarden-inventory`).
    pub inventory_name: String,
    /// How long to wait for the revision's CRDs to be Established (60 s).
    pub crd_timeout: Duration,
    /// Limits on pruning.
    pub prune: PrunePolicy,
}

impl Default for ApplyConfig {
    fn default() -> Self {
        Self {
            concurrency: 8,
            field_manager: FIELD_MANAGER.to_owned(),
            inventory_namespace: SYSTEM_NAMESPACE.to_owned(),
            inventory_name: "gitwarden-inventory".to_owned(),
            crd_timeout: Duration::from_secs(60),
            prune: PrunePolicy::default(),
        }
    }
}

/// Brings a cluster to a revision: the write path from git to Kubernetes.
///
/// Holds no per-sync state in memory: what was applied is read back from the
/// inventory in the cluster on every sync, so a restarted agent (a new
/// `Applier`) behaves exactly like the old one.
pub struct Applier {
    pub(crate) client: Client,
    pub(crate) discovery: Arc<Discovery>,
    pub(crate) config: ApplyConfig,
    pub(crate) inventory: InventoryStore,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier")
            .field("config", &self.config)
            .field("inventory", &self.inventory)
            .finish_non_exhaustive()
    }
}

impl Applier {
    /// An applier writing with `client`, addressing kinds through
    /// `discovery` (shared with scope resolution, so both see the same kinds).
    pub fn new(client: Client, discovery: Arc<Discovery>, config: ApplyConfig) -> Self {
        let inventory = InventoryStore::new(
            client.clone(),
            &config.inventory_namespace,
            &config.inventory_name,
        );
        Self {
            client,
            discovery,
            config,
            inventory,
        }
    }

    /// The discovery cache, for
    /// [`ManifestSet::resolve_namespaces`](gitwarden_manifests::ManifestSet::resolve_namespaces).
    pub fn discovery(&self) -> &Arc<Discovery> {
        &self.discovery
    }

    /// The configuration in effect.
    pub fn config(&self) -> &ApplyConfig {
        &self.config
    }

    /// Reads the inventory as stored in the cluster (for status and tools).
    pub async fn inventory(&self) -> Result<Inventory, SyncError> {
        Ok(self.inventory.load().await?.0)
    }

    pub(crate) fn context(&self) -> SyncContext {
        SyncContext::new(&self.config.field_manager, self.config.concurrency)
    }

    /// Syncs the cluster to `set`, the manifests of `revision` (namespaces
    /// already resolved with [`Self::discovery`]: only a
    /// [`ResolvedSet`] can be synced, a loaded set does not compile).
    ///
    /// ```compile_fail
    /// # async fn unresolved(applier: &gitwarden_apply::Applier, set: gitwarden_manifests::ManifestSet) {
    /// let _ = applier.sync(&set, "rev").await;
    /// # }
    /// ```
    ///
    /// 1. Reads the inventory and each object's live metadata; an object
    ///    whose manifest hash matches the inventory and that nobody changed
    ///    since (same `resourceVersion`, or same fields owned by gitwarden) is
    ///    skipped, so a no-op resync sends no write at all, not even a dry-run.
    /// 2. Dry-runs every other object whose kind is served and whose
    ///    namespace exists; any refusal aborts with
    ///    [`SyncError::Validation`] before anything is written.
    /// 3. Applies phase by phase (CRDs, Namespaces, setup, workloads,
    ///    webhooks, custom resources) with bounded concurrency; after the CRD
    ///    phase waits for the revision's CRDs to be Established and refreshes
    ///    discovery. Custom resources of CRDs new in this revision, and objects
    ///    in Namespaces new in this revision, cannot be dry-run before those
    ///    exist: like Flux, gitwarden dry-runs them right after the CRDs and
    ///    Namespaces are applied, and a refusal then stops the sync with only
    ///    those CRDs and Namespaces written.
    /// 4. Prunes what left git (see [`PrunePolicy`]) and writes the
    ///    inventory's changed shards.
    /// 5. Break-glass: objects of the revision under an open window are held
    ///    (not applied); those whose window closed are re-applied and their
    ///    stamps and label removed. Objects labelled `gitwarden.io/break-glass`
    ///    that git does not contain, in the revision's namespaces or
    ///    cluster-scoped, are found with one label-selected list per kind:
    ///    held while their window is open, deleted once it closed if the
    ///    window created them (see [`BreakGlassReport`](crate::BreakGlassReport)).
    ///
    /// A failed apply of one object is reported in its [`ObjectResult`](crate::ObjectResult) and
    /// does not stop the others.
    pub async fn sync(&self, set: &ResolvedSet, revision: &str) -> Result<SyncReport, SyncError> {
        let span = info_span!("sync", revision, objects = set.len());
        self.sync_inner(set, revision).instrument(span).await
    }

    /// Plans (reads the inventory and the live state), decides each object
    /// ([`decide`]), and carries the decisions out ([`Applier::execute`]).
    async fn sync_inner(&self, set: &ResolvedSet, revision: &str) -> Result<SyncReport, SyncError> {
        let started = std::time::Instant::now();
        let ctx = self.context();
        let (previous, stored) = self.inventory.load().await?;
        let planned = plan(&ctx, &self.client, &self.discovery, set).await?;
        let observed = planned.iter().map(Planned::observed).collect();
        let decisions = decide(observed, &previous, jiff::Timestamp::now());
        let run = Run {
            set,
            revision,
            started,
            previous: &previous,
            stored: &stored,
            planned: &planned,
        };
        self.execute(&ctx, &run, decisions).await
    }
}
