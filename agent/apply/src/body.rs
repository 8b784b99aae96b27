//! The body sent for one manifest, kept compact for the whole sync.

use crate::fingerprint::hash_json;
use gitwarden_manifests::{Manifest, prepare_for_apply};
use serde_json::value::RawValue;

/// The serialised apply body of a manifest and its hash.
///
/// A sync holds one body per object from planning to the inventory write.
/// As a `serde_json::Value` tree a small ConfigMap's body takes about 2.9 KB
/// of heap; as the JSON text it is sent as, about 450 bytes. At 5,000
/// objects that difference is most of the agent's memory, so the tree is
/// built, serialised once and dropped. The hash is taken of exactly the
/// bytes sent, which are what [`crate::manifest_hash`] hashes.
#[derive(Debug)]
pub(crate) struct ApplyBody {
    json: Box<RawValue>,
    hash: String,
}

impl ApplyBody {
    /// Prepares ([`prepare_for_apply`]) and serialises the manifest's body.
    pub(crate) fn new(manifest: &Manifest) -> Self {
        let json = serde_json::value::to_raw_value(&prepare_for_apply(manifest))
            // A Value with string keys always serialises; keep an empty
            // object (refused by the dry-run with a clear message) rather
            // than panic if that ever changes.
            .unwrap_or_else(|_| RawValue::from_string("{}".to_owned()).unwrap_or_default());
        let hash = hash_json(json.get().as_bytes());
        Self { json, hash }
    }

    /// The JSON to send, for `Patch::Apply`.
    pub(crate) fn json(&self) -> &RawValue {
        &self.json
    }

    /// The SHA-256 (hex) recorded in the inventory.
    pub(crate) fn hash(&self) -> &str {
        &self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitwarden_manifests::{ManifestFile, load};

    fn manifest() -> Manifest {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: n\ndata:\n  k: v\n";
        let file = ManifestFile {
            path: "a.yaml",
            content: text.as_bytes(),
        };
        let mut set = load(&[file]).expect("valid manifest");
        set.manifests.remove(0)
    }

    #[test]
    fn the_body_is_the_prepared_manifest_and_its_hash_matches_manifest_hash() {
        let manifest = manifest();
        let body = ApplyBody::new(&manifest);
        let tree = prepare_for_apply(&manifest);
        let sent: serde_json::Value = serde_json::from_str(body.json().get()).expect("JSON");
        assert_eq!(sent, tree);
        assert_eq!(body.hash(), crate::manifest_hash(&tree));
    }
}
