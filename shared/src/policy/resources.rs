//! Resources that are never protected, whoever writes them.
//!
//! Some API resources are records or handshakes rather than desired state:
//! events, leader-election leases, token and access reviews. Every workload
//! writes them constantly and git could never own them, so they are exempt.
//!
//! Exemptions are for the components that write such records, never for
//! humans by resource: a cluster-admin who writes herself into the agent's
//! leader Lease stops the agent, and then nothing heals what she deletes
//! next. So events and leases are exempt only when a service account (a
//! workload) writes them ([`WrittenBy::ServiceAccounts`]); a person's write
//! is judged like any other, and gitwarden's own Leases are gitwarden's
//! alone whoever writes them (see the decision table).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::identity::Requester;

/// Who an exempt resource is exempt for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WrittenBy {
    /// Everyone (the default for rules a policy writes, and for reviews,
    /// which create nothing that persists).
    #[default]
    Anyone,
    /// Only service accounts: workloads writing their own records (events,
    /// leader-election leases). People are judged like any other write.
    ServiceAccounts,
}

impl WrittenBy {
    fn is_anyone(&self) -> bool {
        *self == WrittenBy::Anyone
    }

    /// Whether `requester` is someone this exemption is for.
    pub fn admits(self, requester: &Requester) -> bool {
        match self {
            WrittenBy::Anyone => true,
            WrittenBy::ServiceAccounts => requester.service_account().is_some(),
        }
    }
}

/// One exempt resource: an API group, a resource (or `*` for every resource
/// of the group) and optionally a subresource.
///
/// Without `subresource` the rule covers only the resource itself, not its
/// subresources (as in RBAC): exempting `pods` must not exempt
/// `pods/ephemeralcontainers`. `subresource: "*"` covers every subresource
/// (but not the resource itself; write a second rule for that).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRule {
    /// The API group; empty (the default) for the core group.
    #[serde(default)]
    pub group: String,
    /// The plural resource name (`leases`), or `*` for all of the group.
    pub resource: String,
    /// The subresource (`status`), `*` for any, or absent for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subresource: Option<String>,
    /// Who the exemption is for: `anyone` (default) or `serviceAccounts`.
    #[serde(default, skip_serializing_if = "WrittenBy::is_anyone")]
    pub written_by: WrittenBy,
}

impl ResourceRule {
    /// A rule for a whole resource (no subresource).
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_owned(),
            resource: resource.to_owned(),
            subresource: None,
            written_by: WrittenBy::Anyone,
        }
    }

    /// The same rule, for service accounts only.
    pub fn for_service_accounts(self) -> Self {
        Self {
            written_by: WrittenBy::ServiceAccounts,
            ..self
        }
    }

    /// Whether a request for `group`, `resource` and `subresource` falls under
    /// this rule. An empty subresource counts as none.
    pub fn matches(&self, group: &str, resource: &str, subresource: Option<&str>) -> bool {
        let subresource = subresource.filter(|s| !s.is_empty());
        self.group == group
            && (self.resource == "*" || self.resource == resource)
            && match (self.subresource.as_deref(), subresource) {
                (None, None) => true,
                (Some("*"), Some(_)) => true,
                (Some(rule), Some(asked)) => rule == asked,
                _ => false,
            }
    }

    /// The built-in exempt resources: events and leases written by service
    /// accounts, and the token and access reviews (which create nothing that
    /// persists) for anyone.
    pub fn defaults() -> Vec<ResourceRule> {
        let workload_records = [
            ("", "events"),
            ("events.k8s.io", "events"),
            ("coordination.k8s.io", "leases"),
        ]
        .into_iter()
        .map(|(group, resource)| ResourceRule::new(group, resource).for_service_accounts());
        let reviews = [
            ("authentication.k8s.io", "tokenreviews"),
            ("authentication.k8s.io", "selfsubjectreviews"),
            ("authorization.k8s.io", "subjectaccessreviews"),
            ("authorization.k8s.io", "selfsubjectaccessreviews"),
            ("authorization.k8s.io", "localsubjectaccessreviews"),
            ("authorization.k8s.io", "selfsubjectrulesreviews"),
        ]
        .into_iter()
        .map(|(group, resource)| ResourceRule::new(group, resource));
        workload_records.chain(reviews).collect()
    }
}

/// Written the way kubectl names resources: `leases.coordination.k8s.io`,
/// `events` for the core group, with `/subresource` when there is one.
impl fmt::Display for ResourceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.resource)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if let Some(sub) = &self.subresource {
            write!(f, "/{sub}")?;
        }
        if self.written_by == WrittenBy::ServiceAccounts {
            f.write_str(" (written by service accounts)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_matches_its_group_and_resource() {
        let r = ResourceRule::new("coordination.k8s.io", "leases");
        assert!(r.matches("coordination.k8s.io", "leases", None));
        assert!(!r.matches("", "leases", None));
        assert!(!r.matches("coordination.k8s.io", "configmaps", None));
    }

    #[test]
    fn rule_without_subresource_does_not_cover_subresources() {
        let r = ResourceRule::new("", "pods");
        assert!(!r.matches("", "pods", Some("ephemeralcontainers")));
        assert!(r.matches("", "pods", Some("")));
    }

    #[test]
    fn star_resource_covers_the_whole_group() {
        let r = ResourceRule::new("cert-manager.io", "*");
        assert!(r.matches("cert-manager.io", "certificates", None));
        assert!(!r.matches("acme.cert-manager.io", "orders", None));
    }

    #[test]
    fn star_subresource_covers_every_subresource_but_not_the_resource() {
        let r = ResourceRule {
            subresource: Some("*".into()),
            ..ResourceRule::new("", "pods")
        };
        assert!(r.matches("", "pods", Some("status")));
        assert!(!r.matches("", "pods", None));
    }

    #[test]
    fn named_subresource_covers_only_itself() {
        let r = ResourceRule {
            subresource: Some("status".into()),
            ..ResourceRule::new("apps", "deployments")
        };
        assert!(r.matches("apps", "deployments", Some("status")));
        assert!(!r.matches("apps", "deployments", Some("scale")));
        assert!(!r.matches("apps", "deployments", None));
    }

    #[test]
    fn display_names_resource_group_and_subresource() {
        assert_eq!(ResourceRule::new("", "events").to_string(), "events");
        let r = ResourceRule {
            subresource: Some("status".into()),
            ..ResourceRule::new("apps", "deployments")
        };
        assert_eq!(r.to_string(), "deployments.apps/status");
    }
}
