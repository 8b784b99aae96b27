//! Whether one RBAC `PolicyRule` allows one request, with the authorizer's own
//! semantics: `*` for verbs, API groups and resources, `*/subresource`, and
//! `resourceNames`. Pure, so that every corner is unit tested.

use k8s_openapi::api::rbac::v1::PolicyRule;

/// Which object names a request is about, as far as `resourceNames` matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// One object: a rule allows it when it names no resources or names this one.
    Named(&'a str),
    /// Some object of the kind, whichever: a rule restricted to a few names
    /// still counts (e.g. exec into one particular gitwarden pod).
    AnyName,
    /// No name at all (`deletecollection`, `list`): only rules without
    /// `resourceNames` allow it.
    Unnamed,
}

/// The subresource part of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub<'a> {
    /// The resource itself.
    None,
    /// One subresource (`token`, `exec`).
    Named(&'a str),
    /// Any subresource (impersonating any `userextras/<key>`).
    Any,
}

/// One thing a subject would have to be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// The verb (`impersonate`, `create`, `delete`, ...).
    pub verb: &'a str,
    /// The API group (`""` for the core group).
    pub group: &'a str,
    /// The resource's plural name.
    pub resource: &'a str,
    /// The subresource.
    pub sub: Sub<'a>,
    /// The object's name.
    pub name: Target<'a>,
    /// The namespace of a namespaced object; `None` for a cluster-scoped one,
    /// which only ClusterRoleBindings can grant.
    pub namespace: Option<&'a str>,
}

/// Whether `rule` allows `request` (the namespace is the binding's concern).
pub fn allows(rule: &PolicyRule, request: &Request<'_>) -> bool {
    verb_matches(rule, request.verb)
        && group_matches(rule, request.group)
        && resource_matches(rule, request.resource, request.sub)
        && name_matches(rule, request.name)
}

/// Whether any of `rules` allows `request`.
pub fn any_allows<'r>(
    rules: impl IntoIterator<Item = &'r PolicyRule>,
    request: &Request<'_>,
) -> bool {
    rules.into_iter().any(|rule| allows(rule, request))
}

fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == "*" || v == verb)
}

fn group_matches(rule: &PolicyRule, group: &str) -> bool {
    rule.api_groups
        .iter()
        .flatten()
        .any(|g| g == "*" || g == group)
}

fn resource_matches(rule: &PolicyRule, resource: &str, sub: Sub<'_>) -> bool {
    rule.resources.iter().flatten().any(|r| {
        if r == "*" {
            return true;
        }
        match sub {
            Sub::None => r == resource,
            Sub::Named(sub) => {
                r.strip_prefix(resource)
                    .and_then(|rest| rest.strip_prefix('/'))
                    == Some(sub)
                    || r.strip_prefix("*/") == Some(sub)
            }
            Sub::Any => {
                r.strip_prefix(resource)
                    .is_some_and(|rest| rest.starts_with('/'))
                    || r.starts_with("*/")
            }
        }
    })
}

fn name_matches(rule: &PolicyRule, target: Target<'_>) -> bool {
    let names = rule.resource_names.as_deref().unwrap_or_default();
    match target {
        Target::AnyName => true,
        Target::Unnamed => names.is_empty(),
        Target::Named(name) => names.is_empty() || names.iter().any(|n| n == name),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rule(json: serde_json::Value) -> PolicyRule {
        serde_json::from_value(json).unwrap()
    }

    const TOKEN: Request<'static> = Request {
        verb: "create",
        group: "",
        resource: "serviceaccounts",
        sub: Sub::Named("token"),
        name: Target::Named("gitwarden-agent"),
        namespace: Some("gitwarden-system"),
    };

    const IMPERSONATE_SA: Request<'static> = Request {
        verb: "impersonate",
        group: "",
        resource: "serviceaccounts",
        sub: Sub::None,
        name: Target::AnyName,
        namespace: Some("gitwarden-system"),
    };

    #[test]
    fn cluster_admin_style_wildcards_allow_everything() {
        let r = rule(serde_json::json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}));
        assert!(allows(&r, &TOKEN));
        assert!(allows(&r, &IMPERSONATE_SA));
    }

    #[test]
    fn the_verb_must_be_listed_or_wildcarded() {
        let r = rule(
            serde_json::json!({"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "list"]}),
        );
        assert!(!allows(&r, &IMPERSONATE_SA));
        let r = rule(
            serde_json::json!({"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}),
        );
        assert!(allows(&r, &IMPERSONATE_SA));
    }

    #[test]
    fn the_api_group_must_match() {
        let r =
            rule(serde_json::json!({"apiGroups": ["apps"], "resources": ["*"], "verbs": ["*"]}));
        assert!(!allows(&r, &TOKEN));
    }

    #[test]
    fn the_resource_alone_does_not_grant_its_subresource() {
        let r = rule(
            serde_json::json!({"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["create"]}),
        );
        assert!(!allows(&r, &TOKEN));
    }

    #[test]
    fn a_subresource_is_granted_by_name_or_by_star_slash() {
        for resources in [
            serde_json::json!(["serviceaccounts/token"]),
            serde_json::json!(["*/token"]),
        ] {
            let r = rule(
                serde_json::json!({"apiGroups": [""], "resources": resources, "verbs": ["create"]}),
            );
            assert!(allows(&r, &TOKEN), "{resources}");
        }
        let r = rule(
            serde_json::json!({"apiGroups": [""], "resources": ["*/status"], "verbs": ["create"]}),
        );
        assert!(!allows(&r, &TOKEN));
        let r = rule(
            serde_json::json!({"apiGroups": [""], "resources": ["serviceaccounts/tokenx"], "verbs": ["create"]}),
        );
        assert!(!allows(&r, &TOKEN));
    }

    #[test]
    fn resource_names_restrict_a_named_request() {
        let agent = rule(
            serde_json::json!({"apiGroups": [""], "resources": ["serviceaccounts/token"],
            "verbs": ["create"], "resourceNames": ["gitwarden-agent"]}),
        );
        let other = rule(
            serde_json::json!({"apiGroups": [""], "resources": ["serviceaccounts/token"],
            "verbs": ["create"], "resourceNames": ["builder"]}),
        );
        assert!(allows(&agent, &TOKEN));
        assert!(!allows(&other, &TOKEN));
    }

    #[test]
    fn resource_names_still_count_for_any_name_but_not_for_unnamed_requests() {
        let r = rule(
            serde_json::json!({"apiGroups": [""], "resources": ["pods/exec"],
            "verbs": ["create"], "resourceNames": ["gitwarden-agent-0"]}),
        );
        let mut exec = Request {
            verb: "create",
            group: "",
            resource: "pods",
            sub: Sub::Named("exec"),
            name: Target::AnyName,
            namespace: Some("gitwarden-system"),
        };
        assert!(allows(&r, &exec));
        exec.name = Target::Unnamed;
        assert!(!allows(&r, &exec));
    }

    #[test]
    fn any_subresource_matches_prefixed_and_star_slash_rules() {
        let extras = Request {
            verb: "impersonate",
            group: "authentication.k8s.io",
            resource: "userextras",
            sub: Sub::Any,
            name: Target::AnyName,
            namespace: None,
        };
        for resources in [
            serde_json::json!(["userextras/scopes"]),
            serde_json::json!(["*/scopes"]),
            serde_json::json!(["*"]),
        ] {
            let r = rule(serde_json::json!({"apiGroups": ["authentication.k8s.io"],
                "resources": resources, "verbs": ["impersonate"]}));
            assert!(allows(&r, &extras), "{resources}");
        }
        let r = rule(serde_json::json!({"apiGroups": ["authentication.k8s.io"],
            "resources": ["uids"], "verbs": ["impersonate"]}));
        assert!(!allows(&r, &extras));
    }

    #[test]
    fn any_allows_looks_at_every_rule() {
        let rules = [
            rule(serde_json::json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]})),
            rule(
                serde_json::json!({"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}),
            ),
        ];
        assert!(any_allows(&rules, &IMPERSONATE_SA));
        assert!(!any_allows(&rules[..1], &IMPERSONATE_SA));
    }
}
