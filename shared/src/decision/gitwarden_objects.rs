//! gitwarden's own control objects: what gitwarden itself depends on.
//!
//! An emergency change to these would not be temporary or not be audited: a
//! break-glass window on the policy could add its author to `exempt.users`
//! (her later changes then need no window, no warning and no record); one on
//! the agent's ClusterRole with `rules: []` stops the agent from reading its
//! inventory, renewing its Lease or reverting anything, so the window never
//! closes. So break-glass never applies to them, and they are protected
//! whatever the namespace scope or the exempt resources say. Changing
//! gitwarden is a commit.
//!
//! They are recognised from the request alone (the decision is pure):
//! - everything in gitwarden's namespace: the policy, the workloads, service
//!   accounts, Roles and RoleBindings, the inventory, Leases, Secrets;
//! - the namespace itself;
//! - the admission chain: every admission-configuration object (webhook
//!   configurations, admission policies and bindings) except those the policy
//!   lets exist outside git (`admissionChain.allow`);
//! - RBAC that grants gitwarden's identities anything: a (Cluster)Role or
//!   binding named `gitwarden…` or labelled `app.kubernetes.io/name:
//!   gitwarden` (before or after the change), a binding whose subjects
//!   (before or after) include a service account of gitwarden's namespace,
//!   the agent, or every service account, and Kubernetes' default roles
//!   (`kubernetes.io/bootstrapping: rbac-defaults`, `cluster-admin` among
//!   them), to which gitwarden may be bound.

use kube::core::DynamicObject;
use serde_json::Value;

use super::request::RequestView;
use crate::names::SYSTEM_NAMESPACE;
use crate::policy::Policy;

/// The label Kubernetes puts on its default roles and bindings.
const BOOTSTRAPPING_LABEL: &str = "kubernetes.io/bootstrapping";
/// Its value on the default roles.
const RBAC_DEFAULTS: &str = "rbac-defaults";
/// The label gitwarden's shipped manifests carry.
const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Its value on gitwarden's objects.
const NAME_VALUE: &str = crate::names::APP_NAME;
/// The group every service account is in.
const ALL_SERVICE_ACCOUNTS: &str = "system:serviceaccounts";

/// Whether the request touches one of gitwarden's control objects.
pub(super) fn is_gitwarden_object(policy: &Policy, view: &RequestView<'_>) -> bool {
    if view.req.namespace.as_deref() == Some(SYSTEM_NAMESPACE) {
        return true;
    }
    let name = view.name();
    match (view.group.as_str(), view.resource.as_str()) {
        ("", "namespaces") => name == SYSTEM_NAMESPACE,
        ("admissionregistration.k8s.io", _) => policy.admission_chain.allowed(name).is_none(),
        ("rbac.authorization.k8s.io", resource) => {
            name.starts_with(NAME_VALUE)
                || objects(view).any(|o| {
                    label(o, NAME_LABEL) == Some(NAME_VALUE)
                        || label(o, BOOTSTRAPPING_LABEL) == Some(RBAC_DEFAULTS)
                        || (resource.ends_with("bindings") && grants_gitwarden(policy, o))
                })
        }
        _ => false,
    }
}

/// The new and the old object, whichever exist.
fn objects<'a>(view: &RequestView<'a>) -> impl Iterator<Item = &'a DynamicObject> {
    [view.req.object.as_ref(), view.req.old_object.as_ref()]
        .into_iter()
        .flatten()
}

fn label<'a>(object: &'a DynamicObject, key: &str) -> Option<&'a str> {
    object
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(key))
        .map(String::as_str)
}

/// Whether a binding's subjects include one of gitwarden's identities.
fn grants_gitwarden(policy: &Policy, binding: &DynamicObject) -> bool {
    let binding_namespace = binding.metadata.namespace.as_deref().unwrap_or_default();
    binding
        .data
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|subject| {
            let field = |key: &str| subject.get(key).and_then(Value::as_str).unwrap_or_default();
            match field("kind") {
                "ServiceAccount" => {
                    let namespace = match field("namespace") {
                        "" => binding_namespace,
                        ns => ns,
                    };
                    namespace == SYSTEM_NAMESPACE
                        || policy
                            .agent
                            .covers_service_account(namespace, field("name"))
                }
                "User" => policy.agent.users.iter().any(|p| p.matches(field("name"))),
                "Group" => {
                    let group = field("name");
                    group == ALL_SERVICE_ACCOUNTS
                        || group == format!("{ALL_SERVICE_ACCOUNTS}:{SYSTEM_NAMESPACE}")
                        || policy.agent.groups.iter().any(|g| g == group)
                }
                _ => false,
            }
        })
}
