//! Decoding an AdmissionReview body into what the decision reads, and no more.
//!
//! The API server sends the whole object and the whole old object (spec,
//! status, managed fields: often tens of kilobytes), but the decision only
//! looks at the envelope (uid, kind, resource, operation, user, dry-run) and
//! at each object's name, generateName, namespace, labels and annotations.
//! Decoding the full review into `AdmissionReview<DynamicObject>` builds a
//! JSON tree of everything, twice over (serde buffers `#[serde(flatten)]`
//! content before decoding it), and was the largest cost on the allow path.
//! Here everything else is skipped with [`IgnoredAny`], which only scans it.
//!
//! A field given twice in one object (`"annotations"` twice in `metadata`,
//! say) is refused, where kube's decoder keeps the last copy: the API
//! server never sends one, and two parsers that pick different copies are a
//! classic way around an admission check. (Found by the `admission_review`
//! fuzz target.)
//!
//! The result is still a kube [`AdmissionRequest<DynamicObject>`], so the
//! shared decision function is used unchanged; its objects carry metadata
//! and the three top-level fields the side-door rules read: `spec` (the pod
//! spec of Pods and workloads), `type` (legacy token Secrets) and `subjects`
//! (RBAC bindings that grant gitwarden). Objects without them (ConfigMaps,
//! the bulk of the allow path) cost nothing more. Anything that needs more
//! of the object must add the field here.

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::UserInfo;
use kube::core::admission::{AdmissionRequest, Operation};
use kube::core::{DynamicObject, GroupVersionKind, GroupVersionResource, ObjectMeta, TypeMeta};
use serde::Deserialize;
use serde::de::IgnoredAny;

/// Why a body is not an AdmissionReview that can be answered.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body is not JSON, or not shaped like an AdmissionReview.
    #[error("body is not an AdmissionReview")]
    Malformed(#[from] serde_json::Error),
    /// The review has no `request` (it may be a response).
    #[error("AdmissionReview has no request")]
    NoRequest,
}

/// Decodes an AdmissionReview body into its request, keeping only the
/// fields the decision, the audit record and the response use.
///
/// Accepts what `serde_json::from_slice::<AdmissionReview<DynamicObject>>`
/// accepts for the fields it keeps (required `apiVersion`, `kind`, `uid`,
/// `kind`, `resource`, `operation`, `userInfo`); the skipped parts must
/// only be well-formed JSON.
pub fn admission_request(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, DecodeError> {
    let review: LeanReview = serde_json::from_slice(body)?;
    let request = review.request.ok_or(DecodeError::NoRequest)?;
    Ok(AdmissionRequest {
        types: TypeMeta {
            api_version: review.api_version,
            kind: review.kind,
        },
        uid: request.uid,
        kind: request.kind,
        resource: request.resource,
        sub_resource: request.sub_resource,
        request_kind: request.request_kind,
        request_resource: request.request_resource,
        request_sub_resource: request.request_sub_resource,
        name: request.name,
        namespace: request.namespace,
        operation: request.operation,
        user_info: request.user_info,
        object: request.object.map(LeanObject::into_dynamic),
        old_object: request.old_object.map(LeanObject::into_dynamic),
        dry_run: request.dry_run,
        // The decision never reads the operation's options (CreateOptions,
        // UpdateOptions, ...); they are skipped.
        options: None,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanReview {
    api_version: String,
    kind: String,
    #[serde(default)]
    request: Option<LeanRequest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanRequest {
    uid: String,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    request_kind: Option<GroupVersionKind>,
    #[serde(default)]
    request_resource: Option<GroupVersionResource>,
    #[serde(default)]
    request_sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    user_info: UserInfo,
    #[serde(default)]
    object: Option<LeanObject>,
    #[serde(default)]
    old_object: Option<LeanObject>,
    #[serde(default)]
    dry_run: bool,
}

/// An object reduced to its [`LeanMeta`] and the fields the decision reads;
/// `apiVersion`, `kind` (the request's `kind` says the same), status and
/// every other field are scanned and dropped.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanObject {
    #[serde(default)]
    metadata: Option<LeanMeta>,
    #[serde(default)]
    spec: Option<serde_json::Value>,
    #[serde(default, rename = "type")]
    secret_type: Option<serde_json::Value>,
    #[serde(default)]
    subjects: Option<serde_json::Value>,
}

/// The metadata the decision reads. `managedFields`, often the largest part
/// of an object, is skipped.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    generate_name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    // Unknown fields are ignored by serde's default; naming the big one
    // documents that it is skipped on purpose.
    #[serde(default, rename = "managedFields")]
    _managed_fields: Option<IgnoredAny>,
}

impl LeanObject {
    fn into_dynamic(self) -> DynamicObject {
        let metadata = self
            .metadata
            .map_or_else(ObjectMeta::default, |m| ObjectMeta {
                name: m.name,
                generate_name: m.generate_name,
                namespace: m.namespace,
                labels: m.labels,
                annotations: m.annotations,
                ..ObjectMeta::default()
            });
        let mut data = serde_json::Map::new();
        for (key, value) in [
            ("spec", self.spec),
            ("type", self.secret_type),
            ("subjects", self.subjects),
        ] {
            if let Some(value) = value {
                data.insert(key.to_owned(), value);
            }
        }
        DynamicObject {
            types: None,
            metadata,
            data: serde_json::Value::Object(data),
        }
    }
}

#[cfg(test)]
mod tests;
