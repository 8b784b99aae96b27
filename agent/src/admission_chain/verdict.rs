//! The verdict on one admission-configuration object: keep it, or remove it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use gitwarden_manifests::ObjectRef;
use gitwarden_shared::policy::AdmissionChainPolicy;
use kube::core::GroupVersionKind;

use super::kind::{ADMISSION_GROUP, AdmissionKind};

/// The objects of the revision the agent loaded last: what git contains.
///
/// Built from the manifests as soon as a verified revision loads, before it
/// is applied, so an admission object that git adds is known to be git's
/// before the agent creates it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitObjects {
    revision: String,
    objects: HashSet<ObjectRef>,
    /// The apply bodies of the revision's admission objects, to restore
    /// what server-side apply cannot (see [`gitwarden_shared::admission_object`]).
    admission_bodies: HashMap<ObjectRef, Arc<serde_json::Value>>,
    applied: bool,
}

impl GitObjects {
    /// The objects of `revision`, loaded but not applied yet.
    pub fn new(revision: impl Into<String>, objects: impl IntoIterator<Item = ObjectRef>) -> Self {
        GitObjects {
            revision: revision.into(),
            objects: objects.into_iter().collect(),
            admission_bodies: HashMap::new(),
            applied: false,
        }
    }

    /// The same objects, with the apply bodies of the admission objects among them.
    pub fn with_admission_bodies(
        mut self,
        bodies: impl IntoIterator<Item = (ObjectRef, serde_json::Value)>,
    ) -> Self {
        self.admission_bodies = bodies
            .into_iter()
            .map(|(object, body)| (object, Arc::new(body)))
            .collect();
        self
    }

    /// Git's apply body of the admission object `object`, if git holds one.
    pub fn admission_body(&self, object: &ObjectRef) -> Option<Arc<serde_json::Value>> {
        self.admission_bodies.get(object).cloned()
    }

    /// The same objects, once the sync that loaded them ran to the end
    /// (applied, even if some objects failed).
    pub fn into_applied(mut self) -> Self {
        self.applied = true;
        self
    }

    /// Whether the revision was applied (the sync ran to the end).
    pub fn applied(&self) -> bool {
        self.applied
    }

    /// The commit these objects come from.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// Whether git contains `object` (at any version).
    pub fn contains(&self, object: &ObjectRef) -> bool {
        self.objects.contains(object)
    }
}

/// What to do with one admission-configuration object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Git contains it: the drift watch heals it, nothing to remove.
    InGit,
    /// The policy allows it outside git, by this `admissionChain.allow` pattern.
    Allowed {
        /// The pattern that names it.
        pattern: String,
    },
    /// Neither in the loaded revision nor allowed: remove it, unless the
    /// inventory still records it (then it left git and prune decides).
    NotInGit,
}

/// Judges the object `name` of `kind` against git and the policy.
pub fn judge(
    kind: AdmissionKind,
    name: &str,
    git: &GitObjects,
    policy: &AdmissionChainPolicy,
) -> Verdict {
    if git.contains(&key(kind, name)) {
        return Verdict::InGit;
    }
    match policy.allowed(name) {
        Some(pattern) => Verdict::Allowed {
            pattern: pattern.to_owned(),
        },
        None => Verdict::NotInGit,
    }
}

/// The identity of the admission object `name` of `kind`, comparable with
/// the identities git and the inventory hold (they compare without the
/// version: one object is served under several, so it is left empty here).
pub fn key(kind: AdmissionKind, name: &str) -> ObjectRef {
    ObjectRef::new(
        &GroupVersionKind::gvk(ADMISSION_GROUP, "", kind.kind()),
        None,
        name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_git(kind: AdmissionKind, name: &str, version: &str) -> ObjectRef {
        ObjectRef::new(
            &GroupVersionKind::gvk(ADMISSION_GROUP, version, kind.kind()),
            None,
            name,
        )
    }

    fn allow(patterns: &[&str]) -> AdmissionChainPolicy {
        AdmissionChainPolicy {
            allow: patterns.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    #[test]
    fn an_object_in_git_is_kept_whatever_the_version_git_names() {
        let git = GitObjects::new(
            "abc",
            [in_git(
                AdmissionKind::MutatingAdmissionPolicy,
                "defaults",
                "v1beta1",
            )],
        );
        assert_eq!(
            judge(
                AdmissionKind::MutatingAdmissionPolicy,
                "defaults",
                &git,
                &allow(&[])
            ),
            Verdict::InGit
        );
    }

    #[test]
    fn the_same_name_of_another_kind_is_not_in_git() {
        let git = GitObjects::new(
            "abc",
            [in_git(
                AdmissionKind::ValidatingWebhookConfiguration,
                "gitwarden",
                "v1",
            )],
        );
        assert_eq!(
            judge(
                AdmissionKind::MutatingWebhookConfiguration,
                "gitwarden",
                &git,
                &allow(&[])
            ),
            Verdict::NotInGit
        );
    }

    #[test]
    fn an_object_named_by_the_policy_is_allowed_outside_git() {
        let verdict = judge(
            AdmissionKind::ValidatingWebhookConfiguration,
            "kyverno-resource-validating-webhook-cfg",
            &GitObjects::default(),
            &allow(&["cert-manager-webhook", "kyverno-*"]),
        );
        assert_eq!(
            verdict,
            Verdict::Allowed {
                pattern: "kyverno-*".into()
            }
        );
    }

    #[test]
    fn anything_else_is_not_in_git() {
        assert_eq!(
            judge(
                AdmissionKind::ValidatingAdmissionPolicyBinding,
                "evil",
                &GitObjects::default(),
                &allow(&["kyverno-*"])
            ),
            Verdict::NotInGit
        );
    }
}
