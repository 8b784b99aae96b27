//! The escape hatches: the RBAC rights with which someone can change the
//! cluster without going through git, and how bad each one is.

use crate::rbac::rule::{Request, Sub, Target};
use crate::report::Severity;

/// One way around git, as the requests any one of which opens it.
#[derive(Debug, Clone)]
pub struct Hatch {
    /// The check id (`rbac/<id>`).
    pub id: &'static str,
    /// What a subject holding it can do, completing "User alice can …".
    pub can: String,
    /// Severity for a subject gitwarden does not expect to hold it.
    pub severity: Severity,
    /// The requests; a subject allowed any one of them holds the hatch.
    requests: Vec<OwnedRequest>,
}

/// A [`Request`] with owned strings, so hatches can name the configured
/// namespace and service account.
#[derive(Debug, Clone)]
struct OwnedRequest {
    verb: String,
    group: String,
    resource: String,
    sub: OwnedSub,
    name: OwnedTarget,
    namespace: Option<String>,
}

#[derive(Debug, Clone)]
enum OwnedSub {
    None,
    Named(String),
    Any,
}

#[derive(Debug, Clone)]
enum OwnedTarget {
    Named(String),
    AnyName,
    Unnamed,
}

impl OwnedRequest {
    fn new(verb: &str, group: &str, resource: &str) -> Self {
        OwnedRequest {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            sub: OwnedSub::None,
            name: OwnedTarget::AnyName,
            namespace: None,
        }
    }

    fn sub(mut self, sub: &str) -> Self {
        self.sub = OwnedSub::Named(sub.into());
        self
    }

    fn any_sub(mut self) -> Self {
        self.sub = OwnedSub::Any;
        self
    }

    fn named(mut self, name: &str) -> Self {
        self.name = OwnedTarget::Named(name.into());
        self
    }

    fn unnamed(mut self) -> Self {
        self.name = OwnedTarget::Unnamed;
        self
    }

    fn in_namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    fn borrow(&self) -> Request<'_> {
        Request {
            verb: &self.verb,
            group: &self.group,
            resource: &self.resource,
            sub: match &self.sub {
                OwnedSub::None => Sub::None,
                OwnedSub::Named(s) => Sub::Named(s),
                OwnedSub::Any => Sub::Any,
            },
            name: match &self.name {
                OwnedTarget::Named(n) => Target::Named(n),
                OwnedTarget::AnyName => Target::AnyName,
                OwnedTarget::Unnamed => Target::Unnamed,
            },
            namespace: self.namespace.as_deref(),
        }
    }
}

impl Hatch {
    /// The requests opening this hatch.
    pub fn requests(&self) -> impl Iterator<Item = Request<'_>> {
        self.requests.iter().map(OwnedRequest::borrow)
    }
}

/// What `doctor` protects: the names the hatches are about.
#[derive(Debug, Clone)]
pub struct Protected {
    /// gitwarden's namespace.
    pub system_namespace: String,
    /// The agent's service account in it.
    pub agent_service_account: String,
    /// The webhook configurations' name.
    pub webhook_configuration: String,
    /// The policy ConfigMap in the system namespace.
    pub policy_configmap: String,
}

impl Default for Protected {
    fn default() -> Self {
        use gitwarden_shared::names;
        Protected {
            system_namespace: names::SYSTEM_NAMESPACE.into(),
            agent_service_account: names::AGENT_SERVICE_ACCOUNT.into(),
            webhook_configuration: "gitwarden".into(),
            policy_configmap: names::POLICY_CONFIGMAP.into(),
        }
    }
}

/// Every escape hatch `doctor` looks for.
pub fn all(p: &Protected) -> Vec<Hatch> {
    let ns = p.system_namespace.as_str();
    let write = ["update", "patch", "delete"];
    vec![
        Hatch {
            id: "impersonate",
            can: "impersonate users, groups or service accounts (an impersonated agent writes past the webhook)".into(),
            severity: Severity::Critical,
            requests: vec![
                OwnedRequest::new("impersonate", "", "users"),
                OwnedRequest::new("impersonate", "", "groups"),
                OwnedRequest::new("impersonate", "", "serviceaccounts").in_namespace(ns),
            ],
        },
        Hatch {
            id: "impersonate-attributes",
            can: "impersonate user uids or extra attributes".into(),
            severity: Severity::Warning,
            requests: vec![
                OwnedRequest::new("impersonate", "authentication.k8s.io", "uids"),
                OwnedRequest::new("impersonate", "authentication.k8s.io", "userextras").any_sub(),
            ],
        },
        Hatch {
            id: "agent-token",
            can: format!(
                "mint the agent's token (create serviceaccounts/token for {ns}/{})",
                p.agent_service_account
            ),
            severity: Severity::Critical,
            requests: vec![
                OwnedRequest::new("create", "", "serviceaccounts")
                    .sub("token")
                    .named(&p.agent_service_account)
                    .in_namespace(ns),
            ],
        },
        Hatch {
            id: "webhook-configuration",
            can: format!(
                "delete or change the webhook configurations {:?} (no webhook sees that)",
                p.webhook_configuration
            ),
            severity: Severity::Critical,
            requests: [
                "validatingwebhookconfigurations",
                "mutatingwebhookconfigurations",
            ]
            .iter()
            .flat_map(|resource| {
                write
                    .iter()
                    .map(|verb| {
                        OwnedRequest::new(verb, "admissionregistration.k8s.io", resource)
                            .named(&p.webhook_configuration)
                    })
                    .chain(std::iter::once(
                        OwnedRequest::new(
                            "deletecollection",
                            "admissionregistration.k8s.io",
                            resource,
                        )
                        .unnamed(),
                    ))
            })
            .collect(),
        },
        Hatch {
            id: "policy",
            can: format!(
                "change or delete the admission policy ConfigMap {ns}/{}",
                p.policy_configmap
            ),
            severity: Severity::Warning,
            requests: write
                .iter()
                .map(|verb| {
                    OwnedRequest::new(verb, "", "configmaps")
                        .named(&p.policy_configmap)
                        .in_namespace(ns)
                })
                .chain(std::iter::once(
                    OwnedRequest::new("deletecollection", "", "configmaps")
                        .unnamed()
                        .in_namespace(ns),
                ))
                .collect(),
        },
        Hatch {
            id: "exec",
            can: format!(
                "exec into, attach to or debug pods in {ns} (and read the agent's token there)"
            ),
            severity: Severity::Critical,
            requests: ["exec", "attach"]
                .iter()
                // `get` opens exec over WebSockets on API servers that do not
                // yet require `create` for it.
                .flat_map(|sub| {
                    ["create", "get"]
                        .iter()
                        .map(move |verb| OwnedRequest::new(verb, "", "pods").sub(sub))
                })
                .chain(
                    ["update", "patch"]
                        .iter()
                        .map(|verb| OwnedRequest::new(verb, "", "pods").sub("ephemeralcontainers")),
                )
                .map(|r| r.in_namespace(ns))
                .collect(),
        },
        Hatch {
            id: "system-pods",
            can: format!(
                "create pods in {ns}, which may run as the agent's service account (the webhook refuses it while it runs; RBAC is what is left when it does not)"
            ),
            severity: Severity::Warning,
            requests: vec![OwnedRequest::new("create", "", "pods").in_namespace(ns)],
        },
        Hatch {
            id: "escalate",
            can: "escalate or bind roles, granting themselves any of the rights above".into(),
            severity: Severity::Warning,
            requests: ["escalate", "bind"]
                .iter()
                .flat_map(|verb| {
                    [
                        OwnedRequest::new(verb, "rbac.authorization.k8s.io", "clusterroles"),
                        OwnedRequest::new(verb, "rbac.authorization.k8s.io", "roles")
                            .in_namespace(ns),
                    ]
                })
                .collect(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hatch_ids_are_unique() {
        let hatches = all(&Protected::default());
        let mut ids: Vec<&str> = hatches.iter().map(|h| h.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), hatches.len());
    }

    #[test]
    fn the_agent_token_hatch_names_the_agent_service_account() {
        let hatches = all(&Protected::default());
        let token = hatches.iter().find(|h| h.id == "agent-token");
        let requests: Vec<Request<'_>> = token.into_iter().flat_map(Hatch::requests).collect();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].name, Target::Named("gitwarden-agent"));
        assert_eq!(requests[0].sub, Sub::Named("token"));
        assert_eq!(requests[0].namespace, Some("gitwarden-system"));
    }
}
