//! The admission-configuration kinds the agent owns.

use std::fmt;

/// The API group of every admission-configuration kind.
pub const ADMISSION_GROUP: &str = "admissionregistration.k8s.io";

/// A kind whose objects configure admission: every object of these kinds
/// decides what the API server accepts, and none of them is ever sent to an
/// API-registered webhook. All are cluster-scoped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AdmissionKind {
    /// Calls webhooks that can refuse requests.
    ValidatingWebhookConfiguration,
    /// Calls webhooks that can rewrite requests.
    MutatingWebhookConfiguration,
    /// CEL validations, in force once bound.
    ValidatingAdmissionPolicy,
    /// Puts a ValidatingAdmissionPolicy in force.
    ValidatingAdmissionPolicyBinding,
    /// CEL mutations, in force once bound.
    MutatingAdmissionPolicy,
    /// Puts a MutatingAdmissionPolicy in force.
    MutatingAdmissionPolicyBinding,
}

impl AdmissionKind {
    /// Every admission-configuration kind, whether the server serves it or not.
    pub const ALL: [AdmissionKind; 6] = [
        AdmissionKind::ValidatingWebhookConfiguration,
        AdmissionKind::MutatingWebhookConfiguration,
        AdmissionKind::ValidatingAdmissionPolicy,
        AdmissionKind::ValidatingAdmissionPolicyBinding,
        AdmissionKind::MutatingAdmissionPolicy,
        AdmissionKind::MutatingAdmissionPolicyBinding,
    ];

    /// The kind as the API spells it.
    pub fn kind(self) -> &'static str {
        match self {
            Self::ValidatingWebhookConfiguration => "ValidatingWebhookConfiguration",
            Self::MutatingWebhookConfiguration => "MutatingWebhookConfiguration",
            Self::ValidatingAdmissionPolicy => "ValidatingAdmissionPolicy",
            Self::ValidatingAdmissionPolicyBinding => "ValidatingAdmissionPolicyBinding",
            Self::MutatingAdmissionPolicy => "MutatingAdmissionPolicy",
            Self::MutatingAdmissionPolicyBinding => "MutatingAdmissionPolicyBinding",
        }
    }

    /// The admission kind called `kind` in [`ADMISSION_GROUP`], if it is one.
    pub fn from_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.kind() == kind)
    }
}

impl fmt::Display for AdmissionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_its_name() {
        for kind in AdmissionKind::ALL {
            assert_eq!(AdmissionKind::from_kind(kind.kind()), Some(kind));
        }
        assert_eq!(AdmissionKind::from_kind("ConfigMap"), None);
    }
}
