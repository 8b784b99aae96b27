//! Identities expected to hold escape hatches: the agent itself and the
//! components the policy exempts (controller manager, scheduler, kube-system
//! service accounts, nodes, and whoever the policy adds). They are listed as
//! expected rather than raised, so that what remains is what a person must
//! review.

use gitwarden_shared::identity::{Requester, service_account_user};
use gitwarden_shared::policy::Policy;

use crate::rbac::grants::SubjectRef;

const SERVICE_ACCOUNTS_GROUP_PREFIX: &str = "system:serviceaccounts:";

/// Why `subject` is expected to hold escape hatches under `policy`, or `None`
/// when it is not.
pub fn reason(subject: &SubjectRef, policy: &Policy) -> Option<String> {
    let requester = match subject {
        SubjectRef::User(name) => Requester {
            username: name.clone(),
            ..Requester::default()
        },
        SubjectRef::ServiceAccount(ns, name) => Requester {
            username: service_account_user(ns, name),
            ..Requester::default()
        },
        SubjectRef::Group(group) => {
            if let Some(ns) = group.strip_prefix(SERVICE_ACCOUNTS_GROUP_PREFIX) {
                return every_service_account_exempt(policy, ns);
            }
            Requester {
                groups: vec![group.clone()],
                ..Requester::default()
            }
        }
    };
    if let Some(matched) = policy.agent.matches(&requester) {
        return Some(format!("the agent ({matched})"));
    }
    policy
        .exempt
        .matches(&requester)
        .map(|matched| format!("exempt by the policy ({matched})"))
}

/// The group of all service accounts of `ns` is expected only when the policy
/// exempts every service account there by pattern (`system:serviceaccount:ns:*`).
fn every_service_account_exempt(policy: &Policy, ns: &str) -> Option<String> {
    let pattern = format!("system:serviceaccount:{ns}:*");
    policy
        .exempt
        .effective()
        .users
        .iter()
        .find(|p| p.as_str() == pattern || p.as_str() == "*")
        .map(|p| format!("exempt by the policy (user pattern {:?})", p.as_str()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn default_policy() -> Policy {
        Policy::from_yaml("").unwrap()
    }

    #[test]
    fn the_agent_service_account_is_expected() {
        let sa = SubjectRef::ServiceAccount("gitwarden-system".into(), "gitwarden-agent".into());
        assert!(
            reason(&sa, &default_policy())
                .unwrap()
                .contains("the agent")
        );
    }

    #[test]
    fn control_plane_components_and_kube_system_service_accounts_are_expected() {
        let p = default_policy();
        for s in [
            SubjectRef::User("system:kube-controller-manager".into()),
            SubjectRef::ServiceAccount("kube-system".into(), "namespace-controller".into()),
            SubjectRef::Group("system:nodes".into()),
        ] {
            assert!(reason(&s, &p).is_some(), "{s}");
        }
    }

    #[test]
    fn the_group_of_every_kube_system_service_account_is_not_expected() {
        // The policy exempts the controllers' service accounts one by one:
        // a service account anyone creates in kube-system is no exempt
        // identity, so rights granted to the whole group are reported.
        let group = SubjectRef::Group("system:serviceaccounts:kube-system".into());
        assert!(reason(&group, &default_policy()).is_none());
        let everyone =
            Policy::from_yaml("exempt:\n  users: [\"system:serviceaccount:kube-system:*\"]\n")
                .unwrap();
        assert!(reason(&group, &everyone).is_some());
    }

    #[test]
    fn people_other_service_accounts_and_masters_are_not_expected() {
        let p = default_policy();
        for s in [
            SubjectRef::User("alice".into()),
            SubjectRef::Group("system:masters".into()),
            SubjectRef::ServiceAccount("gitwarden-system".into(), "gitwarden-webhook".into()),
            SubjectRef::Group("system:serviceaccounts:default".into()),
            SubjectRef::Group("system:serviceaccounts".into()),
        ] {
            assert!(reason(&s, &p).is_none(), "{s}");
        }
    }

    #[test]
    fn identities_the_policy_exempts_are_expected() {
        let p = Policy::from_yaml("exempt:\n  users: [\"system:serviceaccount:cert-manager:*\"]\n")
            .unwrap();
        let sa = SubjectRef::ServiceAccount("cert-manager".into(), "cert-manager".into());
        assert!(reason(&sa, &p).unwrap().contains("cert-manager"));
        let group = SubjectRef::Group("system:serviceaccounts:cert-manager".into());
        assert!(reason(&group, &p).is_some());
    }
}
