//! Who can still bypass git: RBAC read once, aggregated roles resolved, and
//! every subject holding an escape hatch reported with the binding that
//! grants it.

pub mod aggregate;
pub mod expected;
pub mod grants;
pub mod hatches;
pub mod rule;

use gitwarden_shared::names::MASTERS_GROUP;
use gitwarden_shared::policy::Policy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Client;
use kube::api::{Api, ListParams};

use crate::rbac::grants::{Snapshot, SubjectRef};
use crate::rbac::hatches::Protected;
use crate::report::{Finding, Severity};

/// Reads ClusterRoles, Roles and both kinds of bindings, resolving aggregation.
#[tracing::instrument(skip(client))]
pub async fn snapshot(client: &Client) -> Result<Snapshot, kube::Error> {
    let lp = ListParams::default();
    let cluster_roles = Api::<ClusterRole>::all(client.clone()).list(&lp).await?;
    let roles = Api::<Role>::all(client.clone()).list(&lp).await?;
    let cluster_role_bindings = Api::<ClusterRoleBinding>::all(client.clone())
        .list(&lp)
        .await?;
    let role_bindings = Api::<RoleBinding>::all(client.clone()).list(&lp).await?;
    Ok(Snapshot {
        cluster_roles: aggregate::resolve(&cluster_roles.items),
        roles: roles
            .items
            .into_iter()
            .filter_map(|r| {
                let key = (r.metadata.namespace?, r.metadata.name?);
                Some((key, r.rules.unwrap_or_default()))
            })
            .collect(),
        cluster_role_bindings: cluster_role_bindings.items,
        role_bindings: role_bindings.items,
    })
}

/// The RBAC findings for a snapshot (pure): `system:masters` always, then
/// every hatch's holders, the unexpected ones at the hatch's severity.
pub fn findings(snapshot: &Snapshot, protected: &Protected, policy: &Policy) -> Vec<Finding> {
    let mut out = vec![Finding::warning(
        "rbac/system-masters",
        format!(
            "Group {MASTERS_GROUP} bypasses RBAC: its members can do everything listed here and it \
             cannot be removed or restricted; keep such credentials offline and audited"
        ),
    )];
    for hatch in hatches::all(protected) {
        let check = format!("rbac/{}", hatch.id);
        let mut unexpected = 0;
        for (subject, via) in grants::holders(snapshot, &hatch) {
            if subject == SubjectRef::Group(MASTERS_GROUP.to_string()) {
                continue;
            }
            let expected = expected::reason(&subject, policy);
            let message = match &expected {
                Some(why) => format!("{subject} can {} ({why})", hatch.can),
                None => format!("{subject} can {}", hatch.can),
            };
            if expected.is_none() {
                unexpected += 1;
            }
            out.push(Finding {
                subject: Some(subject.to_string()),
                via,
                expected: expected.is_some(),
                ..Finding::new(
                    if expected.is_some() {
                        Severity::Info
                    } else {
                        hatch.severity
                    },
                    &check,
                    message,
                )
            });
        }
        if unexpected == 0 {
            out.push(Finding::ok(
                &check,
                format!("only expected identities can {}", hatch.can),
            ));
        }
    }
    out
}

/// Reads RBAC and reports; a cluster whose RBAC cannot be read is itself a
/// critical finding (doctor needs an admin kubeconfig to vouch for anything).
pub async fn check(client: &Client, protected: &Protected, policy: &Policy) -> Vec<Finding> {
    match snapshot(client).await {
        Ok(s) => findings(&s, protected, policy),
        Err(e) => vec![Finding::critical(
            "rbac/read",
            format!("cannot read RBAC (doctor needs an admin kubeconfig): {e}"),
        )],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn masters_is_always_reported_and_expected_holders_are_not_critical() {
        let mut s = Snapshot::default();
        s.cluster_roles.insert(
            "cluster-admin".into(),
            serde_json::from_value(
                serde_json::json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
            )
            .unwrap(),
        );
        s.cluster_role_bindings.push(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "cluster-admin"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [
                    {"kind": "Group", "name": "system:masters"},
                    {"kind": "ServiceAccount", "name": "gitwarden-agent", "namespace": "gitwarden-system"}
                ],
            }))
            .unwrap(),
        );
        let out = findings(&s, &Protected::default(), &Policy::from_yaml("").unwrap());
        assert!(out.iter().any(|f| f.check == "rbac/system-masters"));
        assert!(
            out.iter().all(|f| f.severity != Severity::Critical),
            "{out:#?}"
        );
        assert!(out.iter().any(|f| f.expected
            && f.subject.as_deref() == Some("ServiceAccount gitwarden-system/gitwarden-agent")));
        assert!(
            !out.iter()
                .any(|f| f.subject.as_deref() == Some("Group system:masters"))
        );
    }
}
