use super::load_ok;
use crate::{Scope, ScopeLookup, prepare_for_apply};
use kube::core::GroupVersionKind;
use serde_json::json;
use std::collections::HashMap;

const FROM_CLUSTER: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
    app.kubernetes.io/managed-by: Helm
  annotations:
    note: kept
  resourceVersion: \"123\"
  uid: 0b6f9c1e-0000-0000-0000-000000000000
  creationTimestamp: \"2024-01-01T00:00:00Z\"
  generation: 4
  managedFields: []
spec:
  replicas: 2
status:
  readyReplicas: 2
";

fn resolved(text: &str) -> crate::ResolvedSet {
    let set = load_ok(&[("d.yaml", text)]);
    let scopes: HashMap<GroupVersionKind, Scope> = [
        (
            GroupVersionKind::gvk("apps", "v1", "Deployment"),
            Scope::Namespaced,
        ),
        (GroupVersionKind::gvk("", "v1", "Namespace"), Scope::Cluster),
    ]
    .into();
    let scopes: &dyn ScopeLookup = &scopes;
    set.resolve_namespaces(scopes, "team-a").unwrap()
}

#[test]
fn prepare_for_apply_adds_the_label_sets_the_namespace_and_strips_server_fields() {
    let set = resolved(FROM_CLUSTER);
    let body = prepare_for_apply(&set.manifests()[0]);
    assert_eq!(
        body,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "team-a",
                "labels": {"app": "web", "app.kubernetes.io/managed-by": "gitwarden"},
                "annotations": {"note": "kept"}
            },
            "spec": {"replicas": 2}
        })
    );
}

#[test]
fn prepare_for_apply_adds_nothing_but_the_label() {
    let set = resolved(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: x\nspec: {}\n",
    );
    let body = prepare_for_apply(&set.manifests()[0]);
    let metadata = body["metadata"].as_object().unwrap();
    let mut keys: Vec<&str> = metadata.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["labels", "name", "namespace"]);
    assert_eq!(body["metadata"]["labels"].as_object().unwrap().len(), 1);
    assert!(body.get("status").is_none());
    // A function of the manifest alone: the same body every time.
    assert_eq!(
        serde_json::to_string(&body).unwrap(),
        serde_json::to_string(&prepare_for_apply(&set.manifests()[0])).unwrap()
    );
}

#[test]
fn prepare_for_apply_leaves_cluster_scoped_objects_without_namespace() {
    let set = resolved("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n");
    let body = prepare_for_apply(&set.manifests()[0]);
    assert!(body["metadata"].get("namespace").is_none());
    assert_eq!(
        body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "gitwarden"
    );
}
