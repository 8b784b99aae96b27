//! Short, stable digests that tell whether an object needs a write.
//!
//! Two facts decide whether an apply can be skipped: git's desired state is
//! what was last applied (the manifest hash), and nobody changed the fields
//! gitwarden owns since (the live `resourceVersion`, or failing that the
//! digest of gitwarden's own `managedFields` entry, which controllers
//! writing `status` never touch).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The SHA-256 (hex) of the body gitwarden applies for a manifest.
///
/// `serde_json` serialises an object's keys in a fixed order, so the same
/// manifest always gives the same hash.
pub fn manifest_hash(body: &Value) -> String {
    hash_json(&serde_json::to_vec(body).unwrap_or_default())
}

/// The SHA-256 (hex) of a body already serialised the way
/// [`manifest_hash`] serialises it.
pub(crate) fn hash_json(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A digest of the fields `manager` owns through server-side apply, empty
/// when it owns none.
///
/// When anyone else changes a field gitwarden applied (kubectl edit, a
/// forced apply), the API server moves that field out of gitwarden's entry,
/// so this digest changes. A controller updating `status`, which bumps the
/// `resourceVersion` of Deployments and CRDs, leaves it alone: comparing it
/// avoids re-applying every object with a status on each resync.
pub fn fields_fingerprint(managed_fields: Option<&[ManagedFieldsEntry]>, manager: &str) -> String {
    let Some(entries) = managed_fields else {
        return String::new();
    };
    let mut hasher = Sha256::new();
    let mut found = false;
    for entry in entries {
        let is_ours = entry.manager.as_deref() == Some(manager)
            && entry.operation.as_deref() == Some("Apply")
            && entry.subresource.as_deref().unwrap_or("").is_empty();
        if !is_ours {
            continue;
        }
        found = true;
        hasher.update(entry.api_version.as_deref().unwrap_or("").as_bytes());
        hasher.update([0]);
        if let Some(fields) = &entry.fields_v1 {
            hasher.update(serde_json::to_vec(&fields.0).unwrap_or_default());
        }
        hasher.update([0]);
    }
    if !found {
        return String::new();
    }
    // 64 bits are plenty to notice a change to one object's field set.
    hex::encode(&hasher.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;
    use serde_json::json;

    fn entry(
        manager: &str,
        operation: &str,
        subresource: Option<&str>,
        fields: Value,
    ) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.to_owned()),
            operation: Some(operation.to_owned()),
            subresource: subresource.map(str::to_owned),
            api_version: Some("v1".to_owned()),
            fields_v1: Some(FieldsV1(fields)),
            ..ManagedFieldsEntry::default()
        }
    }

    #[test]
    fn hash_is_stable_and_sensitive() {
        let a = manifest_hash(&json!({"a": 1, "b": [1, 2]}));
        assert_eq!(a, manifest_hash(&json!({"b": [1, 2], "a": 1})));
        assert_ne!(a, manifest_hash(&json!({"a": 2, "b": [1, 2]})));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn fingerprint_ignores_other_managers_and_status() {
        let ours = entry("gitwarden", "Apply", None, json!({"f:data": {"f:a": {}}}));
        let base = fields_fingerprint(Some(std::slice::from_ref(&ours)), "gitwarden");
        assert!(!base.is_empty());
        let with_status = [
            ours.clone(),
            entry(
                "controller",
                "Update",
                Some("status"),
                json!({"f:status": {}}),
            ),
            entry(
                "gitwarden",
                "Update",
                Some("status"),
                json!({"f:status": {}}),
            ),
        ];
        assert_eq!(base, fields_fingerprint(Some(&with_status), "gitwarden"));
        let shrunk = entry("gitwarden", "Apply", None, json!({"f:data": {}}));
        assert_ne!(base, fields_fingerprint(Some(&[shrunk]), "gitwarden"));
        assert_eq!(fields_fingerprint(None, "gitwarden"), "");
        assert_eq!(fields_fingerprint(Some(&with_status[1..]), "gitwarden"), "");
    }
}
