//! The exempt identities: system components that must keep writing for the
//! cluster to work, whoever else the policy adds.
//!
//! The built-in components (controller manager, scheduler, API server, the
//! controllers' service accounts in `kube-system`, nodes) are always exempt unless the policy
//! opts out with `includeDefaults: false`; what the policy writes under
//! `exempt` is added to them. This is additive on purpose: a policy that only
//! meant to exempt an operator (`system:serviceaccount:cert-manager:*`) must
//! not quietly take the exemption away from the controller manager and the
//! nodes, which would stop the cluster from working.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::identity::{
    IdentityPattern, IdentitySet, MatchedBy, Requester, covers_service_account, first_match,
    service_account_user,
};
use crate::names::{KUBE_SYSTEM, NODES_GROUP};

/// The service accounts kube-controller-manager (with
/// `--use-service-account-credentials`, the default of every supported
/// installer) and cloud-controller-manager run their controllers as, all in
/// `kube-system`. Named one by one, not as `kube-system:*`: any service
/// account a human creates in `kube-system` (or the namespace's `default`)
/// would otherwise be an exempt identity, and add-ons there (CNI, CSI,
/// CoreDNS) are named by the policy instead. Taken from the client names in
/// `cmd/kube-controller-manager/app` of Kubernetes 1.37; the shipped webhook
/// configurations repeat the list in their `matchConditions` (a test keeps
/// them equal).
pub const CONTROLLER_SERVICE_ACCOUNTS: [&str; 49] = [
    "attachdetach-controller",
    "bootstrap-signer",
    "certificate-controller",
    "cloud-node-controller",
    "cloud-node-lifecycle-controller",
    "clusterrole-aggregation-controller",
    "cronjob-controller",
    "daemon-set-controller",
    "deployment-controller",
    "device-taint-eviction-controller",
    "disruption-controller",
    "endpoint-controller",
    "endpointslice-controller",
    "endpointslicemirroring-controller",
    "ephemeral-volume-controller",
    "expand-controller",
    "generic-garbage-collector",
    "horizontal-pod-autoscaler",
    "job-controller",
    "kube-apiserver-serving-clustertrustbundle-publisher",
    "legacy-service-account-token-cleaner",
    "namespace-controller",
    "node-controller",
    "persistent-volume-binder",
    "pod-garbage-collector",
    "podcertificaterequestcleaner",
    "podgroup-protection-controller",
    "pv-protection-controller",
    "pvc-protection-controller",
    "replicaset-controller",
    "replication-controller",
    "resource-claim-controller",
    "resourcepoolstatusrequest-controller",
    "resourcequota-controller",
    "root-ca-cert-publisher",
    "route-controller",
    "selinux-warning-controller",
    "service-account-controller",
    "service-cidrs-controller",
    "service-controller",
    "statefulset-controller",
    "storage-version-garbage-collector",
    "storage-version-migrator-controller",
    "token-cleaner",
    "tokens-controller",
    "ttl-after-finished-controller",
    "ttl-controller",
    "validatingadmissionpolicy-status-controller",
    "volumeattributesclass-protection-controller",
];

/// The control plane's own users: they write through client certificates
/// on the control-plane hosts, not through anything a Pod can hold.
pub const CONTROL_PLANE_USERS: [&str; 3] = [
    "system:kube-controller-manager",
    "system:kube-scheduler",
    "system:apiserver",
];

/// The built-in exempt system components (see [`ExemptIdentities::builtin`]).
static BUILTIN: LazyLock<IdentitySet> =
    LazyLock::new(|| IdentitySet {
        users: CONTROL_PLANE_USERS
            .into_iter()
            .map(IdentityPattern::builtin)
            .chain(CONTROLLER_SERVICE_ACCOUNTS.into_iter().map(|name| {
                IdentityPattern::builtin_owned(service_account_user(KUBE_SYSTEM, name))
            }))
            .collect(),
        groups: vec![NODES_GROUP.to_owned()],
    });

/// An empty set, standing in for the built-ins when a policy opts out.
static NONE: LazyLock<IdentitySet> = LazyLock::new(IdentitySet::default);

/// The `exempt` section: the built-in system components plus the users and
/// groups the policy names.
///
/// ```yaml
/// exempt:
///   users: ["system:serviceaccount:cert-manager:*"]   # added to the built-ins
/// ```
///
/// The fields hold what the policy *wrote*, so that the YAML reads back
/// unchanged and validation problems point at the written list; use
/// [`ExemptIdentities::matches`] or [`ExemptIdentities::effective`] for the
/// set that is actually in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ExemptIdentities {
    /// Whether the built-in system components ([`ExemptIdentities::builtin`])
    /// are exempt as well as the `users` and `groups` written here. Default
    /// `true`. Setting it to `false` leaves exactly the written users and
    /// groups exempt: the policy must then name the controller manager,
    /// scheduler, API server, `kube-system` service accounts and nodes
    /// itself, or the cluster stops working (they can no longer write the
    /// protected objects they manage).
    pub include_defaults: bool,
    /// Users exempt in addition to the built-ins, by exact name or `*`
    /// pattern (`system:serviceaccount:cert-manager:*`).
    pub users: Vec<IdentityPattern>,
    /// Groups exempt in addition to the built-ins, by exact name. Never
    /// `system:masters` (validation refuses it).
    pub groups: Vec<String>,
}

impl Default for ExemptIdentities {
    /// The built-in components only: nothing written, defaults included.
    fn default() -> Self {
        Self {
            include_defaults: true,
            users: Vec::new(),
            groups: Vec::new(),
        }
    }
}

impl ExemptIdentities {
    /// The built-in exempt system components: `system:kube-controller-manager`,
    /// `system:kube-scheduler`, `system:apiserver`, the controllers' service
    /// accounts in `kube-system` ([`CONTROLLER_SERVICE_ACCOUNTS`], not the
    /// whole namespace), and the group `system:nodes`. `system:masters` is
    /// not among them.
    pub fn builtin() -> &'static IdentitySet {
        &BUILTIN
    }

    /// The built-ins when they are included, otherwise an empty set.
    fn included_builtin(&self) -> &'static IdentitySet {
        if self.include_defaults {
            &BUILTIN
        } else {
            &NONE
        }
    }

    /// The first rule in force that matches `requester`: users first (the
    /// built-ins, then the written ones), then groups in the same order.
    pub fn matches(&self, requester: &Requester) -> Option<MatchedBy> {
        let builtin = self.included_builtin();
        first_match(
            builtin.users.iter().chain(&self.users),
            builtin.groups.iter().chain(&self.groups),
            requester,
        )
    }

    /// The set in force: the built-ins (when included) followed by the
    /// written users and groups, without repeating a name.
    pub fn effective(&self) -> IdentitySet {
        let builtin = self.included_builtin();
        IdentitySet {
            users: without_repeats(builtin.users.iter().chain(&self.users)),
            groups: without_repeats(builtin.groups.iter().chain(&self.groups)),
        }
    }

    /// Whether the service account `namespace`/`name` is an exempt identity
    /// (by user pattern, or by the service-account groups): a Pod running as
    /// it, or a token for it, would be an exempt identity in a human's hands.
    pub fn covers_service_account(&self, namespace: &str, name: &str) -> bool {
        let builtin = self.included_builtin();
        covers_service_account(
            builtin.users.iter().chain(&self.users),
            builtin.groups.iter().chain(&self.groups),
            namespace,
            name,
        )
    }

    /// Whether nobody at all is exempt (the built-ins left out and nothing
    /// written).
    pub fn is_empty(&self) -> bool {
        self.included_builtin().is_empty() && self.users.is_empty() && self.groups.is_empty()
    }
}

/// The items in order, each only at its first occurrence. The lists are a
/// handful of names, so a linear search beats hashing.
pub(super) fn without_repeats<'a, T: PartialEq + Clone + 'a>(
    items: impl IntoIterator<Item = &'a T>,
) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for item in items {
        if !out.contains(item) {
            out.push(item.clone());
        }
    }
    out
}
