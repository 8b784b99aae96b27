//! What a person may run: the policy's side of confining exempt identities
//! and node access.
//!
//! An exempt identity (a controller's service account, the agent's) is only
//! as safe as the ways to obtain its token. Once a Pod runs as such a service
//! account, whoever can exec into it, or read its node, holds the identity; a
//! Pod that can reach its node (privileged, host namespaces, hostPath) hands
//! over every token on that node, the agent's included. So no Pod or workload
//! made by a person may run as an exempt identity, and none may reach its
//! node, in any namespace, `kube-system` included, unless named here. The
//! controllers that create Pods from templates are exempt identities
//! themselves and keep working; workloads from git are the agent's writes.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::identity::glob;
use crate::policy::NamespacePattern;

/// The built-in kinds (see [`PodTemplateKind::builtin`]).
static BUILTIN_KINDS: LazyLock<Vec<PodTemplateKind>> =
    LazyLock::new(PodTemplateKind::builtin_kinds);

/// The `workloads` section of the policy.
///
/// ```yaml
/// workloads:
///   extraKinds:
///     - {group: argoproj.io, resource: rollouts, podSpecPath: /spec/template/spec}
///   nodeAccessAllowed:
///     - {namespace: kube-system, name: "kube-proxy*"}
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WorkloadPolicy {
    /// Kinds beyond the built-in ones ([`PodTemplateKind::builtin`]) whose
    /// objects make Pods, with where their pod spec is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_kinds: Vec<PodTemplateKind>,
    /// Workloads and Pods a person may make although they reach their node
    /// (a CNI or CSI DaemonSet managed outside git). Empty by default.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_access_allowed: Vec<NamedObject>,
}

/// A kind whose objects make Pods, and the JSON pointer to its pod spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodTemplateKind {
    /// The API group; empty for the core group.
    #[serde(default)]
    pub group: String,
    /// The plural resource name.
    pub resource: String,
    /// Where the pod spec is in the object, as a JSON pointer
    /// (`/spec/template/spec`).
    pub pod_spec_path: String,
}

impl PodTemplateKind {
    fn new(group: &str, resource: &str, pod_spec_path: &str) -> Self {
        Self {
            group: group.to_owned(),
            resource: resource.to_owned(),
            pod_spec_path: pod_spec_path.to_owned(),
        }
    }

    /// Pods and the built-in workload kinds that make them, built once:
    /// every request the confinement step judges looks its kind up here.
    pub fn builtin() -> &'static [PodTemplateKind] {
        &BUILTIN_KINDS
    }

    fn builtin_kinds() -> Vec<PodTemplateKind> {
        const TEMPLATE: &str = "/spec/template/spec";
        vec![
            Self::new("", "pods", "/spec"),
            Self::new("", "replicationcontrollers", TEMPLATE),
            Self::new("apps", "deployments", TEMPLATE),
            Self::new("apps", "replicasets", TEMPLATE),
            Self::new("apps", "statefulsets", TEMPLATE),
            Self::new("apps", "daemonsets", TEMPLATE),
            Self::new("batch", "jobs", TEMPLATE),
            Self::new("batch", "cronjobs", "/spec/jobTemplate/spec/template/spec"),
        ]
    }
}

/// An object named by namespace and name (`*` patterns in both).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedObject {
    /// The namespace (or a `*` pattern).
    pub namespace: NamespacePattern,
    /// The object's name (or a `*` pattern).
    pub name: String,
}

impl NamedObject {
    /// Whether this names the object `namespace`/`name`.
    pub fn matches(&self, namespace: &str, name: &str) -> bool {
        self.namespace.matches(namespace) && glob::matches(&self.name, name)
    }
}

impl WorkloadPolicy {
    /// The pod-spec pointer for objects of `group`/`resource`, if they make
    /// Pods (built-in kinds first, then the policy's).
    pub fn pod_spec_path(&self, group: &str, resource: &str) -> Option<&str> {
        PodTemplateKind::builtin()
            .iter()
            .chain(&self.extra_kinds)
            .find(|kind| kind.group == group && kind.resource == resource)
            .map(|kind| kind.pod_spec_path.as_str())
    }

    /// The exception that lets `namespace`/`name` reach its node, if any.
    pub fn node_access_exception(&self, namespace: &str, name: &str) -> Option<&NamedObject> {
        self.node_access_allowed
            .iter()
            .find(|allowed| allowed.matches(namespace, name))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn builtin_kinds_name_where_their_pod_spec_is() {
        let policy = WorkloadPolicy::default();
        assert_eq!(policy.pod_spec_path("", "pods"), Some("/spec"));
        assert_eq!(
            policy.pod_spec_path("batch", "cronjobs"),
            Some("/spec/jobTemplate/spec/template/spec")
        );
        assert_eq!(policy.pod_spec_path("", "configmaps"), None);
    }

    #[test]
    fn extra_kinds_are_added_to_the_builtins() {
        let policy: WorkloadPolicy = serde_yaml_ng::from_str(
            "extraKinds: [{group: argoproj.io, resource: rollouts, podSpecPath: /spec/template/spec}]",
        )
        .unwrap();
        assert_eq!(
            policy.pod_spec_path("argoproj.io", "rollouts"),
            Some("/spec/template/spec")
        );
        assert!(policy.pod_spec_path("apps", "deployments").is_some());
    }

    #[test]
    fn node_access_exceptions_match_namespace_and_name_patterns() {
        let policy: WorkloadPolicy = serde_yaml_ng::from_str(
            "nodeAccessAllowed: [{namespace: kube-system, name: 'kube-proxy*'}]",
        )
        .unwrap();
        assert!(
            policy
                .node_access_exception("kube-system", "kube-proxy")
                .is_some()
        );
        assert!(
            policy
                .node_access_exception("kube-system", "kube-proxy-x2")
                .is_some()
        );
        assert!(
            policy
                .node_access_exception("default", "kube-proxy")
                .is_none()
        );
        assert!(
            policy
                .node_access_exception("kube-system", "debugger")
                .is_none()
        );
    }
}
