//! The order to apply a revision in, and to prune in.
//!
//! Objects depend on others existing first: custom resources on their CRD,
//! everything namespaced on its Namespace, pods on their ServiceAccount,
//! quota and limits; admission webhooks would intercept writes of the very
//! objects that run them. Like Helm, Argo CD and Flux, gitwarden applies in
//! phases by kind; the agent finishes a phase (and waits for CRDs to be
//! Established) before starting the next, and may apply a phase's objects
//! concurrently. Pruning runs the same order backwards.

use crate::crd::CrdInfo;
use crate::kind::{is_builtin_group, is_crd};
use crate::manifest::Manifest;
use crate::object_ref::ObjectRef;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::HashSet;

/// An apply phase, in apply order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// CustomResourceDefinitions: the agent waits for them to be Established
    /// before any later phase, which may hold their custom resources.
    CustomResourceDefinitions,
    /// Namespaces, which everything namespaced needs.
    Namespaces,
    /// Policy, identity, configuration, storage, RBAC and Services: what
    /// workloads use (a LimitRange only defaults pods created after it).
    Setup,
    /// Pods and their controllers, autoscalers and Ingresses.
    Workloads,
    /// Admission webhooks, admission policies and API services: last among
    /// built-ins, so they cannot intercept the writes that start the servers
    /// they point at.
    Webhooks,
    /// Custom resources: kinds defined by a CRD of the revision, or by any
    /// group that is not built into Kubernetes.
    CustomResources,
}

/// Built-in kinds of the setup phase, in apply order. Built-in kinds not
/// listed anywhere go at the end of this phase.
const SETUP_ORDER: &[&str] = &[
    "PriorityClass",
    "RuntimeClass",
    "StorageClass",
    "CSIDriver",
    "IngressClass",
    "ResourceQuota",
    "LimitRange",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "Endpoints",
    "EndpointSlice",
];

/// Built-in kinds of the workload phase, in apply order.
const WORKLOAD_ORDER: &[&str] = &[
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "HorizontalPodAutoscaler",
    "Ingress",
];

/// Built-in kinds of the webhook phase, in apply order.
const WEBHOOK_ORDER: &[&str] = &[
    "APIService",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// The phase of a kind and its rank within the phase.
///
/// `defined_in_revision` says a CRD of the revision defines the kind, which
/// makes it a custom resource whatever its group.
fn classify(group: &str, kind: &str, defined_in_revision: bool) -> (Phase, usize) {
    if is_crd(group, kind) {
        return (Phase::CustomResourceDefinitions, 0);
    }
    if defined_in_revision || !is_builtin_group(group) {
        return (Phase::CustomResources, 0);
    }
    if group.is_empty() && kind == "Namespace" {
        return (Phase::Namespaces, 0);
    }
    let rank = |table: &[&str]| table.iter().position(|k| *k == kind);
    if let Some(rank) = rank(WORKLOAD_ORDER) {
        (Phase::Workloads, rank)
    } else if let Some(rank) = rank(WEBHOOK_ORDER) {
        (Phase::Webhooks, rank)
    } else {
        (Phase::Setup, rank(SETUP_ORDER).unwrap_or(SETUP_ORDER.len()))
    }
}

/// The phase an object of this kind is applied in (without the revision's
/// CRDs: a kind of a non-built-in group is a custom resource anyway).
pub fn phase_of(group: &str, kind: &str) -> Phase {
    classify(group, kind, false).0
}

/// The deterministic order within a phase: kind rank, then group, kind,
/// namespace (cluster-scoped first) and name.
fn compare(a: (usize, &ObjectRef), b: (usize, &ObjectRef)) -> Ordering {
    a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1))
}

/// `manifests` grouped by [`Phase`], in apply order, empty phases left out;
/// each phase sorted deterministically (kind rank, group, kind, namespace,
/// name). `crds` are the revision's CRDs, whose kinds are custom resources
/// whatever their group.
pub(crate) fn apply_phases(
    manifests: &[Manifest],
    crds: Vec<CrdInfo>,
) -> Vec<(Phase, Vec<&Manifest>)> {
    let crd_kinds: HashSet<(String, String)> =
        crds.into_iter().map(|crd| (crd.group, crd.kind)).collect();
    let mut keyed: Vec<((Phase, usize), ObjectRef, &Manifest)> = manifests
        .iter()
        .map(|manifest| {
            let defined =
                crd_kinds.contains(&(manifest.gvk.group.clone(), manifest.gvk.kind.clone()));
            let class = classify(&manifest.gvk.group, &manifest.gvk.kind, defined);
            (class, manifest.object_ref(), manifest)
        })
        .collect();
    keyed.sort_by(|a, b| {
        a.0.0
            .cmp(&b.0.0)
            .then_with(|| compare((a.0.1, &a.1), (b.0.1, &b.1)))
    });
    let mut phases: Vec<(Phase, Vec<&Manifest>)> = Vec::new();
    for ((phase, _), _, manifest) in keyed {
        match phases.last_mut() {
            Some((last, manifests)) if *last == phase => manifests.push(manifest),
            _ => phases.push((phase, vec![manifest])),
        }
    }
    phases
}

/// The order to prune objects that left git: the apply order reversed
/// (custom resources first, CRDs and Namespaces last), in phases, each
/// reversed too.
///
/// Works on identities alone, since what is pruned is no longer in git.
pub fn prune_order<'a>(
    objects: impl IntoIterator<Item = &'a ObjectRef>,
) -> Vec<Vec<&'a ObjectRef>> {
    let mut keyed: Vec<((Phase, usize), &ObjectRef)> = objects
        .into_iter()
        .map(|object| (classify(&object.group, &object.kind, false), object))
        .collect();
    keyed.sort_by(|a, b| {
        b.0.0
            .cmp(&a.0.0)
            .then_with(|| compare((b.0.1, b.1), (a.0.1, a.1)))
    });
    let mut phases: Vec<(Phase, Vec<&ObjectRef>)> = Vec::new();
    for ((phase, _), object) in keyed {
        match phases.last_mut() {
            Some((last, objects)) if *last == phase => objects.push(object),
            _ => phases.push((phase, vec![object])),
        }
    }
    phases.into_iter().map(|(_, objects)| objects).collect()
}
