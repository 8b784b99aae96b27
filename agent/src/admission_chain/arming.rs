//! When the guard may start removing: only once it knows what git contains
//! and what the policy allows.

use super::policy::{PolicyInForce, PolicySource};
use super::verdict::GitObjects;

/// Whether the guard removes objects now, or what it waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arming {
    /// Git and the policy are known: objects outside both are removed.
    Armed,
    /// No verified revision has loaded yet: everything may still be in git
    /// (gitwarden's own webhook configurations, on a fresh agent).
    WaitingForGit,
    /// The policy ConfigMap has not been read yet.
    WaitingForPolicy,
    /// There is no policy ConfigMap and no sync has applied git yet: git's
    /// policy (with its allowances) may simply not be applied yet.
    WaitingForFirstApply,
}

/// Decides whether to remove, from what is known.
///
/// A policy read from the cluster is trusted at once, even before any sync
/// applied: a rogue ValidatingAdmissionPolicy that refuses the agent's
/// dry-run must not keep a restarted agent from ever removing it. Only the
/// default policy (no ConfigMap) waits for a sync that ran to the end, since
/// on a fresh cluster the policy itself comes from git.
pub fn arming(
    git: Option<&GitObjects>,
    policy: Option<&PolicyInForce>,
    applied_once: bool,
) -> Arming {
    let Some(git) = git else {
        return Arming::WaitingForGit;
    };
    let Some(policy) = policy else {
        return Arming::WaitingForPolicy;
    };
    match policy.source {
        PolicySource::ConfigMap => Arming::Armed,
        PolicySource::Default if applied_once || git.applied() => Arming::Armed,
        PolicySource::Default => Arming::WaitingForFirstApply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn policy(source: PolicySource) -> PolicyInForce {
        PolicyInForce {
            chain: Arc::default(),
            source,
        }
    }

    #[test]
    fn nothing_is_removed_before_git_is_known() {
        assert_eq!(
            arming(None, Some(&policy(PolicySource::ConfigMap)), true),
            Arming::WaitingForGit
        );
    }

    #[test]
    fn nothing_is_removed_before_the_policy_is_read() {
        assert_eq!(
            arming(Some(&GitObjects::default()), None, true),
            Arming::WaitingForPolicy
        );
    }

    #[test]
    fn a_policy_from_the_cluster_arms_as_soon_as_git_loaded() {
        assert_eq!(
            arming(
                Some(&GitObjects::default()),
                Some(&policy(PolicySource::ConfigMap)),
                false
            ),
            Arming::Armed
        );
    }

    #[test]
    fn without_a_policy_configmap_the_first_apply_is_awaited() {
        let loaded = GitObjects::default();
        let default = policy(PolicySource::Default);
        assert_eq!(
            arming(Some(&loaded), Some(&default), false),
            Arming::WaitingForFirstApply
        );
        assert_eq!(
            arming(Some(&loaded.clone().into_applied()), Some(&default), false),
            Arming::Armed
        );
        assert_eq!(arming(Some(&loaded), Some(&default), true), Arming::Armed);
    }
}
