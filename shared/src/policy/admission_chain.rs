//! Which admission-configuration objects may exist without being in git.
//!
//! No API-registered webhook is ever called for Validating- or
//! MutatingWebhookConfigurations, or for admission policies and their
//! bindings, so a cluster-admin could add one that rewrites what the agent
//! applies or refuses its writes, and nothing at admission would notice. The
//! agent therefore owns every admission-configuration kind: an object of those
//! kinds that is neither in git nor named here is deleted within seconds and
//! recorded. Operators that register their own webhooks at run time (Kyverno,
//! cert-manager's CA injector targets, ...) are listed here by name, in git,
//! so allowing one is itself a reviewed commit.

use serde::{Deserialize, Serialize};

use crate::identity::glob;

/// The `admissionChain` section of the policy.
///
/// ```yaml
/// admissionChain:
///   allow: ["cert-manager-webhook", "kyverno-*"]
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AdmissionChainPolicy {
    /// Names (exact, or with `*` matching any run of characters) of
    /// admission-configuration objects that may exist outside git. Empty by
    /// default: everything in the admission chain comes from git.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
}

impl AdmissionChainPolicy {
    /// The first `allow` pattern naming an admission-configuration object
    /// called `name`, if any.
    pub fn allowed(&self, name: &str) -> Option<&str> {
        self.allow
            .iter()
            .map(String::as_str)
            .find(|pattern| glob::matches(pattern, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(allow: &[&str]) -> AdmissionChainPolicy {
        AdmissionChainPolicy {
            allow: allow.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        assert_eq!(
            AdmissionChainPolicy::default().allowed("kyverno-policy"),
            None
        );
    }

    #[test]
    fn exact_names_and_star_patterns_allow_objects() {
        let policy = chain(&["cert-manager-webhook", "kyverno-*"]);
        assert_eq!(
            policy.allowed("cert-manager-webhook"),
            Some("cert-manager-webhook")
        );
        assert_eq!(
            policy.allowed("kyverno-resource-validating-webhook-cfg"),
            Some("kyverno-*")
        );
        assert_eq!(policy.allowed("cert-manager-webhook-2"), None);
        assert_eq!(policy.allowed("evil"), None);
    }
}
