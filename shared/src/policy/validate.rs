//! Checks a parsed policy for values that parse but cannot be meant.
//!
//! Parsing already refuses unknown fields, malformed durations and patterns.
//! What remains are combinations that would quietly switch protection off or
//! make break-glass unusable; each is reported with the YAML path of the
//! field and the reason, all at once, so one review round fixes them all.

use std::fmt;

use super::Policy;
use crate::names::MASTERS_GROUP;

/// One thing wrong with a policy: where (the YAML path) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct PolicyProblem {
    /// The YAML path of the offending field, like `exempt.groups[0]`.
    pub field: String,
    /// Why the value is refused.
    pub reason: String,
}

/// The problems in `policy`, in field order; empty when it is valid.
pub(super) fn problems(policy: &Policy) -> Vec<PolicyProblem> {
    let mut found = Problems::default();
    if policy.agent.is_empty() {
        found.add(
            "agent",
            format!(
                "names no user or group, so nothing could ever write a protected object; the agent's user is normally {:?}",
                crate::names::AGENT_USER
            ),
        );
    }
    // For `exempt` only the written lists are checked, not the built-ins
    // added to them, so each path points at the list as written.
    identity_groups(&mut found, "agent", "the agent", &policy.agent.groups);
    identity_groups(&mut found, "exempt", "exempt", &policy.exempt.groups);
    for (i, rule) in policy.exempt_resources.iter().enumerate() {
        if rule.resource.trim().is_empty() {
            found.add(
                format!("exemptResources[{i}].resource"),
                "must name a resource (plural, like \"leases\") or be \"*\"",
            );
        }
        if rule
            .subresource
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            found.add(
                format!("exemptResources[{i}].subresource"),
                "must not be empty; leave it out to mean the resource itself",
            );
        }
    }
    for (i, group) in policy.break_glass.groups.iter().enumerate() {
        if group.trim().is_empty() {
            found.add(format!("breakGlass.groups[{i}]"), "must not be empty");
        }
    }
    let break_glass = &policy.break_glass;
    if break_glass.max_ttl.is_zero() {
        found.add(
            "breakGlass.maxTtl",
            "must be longer than 0s; to disable break-glass, leave breakGlass.groups empty",
        );
    }
    if break_glass.default_ttl.is_zero() {
        found.add("breakGlass.defaultTtl", "must be longer than 0s");
    }
    if break_glass.default_ttl > break_glass.max_ttl {
        found.add(
            "breakGlass.defaultTtl",
            format!(
                "is {} but breakGlass.maxTtl is {}; the default must be within the cap",
                break_glass.default_ttl, break_glass.max_ttl
            ),
        );
    }
    if policy
        .git_source
        .as_deref()
        .is_some_and(|s| s.trim().is_empty())
    {
        found.add(
            "gitSource",
            "must not be empty; leave it out to use the generic wording",
        );
    }
    if let Some(link) = &policy.source_link
        && !(link.contains("{path}") && link.contains("{line}"))
    {
        found.add(
            "sourceLink",
            "must contain {path} and {line} (and may contain {branch})",
        );
    }
    if policy
        .source_link
        .as_deref()
        .is_some_and(|l| l.contains("{branch}"))
        && policy.git_branch.is_none()
    {
        found.add("sourceLink", "uses {branch}, so gitBranch must be set");
    }
    found.0
}

/// Checks shared by `agent` and `exempt`: group names that are empty or that
/// would hand the write path to (nearly) everybody.
fn identity_groups(found: &mut Problems, field: &str, role: &str, groups: &[String]) {
    for (i, group) in groups.iter().enumerate() {
        let at = format!("{field}.groups[{i}]");
        match group.as_str() {
            g if g.trim().is_empty() => found.add(at, "must not be empty"),
            MASTERS_GROUP => found.add(
                at,
                format!(
                    "system:masters must never be {role}: it is the cluster-admin group that bypasses RBAC, \
                     and letting it write directly is exactly the bypass gitwarden exists to close; \
                     give administrators break-glass instead (breakGlass.groups)"
                ),
            ),
            "system:authenticated" | "system:unauthenticated" => found.add(
                at,
                format!(
                    "{group} would make every such user {role}, which switches protection off; \
                     if you really mean everyone, write users: [\"*\"]"
                ),
            ),
            _ => {}
        }
    }
}

/// Accumulates problems in the order they are found.
#[derive(Default)]
struct Problems(Vec<PolicyProblem>);

impl Problems {
    fn add(&mut self, field: impl fmt::Display, reason: impl Into<String>) {
        self.0.push(PolicyProblem {
            field: field.to_string(),
            reason: reason.into(),
        });
    }
}
