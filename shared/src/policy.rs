//! The admission policy: who may write, what is in scope, how break-glass
//! works.
//!
//! The policy is YAML in the `policy.yaml` key of the `gitwarden-policy`
//! ConfigMap, which lives in git like everything else, so changing who is
//! exempt is itself a reviewed commit. Every field has a default and an empty
//! document gives the defaults, so a cluster is protected with no policy
//! written at all. Unknown fields are refused: a misspelt key must not
//! silently leave the default in force.
//!
//! Built-in exemptions are added to, not replaced. The system components
//! (`exempt`) and the exempt resources (`exemptResources`) always include
//! the built-ins (see [`ExemptIdentities::builtin`] and
//! [`ResourceRule::defaults`]), and what a policy writes is added to them:
//! exempting an operator must not take the exemption away from the
//! controller manager, the nodes, events or leases, which would break the
//! cluster. A policy that really means to list everything itself opts out
//! explicitly, with `exempt: {includeDefaults: false}` and
//! `exemptResourcesIncludeDefaults: false` (both default to `true`).
//!
//! The `agent` is different: a list written there *replaces* its default
//! (`users` and `groups` separately, so `agent: {groups: [...]}` keeps the
//! default agent user). The agent is the one identity that may write
//! everything, so naming a different agent must leave exactly that agent:
//! keeping the default service account beside it would leave a second,
//! unused identity with full write access, which anyone able to create or
//! mint a token for that service account could use.
//!
//! ```yaml
//! gitSource: https://git.example.com/platform/cluster.git
//! exempt:
//!   users:
//!     - system:serviceaccount:cert-manager:*   # added to the built-ins
//! exemptResources:
//!   - group: acme.cert-manager.io              # added to events, leases, ...
//!     resource: challenges
//! breakGlass:
//!   groups: [platform-oncall]
//!   defaultTtl: 30m
//!   maxTtl: 2h
//! ```

pub mod admission_chain;
pub mod duration;
pub mod exempt;
pub mod namespaces;
pub mod resources;
mod validate;
pub mod workloads;

use std::sync::LazyLock;

use serde::{Deserialize, Deserializer, Serialize};

pub use admission_chain::AdmissionChainPolicy;
pub use duration::{DurationError, DurationProblem, HumanDuration};
pub use exempt::ExemptIdentities;
pub use namespaces::{NamespacePattern, NamespacePatternError, NamespaceScope};
pub use resources::{ResourceRule, WrittenBy};
pub use validate::PolicyProblem;
pub use workloads::{NamedObject, PodTemplateKind, WorkloadPolicy};

use crate::identity::{IdentityPattern, IdentitySet, Requester};
use crate::names::{AGENT_USER, DEFAULT_BREAK_GLASS_GROUP};

/// The built-in exempt resources (see [`ResourceRule::defaults`]), built once.
static BUILTIN_EXEMPT_RESOURCES: LazyLock<Vec<ResourceRule>> =
    LazyLock::new(ResourceRule::defaults);

/// The whole admission policy (see the module docs for the YAML form).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// The agent's identity: the only one allowed to write protected objects
    /// (default: the agent's service account). Its service account's token
    /// may be minted only by nodes.
    ///
    /// Unlike `exempt`, a list written here *replaces* its default (`users`
    /// and `groups` separately): the agent may write everything, so naming
    /// a different agent must not leave the default service account trusted
    /// beside it as a second, unused identity with full write access.
    #[serde(default = "default_agent", deserialize_with = "deserialize_agent")]
    pub agent: IdentitySet,
    /// System components that must keep writing for the cluster to work:
    /// the built-ins (controller manager, scheduler, API server,
    /// kube-system service accounts, nodes) plus the users and groups
    /// written here. `exempt: {includeDefaults: false}` drops the built-ins.
    /// Never `system:masters`.
    #[serde(default)]
    pub exempt: ExemptIdentities,
    /// Resources nobody needs git for, *in addition to* the built-in ones
    /// (events, leases, token and access reviews; see
    /// [`ResourceRule::defaults`]) unless
    /// `exemptResourcesIncludeDefaults` is `false`. Holds what the policy
    /// wrote; [`Policy::effective_exempt_resources`] gives the list in force.
    #[serde(default)]
    pub exempt_resources: Vec<ResourceRule>,
    /// Whether the built-in exempt resources (events, leases, token and
    /// access reviews) are exempt as well as `exemptResources`. Default
    /// `true`. With `false` exactly the written `exemptResources` are exempt:
    /// then every workload writing events or leader-election leases in a
    /// protected namespace is refused unless the policy lists them itself.
    #[serde(default = "included")]
    pub exempt_resources_include_defaults: bool,
    /// Which namespaces are protected.
    #[serde(default)]
    pub namespaces: NamespaceScope,
    /// Who may make emergency changes, and for how long.
    #[serde(default)]
    pub break_glass: BreakGlassPolicy,
    /// The git repository's URL, named in denial messages so that people
    /// know where to make their change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_source: Option<String>,
    /// The branch the agent follows, named beside the repository when a
    /// denial says which file to edit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_branch: Option<String>,
    /// A link to the line to edit, for denial messages and audit records:
    /// a template with `{path}` and `{line}` (and `{branch}`), e.g.
    /// `https://github.com/org/cluster/blob/{branch}/{path}#L{line}`
    /// (GitLab: `…/-/blob/{branch}/{path}#L{line}`, Gitea:
    /// `…/src/branch/{branch}/{path}#L{line}`, Bitbucket:
    /// `…/src/{branch}/{path}#lines-{line}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_link: Option<String>,
    /// Admission-configuration objects that may exist outside git (see
    /// [`AdmissionChainPolicy`]); the agent deletes every other one.
    #[serde(default)]
    pub admission_chain: AdmissionChainPolicy,
    /// Extra kinds that make Pods, and the workloads a person may make
    /// although they reach their node (see [`WorkloadPolicy`]).
    #[serde(default)]
    pub workloads: WorkloadPolicy,
}

/// Who may open a break-glass window and how long one may last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BreakGlassPolicy {
    /// Groups whose members may make break-glass changes. Empty disables
    /// break-glass.
    pub groups: Vec<String>,
    /// The window's length when the change does not ask for one.
    #[serde(deserialize_with = "deserialize_default_ttl")]
    pub default_ttl: HumanDuration,
    /// The longest window anyone may ask for.
    #[serde(deserialize_with = "deserialize_max_ttl")]
    pub max_ttl: HumanDuration,
}

impl Default for BreakGlassPolicy {
    fn default() -> Self {
        Self {
            groups: vec![DEFAULT_BREAK_GLASS_GROUP.to_owned()],
            default_ttl: HumanDuration::from_hours(1),
            max_ttl: HumanDuration::from_hours(4),
        }
    }
}

impl BreakGlassPolicy {
    /// The first break-glass group `requester` belongs to, if any.
    pub fn allowed_group(&self, requester: &Requester) -> Option<&str> {
        self.groups
            .iter()
            .find(|group| requester.in_group(group))
            .map(String::as_str)
    }
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The text is not YAML, or does not fit the policy's shape (unknown
    /// field, wrong type, malformed duration or pattern). The message names
    /// the field and the line.
    #[error("cannot read the gitwarden policy")]
    Parse(#[source] serde_yaml_ng::Error),
    /// The policy parses but contains values that cannot be meant.
    #[error("the gitwarden policy is invalid: {}", join(.0))]
    Invalid(Vec<PolicyProblem>),
    /// The policy could not be written out as YAML.
    #[error("cannot write the gitwarden policy as YAML")]
    Serialize(#[source] serde_yaml_ng::Error),
}

fn join(problems: &[PolicyProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            agent: default_agent(),
            exempt: ExemptIdentities::default(),
            exempt_resources: Vec::new(),
            exempt_resources_include_defaults: true,
            namespaces: NamespaceScope::default(),
            break_glass: BreakGlassPolicy::default(),
            git_source: None,
            git_branch: None,
            source_link: None,
            admission_chain: AdmissionChainPolicy::default(),
            workloads: WorkloadPolicy::default(),
        }
    }
}

impl Policy {
    /// Parse and validate a policy document. An empty document (or one with
    /// only comments) gives [`Policy::default`].
    pub fn from_yaml(text: &str) -> Result<Policy, PolicyError> {
        // Parsed twice: once to recognise an empty document (which the struct
        // cannot be read from), then straight from the text so that errors
        // carry the field's path and line.
        let value: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).map_err(PolicyError::Parse)?;
        let policy = if value.is_null() {
            Policy::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(PolicyError::Parse)?
        };
        policy.validate()?;
        Ok(policy)
    }

    /// Write the policy as YAML (for documentation and `doctor` output).
    pub fn to_yaml(&self) -> Result<String, PolicyError> {
        serde_yaml_ng::to_string(self).map_err(PolicyError::Serialize)
    }

    /// Check the rules that parsing alone cannot (see [`PolicyProblem`]).
    pub fn validate(&self) -> Result<(), PolicyError> {
        let problems = validate::problems(self);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PolicyError::Invalid(problems))
        }
    }

    /// The exempt resources in force: the built-ins (unless
    /// `exemptResourcesIncludeDefaults: false`) followed by those the policy
    /// names, without repeating a rule.
    pub fn effective_exempt_resources(&self) -> Vec<ResourceRule> {
        exempt::without_repeats(
            self.builtin_exempt_resources()
                .iter()
                .chain(&self.exempt_resources),
        )
    }

    /// The exempt-resource rule covering a request by `requester`, if any:
    /// a built-in one (when included) first, then one the policy names.
    pub fn exempt_resource(
        &self,
        group: &str,
        resource: &str,
        subresource: Option<&str>,
        requester: &Requester,
    ) -> Option<&ResourceRule> {
        self.builtin_exempt_resources()
            .iter()
            .chain(&self.exempt_resources)
            .find(|rule| {
                rule.matches(group, resource, subresource) && rule.written_by.admits(requester)
            })
    }

    /// The built-in exempt resources when included, otherwise none.
    fn builtin_exempt_resources(&self) -> &'static [ResourceRule] {
        if self.exempt_resources_include_defaults {
            &BUILTIN_EXEMPT_RESOURCES
        } else {
            &[]
        }
    }
}

/// The default of the `includeDefaults` switches: built-ins are included.
fn included() -> bool {
    true
}

/// The agent's identity when the policy names none.
fn default_agent() -> IdentitySet {
    IdentitySet {
        users: vec![IdentityPattern::builtin(AGENT_USER)],
        groups: Vec::new(),
    }
}

/// The `agent` section as written: a list left out keeps its default
/// instead of becoming empty, a list written replaces it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PartialIdentitySet {
    users: Option<Vec<IdentityPattern>>,
    groups: Option<Vec<String>>,
}

fn deserialize_agent<'de, D: Deserializer<'de>>(deserializer: D) -> Result<IdentitySet, D::Error> {
    let written = PartialIdentitySet::deserialize(deserializer)?;
    let defaults = default_agent();
    Ok(IdentitySet {
        users: written.users.unwrap_or(defaults.users),
        groups: written.groups.unwrap_or(defaults.groups),
    })
}

/// Reads a duration field, naming the field in the error: the YAML reader
/// only names the enclosing section for a bad scalar.
fn duration_field<'de, D: Deserializer<'de>>(
    deserializer: D,
    field: &str,
) -> Result<HumanDuration, D::Error> {
    let text = String::deserialize(deserializer)?;
    HumanDuration::parse(&text).map_err(|e| serde::de::Error::custom(format!("{field}: {e}")))
}

fn deserialize_default_ttl<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<HumanDuration, D::Error> {
    duration_field(deserializer, "defaultTtl")
}

fn deserialize_max_ttl<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<HumanDuration, D::Error> {
    duration_field(deserializer, "maxTtl")
}

#[cfg(test)]
mod tests;
