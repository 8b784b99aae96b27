//! Deleting what left git, carefully.
//!
//! A prune is the one operation that destroys data, so it is bounded: it only
//! considers objects gitwarden recorded in its inventory, re-reads each one
//! live, keeps those annotated `gitwarden.io/prune: disabled` or no longer
//! labelled as gitwarden's, and refuses to run at all when it would delete a
//! larger share of the inventory than configured (a truncated checkout or a
//! wrong path must not wipe a cluster).

use crate::discovery::Discovery;
use crate::dry_run::message;
use crate::inventory::{Inventory, InventoryEntry};
use crate::report::{KeepCause, Kept};
use crate::sync_context::SyncContext;
use futures::StreamExt;
use gitwarden_manifests::{ObjectRef, prune_order};
use gitwarden_shared::names::{
    MANAGED_BY_LABEL, MANAGED_BY_VALUE, PRUNE, PRUNE_DISABLED, prune_disabled,
};
use kube::Client;
use kube::api::DeleteParams;
use std::collections::{BTreeMap, HashSet};
use tracing::{Instrument, info, info_span, warn};

/// How much a single sync may prune.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrunePolicy {
    /// Whether to prune at all.
    pub enabled: bool,
    /// The largest share (0.0–1.0) of the previous inventory one sync may
    /// delete; more is refused. Default 0.25.
    pub max_share: f64,
    /// Delete even when the share is exceeded (an intended mass removal).
    pub allow_mass_prune: bool,
}

impl Default for PrunePolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            max_share: 0.25,
            allow_mass_prune: false,
        }
    }
}

/// What the prune did.
#[derive(Debug, Default)]
pub(crate) struct PruneOutcome {
    /// Deleted objects, in prune order.
    pub pruned: Vec<ObjectRef>,
    /// Objects left in place, with the reason.
    pub kept: Vec<Kept>,
    /// Why the whole prune was refused.
    pub refused: Option<String>,
    /// Entries to keep in the inventory (refused or failed deletes), so a
    /// later sync tries again.
    pub retain: BTreeMap<ObjectRef, InventoryEntry>,
}

/// The objects of `previous` that are not in the revision.
pub(crate) fn candidates<'a>(
    previous: &'a Inventory,
    current: &HashSet<ObjectRef>,
) -> Vec<&'a ObjectRef> {
    previous
        .entries
        .keys()
        .filter(|object| !current.contains(*object))
        .collect()
}

/// The refusal message when deleting `count` of `total` objects exceeds the
/// policy, `None` when allowed.
pub(crate) fn refusal(count: usize, total: usize, policy: &PrunePolicy) -> Option<String> {
    if count == 0 || policy.allow_mass_prune {
        return None;
    }
    let share = count as f64 / total.max(1) as f64;
    (share > policy.max_share).then(|| {
        format!(
            "prune refused: it would delete {count} of {total} inventoried objects ({:.0}%), \
             more than the allowed {:.0}%; allow a mass prune to proceed",
            share * 100.0,
            policy.max_share * 100.0
        )
    })
}

/// Prunes `leaving`, the objects of `previous` that left git (the prune
/// candidates of [`crate::decide`]), in reverse apply order, one phase at a
/// time.
pub(crate) async fn prune(
    ctx: &SyncContext,
    client: &Client,
    discovery: &Discovery,
    previous: &Inventory,
    leaving: Vec<&ObjectRef>,
    policy: &PrunePolicy,
) -> PruneOutcome {
    let mut outcome = PruneOutcome::default();
    let retain_all = |outcome: &mut PruneOutcome| {
        for object in &leaving {
            if let Some(entry) = previous.entries.get(*object) {
                outcome.retain.insert((*object).clone(), entry.clone());
            }
        }
    };
    if leaving.is_empty() {
        return outcome;
    }
    if !policy.enabled {
        retain_all(&mut outcome);
        outcome.refused = Some("prune disabled by configuration".to_owned());
        return outcome;
    }
    if let Some(reason) = refusal(leaving.len(), previous.entries.len(), policy) {
        warn!(%reason, "prune refused");
        retain_all(&mut outcome);
        outcome.refused = Some(reason);
        return outcome;
    }
    for (index, phase) in prune_order(leaving.iter().copied()).into_iter().enumerate() {
        let span = info_span!("prune_phase", phase = index, objects = phase.len());
        let results: Vec<(ObjectRef, Pruned)> = futures::stream::iter(phase)
            .map(|object| async move {
                (
                    object.clone(),
                    prune_one(ctx, client, discovery, object).await,
                )
            })
            .buffer_unordered(ctx.concurrency)
            .collect()
            .instrument(span)
            .await;
        let mut results = results;
        results.sort_by(|a, b| a.0.cmp(&b.0));
        for (object, result) in results {
            match result {
                Pruned::Deleted => {
                    info!(%object, "pruned");
                    outcome.pruned.push(object);
                }
                Pruned::AlreadyGone => {}
                Pruned::Kept(cause, reason) => {
                    // A failed delete stays in the inventory, to be retried.
                    if cause == KeepCause::Failed
                        && let Some(entry) = previous.entries.get(&object)
                    {
                        outcome.retain.insert(object.clone(), entry.clone());
                    }
                    outcome.kept.push(Kept {
                        object,
                        cause,
                        reason,
                    });
                }
            }
        }
    }
    outcome
}

/// What pruning one object came to.
enum Pruned {
    /// Deleted now.
    Deleted,
    /// Already gone (or its kind no longer served).
    AlreadyGone,
    /// Not deleted, and why (with the words for people).
    Kept(KeepCause, String),
}

/// Deletes one object that left git, unless it opted out or is no longer
/// gitwarden's.
async fn prune_one(
    ctx: &SyncContext,
    client: &Client,
    discovery: &Discovery,
    object: &ObjectRef,
) -> Pruned {
    // A kind no longer served (its CRD pruned first) means its objects are gone.
    let Some(resolved) = discovery.resolve_any_version(&object.gvk()) else {
        return Pruned::AlreadyGone;
    };
    let api = resolved.api(client.clone(), object.namespace.as_deref());
    let meta = match api.get_metadata_opt(&object.name).await {
        Ok(Some(meta)) => meta,
        Ok(None) => return Pruned::AlreadyGone,
        Err(error) => {
            return Pruned::Kept(
                KeepCause::Failed,
                format!("delete failed: reading it: {}", message(&error)),
            );
        }
    };
    if prune_disabled(meta.metadata.annotations.as_ref()) {
        return Pruned::Kept(
            KeepCause::PruneDisabled,
            format!("{PRUNE}: {PRUNE_DISABLED}"),
        );
    }
    let labels = meta.metadata.labels.unwrap_or_default();
    if labels
        .get(MANAGED_BY_LABEL)
        .is_none_or(|value| value != MANAGED_BY_VALUE)
    {
        return Pruned::Kept(
            KeepCause::NotManaged,
            format!("no longer labelled {MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"),
        );
    }
    ctx.count_writes(1);
    match api.delete(&object.name, &DeleteParams::background()).await {
        Ok(_) => Pruned::Deleted,
        Err(kube::Error::Api(status)) if status.code == 404 => Pruned::AlreadyGone,
        Err(error) => Pruned::Kept(
            KeepCause::Failed,
            format!("delete failed: {}", message(&error)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_more_than_the_share_unless_allowed() {
        let policy = PrunePolicy::default();
        assert_eq!(refusal(0, 0, &policy), None);
        assert_eq!(refusal(1, 4, &policy), None);
        assert!(refusal(2, 4, &policy).is_some());
        assert!(refusal(1, 1, &policy).is_some());
        let allowed = PrunePolicy {
            allow_mass_prune: true,
            ..policy
        };
        assert_eq!(refusal(4, 4, &allowed), None);
    }
}
