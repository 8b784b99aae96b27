//! Admission-configuration objects changed where server-side apply cannot
//! heal, and the body that puts them back.
//!
//! Both keepers of gitwarden's admission chain use this: the agent, for the
//! admission objects of git, and the webhook, for the configurations it
//! registers for itself from a template in git.
//!
//! The agent heals drift by re-applying git's fields with server-side apply,
//! which takes back every field git sets but leaves alone what someone else
//! *added*: an extra webhook entry in gitwarden's own webhook configuration,
//! a `matchConditions` entry `expression: 'false'` that stops the webhook
//! from ever being called, an `objectSelector` git does not set. On an
//! admission object each of those silently rewrites or disables admission.
//! So for the admission kinds the guard compares the whole object with what
//! git's manifest becomes once the API server has defaulted it (a dry-run
//! create), and restores git's content when they differ.
//!
//! Only the `caBundle` of webhooks is exempt: gitwarden-certs, the webhook's
//! own registration (or cert-manager's CA injector) writes it by design, and
//! git does not hold it.

use serde::Deserialize as _;
use serde_json::{Map, Value};

/// The API group and version of the webhook configurations a registration
/// template holds.
pub const ADMISSION_API_VERSION: &str = "admissionregistration.k8s.io/v1";

/// The kinds a registration template may hold: the webhook's own
/// configurations, nothing else (an admission policy or binding would not
/// be the webhook's to register).
pub const REGISTRABLE_KINDS: [&str; 2] = [
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
];

/// Why a registration template cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A document is not YAML.
    #[error("document {index}: not YAML")]
    Yaml {
        /// The document's position, from 1.
        index: usize,
        /// Why.
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A document is something else than a webhook configuration.
    #[error(
        "document {index} is {what}: a registration template holds only {ADMISSION_API_VERSION} Validating- and MutatingWebhookConfigurations"
    )]
    Kind {
        /// The document's position, from 1.
        index: usize,
        /// Its apiVersion and kind.
        what: String,
    },
    /// A document has no name.
    #[error("document {index} has no metadata.name")]
    NoName {
        /// The document's position, from 1.
        index: usize,
    },
    /// Nothing to register.
    #[error("the template holds no webhook configuration")]
    Empty,
}

/// The webhook configurations of a registration template (multi-document
/// YAML; empty documents and comments are skipped), each checked to be one.
pub fn registration_template(text: &str) -> Result<Vec<Value>, TemplateError> {
    let mut out = Vec::new();
    for (i, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let value =
            Value::deserialize(document).map_err(|source| TemplateError::Yaml { index, source })?;
        if value.is_null() {
            continue;
        }
        let api_version = value["apiVersion"].as_str().unwrap_or_default();
        let kind = value["kind"].as_str().unwrap_or_default();
        if api_version != ADMISSION_API_VERSION || !REGISTRABLE_KINDS.contains(&kind) {
            return Err(TemplateError::Kind {
                index,
                what: format!("{api_version:?} {kind:?}"),
            });
        }
        if value["metadata"]["name"].as_str().is_none_or(str::is_empty) {
            return Err(TemplateError::NoName { index });
        }
        out.push(value);
    }
    if out.is_empty() {
        return Err(TemplateError::Empty);
    }
    Ok(out)
}

/// `object` with `bundle` (base64 PEM) as the `caBundle` of every webhook.
pub fn with_ca_bundle(object: &Value, bundle: &str) -> Value {
    let mut out = object.clone();
    for webhook in out["webhooks"].as_array_mut().into_iter().flatten() {
        if let Some(config) = webhook
            .get_mut("clientConfig")
            .and_then(Value::as_object_mut)
        {
            config.insert("caBundle".to_owned(), Value::String(bundle.to_owned()));
        }
    }
    out
}

/// The Services (namespace, name) the webhooks of `object` call, each once,
/// in order; webhooks called by URL call none. Registering a configuration
/// before its Service has a ready endpoint makes every write it covers fail.
pub fn called_services(object: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for webhook in object["webhooks"].as_array().into_iter().flatten() {
        let service = &webhook["clientConfig"]["service"];
        if let (Some(namespace), Some(name)) =
            (service["namespace"].as_str(), service["name"].as_str())
        {
            let pair = (namespace.to_owned(), name.to_owned());
            if !out.contains(&pair) {
                out.push(pair);
            }
        }
    }
    out
}

/// The `caBundle` of every webhook of `object`, by webhook name (absent
/// ones left out).
pub fn ca_bundles(object: &Value) -> Vec<(String, String)> {
    object["webhooks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| {
            Some((
                w["name"].as_str()?.to_owned(),
                w["clientConfig"]["caBundle"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// The part of an admission object that decides admission: everything but
/// `apiVersion`, `kind`, `metadata`, `status` and webhooks' `caBundle`.
pub fn comparable(object: &Value) -> Value {
    let mut out = Map::new();
    for (key, value) in object.as_object().into_iter().flatten() {
        if matches!(key.as_str(), "apiVersion" | "kind" | "metadata" | "status") {
            continue;
        }
        let mut value = value.clone();
        if key == "webhooks" {
            for webhook in value.as_array_mut().into_iter().flatten() {
                if let Some(config) = webhook
                    .get_mut("clientConfig")
                    .and_then(Value::as_object_mut)
                {
                    config.remove("caBundle");
                }
            }
        }
        out.insert(key.clone(), value);
    }
    Value::Object(out)
}

/// Whether `live` differs from `defaulted_git` (git's manifest as the API
/// server defaults it) anywhere but metadata, status and `caBundle`.
pub fn tampered(defaulted_git: &Value, live: &Value) -> bool {
    comparable(defaulted_git) != comparable(live)
}

/// The body that restores `live` to git: `live`'s metadata (labels,
/// annotations, finalizers, resourceVersion as the update precondition) with
/// git's content, keeping the `caBundle` `live` holds for each webhook git
/// names. `managedFields` is left out, so the API server keeps it.
pub fn restored(git_body: &Value, live: &Value) -> Value {
    let mut out = Map::new();
    for (key, value) in git_body.as_object().into_iter().flatten() {
        if key != "metadata" {
            out.insert(key.clone(), value.clone());
        }
    }
    let mut metadata = live["metadata"].clone();
    if let Some(m) = metadata.as_object_mut() {
        m.remove("managedFields");
    }
    out.insert("metadata".to_owned(), metadata);
    let mut out = Value::Object(out);
    keep_ca_bundles(&mut out, &ca_bundles(live));
    out
}

/// The body that creates again an object from git that someone deleted:
/// git's body, with `ca_bundles` (what the deleted object held, by webhook
/// name, from [`ca_bundles`]) for each webhook git names. Git does not hold
/// the bundle (the webhook or a CA injector puts it there), and without it
/// the API server could not verify the webhook it calls.
pub fn recreated(git_body: &Value, ca_bundles: &[(String, String)]) -> Value {
    let mut out = git_body.clone();
    if let Some(metadata) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        for server_set in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
        ] {
            metadata.remove(server_set);
        }
    }
    keep_ca_bundles(&mut out, ca_bundles);
    out
}

/// Gives each webhook of `object` without a `caBundle` the one `bundles`
/// names for it.
fn keep_ca_bundles(object: &mut Value, bundles: &[(String, String)]) {
    let Some(webhooks) = object.get_mut("webhooks").and_then(Value::as_array_mut) else {
        return;
    };
    for webhook in webhooks {
        let bundle = bundles
            .iter()
            .find(|(name, _)| webhook["name"].as_str() == Some(name))
            .map(|(_, bundle)| bundle.clone());
        if let (Some(bundle), Some(config)) = (
            bundle,
            webhook
                .get_mut("clientConfig")
                .and_then(Value::as_object_mut),
        ) {
            config.entry("caBundle").or_insert(Value::String(bundle));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_called_services_are_listed_once_and_urls_call_none() {
        let object = json!({"webhooks": [
            {"clientConfig": {"service": {"namespace": "gitwarden-system", "name": "gitwarden-webhook"}}},
            {"clientConfig": {"service": {"namespace": "gitwarden-system", "name": "gitwarden-webhook", "path": "/mutate"}}},
            {"clientConfig": {"url": "https://127.0.0.1:8443/validate"}},
        ]});
        assert_eq!(
            called_services(&object),
            [(
                "gitwarden-system".to_owned(),
                "gitwarden-webhook".to_owned()
            )]
        );
    }

    #[test]
    fn a_template_holds_webhook_configurations_and_skips_empty_documents() {
        let text = "# gitwarden\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: gitwarden}\nwebhooks: []\n---\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {name: gitwarden}\n";
        let objects = registration_template(text).unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[1]["kind"], "MutatingWebhookConfiguration");
    }

    #[test]
    fn a_template_refuses_other_kinds_unnamed_objects_and_nothing() {
        let policy = "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata: {name: x}\n";
        assert_eq!(
            registration_template(policy).unwrap_err().to_string(),
            "document 1 is \"admissionregistration.k8s.io/v1\" \"ValidatingAdmissionPolicy\": a registration template holds only admissionregistration.k8s.io/v1 Validating- and MutatingWebhookConfigurations"
        );
        let unnamed = "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {}\n";
        assert!(matches!(
            registration_template(unnamed),
            Err(TemplateError::NoName { index: 1 })
        ));
        assert!(matches!(
            registration_template("# nothing\n"),
            Err(TemplateError::Empty)
        ));
        assert!(matches!(
            registration_template("a: [\n"),
            Err(TemplateError::Yaml { index: 1, .. })
        ));
    }

    #[test]
    fn the_bundle_goes_into_every_webhook_and_reads_back_by_name() {
        let stamped = with_ca_bundle(&git(), "LS0t");
        assert_eq!(
            ca_bundles(&stamped),
            [("validate.gitwarden.io".to_owned(), "LS0t".to_owned())]
        );
        assert!(ca_bundles(&git()).is_empty());
    }

    fn git() -> Value {
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "gitwarden", "labels": {"app.kubernetes.io/managed-by": "gitwarden"}},
            "webhooks": [{
                "name": "validate.gitwarden.io",
                "clientConfig": {"url": "https://gitwarden/validate"},
                "failurePolicy": "Fail",
                "matchConditions": [{"name": "not-the-agent", "expression": "true"}]
            }]
        })
    }

    fn live() -> Value {
        let mut live = git();
        live["metadata"]["uid"] = json!("u-1");
        live["metadata"]["resourceVersion"] = json!("42");
        live["metadata"]["managedFields"] = json!([{"manager": "gitwarden"}]);
        live
    }

    #[test]
    fn the_same_content_with_other_metadata_is_not_tampered() {
        assert!(!tampered(&git(), &live()));
    }

    #[test]
    fn an_injected_ca_bundle_is_not_tampering() {
        let mut live = live();
        live["webhooks"][0]["clientConfig"]["caBundle"] = json!("LS0t");
        assert!(!tampered(&git(), &live));
    }

    #[test]
    fn an_added_match_condition_or_webhook_entry_is_tampering() {
        let mut bypass = live();
        bypass["webhooks"][0]["matchConditions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "bypass", "expression": "false"}));
        assert!(tampered(&git(), &bypass));
        let mut extra = live();
        extra["webhooks"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "evil.example.com"}));
        assert!(tampered(&git(), &extra));
        let mut selector = live();
        selector["webhooks"][0]["objectSelector"] = json!({"matchLabels": {"never": "true"}});
        assert!(tampered(&git(), &selector));
    }

    #[test]
    fn the_restored_body_is_git_with_the_live_metadata_and_ca_bundle() {
        let mut live = live();
        live["webhooks"][0]["clientConfig"]["caBundle"] = json!("LS0t");
        live["webhooks"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "evil.example.com"}));
        let body = restored(&git(), &live);
        assert_eq!(body["metadata"]["resourceVersion"], "42");
        assert!(body["metadata"].get("managedFields").is_none());
        assert_eq!(body["webhooks"].as_array().unwrap().len(), 1);
        assert_eq!(body["webhooks"][0]["clientConfig"]["caBundle"], "LS0t");
        assert!(!tampered(&git(), &body));
    }

    #[test]
    fn a_recreated_body_is_git_with_the_deleted_objects_ca_bundle_and_no_server_fields() {
        let mut deleted = live();
        deleted["webhooks"][0]["clientConfig"]["caBundle"] = json!("LS0t");
        let mut body_with_server_fields = git();
        body_with_server_fields["metadata"]["uid"] = json!("old");
        body_with_server_fields["metadata"]["resourceVersion"] = json!("7");
        let body = recreated(&body_with_server_fields, &ca_bundles(&deleted));
        assert!(body["metadata"].get("uid").is_none());
        assert!(body["metadata"].get("resourceVersion").is_none());
        assert_eq!(body["metadata"]["name"], git()["metadata"]["name"]);
        assert_eq!(body["webhooks"][0]["clientConfig"]["caBundle"], "LS0t");
        assert!(!tampered(&git(), &body));
    }

    #[test]
    fn a_recreated_body_never_read_alive_is_gits_as_it_is() {
        assert_eq!(recreated(&git(), &[]), git());
    }
}
