//! Which admission plugin refused one of the agent's requests.
//!
//! Webhooks and admission policies that gitwarden does not own can refuse
//! what git says (a cluster-admin's ValidatingAdmissionPolicy, a policy
//! engine's webhook). The API server's answer is a `Status` whose message
//! names the plugin; it is parsed here, once, into [`AdmissionRefusal`], so
//! the report, the status, Events and metrics can say *who* refused the
//! object without matching strings anywhere else.
//!
//! The messages are those of kube-apiserver v1.37 (`k8s.io/apiserver`):
//! - `admission webhook "NAME" denied the request: …`
//! - `admission webhook "NAME" does not support dry run`
//! - `failed calling webhook "NAME": …` (failurePolicy Fail, webhook unreachable)
//! - `ValidatingAdmissionPolicy 'NAME' with binding 'BINDING' denied request: …`
//! - `policy 'NAME' with binding 'BINDING' denied request: …` and
//!   `policy "NAME" denied request: …` (MutatingAdmissionPolicy and policy
//!   configuration errors)

use serde::{Deserialize, Serialize};
use std::fmt;

/// The admission plugin that refused a request, as the API server named it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum AdmissionRefusal {
    /// A validating or mutating webhook answered "not allowed".
    #[serde(rename_all = "camelCase")]
    Webhook {
        /// The webhook's name (an entry of a webhook configuration).
        name: String,
    },
    /// A webhook refused the agent's server-side dry-run (its `sideEffects`
    /// are not `None`/`NoneOnDryRun`), so no revision can be validated.
    #[serde(rename_all = "camelCase")]
    WebhookWithoutDryRun {
        /// The webhook's name.
        name: String,
    },
    /// A webhook with `failurePolicy: Fail` could not be called: it refuses
    /// everything it matches until it answers or is removed.
    #[serde(rename_all = "camelCase")]
    WebhookUnreachable {
        /// The webhook's name.
        name: String,
    },
    /// A ValidatingAdmissionPolicy's validation denied the request.
    #[serde(rename_all = "camelCase")]
    ValidatingAdmissionPolicy {
        /// The policy's name.
        policy: String,
        /// The binding that applied it, when the API server names one.
        binding: Option<String>,
    },
    /// An admission policy (MutatingAdmissionPolicy, or a policy whose
    /// configuration is broken) denied the request.
    #[serde(rename_all = "camelCase")]
    AdmissionPolicy {
        /// The policy's name.
        policy: String,
        /// The binding that applied it, when the API server names one.
        binding: Option<String>,
    },
}

impl AdmissionRefusal {
    /// The refusing plugin named in an API error, `None` when the error is
    /// not an admission refusal (schema errors, conflicts, network errors).
    pub fn from_error(error: &kube::Error) -> Option<Self> {
        match error {
            kube::Error::Api(status) => Self::from_message(&status.message),
            _ => None,
        }
    }

    /// Parses an API server message; the refusal may follow a prefix such
    /// as `configmaps "x" is forbidden: ` or `Internal error occurred: `.
    pub fn from_message(message: &str) -> Option<Self> {
        if let Some(rest) = after(message, "admission webhook \"") {
            let (name, rest) = rest.split_once('"')?;
            let name = name.to_owned();
            return if rest.starts_with(" denied the request") {
                Some(Self::Webhook { name })
            } else if rest.starts_with(" does not support dry run") {
                Some(Self::WebhookWithoutDryRun { name })
            } else {
                None
            };
        }
        if let Some(rest) = after(message, "failed calling webhook \"") {
            let (name, _) = rest.split_once('"')?;
            return Some(Self::WebhookUnreachable {
                name: name.to_owned(),
            });
        }
        if let Some(rest) = after(message, "ValidatingAdmissionPolicy '") {
            let (policy, binding) = policy_and_binding(rest, '\'')?;
            return Some(Self::ValidatingAdmissionPolicy { policy, binding });
        }
        for (prefix, quote) in [("policy '", '\''), ("policy \"", '"')] {
            if let Some(rest) = after(message, prefix) {
                let (policy, binding) = policy_and_binding(rest, quote)?;
                return Some(Self::AdmissionPolicy { policy, binding });
            }
        }
        None
    }

    /// The plugin's own name (webhook or policy), for labels and Events.
    pub fn plugin(&self) -> &str {
        match self {
            Self::Webhook { name }
            | Self::WebhookWithoutDryRun { name }
            | Self::WebhookUnreachable { name } => name,
            Self::ValidatingAdmissionPolicy { policy, .. }
            | Self::AdmissionPolicy { policy, .. } => policy,
        }
    }

    /// What kind of plugin it is, as a stable metric label.
    pub fn plugin_kind(&self) -> &'static str {
        match self {
            Self::Webhook { .. } | Self::WebhookWithoutDryRun { .. } => "webhook",
            Self::WebhookUnreachable { .. } => "webhook_unreachable",
            Self::ValidatingAdmissionPolicy { .. } => "validating_admission_policy",
            Self::AdmissionPolicy { .. } => "admission_policy",
        }
    }
}

impl fmt::Display for AdmissionRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let binding = |binding: &Option<String>| {
            binding
                .as_ref()
                .map(|b| format!(" (binding {b:?})"))
                .unwrap_or_default()
        };
        match self {
            Self::Webhook { name } => write!(f, "admission webhook {name:?}"),
            Self::WebhookWithoutDryRun { name } => {
                write!(f, "admission webhook {name:?} (no dry-run support)")
            }
            Self::WebhookUnreachable { name } => {
                write!(
                    f,
                    "admission webhook {name:?} (unreachable, failing closed)"
                )
            }
            Self::ValidatingAdmissionPolicy { policy, binding: b } => {
                write!(f, "ValidatingAdmissionPolicy {policy:?}{}", binding(b))
            }
            Self::AdmissionPolicy { policy, binding: b } => {
                write!(f, "admission policy {policy:?}{}", binding(b))
            }
        }
    }
}

/// The text after the first occurrence of `marker`.
fn after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    text.find(marker).map(|at| &text[at + marker.len()..])
}

/// `NAME' with binding 'BINDING' denied request` → (NAME, Some(BINDING)),
/// `NAME' denied request` → (NAME, None); anything else is not a denial.
fn policy_and_binding(rest: &str, quote: char) -> Option<(String, Option<String>)> {
    let (policy, rest) = rest.split_once(quote)?;
    let binding_marker = format!(" with binding {quote}");
    if let Some(rest) = rest.strip_prefix(binding_marker.as_str()) {
        let (binding, rest) = rest.split_once(quote)?;
        rest.starts_with(" denied request")
            .then(|| (policy.to_owned(), Some(binding.to_owned())))
    } else {
        rest.starts_with(" denied request")
            .then(|| (policy.to_owned(), None))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_denial_names_the_webhook() {
        let message = "admission webhook \"validate.kyverno.svc\" denied the request: \
                       policy require-labels: missing label";
        assert_eq!(
            AdmissionRefusal::from_message(message),
            Some(AdmissionRefusal::Webhook {
                name: "validate.kyverno.svc".into()
            })
        );
    }

    #[test]
    fn a_validating_admission_policy_denial_names_the_policy_and_binding() {
        let message = "configmaps \"settings\" is forbidden: ValidatingAdmissionPolicy \
                       'no-agent' with binding 'no-agent-binding' denied request: failed expression: false";
        let refusal = AdmissionRefusal::from_message(message).unwrap();
        assert_eq!(
            refusal,
            AdmissionRefusal::ValidatingAdmissionPolicy {
                policy: "no-agent".into(),
                binding: Some("no-agent-binding".into())
            }
        );
        assert_eq!(refusal.plugin(), "no-agent");
        assert_eq!(refusal.plugin_kind(), "validating_admission_policy");
    }

    #[test]
    fn a_policy_denial_without_binding_is_understood() {
        let message = "ValidatingAdmissionPolicy 'p' denied request: nope";
        assert_eq!(
            AdmissionRefusal::from_message(message),
            Some(AdmissionRefusal::ValidatingAdmissionPolicy {
                policy: "p".into(),
                binding: None
            })
        );
        let message = "policy \"m\" denied request: params not found";
        assert_eq!(
            AdmissionRefusal::from_message(message),
            Some(AdmissionRefusal::AdmissionPolicy {
                policy: "m".into(),
                binding: None
            })
        );
        let message = "policy 'm' with binding 'b' denied request: x";
        assert_eq!(
            AdmissionRefusal::from_message(message).unwrap().plugin(),
            "m"
        );
    }

    #[test]
    fn an_unreachable_webhook_and_a_refused_dry_run_are_refusals_too() {
        let message = "Internal error occurred: failed calling webhook \"evil.example.com\": \
                       Post \"https://127.0.0.1:1/\": dial tcp: connection refused";
        assert_eq!(
            AdmissionRefusal::from_message(message),
            Some(AdmissionRefusal::WebhookUnreachable {
                name: "evil.example.com".into()
            })
        );
        let message = "admission webhook \"sidefx.example.com\" does not support dry run";
        assert_eq!(
            AdmissionRefusal::from_message(message),
            Some(AdmissionRefusal::WebhookWithoutDryRun {
                name: "sidefx.example.com".into()
            })
        );
    }

    #[test]
    fn other_errors_are_not_refusals() {
        for message in [
            "ConfigMap \"x\" is invalid: metadata.name: Invalid value",
            "configmaps \"x\" is forbidden: User \"u\" cannot patch resource",
            "the server could not find the requested resource",
            "admission webhook \"truncated",
            "ValidatingAdmissionPolicy 'p' is being deleted",
        ] {
            assert_eq!(AdmissionRefusal::from_message(message), None, "{message}");
        }
    }

    #[test]
    fn the_json_form_is_tagged_by_type() {
        let refusal = AdmissionRefusal::ValidatingAdmissionPolicy {
            policy: "p".into(),
            binding: Some("b".into()),
        };
        assert_eq!(
            serde_json::to_value(&refusal).unwrap(),
            serde_json::json!({"type": "validatingAdmissionPolicy", "policy": "p", "binding": "b"})
        );
    }
}
