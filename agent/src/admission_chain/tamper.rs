//! Admission objects from git, changed where server-side apply cannot heal.
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
//! Only the `caBundle` of webhooks is exempt: gitwarden-certs (or
//! cert-manager's CA injector) writes it by design, and git does not hold it.

use serde_json::{Map, Value};

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
    if let Some(webhooks) = out.get_mut("webhooks").and_then(Value::as_array_mut) {
        for webhook in webhooks {
            let name = webhook["name"].clone();
            let bundle = live["webhooks"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|w| w["name"] == name)
                .and_then(|w| w["clientConfig"].get("caBundle"))
                .cloned();
            if let (Some(bundle), Some(config)) = (
                bundle,
                webhook
                    .get_mut("clientConfig")
                    .and_then(Value::as_object_mut),
            ) {
                config.entry("caBundle").or_insert(bundle);
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
