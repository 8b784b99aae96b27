//! Following the policy ConfigMap: which admission objects may live outside git.

use std::sync::Arc;

use gitwarden_shared::policy::{AdmissionChainPolicy, Policy};

/// What one change of the policy ConfigMap did to the policy in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyUpdate {
    /// The document parsed; its `admissionChain` is now in force.
    Loaded,
    /// The ConfigMap (or its `policy.yaml` key) is absent: the default
    /// policy, which allows nothing outside git, is in force.
    Missing,
    /// The document does not parse; the last good policy stays in force.
    KeptLastGood {
        /// Why it does not parse.
        error: String,
    },
    /// The document does not parse and no good one was ever seen: nothing
    /// is allowed outside git (the safe side: git is the write path).
    NothingAllowed {
        /// Why it does not parse.
        error: String,
    },
}

/// Where the `admissionChain` in force comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    /// The ConfigMap exists (its policy, the last good one, or — unparsable
    /// from the start — nothing allowed).
    ConfigMap,
    /// The ConfigMap does not exist: the default policy. On a fresh cluster
    /// this may only mean that git's policy is not applied yet.
    Default,
}

/// The `admissionChain` section in force, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInForce {
    /// The names allowed outside git.
    pub chain: Arc<AdmissionChainPolicy>,
    /// Where it comes from.
    pub source: PolicySource,
}

/// The `admissionChain` section in force, updated from the ConfigMap's text.
///
/// `None` until the first observation (the ConfigMap's first list): before
/// it, the agent does not know what the policy allows and removes nothing.
#[derive(Debug, Clone, Default)]
pub struct PolicyTracker {
    current: Option<PolicyInForce>,
    last_good: Option<Arc<AdmissionChainPolicy>>,
}

impl PolicyTracker {
    /// The policy in force, `None` before the ConfigMap was first read.
    pub fn current(&self) -> Option<PolicyInForce> {
        self.current.clone()
    }

    fn set(&mut self, chain: Arc<AdmissionChainPolicy>, source: PolicySource) {
        self.current = Some(PolicyInForce { chain, source });
    }

    /// The ConfigMap's `policy.yaml` is `text` (`None`: the ConfigMap or the
    /// key is absent).
    pub fn observe(&mut self, text: Option<&str>) -> PolicyUpdate {
        let Some(text) = text else {
            self.set(Arc::default(), PolicySource::Default);
            self.last_good = None;
            return PolicyUpdate::Missing;
        };
        match Policy::from_yaml(text) {
            Ok(policy) => {
                let chain = Arc::new(policy.admission_chain);
                self.set(chain.clone(), PolicySource::ConfigMap);
                self.last_good = Some(chain);
                PolicyUpdate::Loaded
            }
            Err(e) => match self.last_good.clone() {
                Some(good) => {
                    self.set(good, PolicySource::ConfigMap);
                    PolicyUpdate::KeptLastGood {
                        error: gitwarden_runtime::errors::chain(&e),
                    }
                }
                None => {
                    self.set(Arc::default(), PolicySource::ConfigMap);
                    PolicyUpdate::NothingAllowed {
                        error: gitwarden_runtime::errors::chain(&e),
                    }
                }
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KYVERNO: &str = "admissionChain:\n  allow: [\"kyverno-*\"]\n";

    #[test]
    fn nothing_is_known_before_the_first_read() {
        assert!(PolicyTracker::default().current().is_none());
    }

    #[test]
    fn a_missing_configmap_allows_nothing() {
        let mut tracker = PolicyTracker::default();
        assert_eq!(tracker.observe(None), PolicyUpdate::Missing);
        assert_eq!(tracker.current().unwrap().source, PolicySource::Default);
        assert_eq!(tracker.current().unwrap().chain.allowed("kyverno-x"), None);
    }

    #[test]
    fn a_parsed_policy_is_in_force() {
        let mut tracker = PolicyTracker::default();
        assert_eq!(tracker.observe(Some(KYVERNO)), PolicyUpdate::Loaded);
        assert_eq!(tracker.current().unwrap().source, PolicySource::ConfigMap);
        assert_eq!(
            tracker.current().unwrap().chain.allowed("kyverno-x"),
            Some("kyverno-*")
        );
    }

    #[test]
    fn an_unparsable_policy_keeps_the_last_good_one() {
        let mut tracker = PolicyTracker::default();
        tracker.observe(Some(KYVERNO));
        let update = tracker.observe(Some("admissionChain: {allow: [}"));
        assert!(
            matches!(update, PolicyUpdate::KeptLastGood { .. }),
            "{update:?}"
        );
        assert_eq!(
            tracker.current().unwrap().chain.allowed("kyverno-x"),
            Some("kyverno-*")
        );
    }

    #[test]
    fn an_unparsable_first_policy_allows_nothing() {
        let mut tracker = PolicyTracker::default();
        let update = tracker.observe(Some("admissionChain: {unknownKey: 1}"));
        assert!(
            matches!(update, PolicyUpdate::NothingAllowed { .. }),
            "{update:?}"
        );
        assert_eq!(tracker.current().unwrap().chain.allowed("kyverno-x"), None);
    }

    #[test]
    fn a_deleted_configmap_forgets_the_last_good_policy() {
        let mut tracker = PolicyTracker::default();
        tracker.observe(Some(KYVERNO));
        tracker.observe(None);
        assert_eq!(tracker.current().unwrap().chain.allowed("kyverno-x"), None);
        let update = tracker.observe(Some("not: [valid"));
        assert!(matches!(update, PolicyUpdate::NothingAllowed { .. }));
    }
}
