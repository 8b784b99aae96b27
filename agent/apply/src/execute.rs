//! Carrying out a sync's decisions ([`crate::decide`]): validate, apply
//! phase by phase, revert closed break-glass windows, prune, sweep, record
//! the inventory and report.

use crate::apply::Applier;
use crate::apply_one::{Applied, apply_one};
use crate::break_glass::{SweepOutcome, SweepScope, remove_stamps, sweep};
use crate::decide::{Decision, Decisions, Validation};
use crate::dry_run::{Target, dry_run_all};
use crate::error::{ObjectError, SyncError, ValidationErrors};
use crate::establish::wait_served;
use crate::inventory::{Inventory, InventoryEntry, StoredShards};
use crate::plan::Planned;
use crate::prune::prune;
use crate::report::{Action, BreakGlassReport, Held, ObjectResult, SyncReport};
use crate::sync_context::SyncContext;
use futures::StreamExt;
use gitwarden_manifests::{ObjectRef, Phase, ResolvedSet};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;
use tracing::{Instrument, info, info_span, warn};

/// A planned sync: what [`Applier::execute`] carries out its decisions on.
pub(crate) struct Run<'s, 'a> {
    /// The revision's manifests.
    pub set: &'a ResolvedSet,
    /// The git revision.
    pub revision: &'s str,
    /// When the sync started.
    pub started: Instant,
    /// The inventory before the sync.
    pub previous: &'s Inventory,
    /// The inventory's shards as stored.
    pub stored: &'s StoredShards,
    /// Every object of the revision with its live state, in the set's order.
    pub planned: &'s [Planned<'a>],
}

/// The planned objects by identity, and the decision of each one not skipped.
struct Decided<'s, 'a> {
    by_ref: HashMap<ObjectRef, &'s Planned<'a>>,
    /// Every decision but [`Decision::Skip`]: what the phases apply and the
    /// report tells.
    pending: HashMap<ObjectRef, Decision>,
}

impl Applier {
    /// Carries out `decisions`, made for `run.planned` (in its order).
    pub(crate) async fn execute(
        &self,
        ctx: &SyncContext,
        run: &Run<'_, '_>,
        decisions: Decisions<'_>,
    ) -> Result<SyncReport, SyncError> {
        let Decisions {
            objects,
            prune: leaving,
        } = decisions;
        let mut decided = Decided {
            by_ref: HashMap::new(),
            pending: HashMap::new(),
        };
        let mut early: Vec<&Planned<'_>> = Vec::new();
        let mut deferred: Vec<&Planned<'_>> = Vec::new();
        let mut after_setup: Vec<&Planned<'_>> = Vec::new();
        let mut reverts: Vec<&Planned<'_>> = Vec::new();
        let mut held_windows: Vec<Held> = Vec::new();
        for (p, (object, decision)) in run.planned.iter().zip(objects) {
            match decision {
                Decision::Hold { until } => {
                    info!(%object, %until, "left alone: break-glass window open");
                    held_windows.push(Held {
                        object: object.clone(),
                        until,
                        in_git: true,
                    });
                }
                Decision::Revert(_) => {
                    info!(%object, "break-glass window closed: reverting to git");
                    reverts.push(p);
                }
                Decision::Create(_) | Decision::Change(_) | Decision::Skip => {}
            }
            match decision.validation() {
                Some(Validation::Early) => early.push(p),
                Some(Validation::Deferred) => deferred.push(p),
                Some(Validation::AfterSetup) => after_setup.push(p),
                None => {}
            }
            if decision != Decision::Skip {
                decided.pending.insert(object.clone(), decision);
            }
            decided.by_ref.insert(object, p);
        }
        let to_apply = decided.pending.values().filter(|d| d.applies()).count();
        info!(
            to_apply,
            unchanged = run.planned.len() - to_apply,
            deferred_validation = deferred.len(),
            elapsed_ms = run.started.elapsed().as_millis() as u64,
            "planned"
        );

        let errors = dry_run_all(ctx, early.iter().filter_map(|p| p.target(&self.client)))
            .instrument(info_span!("validate", objects = early.len()))
            .await;
        if !errors.is_empty() {
            return Err(SyncError::Validation(ValidationErrors { errors }));
        }
        info!(
            objects = early.len(),
            elapsed_ms = run.started.elapsed().as_millis() as u64,
            "validated: the API server accepted every object in a dry-run"
        );

        let mut results = self
            .apply_phases(ctx, run, &decided, &deferred, &after_setup)
            .await?;
        let mut reverted = self.revert(ctx, &reverts, &results).await;

        let outcome = prune(
            ctx,
            &self.client,
            &self.discovery,
            run.previous,
            leaving,
            &self.config.prune,
        )
        .instrument(info_span!("prune"))
        .await;

        let swept = self.sweep_break_glass(ctx, run, &decided.by_ref).await;
        held_windows.extend(swept.held);
        held_windows.sort_by(|a, b| a.object.cmp(&b.object));
        reverted.sort();
        // Each of these holds an identity per object: with thousands of
        // objects, freeing them before the inventory is rendered lowers the
        // sync's peak memory by megabytes.
        let Decided { by_ref, pending } = decided;
        drop(by_ref);

        let mut entries = entries_after(run.previous, run.planned, &mut results);
        entries.extend(outcome.retain);
        let inventory = Inventory {
            revision: Some(run.revision.to_owned()),
            entries,
        };
        let writes = self
            .inventory
            .save(&inventory, run.stored)
            .instrument(info_span!("save_inventory"))
            .await?;
        ctx.count_writes(writes);

        let report = SyncReport {
            revision: run.revision.to_owned(),
            applied: object_results(run.set, &mut results, &pending),
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
            duration: run.started.elapsed(),
        };
        info!(
            created = report.count(&Action::Created),
            configured = report.count(&Action::Configured),
            recreated = report.count(&Action::Recreated),
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

    /// Applies the objects to apply, phase by phase; dry-runs the `deferred`
    /// ones after the CRDs and Namespaces. On an error, records what was
    /// written before returning it.
    async fn apply_phases(
        &self,
        ctx: &SyncContext,
        run: &Run<'_, '_>,
        decided: &Decided<'_, '_>,
        deferred: &[&Planned<'_>],
        after_setup: &[&Planned<'_>],
    ) -> Result<HashMap<ObjectRef, Applied>, SyncError> {
        let mut results: HashMap<ObjectRef, Applied> = HashMap::new();
        let mut late_validated = deferred.is_empty();
        let mut after_setup_validated = after_setup.is_empty();
        for (phase, manifests) in run.set.apply_phases() {
            if phase > Phase::Namespaces && !late_validated {
                late_validated = true;
                if let Err(error) = self.validate_late(ctx, deferred).await {
                    self.save_partial(ctx, run, &mut results).await;
                    return Err(error);
                }
            }
            // Pods whose service account this revision creates: the API
            // server refuses them (dry-run included) until it exists.
            if phase > Phase::Setup && !after_setup_validated {
                after_setup_validated = true;
                if let Err(error) = self.validate_late(ctx, after_setup).await {
                    self.save_partial(ctx, run, &mut results).await;
                    return Err(error);
                }
            }
            // Targets are made as requests go out (see `dry_run_all`).
            let in_phase: Vec<&Planned<'_>> = manifests
                .iter()
                .map(|m| m.object_ref())
                .filter(|object| decided.pending.get(object).is_some_and(|d| d.applies()))
                .filter_map(|object| decided.by_ref.get(&object).copied())
                .collect();
            let span = info_span!("apply_phase", ?phase, objects = in_phase.len());
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
                let crds = run.set.crds();
                let served = wait_served(
                    &self.client,
                    &self.discovery,
                    &crds,
                    self.config.crd_timeout,
                )
                .instrument(info_span!("wait_established", crds = crds.len()))
                .await;
                if let Err(error) = served {
                    self.save_partial(ctx, run, &mut results).await;
                    return Err(error);
                }
            }
        }
        Ok(results)
    }

    /// Removes the break-glass stamps and label of the objects reverted to
    /// git (`reverts`, in plan order) whose apply did not fail.
    async fn revert(
        &self,
        ctx: &SyncContext,
        reverts: &[&Planned<'_>],
        results: &HashMap<ObjectRef, Applied>,
    ) -> Vec<ObjectRef> {
        let mut reverted = Vec::new();
        for p in reverts {
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
            let (Some(window), Some(target)) = (p.break_glass(), p.target(&self.client)) else {
                continue;
            };
            ctx.count_writes(1);
            match remove_stamps(&target.api, &target.manifest.name, window).await {
                Ok(()) => reverted.push(object),
                Err(error) => {
                    warn!(%object, %error, "could not remove the break-glass stamps and label")
                }
            }
        }
        reverted
    }

    /// Handles objects touched under break-glass that git does not contain,
    /// in the revision's namespaces or cluster-scoped.
    async fn sweep_break_glass(
        &self,
        ctx: &SyncContext,
        run: &Run<'_, '_>,
        by_ref: &HashMap<ObjectRef, &Planned<'_>>,
    ) -> SweepOutcome {
        let in_git: HashSet<ObjectRef> = by_ref
            .keys()
            .chain(run.previous.entries.keys())
            .cloned()
            .collect();
        let namespaces: HashSet<String> = by_ref
            .keys()
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
        sweep(
            ctx,
            &self.client,
            &self.discovery,
            &scope,
            jiff::Timestamp::now(),
        )
        .instrument(info_span!("break_glass_sweep"))
        .await
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
    /// Namespaces (or the service accounts) of the revision existed.
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
        run: &Run<'_, '_>,
        results: &mut HashMap<ObjectRef, Applied>,
    ) {
        let Run {
            revision,
            previous,
            stored,
            planned,
            ..
        } = *run;
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
        if let Some(mut entry) = entry {
            // Where it is written now, even when the object itself did not change.
            entry.source = p.manifest.location.to_string();
            entries.insert(object, entry);
        }
    }
    entries
}

/// Every object of the revision with what happened to it, in apply order.
fn object_results(
    set: &ResolvedSet,
    results: &mut HashMap<ObjectRef, Applied>,
    pending: &HashMap<ObjectRef, Decision>,
) -> Vec<ObjectResult> {
    let mut applied = Vec::with_capacity(set.len());
    for manifest in set.apply_order().into_iter().flatten() {
        let object = manifest.object_ref();
        let (action, refused_by) = match (results.remove(&object), pending.get(&object)) {
            (Some(result), _) => (result.action, result.refused_by),
            (None, Some(Decision::Hold { until })) => (
                Action::BreakGlass(format!("break-glass window open until {until}")),
                None,
            ),
            (None, Some(decision)) if decision.applies() => (
                Action::Failed("not applied: an earlier phase failed".to_owned()),
                None,
            ),
            (None, _) => (Action::Unchanged, None),
        };
        applied.push(ObjectResult {
            object,
            action,
            location: manifest.location.clone(),
            refused_by,
        });
    }
    applied
}
