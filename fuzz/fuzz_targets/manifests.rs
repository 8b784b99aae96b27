//! Bytes → the agent's manifest loading, as from a file of a git revision:
//! `load` (YAML or JSON, multi-document, Lists), then everything the agent
//! does with a loaded set before it talks to the cluster: namespace
//! resolution against a fixed discovery, apply phases, the apply body and
//! the prune order.
//!
//! The first byte picks the file name (`.yaml`, `.yml`, `.json` or a stray
//! extension); the rest is the file. Beyond "no panic", it checks that every
//! error points into the file, that every object reference survives its
//! inventory form (`Display` then `FromStr`), and that every apply body
//! carries gitwarden's managed-by label.

#![no_main]

use std::collections::HashMap;
use std::sync::LazyLock;

use gitwarden_manifests::{
    ManifestFile, ObjectRef, Scope, load, prepare_for_apply, prune_order,
};
use gitwarden_shared::names::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use kube::core::GroupVersionKind;
use libfuzzer_sys::fuzz_target;

static DISCOVERY: LazyLock<HashMap<GroupVersionKind, Scope>> = LazyLock::new(|| {
    [
        ("", "v1", "ConfigMap", Scope::Namespaced),
        ("", "v1", "Secret", Scope::Namespaced),
        ("", "v1", "Service", Scope::Namespaced),
        ("", "v1", "Namespace", Scope::Cluster),
        ("apps", "v1", "Deployment", Scope::Namespaced),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole", Scope::Cluster),
        ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", Scope::Cluster),
    ]
    .into_iter()
    .map(|(g, v, k, scope)| (GroupVersionKind::gvk(g, v, k), scope))
    .collect()
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, content)) = data.split_first() else {
        return;
    };
    let path = match selector % 4 {
        0 => "apps/web.yaml",
        1 => "apps/web.yml",
        2 => "apps/web.json",
        _ => "apps/README.md",
    };
    let files = [ManifestFile { path, content }];
    let set = match load(&files) {
        Ok(set) => set,
        Err(errors) => {
            assert!(!errors.is_empty(), "load failed without saying why");
            for error in &errors {
                assert_eq!(error.location.file, path);
                assert!(error.location.line >= 1, "line 0 in {error:?}");
            }
            let _ = errors.to_string();
            return;
        }
    };
    for reference in set.object_refs() {
        let text = reference.to_string();
        let parsed: ObjectRef = text
            .parse()
            .unwrap_or_else(|e| panic!("{text:?} does not parse back: {e}"));
        assert_eq!(parsed, reference, "{text:?}");
    }
    let Ok(set) = set.resolve_namespaces(&*DISCOVERY, "default") else {
        return;
    };
    for phase in set.apply_order() {
        for manifest in phase {
            let body = prepare_for_apply(manifest);
            assert_eq!(
                body["metadata"]["labels"][MANAGED_BY_LABEL].as_str(),
                Some(MANAGED_BY_VALUE),
                "apply body without the managed-by label"
            );
        }
    }
    let refs = set.object_refs();
    let pruned: usize = prune_order(refs.iter()).iter().map(Vec::len).sum();
    assert_eq!(pruned, refs.len(), "prune order lost or invented objects");
});
