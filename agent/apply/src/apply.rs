//! The sync: validate the whole revision, apply it phase by phase, record
//! the inventory, prune what left git, and settle break-glass windows.

use crate::break_glass::{BreakGlass, SweepScope, remove_stamps, sweep};
use crate::discovery::Discovery;
use crate::dry_run::{Target, dry_run_all, message};
use crate::error::{ObjectError, SyncError, ValidationErrors};
use crate::establish::wait_established;
use crate::fingerprint::fields_fingerprint;
use crate::inventory::{Inventory, InventoryEntry, InventoryStore, StoredShards};
use crate::plan::{Live, Planned, new_namespaces, plan};
use crate::prune::{PrunePolicy, prune};
use crate::refusal::AdmissionRefusal;
use crate::report::{Action, BreakGlassReport, Held, ObjectResult, SyncReport};
use crate::sync_context::SyncContext;
use futures::StreamExt;
use gitwarden_manifests::{ObjectRef, Phase, ResolvedSet};
use gitwarden_shared::names::{FIELD_MANAGER, SYSTEM_NAMESPACE};
use kube::Client;
use kube::api::{Patch, PatchParams};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tracing::{Instrument, info, info_span, warn};

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

/// The outcome of applying one object.
struct Applied {
    action: Action,
    entry: Option<InventoryEntry>,
    /// Who refused the apply, when an admission plugin did.
    refused_by: Option<AdmissionRefusal>,
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
    ///    window created them (see [`BreakGlassReport`]).
    ///
    /// A failed apply of one object is reported in its [`ObjectResult`] and
    /// does not stop the others.
    pub async fn sync(&self, set: &ResolvedSet, revision: &str) -> Result<SyncReport, SyncError> {
        let span = info_span!("sync", revision, objects = set.len());
        self.sync_inner(set, revision).instrument(span).await
    }

    async fn sync_inner(&self, set: &ResolvedSet, revision: &str) -> Result<SyncReport, SyncError> {
        let started = std::time::Instant::now();
        let ctx = self.context();
        let (previous, stored) = self.inventory.load().await?;
        let planned = plan(&ctx, &self.client, &self.discovery, set).await?;
        let new_namespaces = new_namespaces(&planned);
        let mut by_ref: HashMap<ObjectRef, &Planned<'_>> = HashMap::new();
        let mut needs_apply: HashSet<ObjectRef> = HashSet::new();
        let mut deferred: Vec<&Planned<'_>> = Vec::new();
        let mut early: Vec<&Planned<'_>> = Vec::new();
        let now = jiff::Timestamp::now();
        let mut held: HashMap<ObjectRef, String> = HashMap::new();
        let mut held_windows: Vec<Held> = Vec::new();
        let mut closed_windows: Vec<(&Planned<'_>, BreakGlass)> = Vec::new();
        for p in &planned {
            let object = p.manifest.object_ref();
            by_ref.insert(object.clone(), p);
            match p.break_glass().map(|bg| (bg, bg.open_until(now))) {
                Some((_, Some(until))) => {
                    info!(%object, %until, "left alone: break-glass window open");
                    held.insert(
                        object.clone(),
                        format!("break-glass window open until {until}"),
                    );
                    held_windows.push(Held {
                        object,
                        until,
                        in_git: true,
                    });
                    continue;
                }
                Some((bg, None)) => {
                    // The window closed: revert to git and remove the stamps.
                    info!(%object, "break-glass window closed: reverting to git");
                    closed_windows.push((p, bg.clone()));
                    needs_apply.insert(object.clone());
                }
                None => {}
            }
            if p.up_to_date(previous.entries.get(&object)) && !needs_apply.contains(&object) {
                continue;
            }
            needs_apply.insert(object);
            let in_new_namespace = p
                .manifest
                .namespace
                .as_ref()
                .is_some_and(|ns| new_namespaces.contains(ns));
            if p.resolved.is_some() && !in_new_namespace {
                early.push(p);
            } else {
                deferred.push(p);
            }
        }
        info!(
            to_apply = needs_apply.len(),
            unchanged = planned.len() - needs_apply.len(),
            deferred_validation = deferred.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "planned"
        );

        let errors = dry_run_all(&ctx, early.iter().filter_map(|p| p.target(&self.client)))
            .instrument(info_span!("validate", objects = early.len()))
            .await;
        if !errors.is_empty() {
            return Err(SyncError::Validation(ValidationErrors { errors }));
        }
        info!(
            objects = early.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "validated: the API server accepted every object in a dry-run"
        );

        let mut results: HashMap<ObjectRef, Applied> = HashMap::new();
        let mut late_validated = deferred.is_empty();
        for (phase, manifests) in set.apply_phases() {
            if phase > Phase::Namespaces && !late_validated {
                late_validated = true;
                if let Err(error) = self.validate_late(&ctx, &deferred).await {
                    self.save_partial(&ctx, revision, &previous, &stored, &planned, &mut results)
                        .await;
                    return Err(error);
                }
            }
            // Targets are made as requests go out (see `dry_run_all`).
            let in_phase: Vec<&Planned<'_>> = manifests
                .iter()
                .filter(|m| needs_apply.contains(&m.object_ref()))
                .filter_map(|m| by_ref.get(&m.object_ref()).copied())
                .collect();
            let span = info_span!("apply_phase", ?phase, objects = in_phase.len());
            let ctx = &ctx;
            let applied: Vec<(ObjectRef, Applied)> = futures::stream::iter(in_phase)
                .filter_map(|p| std::future::ready(self.fresh_target(p).map(|t| (p, t))))
                .map(|(p, target)| async move {
                    let applied = apply_one(ctx, &target, Some(&p.live)).await;
                    (p.manifest.object_ref(), applied)
                })
                .buffer_unordered(ctx.concurrency)
                .collect()
                .instrument(span)
                .await;
            results.extend(applied);
            if phase == Phase::CustomResourceDefinitions {
                let crds: Vec<String> = set.crds().into_iter().map(|crd| crd.name).collect();
                let established = wait_established(&self.client, &crds, self.config.crd_timeout)
                    .instrument(info_span!("wait_established", crds = crds.len()))
                    .await;
                let refreshed = self.discovery.refresh().await.map_err(SyncError::Discovery);
                if let Err(error) = established.and(refreshed) {
                    self.save_partial(ctx, revision, &previous, &stored, &planned, &mut results)
                        .await;
                    return Err(error);
                }
            }
        }

        let mut reverted = Vec::new();
        for (p, window) in &closed_windows {
            let object = p.manifest.object_ref();
            if matches!(
                results.get(&object),
                Some(Applied {
                    action: Action::Failed(_),
                    ..
                })
            ) {
                continue;
            }
            if let Some(target) = p.target(&self.client) {
                ctx.count_writes(1);
                match remove_stamps(&target.api, &target.manifest.name, window).await {
                    Ok(()) => reverted.push(object),
                    Err(error) => {
                        warn!(%object, %error, "could not remove the break-glass stamps and label")
                    }
                }
            }
        }

        let current: HashSet<ObjectRef> = by_ref.keys().cloned().collect();
        let outcome = prune(
            &ctx,
            &self.client,
            &self.discovery,
            &previous,
            &current,
            &self.config.prune,
        )
        .instrument(info_span!("prune"))
        .await;

        let in_git: HashSet<ObjectRef> = current
            .iter()
            .chain(previous.entries.keys())
            .cloned()
            .collect();
        let namespaces: HashSet<String> = current
            .iter()
            .filter_map(|object| match (&object.namespace, object.kind.as_str()) {
                (Some(ns), _) => Some(ns.clone()),
                (None, "Namespace") if object.group.is_empty() => Some(object.name.clone()),
                (None, _) => None,
            })
            .collect();
        let scope = SweepScope {
            in_git: &in_git,
            namespaces: &namespaces,
        };
        let swept = sweep(
            &ctx,
            &self.client,
            &self.discovery,
            &scope,
            jiff::Timestamp::now(),
        )
        .instrument(info_span!("break_glass_sweep"))
        .await;
        held_windows.extend(swept.held);
        held_windows.sort_by(|a, b| a.object.cmp(&b.object));
        reverted.sort();
        // Each of these holds an identity per object: with thousands of
        // objects, freeing them before the inventory is rendered lowers the
        // sync's peak memory by megabytes.
        drop((by_ref, current, in_git, namespaces));

        let mut entries = entries_after(&previous, &planned, &mut results);
        entries.extend(outcome.retain);
        let inventory = Inventory {
            revision: Some(revision.to_owned()),
            entries,
        };
        let writes = self
            .inventory
            .save(&inventory, &stored)
            .instrument(info_span!("save_inventory"))
            .await?;
        ctx.count_writes(writes);

        let mut applied = Vec::with_capacity(planned.len());
        for manifest in set.apply_order().into_iter().flatten() {
            let object = manifest.object_ref();
            let (action, refused_by) = match results.remove(&object) {
                Some(result) => (result.action, result.refused_by),
                None if held.contains_key(&object) => (
                    Action::BreakGlass(held.remove(&object).unwrap_or_default()),
                    None,
                ),
                None if needs_apply.contains(&object) => (
                    Action::Failed("not applied: an earlier phase failed".to_owned()),
                    None,
                ),
                None => (Action::Unchanged, None),
            };
            applied.push(ObjectResult {
                object,
                action,
                location: manifest.location.clone(),
                refused_by,
            });
        }
        let report = SyncReport {
            revision: revision.to_owned(),
            applied,
            pruned: outcome.pruned,
            kept: outcome.kept,
            prune_refused: outcome.refused,
            break_glass: BreakGlassReport {
                held: held_windows,
                reverted,
                deleted: swept.deleted,
                kept: swept.kept,
            },
            write_requests: ctx.writes(),
            dry_run_requests: ctx.dry_runs(),
            duration: started.elapsed(),
        };
        info!(
            created = report.count(&Action::Created),
            configured = report.count(&Action::Configured),
            unchanged = report.count(&Action::Unchanged),
            failed = report.failures().count(),
            pruned = report.pruned.len(),
            break_glass_held = report.break_glass.held.len(),
            break_glass_reverted = report.break_glass.reverted.len(),
            break_glass_deleted = report.break_glass.deleted.len(),
            writes = report.write_requests,
            "sync finished"
        );
        Ok(report)
    }

    /// The target of a planned object, re-resolved: its kind may have become
    /// known since planning (a CRD of this revision).
    fn fresh_target<'a>(&self, p: &'a Planned<'_>) -> Option<Target<'a>> {
        let resolved = p
            .resolved
            .clone()
            .or_else(|| self.discovery.resolve(&p.manifest.gvk))?;
        Some(Target {
            manifest: p.manifest,
            body: &p.body,
            api: resolved.api(self.client.clone(), p.manifest.namespace.as_deref()),
        })
    }

    /// Dry-runs the objects that could not be validated before the CRDs and
    /// Namespaces of the revision existed.
    async fn validate_late(
        &self,
        ctx: &SyncContext,
        deferred: &[&Planned<'_>],
    ) -> Result<(), SyncError> {
        let mut errors = Vec::new();
        let mut targets = Vec::new();
        for p in deferred {
            match self.fresh_target(p) {
                Some(target) => targets.push(target),
                None => errors.push(ObjectError {
                    object: p.manifest.object_ref(),
                    location: p.manifest.location.clone(),
                    message: format!(
                        "the API server does not serve {}/{} {} (is its CRD installed or in this revision?)",
                        p.manifest.gvk.group, p.manifest.gvk.version, p.manifest.gvk.kind
                    ),
                    refused_by: None,
                }),
            }
        }
        let objects = targets.len();
        errors.extend(
            dry_run_all(ctx, targets)
                .instrument(info_span!("validate_late", objects))
                .await,
        );
        if errors.is_empty() {
            return Ok(());
        }
        errors.sort_by(|a, b| a.location.cmp(&b.location));
        Err(SyncError::Validation(ValidationErrors { errors }))
    }

    /// Records what a sync that stopped early did write, so those objects
    /// are known to prune later. Best effort: the sync's own error matters more.
    async fn save_partial(
        &self,
        ctx: &SyncContext,
        revision: &str,
        previous: &Inventory,
        stored: &StoredShards,
        planned: &[Planned<'_>],
        results: &mut HashMap<ObjectRef, Applied>,
    ) {
        let mut entries = previous.entries.clone();
        entries.extend(entries_after(previous, planned, results));
        let inventory = Inventory {
            revision: previous
                .revision
                .clone()
                .or_else(|| Some(revision.to_owned())),
            entries,
        };
        match self.inventory.save(&inventory, stored).await {
            Ok(writes) => ctx.count_writes(writes),
            Err(error) => warn!(%error, "could not record the partial sync in the inventory"),
        }
    }
}

/// The inventory entries for the revision's objects: the new entry of each
/// applied object, the previous one of each skipped or failed object.
fn entries_after(
    previous: &Inventory,
    planned: &[Planned<'_>],
    results: &mut HashMap<ObjectRef, Applied>,
) -> BTreeMap<ObjectRef, InventoryEntry> {
    let mut entries = BTreeMap::new();
    for p in planned {
        let object = p.manifest.object_ref();
        // Moved, not cloned: the results' actions are all the report needs.
        let entry = results
            .get_mut(&object)
            .and_then(|applied| applied.entry.take())
            .or_else(|| previous.entries.get(&object).cloned());
        if let Some(entry) = entry {
            entries.insert(object, entry);
        }
    }
    entries
}

/// Server-side-applies one object (force, gitwarden's field manager).
async fn apply_one(ctx: &SyncContext, target: &Target<'_>, live: Option<&Live>) -> Applied {
    ctx.count_writes(1);
    let params = PatchParams::apply(&ctx.field_manager).force();
    match target
        .api
        .patch(
            &target.manifest.name,
            &params,
            &Patch::Apply(target.body.json()),
        )
        .await
    {
        Ok(object) => {
            let resource_version = object.metadata.resource_version.clone().unwrap_or_default();
            let action = match live {
                Some(Live::Present {
                    resource_version: before,
                    ..
                }) if *before == resource_version => Action::Unchanged,
                Some(Live::Present { .. }) => Action::Configured,
                _ => Action::Created,
            };
            let entry = InventoryEntry {
                hash: target.body.hash().to_owned(),
                fields: fields_fingerprint(
                    object.metadata.managed_fields.as_deref(),
                    &ctx.field_manager,
                ),
                resource_version,
            };
            Applied {
                action,
                entry: Some(entry),
                refused_by: None,
            }
        }
        Err(error) => {
            let message = message(&error);
            let refused_by = AdmissionRefusal::from_error(&error);
            match &refused_by {
                Some(plugin) => {
                    warn!(object = %target.manifest.object_ref(), location = %target.manifest.location, %plugin, %message, "apply refused by an admission plugin")
                }
                None => {
                    warn!(object = %target.manifest.object_ref(), location = %target.manifest.location, %message, "apply failed")
                }
            }
            Applied {
                action: Action::Failed(message),
                entry: None,
                refused_by,
            }
        }
    }
}
