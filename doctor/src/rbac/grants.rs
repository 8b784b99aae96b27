//! Who holds an escape hatch: the subjects of every binding whose role allows
//! one of the hatch's requests, with the path (binding → role) that grants it.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, PolicyRule, RoleBinding, Subject};

use crate::rbac::hatches::Hatch;
use crate::rbac::rule;

/// All RBAC objects of the cluster, read once, with aggregated ClusterRoles
/// resolved.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Effective rules of every ClusterRole, by name.
    pub cluster_roles: BTreeMap<String, Vec<PolicyRule>>,
    /// Rules of every Role, by (namespace, name).
    pub roles: BTreeMap<(String, String), Vec<PolicyRule>>,
    /// Every ClusterRoleBinding.
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
    /// Every RoleBinding.
    pub role_bindings: Vec<RoleBinding>,
}

/// An RBAC subject, ordered for stable output.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SubjectRef {
    /// A user name.
    User(String),
    /// A group name.
    Group(String),
    /// A service account: (namespace, name).
    ServiceAccount(String, String),
}

impl SubjectRef {
    /// The subject of a binding; a service account without a namespace takes
    /// the RoleBinding's namespace, as the authorizer does. `None` for an
    /// unknown kind (which grants nothing).
    fn from_subject(subject: &Subject, binding_namespace: Option<&str>) -> Option<SubjectRef> {
        match subject.kind.as_str() {
            "User" => Some(SubjectRef::User(subject.name.clone())),
            "Group" => Some(SubjectRef::Group(subject.name.clone())),
            "ServiceAccount" => {
                let namespace = subject.namespace.as_deref().or(binding_namespace)?;
                Some(SubjectRef::ServiceAccount(
                    namespace.to_string(),
                    subject.name.clone(),
                ))
            }
            _ => None,
        }
    }
}

impl fmt::Display for SubjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectRef::User(name) => write!(f, "User {name}"),
            SubjectRef::Group(name) => write!(f, "Group {name}"),
            SubjectRef::ServiceAccount(ns, name) => write!(f, "ServiceAccount {ns}/{name}"),
        }
    }
}

/// The subjects holding `hatch`, each with every binding → role path that
/// grants it. A ClusterRoleBinding grants everywhere; a RoleBinding grants
/// only namespaced requests in its own namespace.
pub fn holders(snapshot: &Snapshot, hatch: &Hatch) -> BTreeMap<SubjectRef, Vec<String>> {
    let mut out: BTreeMap<SubjectRef, Vec<String>> = BTreeMap::new();
    let mut grant = |subjects: &Option<Vec<Subject>>, ns: Option<&str>, via: String| {
        for subject in subjects.iter().flatten() {
            if let Some(s) = SubjectRef::from_subject(subject, ns) {
                let paths = out.entry(s).or_default();
                if !paths.contains(&via) {
                    paths.push(via.clone());
                }
            }
        }
    };
    for binding in &snapshot.cluster_role_bindings {
        let role = &binding.role_ref;
        if role.kind != "ClusterRole" {
            continue;
        }
        let rules = snapshot.cluster_roles.get(&role.name);
        let granted =
            rules.is_some_and(|rules| hatch.requests().any(|r| rule::any_allows(rules, &r)));
        if granted {
            grant(
                &binding.subjects,
                None,
                format!(
                    "ClusterRoleBinding {} → ClusterRole {}",
                    binding.metadata.name.as_deref().unwrap_or("?"),
                    role.name
                ),
            );
        }
    }
    for binding in &snapshot.role_bindings {
        let Some(ns) = binding.metadata.namespace.as_deref() else {
            continue;
        };
        let role = &binding.role_ref;
        let rules = match role.kind.as_str() {
            "Role" => snapshot.roles.get(&(ns.to_string(), role.name.clone())),
            "ClusterRole" => snapshot.cluster_roles.get(&role.name),
            _ => None,
        };
        let granted = rules.is_some_and(|rules| {
            hatch
                .requests()
                .filter(|r| r.namespace == Some(ns))
                .any(|r| rule::any_allows(rules, &r))
        });
        if granted {
            grant(
                &binding.subjects,
                Some(ns),
                format!(
                    "RoleBinding {ns}/{} → {} {}",
                    binding.metadata.name.as_deref().unwrap_or("?"),
                    role.kind,
                    role.name
                ),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::rbac::hatches::{Protected, all};

    fn hatch(id: &str) -> Hatch {
        all(&Protected::default())
            .into_iter()
            .find(|h| h.id == id)
            .unwrap()
    }

    fn rules(json: serde_json::Value) -> Vec<PolicyRule> {
        serde_json::from_value(json).unwrap()
    }

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::default();
        s.cluster_roles.insert(
            "cluster-admin".into(),
            rules(serde_json::json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}])),
        );
        s.cluster_roles.insert(
            "token-minter".into(),
            rules(
                serde_json::json!([{"apiGroups": [""], "resources": ["serviceaccounts/token"],
                "verbs": ["create"], "resourceNames": ["gitwarden-agent"]}]),
            ),
        );
        s.roles.insert(
            ("gitwarden-system".into(), "exec".into()),
            rules(serde_json::json!([{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}])),
        );
        s
    }

    fn crb(name: &str, role: &str, subjects: serde_json::Value) -> ClusterRoleBinding {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": subjects,
        }))
        .unwrap()
    }

    fn rb(
        ns: &str,
        name: &str,
        kind: &str,
        role: &str,
        subjects: serde_json::Value,
    ) -> RoleBinding {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": subjects,
        }))
        .unwrap()
    }

    #[test]
    fn a_cluster_admin_binding_grants_every_hatch_with_its_path() {
        let mut s = snapshot();
        s.cluster_role_bindings.push(crb(
            "alice-admin",
            "cluster-admin",
            serde_json::json!([{"kind": "User", "name": "alice"}]),
        ));
        for h in all(&Protected::default()) {
            let held = holders(&s, &h);
            assert_eq!(
                held.get(&SubjectRef::User("alice".into())),
                Some(&vec![
                    "ClusterRoleBinding alice-admin → ClusterRole cluster-admin".to_string()
                ]),
                "{}",
                h.id
            );
        }
    }

    #[test]
    fn a_role_binding_elsewhere_does_not_grant_the_agent_token() {
        let mut s = snapshot();
        s.role_bindings.push(rb(
            "default",
            "minter",
            "ClusterRole",
            "token-minter",
            serde_json::json!([{"kind": "User", "name": "bob"}]),
        ));
        assert!(holders(&s, &hatch("agent-token")).is_empty());
        s.role_bindings.push(rb(
            "gitwarden-system",
            "minter",
            "ClusterRole",
            "token-minter",
            serde_json::json!([{"kind": "User", "name": "bob"}]),
        ));
        let held = holders(&s, &hatch("agent-token"));
        assert_eq!(
            held[&SubjectRef::User("bob".into())],
            ["RoleBinding gitwarden-system/minter → ClusterRole token-minter"]
        );
    }

    #[test]
    fn a_role_binding_never_grants_cluster_scoped_hatches() {
        let mut s = snapshot();
        s.role_bindings.push(rb(
            "gitwarden-system",
            "ns-admin",
            "ClusterRole",
            "cluster-admin",
            serde_json::json!([{"kind": "Group", "name": "ops"}]),
        ));
        assert!(holders(&s, &hatch("webhook-configuration")).is_empty());
        // ... but it grants what lives in the namespace.
        assert!(!holders(&s, &hatch("agent-token")).is_empty());
        assert!(!holders(&s, &hatch("policy")).is_empty());
    }

    #[test]
    fn a_role_is_looked_up_in_the_binding_namespace_and_service_accounts_default_to_it() {
        let mut s = snapshot();
        s.role_bindings.push(rb(
            "gitwarden-system",
            "debug",
            "Role",
            "exec",
            serde_json::json!([{"kind": "ServiceAccount", "name": "debugger"}]),
        ));
        let held = holders(&s, &hatch("exec"));
        assert!(held.contains_key(&SubjectRef::ServiceAccount(
            "gitwarden-system".into(),
            "debugger".into()
        )));
        // The same Role name bound in another namespace refers to another Role.
        let mut s = snapshot();
        s.role_bindings.push(rb(
            "other",
            "debug",
            "Role",
            "exec",
            serde_json::json!([{"kind": "User", "name": "eve"}]),
        ));
        assert!(holders(&s, &hatch("exec")).is_empty());
    }

    #[test]
    fn a_binding_to_a_missing_role_grants_nothing() {
        let mut s = snapshot();
        s.cluster_role_bindings.push(crb(
            "dangling",
            "does-not-exist",
            serde_json::json!([{"kind": "User", "name": "alice"}]),
        ));
        assert!(holders(&s, &hatch("impersonate")).is_empty());
    }

    #[test]
    fn subject_display_names_kind_and_namespace() {
        assert_eq!(SubjectRef::User("a".into()).to_string(), "User a");
        assert_eq!(
            SubjectRef::ServiceAccount("ns".into(), "sa".into()).to_string(),
            "ServiceAccount ns/sa"
        );
    }
}
