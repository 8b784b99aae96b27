//! Drift: a change to a managed object by anyone but gitwarden.
//!
//! While the agent leads, one metadata-only watch per managed kind (label
//! `app.kubernetes.io/managed-by=gitwarden`) wakes the sync loop when such an
//! object changes or disappears; the resync re-applies only what differs.
//! [`DriftFilter`] keeps controllers' status updates from counting. It is our
//! own rather than kube-runtime's `predicate_filter`: that one passes only
//! applied objects (a deletion is drift too) and would forget an object's
//! fingerprint on a re-list differently from what the loop needs.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt;
use kube::api::{Api, DynamicObject, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;

use gitwarden_agent::admission_chain::GitObjects;
use gitwarden_manifests::ObjectRef;
use kube::core::GroupVersionKind;

/// The kinds of the objects gitwarden manages: (group, version, kind).
pub(crate) fn managed_kinds(
    report: &gitwarden_apply::SyncReport,
) -> BTreeSet<(String, String, String)> {
    report
        .applied
        .iter()
        .map(|o| {
            (
                o.object.group.clone(),
                o.object.version.clone(),
                o.object.kind.clone(),
            )
        })
        .collect()
}

/// Watches one kind's managed objects (label `app.kubernetes.io/managed-by=gitwarden`)
/// and signals drift on every change after the initial list that
/// [`DriftFilter`] lets through: status-only updates by controllers are not
/// drift, and neither is a change to an object this agent's git does not
/// hold (another gitwarden's, or one carrying the label by hand), once git
/// is known. gitwarden's own applies also produce events; the resync they
/// trigger finds nothing to do and sends no writes, so the loop settles.
pub(crate) async fn watch_drift(
    client: kube::Client,
    resource: kube::discovery::ApiResource,
    drift: Arc<Notify>,
    git: tokio::sync::watch::Receiver<Option<Arc<GitObjects>>>,
) {
    let gvk = GroupVersionKind::gvk(&resource.group, &resource.version, &resource.kind);
    let ours = |meta: &kube::core::ObjectMeta| {
        let object = ObjectRef::new(
            &gvk,
            meta.namespace.as_deref(),
            meta.name.as_deref().unwrap_or_default(),
        );
        git.borrow()
            .as_ref()
            .is_none_or(|git| git.contains(&object))
    };
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &resource);
    let selector = format!(
        "{}={}",
        gitwarden_shared::names::MANAGED_BY_LABEL,
        gitwarden_shared::names::MANAGED_BY_VALUE
    );
    let mut events = watcher(api, watcher::Config::default().labels(&selector))
        .default_backoff()
        .boxed();
    let mut initial = true;
    let mut filter = DriftFilter::default();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::InitDone) => initial = false,
            Ok(watcher::Event::Init) => filter.clear(),
            Ok(watcher::Event::InitApply(object)) => {
                filter.changed(&object.metadata);
            }
            Ok(watcher::Event::Apply(object)) => {
                if filter.changed(&object.metadata) && !initial && ours(&object.metadata) {
                    drift.notify_one()
                }
            }
            Ok(watcher::Event::Delete(object)) => {
                filter.deleted(&object.metadata);
                if !initial && ours(&object.metadata) {
                    drift.notify_one()
                }
            }
            Err(e) => {
                tracing::debug!(kind = %resource.kind, error = %e, "drift watch interrupted; retrying")
            }
        }
    }
}

/// Remembers, per watched object, what of it can be drift, so that updates
/// that change nothing gitwarden applies are not mistaken for drift.
///
/// An object with `metadata.generation` (Deployments, custom resources with a
/// status subresource, …) only changes its spec when the generation moves;
/// a status update by its controller keeps the generation. So such an update
/// is drift only if the generation, the labels or the annotations changed.
/// Objects without a generation (ConfigMaps, Secrets, …) have no status to
/// update: every change counts, as before.
#[derive(Debug, Default)]
struct DriftFilter {
    seen: std::collections::HashMap<String, u64>,
}

impl DriftFilter {
    /// Whether this version of the object may be drift, remembering it.
    fn changed(&mut self, meta: &kube::core::ObjectMeta) -> bool {
        let key = Self::key(meta);
        let Some(fingerprint) = Self::fingerprint(meta) else {
            self.seen.remove(&key);
            return true;
        };
        self.seen.insert(key, fingerprint) != Some(fingerprint)
    }

    /// Forgets a deleted object.
    fn deleted(&mut self, meta: &kube::core::ObjectMeta) {
        self.seen.remove(&Self::key(meta));
    }

    /// Forgets everything (a re-list starts).
    fn clear(&mut self) {
        self.seen.clear();
    }

    fn key(meta: &kube::core::ObjectMeta) -> String {
        match &meta.uid {
            Some(uid) => uid.clone(),
            None => format!(
                "{}/{}",
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default()
            ),
        }
    }

    /// A digest of the generation, labels and annotations; `None` for an
    /// object without a generation.
    fn fingerprint(meta: &kube::core::ObjectMeta) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        let generation = meta.generation?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        generation.hash(&mut hasher);
        meta.labels.hash(&mut hasher);
        meta.annotations.hash(&mut hasher);
        Some(hasher.finish())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kube::core::ObjectMeta;

    fn deployment(generation: i64, replicas_label: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some("web".into()),
            namespace: Some("shop".into()),
            uid: Some("u-1".into()),
            generation: Some(generation),
            resource_version: Some(format!("{generation}{replicas_label}")),
            labels: Some([("tier".to_owned(), replicas_label.to_owned())].into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_status_only_update_of_an_object_with_a_generation_is_not_drift() {
        let mut filter = DriftFilter::default();
        assert!(filter.changed(&deployment(1, "web")), "first sight");
        let mut status_update = deployment(1, "web");
        status_update.resource_version = Some("99".into());
        status_update.managed_fields = Some(vec![Default::default()]);
        assert!(!filter.changed(&status_update));
    }

    #[test]
    fn a_new_generation_or_changed_labels_or_annotations_are_drift() {
        let mut filter = DriftFilter::default();
        filter.changed(&deployment(1, "web"));
        assert!(filter.changed(&deployment(2, "web")), "spec changed");
        assert!(filter.changed(&deployment(2, "db")), "label changed");
        let mut annotated = deployment(2, "db");
        annotated.annotations =
            Some([("gitwarden.io/break-glass".to_owned(), "INC".to_owned())].into());
        assert!(filter.changed(&annotated), "annotation added");
        assert!(!filter.changed(&annotated), "same again");
    }

    #[test]
    fn every_update_of_an_object_without_a_generation_is_drift() {
        let mut filter = DriftFilter::default();
        let mut config_map = deployment(1, "web");
        config_map.generation = None;
        assert!(filter.changed(&config_map));
        assert!(filter.changed(&config_map));
    }

    #[test]
    fn a_deleted_and_recreated_object_is_drift_again() {
        let mut filter = DriftFilter::default();
        filter.changed(&deployment(1, "web"));
        filter.deleted(&deployment(1, "web"));
        assert!(filter.changed(&deployment(1, "web")));
    }
}
