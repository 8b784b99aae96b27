//! What a sync would do, without doing it (`gitwarden diff`, like `flux diff`).
//!
//! Changes are computed by the API server itself: a dry-run apply returns
//! the object as it would be after defaulting, admission and merging with
//! other managers' fields, so comparing it with the live object shows exactly
//! what a sync would change, with no false positives from defaults.

use crate::apply::Applier;
use crate::dry_run::dry_run_one;
use crate::error::{ObjectError, SyncError};
use crate::prune::{candidates, refusal};
use crate::recreate::Refused;
use gitwarden_manifests::{Location, ObjectRef, ResolvedSet};
use gitwarden_shared::names::prune_disabled;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use tracing::{Instrument, info_span};

/// Metadata the API server changes on every write, never a difference git
/// could cause.
const IGNORED_METADATA: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
];

/// An object that would be created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creation {
    /// The object.
    pub object: ObjectRef,
    /// Its manifest's `file:line`.
    pub location: Location,
}

/// An object that would change, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The object.
    pub object: ObjectRef,
    /// Its manifest's `file:line`.
    pub location: Location,
    /// A JSON patch (RFC 6902) from the live object to the object after a
    /// sync, server-managed metadata left out.
    pub patch: json_patch::Patch,
}

/// An object whose change a sync would hold back: a break-glass window is
/// open on it, and the sync leaves it alone until the window closes (then
/// it is reverted to git).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldChange {
    /// The object.
    pub object: ObjectRef,
    /// Its manifest's `file:line`.
    pub location: Location,
    /// When the window closes.
    pub until: jiff::Timestamp,
}

/// What a sync of a revision would do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    /// Objects to create.
    pub create: Vec<Creation>,
    /// Objects to change, field by field.
    pub change: Vec<Change>,
    /// Objects a sync would delete and create again: git changes a field
    /// the API server will not change in place, and they are marked
    /// `gitwarden.io/force: enabled`.
    #[serde(default)]
    pub recreate: Vec<Creation>,
    /// Objects a sync would leave alone for now: a break-glass window is
    /// open on them.
    #[serde(default)]
    pub held: Vec<HeldChange>,
    /// Objects the API server would refuse (the sync would apply nothing).
    pub invalid: Vec<ObjectError>,
    /// Objects a sync would prune (already excluding those annotated
    /// `gitwarden.io/prune: disabled` live).
    pub prune: Vec<ObjectRef>,
    /// Why the prune would be refused, if it would.
    pub prune_refused: Option<String>,
}

impl Diff {
    /// Whether a sync now would change nothing (`diff` exits 0). Held
    /// objects do not count: the sync would leave them alone.
    pub fn in_sync(&self) -> bool {
        self.create.is_empty()
            && self.change.is_empty()
            && self.recreate.is_empty()
            && self.invalid.is_empty()
            && self.prune.is_empty()
    }
}

/// Removes server-managed metadata (and nothing else) from an object.
fn normalise(mut object: Value) -> Value {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in IGNORED_METADATA {
            metadata.remove(*field);
        }
    }
    object
}

/// Computes what syncing `set` would create, change and prune. Sends only
/// reads and server-side dry-runs: nothing is persisted.
pub async fn diff(applier: &Applier, set: &ResolvedSet) -> Result<Diff, SyncError> {
    diff_inner(applier, set)
        .instrument(info_span!("diff", objects = set.len()))
        .await
}

async fn diff_inner(applier: &Applier, set: &ResolvedSet) -> Result<Diff, SyncError> {
    let ctx = applier.context();
    let client = &applier.client;
    let mut result = Diff {
        create: Vec::new(),
        change: Vec::new(),
        recreate: Vec::new(),
        held: Vec::new(),
        invalid: Vec::new(),
        prune: Vec::new(),
        prune_refused: None,
    };
    for manifest in set.apply_order().into_iter().flatten() {
        let object = manifest.object_ref();
        let creation = || Creation {
            object: object.clone(),
            location: manifest.location.clone(),
        };
        // A kind not served yet comes with a CRD of this revision: creating.
        let Some(resolved) = applier.discovery.resolve(&manifest.gvk) else {
            result.create.push(creation());
            continue;
        };
        let api = resolved.api(client.clone(), manifest.namespace.as_deref());
        let live = api
            .get_opt(&manifest.name)
            .await
            .map_err(|source| SyncError::Read {
                object: object.clone(),
                source,
            })?;
        let Some(live) = live else {
            result.create.push(creation());
            continue;
        };
        // What the sync does with an object under an open window: nothing.
        if let Some(until) = crate::break_glass::BreakGlass::of(&live.metadata)
            .and_then(|window| window.open_until(jiff::Timestamp::now()))
        {
            result.held.push(HeldChange {
                object,
                location: manifest.location.clone(),
                until,
            });
            continue;
        }
        let body = crate::body::ApplyBody::new(manifest);
        let target = crate::dry_run::Target {
            manifest,
            body: &body,
            api,
        };
        match dry_run_one(&ctx, &target).await {
            Ok(after) => {
                let mut before = normalise(serde_json::to_value(&live).unwrap_or(Value::Null));
                let mut after = normalise(serde_json::to_value(&after).unwrap_or(Value::Null));
                crate::redact::mask_secret_values(&mut before, &mut after);
                let patch = json_patch::diff(&before, &after);
                if !patch.0.is_empty() {
                    result.change.push(Change {
                        object,
                        location: manifest.location.clone(),
                        patch,
                    });
                }
            }
            Err(error) => match crate::recreate::judge(&ctx, &target, &error).await {
                Refused::Recreate => result.recreate.push(Creation {
                    object,
                    location: manifest.location.clone(),
                }),
                Refused::Stands {
                    message,
                    refused_by,
                } => result.invalid.push(ObjectError {
                    object,
                    location: manifest.location.clone(),
                    message,
                    refused_by,
                }),
            },
        }
    }

    let previous = applier.inventory.load().await?.0;
    let current: HashSet<ObjectRef> = set.object_refs().into_iter().collect();
    let leaving = candidates(&previous, &current);
    result.prune_refused = refusal(leaving.len(), previous.entries.len(), &applier.config.prune);
    for object in leaving {
        let Some(resolved) = applier.discovery.resolve_any_version(&object.gvk()) else {
            continue;
        };
        let api = resolved.api(client.clone(), object.namespace.as_deref());
        let meta = api
            .get_metadata_opt(&object.name)
            .await
            .map_err(|source| SyncError::Read {
                object: object.clone(),
                source,
            })?;
        let Some(meta) = meta else { continue };
        if !prune_disabled(meta.metadata.annotations.as_ref()) {
            result.prune.push(object.clone());
        }
    }
    Ok(result)
}

impl Applier {
    /// What [`Applier::sync`] would do with `set`; see [`diff`].
    pub async fn diff(&self, set: &ResolvedSet) -> Result<Diff, SyncError> {
        diff(self, set).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_metadata_is_ignored_but_content_is_not() {
        let live = json!({"metadata": {"name": "a", "resourceVersion": "1", "uid": "u", "managedFields": []}, "data": {"k": "1"}});
        let after = json!({"metadata": {"name": "a", "resourceVersion": "2", "uid": "u"}, "data": {"k": "2"}});
        let patch = json_patch::diff(&normalise(live), &normalise(after));
        let text = serde_json::to_string(&patch).expect("serialises");
        assert_eq!(patch.0.len(), 1, "{text}");
        assert!(text.contains("/data/k"), "{text}");
    }
}
