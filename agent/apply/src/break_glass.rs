//! Break-glass as the agent sees it: the window stamped on a live object, and
//! the sweep that finds objects touched under break-glass that git does not
//! contain.
//!
//! The mutating webhook labels every object created or changed under
//! break-glass `gitwarden.io/break-glass=created|changed`, so one
//! label-selected list per kind finds them all. Objects git contains are the
//! apply's business (held while the window is open, reverted after). For the
//! others, once the window closes: an object the emergency *created* (label
//! `created`, which later break-glass changes keep) is deleted, unless it says
//! `gitwarden.io/prune: disabled`; an object that existed before the
//! emergency (`changed`, or any other value) is left in place, only the label
//! is removed so the sweep stops finding it.

use std::collections::{BTreeMap, HashSet};

use futures::StreamExt;
use gitwarden_manifests::ObjectRef;
use gitwarden_shared::names::{
    BREAK_GLASS, BREAK_GLASS_LABEL, BREAK_GLASS_LABEL_CREATED, PRUNE, PRUNE_DISABLED,
};
use gitwarden_shared::stamps::Stamps;
use kube::Client;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::{DynamicObject, GroupVersionKind, ObjectMeta};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::discovery::{Discovery, Resolved};
use crate::dry_run::message;
use crate::report::{Held, KeepCause, Kept};
use crate::sync_context::SyncContext;

/// A break-glass change found on a live object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BreakGlass {
    /// The `gitwarden.io/break-glass*` annotation keys present (to remove
    /// once the window closes).
    pub keys: Vec<String>,
    /// `gitwarden.io/break-glass-until`, when present and a valid time.
    pub until: Option<jiff::Timestamp>,
    /// Whether the `gitwarden.io/break-glass` label is present.
    pub label: bool,
    /// Whether the label says a break-glass request created the object
    /// (`created`); anything else never leads to a deletion.
    pub created: bool,
}

impl BreakGlass {
    /// The break-glass state of an object with this metadata, `None` when it
    /// carries neither the reason annotation nor the label.
    pub(crate) fn of(meta: &ObjectMeta) -> Option<BreakGlass> {
        let label_value = meta
            .labels
            .as_ref()
            .and_then(|labels| labels.get(BREAK_GLASS_LABEL));
        let label = label_value.is_some();
        let created = label_value.is_some_and(|value| value == BREAK_GLASS_LABEL_CREATED);
        let annotations = meta.annotations.as_ref();
        let has_reason = annotations.is_some_and(|a| a.contains_key(BREAK_GLASS));
        if !has_reason && !label {
            return None;
        }
        let keys = annotations
            .into_iter()
            .flat_map(BTreeMap::keys)
            .filter(|k| k.starts_with(BREAK_GLASS))
            .cloned()
            .collect();
        // A reason without a valid `-until` stamp (or a label without a
        // reason) is no open window: docs/design.md §4.
        let until = annotations
            .filter(|_| has_reason)
            .and_then(|a| Stamps::of(Some(a)).until());
        Some(BreakGlass {
            keys,
            until,
            label,
            created,
        })
    }

    /// When the window closes, if it is still open at `now`: the object is
    /// then left alone. A reason without a valid `-until` stamp is no open
    /// window.
    pub(crate) fn open_until(&self, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
        self.until.filter(|until| *until > now)
    }

    /// The JSON patch that removes the stamps and the label, `None` when
    /// there is nothing to remove. `remove` of a missing key fails the whole
    /// patch, so only keys read from the live object are named.
    pub(crate) fn removal_patch(&self) -> Option<json_patch::Patch> {
        let escape = |key: &str| key.replace('~', "~0").replace('/', "~1");
        let mut ops: Vec<serde_json::Value> = self
            .keys
            .iter()
            .map(|key| {
                serde_json::json!({ "op": "remove", "path": format!("/metadata/annotations/{}", escape(key)) })
            })
            .collect();
        if self.label {
            ops.push(serde_json::json!({ "op": "remove", "path": format!("/metadata/labels/{}", escape(BREAK_GLASS_LABEL)) }));
        }
        if ops.is_empty() {
            return None;
        }
        serde_json::from_value(serde_json::Value::Array(ops)).ok()
    }
}

/// Sends [`BreakGlass::removal_patch`] to one object.
pub(crate) async fn remove_stamps(
    api: &kube::Api<DynamicObject>,
    name: &str,
    window: &BreakGlass,
) -> Result<(), kube::Error> {
    let Some(patch) = window.removal_patch() else {
        return Ok(());
    };
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map(|_| ())
}

/// What the sweep found and did.
#[derive(Debug, Default)]
pub(crate) struct SweepOutcome {
    /// Objects outside git under an open window.
    pub held: Vec<Held>,
    /// Objects created under break-glass, outside git, deleted.
    pub deleted: Vec<ObjectRef>,
    /// Objects outside git with a closed window that stay, and why.
    pub kept: Vec<Kept>,
}

/// What to do with one labelled object outside git.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Window open: leave it alone until `until`.
    Hold(jiff::Timestamp),
    /// Created under a window that closed: delete it.
    Delete,
    /// Created under a window that closed, but `gitwarden.io/prune: disabled`.
    KeepPruneDisabled,
    /// Changed (not created) under a window that closed: it existed before;
    /// only the label goes.
    Release,
}

/// The decision for a labelled object that git does not contain.
pub(crate) fn verdict(meta: &ObjectMeta, now: jiff::Timestamp) -> Option<Verdict> {
    let window = BreakGlass::of(meta)?;
    if let Some(until) = window.open_until(now) {
        return Some(Verdict::Hold(until));
    }
    if !window.created {
        return Some(Verdict::Release);
    }
    Some(
        if gitwarden_shared::names::prune_disabled(meta.annotations.as_ref()) {
            Verdict::KeepPruneDisabled
        } else {
            Verdict::Delete
        },
    )
}

/// Where the sweep looks and what it leaves to others.
pub(crate) struct SweepScope<'a> {
    /// The revision plus the inventory: what git contains, or what prune
    /// is responsible for. Never touched by the sweep.
    pub in_git: &'a HashSet<ObjectRef>,
    /// The namespaces the revision has objects in (or declares): namespaced
    /// objects elsewhere belong to no git this agent reads, and are left to
    /// the agent whose revision has that namespace. Cluster-scoped objects
    /// are always swept.
    pub namespaces: &'a HashSet<String>,
}

impl SweepScope<'_> {
    fn covers(&self, object: &ObjectRef) -> bool {
        !self.in_git.contains(object)
            && object
                .namespace
                .as_ref()
                .is_none_or(|ns| self.namespaces.contains(ns))
    }
}

/// Finds every object labelled `gitwarden.io/break-glass` across the kinds
/// the API server lets the agent list, patch and delete, and handles those
/// in `scope`. One metadata-only list per kind across all namespaces, with
/// bounded concurrency; a kind the agent may not list (403), or that does
/// not support it (404/405), is skipped with a debug log.
pub(crate) async fn sweep(
    ctx: &SyncContext,
    client: &Client,
    discovery: &Discovery,
    scope: &SweepScope<'_>,
    now: jiff::Timestamp,
) -> SweepOutcome {
    let kinds = discovery.listable_kinds();
    let span = info_span!("break_glass_list", kinds = kinds.len());
    let found: Vec<(Resolved, Vec<ObjectMeta>)> = futures::stream::iter(kinds)
        .map(|resolved| async move {
            let labelled = list_labelled(client, &resolved).await;
            (resolved, labelled)
        })
        .buffer_unordered(ctx.concurrency)
        .collect()
        .instrument(span)
        .await;
    let mut outcome = SweepOutcome::default();
    for (resolved, metas) in found {
        for meta in metas {
            let Some(name) = meta.name.clone() else {
                continue;
            };
            let gvk = GroupVersionKind::gvk(
                &resolved.resource.group,
                &resolved.resource.version,
                &resolved.resource.kind,
            );
            let object = ObjectRef::new(&gvk, meta.namespace.as_deref(), &name);
            if !scope.covers(&object) {
                continue;
            }
            let Some(verdict) = verdict(&meta, now) else {
                continue;
            };
            let api = resolved.api(client.clone(), meta.namespace.as_deref());
            match verdict {
                Verdict::Hold(until) => {
                    info!(%object, %until, "left alone: created or changed under an open break-glass window");
                    outcome.held.push(Held {
                        object,
                        until,
                        in_git: false,
                    });
                }
                Verdict::KeepPruneDisabled => outcome.kept.push(Kept {
                    object,
                    cause: KeepCause::PruneDisabled,
                    reason: format!(
                        "created under break-glass, not in git; {PRUNE}: {PRUNE_DISABLED}"
                    ),
                }),
                Verdict::Delete => {
                    ctx.count_writes(1);
                    match api.delete(&name, &DeleteParams::background()).await {
                        Ok(_) => {
                            info!(%object, "deleted: created under break-glass, not in git, window closed");
                            outcome.deleted.push(object);
                        }
                        Err(kube::Error::Api(status)) if status.code == 404 => {}
                        Err(error) => {
                            let reason = format!("delete failed: {}", message(&error));
                            warn!(%object, %reason, "could not delete an object created under break-glass");
                            outcome.kept.push(Kept {
                                object,
                                cause: KeepCause::Failed,
                                reason,
                            });
                        }
                    }
                }
                Verdict::Release => {
                    let label_only = BreakGlass {
                        keys: Vec::new(),
                        until: None,
                        label: true,
                        created: false,
                    };
                    ctx.count_writes(1);
                    let (cause, reason) = match remove_stamps(&api, &name, &label_only).await {
                        Ok(()) => (
                            KeepCause::PredatesBreakGlass,
                            "changed under break-glass, not created by it, and not in git: left in place, label removed".to_owned(),
                        ),
                        Err(error) => (
                            KeepCause::Failed,
                            format!("removing the break-glass label failed: {}", message(&error)),
                        ),
                    };
                    info!(%object, %reason, "break-glass window closed on an object outside git");
                    outcome.kept.push(Kept {
                        object,
                        cause,
                        reason,
                    });
                }
            }
        }
    }
    outcome.held.sort_by(|a, b| a.object.cmp(&b.object));
    outcome.deleted.sort();
    outcome.kept.sort_by(|a, b| a.object.cmp(&b.object));
    outcome
}

/// The metadata of every object of one kind carrying the break-glass label
/// (any value), empty when the kind cannot be listed.
async fn list_labelled(client: &Client, resolved: &Resolved) -> Vec<ObjectMeta> {
    let api: kube::Api<DynamicObject> = kube::Api::all_with(client.clone(), &resolved.resource);
    match api
        .list_metadata(&ListParams::default().labels(BREAK_GLASS_LABEL))
        .await
    {
        Ok(list) => list.items.into_iter().map(|item| item.metadata).collect(),
        Err(kube::Error::Api(status)) if (403..=405).contains(&status.code) => {
            debug!(kind = %resolved.resource.kind, group = %resolved.resource.group, code = status.code, "break-glass sweep: kind not listable, skipped");
            Vec::new()
        }
        Err(error) => {
            warn!(kind = %resolved.resource.kind, group = %resolved.resource.group, error = %message(&error), "break-glass sweep: listing failed, kind skipped this sync");
            Vec::new()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW: &str = "2026-11-23T06:00:00Z";
    /// When the test window opened (the `-at` stamp).
    const AT: &str = "2026-11-23T05:50:00Z";
    const LABEL: (&str, &str) = ("gitwarden.io/break-glass", "created");

    fn now() -> jiff::Timestamp {
        NOW.parse().unwrap()
    }

    fn meta(annotations: &[(&str, &str)], labels: &[(&str, &str)]) -> ObjectMeta {
        let map = |pairs: &[(&str, &str)]| {
            (!pairs.is_empty()).then(|| {
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect()
            })
        };
        ObjectMeta {
            name: Some("hotfix".into()),
            annotations: map(annotations),
            labels: map(labels),
            ..Default::default()
        }
    }

    /// An object stamped with a window opened at [`AT`] and closing at
    /// `until`, labelled `gitwarden.io/break-glass=<label>`.
    fn stamped(until: &str, label: &str, extra: &[(&str, &str)]) -> ObjectMeta {
        let mut annotations = vec![
            ("gitwarden.io/break-glass", "INC-1"),
            ("gitwarden.io/break-glass-by", "carol"),
            ("gitwarden.io/break-glass-at", AT),
            ("gitwarden.io/break-glass-until", until),
        ];
        annotations.extend_from_slice(extra);
        meta(&annotations, &[(LABEL.0, label), ("app", "web")])
    }

    #[test]
    fn an_object_without_reason_or_label_is_no_break_glass() {
        assert_eq!(
            BreakGlass::of(&meta(&[("team", "shop")], &[("app", "web")])),
            None
        );
        assert_eq!(verdict(&meta(&[], &[]), now()), None);
    }

    #[test]
    fn an_open_window_is_held_until_its_end() {
        let m = stamped("2026-11-23T06:05:00Z", "created", &[]);
        assert_eq!(
            verdict(&m, now()),
            Some(Verdict::Hold("2026-11-23T06:05:00Z".parse().unwrap()))
        );
    }

    #[test]
    fn a_created_object_whose_window_closed_is_deleted_unless_prune_is_disabled() {
        let closed = stamped("2026-11-23T05:59:59Z", "created", &[]);
        assert_eq!(verdict(&closed, now()), Some(Verdict::Delete));
        let kept = stamped(
            "2026-11-23T05:59:59Z",
            "created",
            &[("gitwarden.io/prune", "disabled")],
        );
        assert_eq!(verdict(&kept, now()), Some(Verdict::KeepPruneDisabled));
    }

    #[test]
    fn an_object_that_existed_before_the_emergency_is_released_not_deleted() {
        let changed = stamped("2026-11-23T05:59:00Z", "changed", &[]);
        assert_eq!(verdict(&changed, now()), Some(Verdict::Release));
        for unknown in ["true", "", "Created"] {
            let m = stamped("2026-11-23T05:59:00Z", unknown, &[]);
            assert_eq!(verdict(&m, now()), Some(Verdict::Release), "{unknown:?}");
        }
    }

    #[test]
    fn a_missing_or_invalid_until_counts_as_closed() {
        let invalid = stamped("soon", "created", &[]);
        assert_eq!(verdict(&invalid, now()), Some(Verdict::Delete));
        let no_until = meta(
            &[
                ("gitwarden.io/break-glass", "INC-1"),
                ("gitwarden.io/break-glass-at", AT),
            ],
            &[LABEL],
        );
        assert_eq!(verdict(&no_until, now()), Some(Verdict::Delete));
    }

    #[test]
    fn a_created_label_alone_is_a_closed_window() {
        let label_only = meta(&[], &[LABEL]);
        assert_eq!(verdict(&label_only, now()), Some(Verdict::Delete));
    }

    #[test]
    fn a_label_without_reason_does_not_reopen_a_window_with_stale_stamps() {
        let stale = meta(
            &[
                ("gitwarden.io/break-glass-at", AT),
                ("gitwarden.io/break-glass-until", "2026-11-23T07:00:00Z"),
            ],
            &[LABEL],
        );
        assert_eq!(verdict(&stale, now()), Some(Verdict::Delete));
    }

    #[test]
    fn the_removal_patch_removes_every_stamp_and_the_label_with_escaped_paths() {
        let m = stamped("2026-11-23T05:00:00Z", "created", &[("team", "shop")]);
        let patch = BreakGlass::of(&m).unwrap().removal_patch().unwrap();
        assert_eq!(
            serde_json::to_value(&patch).unwrap(),
            serde_json::json!([
                {"op": "remove", "path": "/metadata/annotations/gitwarden.io~1break-glass"},
                {"op": "remove", "path": "/metadata/annotations/gitwarden.io~1break-glass-at"},
                {"op": "remove", "path": "/metadata/annotations/gitwarden.io~1break-glass-by"},
                {"op": "remove", "path": "/metadata/annotations/gitwarden.io~1break-glass-until"},
                {"op": "remove", "path": "/metadata/labels/gitwarden.io~1break-glass"},
            ])
        );
        let mut object = serde_json::json!({"metadata": {
            "annotations": m.annotations, "labels": m.labels,
        }});
        json_patch::patch(&mut object, &patch).unwrap();
        assert_eq!(
            object["metadata"]["annotations"],
            serde_json::json!({"team": "shop"})
        );
        assert_eq!(
            object["metadata"]["labels"],
            serde_json::json!({"app": "web"})
        );
    }

    #[test]
    fn a_window_without_a_label_removes_only_the_stamps() {
        let m = meta(
            &[
                ("gitwarden.io/break-glass", "INC-1"),
                ("gitwarden.io/break-glass-until", "2026-11-23T05:00:00Z"),
            ],
            &[],
        );
        let patch = BreakGlass::of(&m).unwrap().removal_patch().unwrap();
        assert_eq!(
            serde_json::to_value(&patch)
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn the_sweep_covers_objects_outside_git_in_the_revisions_namespaces_and_cluster_scoped_ones() {
        let cm = |ns: &str, name: &str| {
            ObjectRef::new(
                &GroupVersionKind::gvk("", "v1", "ConfigMap"),
                Some(ns),
                name,
            )
        };
        let in_git: HashSet<ObjectRef> = [cm("shop", "settings")].into();
        let namespaces: HashSet<String> = ["shop".to_owned()].into();
        let scope = SweepScope {
            in_git: &in_git,
            namespaces: &namespaces,
        };
        assert!(scope.covers(&cm("shop", "hotfix")));
        assert!(
            !scope.covers(&cm("shop", "settings")),
            "git's: reverted, not swept"
        );
        assert!(
            !scope.covers(&cm("other-team", "hotfix")),
            "another agent's namespace"
        );
        let cluster_role = ObjectRef::new(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "ClusterRole"),
            None,
            "hotfix",
        );
        assert!(scope.covers(&cluster_role));
    }
}
