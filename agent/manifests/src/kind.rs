//! Kinds and their scope: which API groups are built in, which kind is a
//! CustomResourceDefinition, and whether a kind's objects live in a namespace.
//!
//! A leaf: it knows group and kind names only, no manifest.

use kube::core::GroupVersionKind;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The API group of CustomResourceDefinitions.
pub(crate) const CRD_GROUP: &str = "apiextensions.k8s.io";
/// The kind of CustomResourceDefinitions.
pub(crate) const CRD_KIND: &str = "CustomResourceDefinition";

/// Whether a group and kind are CustomResourceDefinition's.
pub(crate) fn is_crd(group: &str, kind: &str) -> bool {
    group == CRD_GROUP && kind == CRD_KIND
}

/// The API groups built into Kubernetes (not served by CRDs). Shared by
/// validation (naming rules) and the ordering, which places every other
/// group's kinds with custom resources.
pub(crate) const BUILTIN_GROUPS: &[&str] = &[
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "extensions",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "storagemigration.k8s.io",
];

/// Whether `group` is one of Kubernetes' built-in API groups.
pub(crate) fn is_builtin_group(group: &str) -> bool {
    BUILTIN_GROUPS.contains(&group)
}

/// Whether objects of a kind live in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Objects live in a namespace (ConfigMap, Deployment).
    Namespaced,
    /// Objects are cluster-wide (Namespace, ClusterRole, CRDs).
    Cluster,
}

/// Where the scope of a kind comes from: the agent implements it from API
/// discovery, tests with a map.
///
/// Discovery is the only authority on built-in and already-installed kinds;
/// keeping it behind a trait keeps this crate free of any cluster access.
pub trait ScopeLookup {
    /// The scope of `gvk` (exact group, version and kind), or `None` when the
    /// cluster does not serve it.
    fn scope(&self, gvk: &GroupVersionKind) -> Option<Scope>;
}

impl ScopeLookup for HashMap<GroupVersionKind, Scope> {
    fn scope(&self, gvk: &GroupVersionKind) -> Option<Scope> {
        self.get(gvk).copied()
    }
}
