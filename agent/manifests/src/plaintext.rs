//! No plain-text Secrets from git: a Secret whose `data` or `stringData`
//! was not SOPS-encrypted in the repository is refused, unless it is a
//! deliberate exception (annotated `gitwarden.io/plaintext-secret: allowed`)
//! or the agent was told to accept them.

use gitwarden_shared::names::{PLAINTEXT_SECRET, PLAINTEXT_SECRET_ALLOWED};
use serde_json::Value;

use crate::error::LoadError;
use crate::raw::RawObject;

/// Whether plain-text Secrets in git are refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PlaintextSecrets {
    /// Refused, with the file, line and keys (the default).
    #[default]
    Refuse,
    /// Accepted (`--allow-plaintext-secrets`), as before SOPS support.
    Allow,
}

/// The problem with `raw`, when it is a plain-text Secret that is not allowed.
pub(crate) fn check(raw: &RawObject, rule: PlaintextSecrets) -> Option<LoadError> {
    if rule == PlaintextSecrets::Allow || raw.encrypted {
        return None;
    }
    let value = &raw.value;
    if value.get("apiVersion").and_then(Value::as_str) != Some("v1")
        || value.get("kind").and_then(Value::as_str) != Some("Secret")
    {
        return None;
    }
    let allowed = value
        .pointer(&format!(
            "/metadata/annotations/{}",
            PLAINTEXT_SECRET.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        == Some(PLAINTEXT_SECRET_ALLOWED);
    if allowed {
        return None;
    }
    let keys: Vec<String> = ["data", "stringData"]
        .iter()
        .flat_map(|field| {
            value
                .get(field)
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(move |map| map.keys().map(move |key| format!("{field}.{key}")))
        })
        .collect();
    if keys.is_empty() {
        return None;
    }
    Some(raw.error(format!(
        "Secret {:?} has plain-text values in git ({}): encrypt the file with SOPS \
         (e.g. sops --encrypt --age <recipient> --encrypted-regex '^(data|stringData)$' --in-place FILE), \
         or annotate it {PLAINTEXT_SECRET}: {PLAINTEXT_SECRET_ALLOWED} if it is a deliberate exception",
        value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        keys.join(", ")
    )))
}
