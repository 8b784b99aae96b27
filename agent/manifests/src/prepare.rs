//! The body gitwarden server-side-applies for a manifest.
//!
//! Server-side apply with the same body is a no-op on the server (no new
//! resourceVersion, no watch event), which is what makes an unchanged resync
//! write nothing. So the body must be a function of the manifest alone:
//! nothing per revision, per sync or per time goes in.

use crate::manifest::Manifest;
use gitwarden_shared::names::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use serde_json::{Map, Value};

/// Metadata the API server populates; written in git (a `kubectl get -o
/// yaml` dump, say) it would make apply fail (`uid`, `resourceVersion`
/// conflicts) or fight the server on every sync.
const SERVER_METADATA: &[&str] = &[
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "managedFields",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// The object as it will be server-side-applied.
///
/// Adds the label `app.kubernetes.io/managed-by: gitwarden` (the webhook
/// protects objects carrying it; a different value written in git, such as
/// `Helm`, is overwritten), sets `metadata.namespace` to the resolved one
/// (removing it for cluster-scoped objects), and drops `status` and the
/// server-populated metadata. There is deliberately no revision parameter: a
/// per-revision annotation would make every commit rewrite every object.
pub fn prepare_for_apply(manifest: &Manifest) -> Value {
    let mut body = Map::new();
    body.insert(
        "apiVersion".to_owned(),
        Value::String(manifest.object_ref().api_version()),
    );
    body.insert("kind".to_owned(), Value::String(manifest.gvk.kind.clone()));
    for (key, value) in manifest.content() {
        if !matches!(key.as_str(), "apiVersion" | "kind" | "metadata" | "status") {
            body.insert(key, value);
        }
    }

    let mut metadata = match serde_json::to_value(&manifest.metadata) {
        Ok(Value::Object(metadata)) => metadata,
        // ObjectMeta always serialises to a JSON object; keep the essentials
        // rather than fail if that ever changes.
        _ => Map::new(),
    };
    for field in SERVER_METADATA {
        metadata.remove(*field);
    }
    metadata.insert("name".to_owned(), Value::String(manifest.name.clone()));
    match &manifest.namespace {
        Some(namespace) => {
            metadata.insert("namespace".to_owned(), Value::String(namespace.clone()));
        }
        None => {
            metadata.remove("namespace");
        }
    }
    let labels = metadata
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if !labels.is_object() {
        *labels = Value::Object(Map::new());
    }
    if let Value::Object(labels) = labels {
        labels.insert(
            MANAGED_BY_LABEL.to_owned(),
            Value::String(MANAGED_BY_VALUE.to_owned()),
        );
    }
    body.insert("metadata".to_owned(), Value::Object(metadata));
    Value::Object(body)
}
