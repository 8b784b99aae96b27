//! The webhook configurations the webhook registers for itself: git's, though
//! the agent does not apply them.
//!
//! gitwarden's own Validating- and MutatingWebhookConfiguration ship as a
//! template in the ConfigMap gitwarden-system/gitwarden-webhook-configurations
//! and the webhook registers them once it can answer (so a broken install
//! never locks the cluster). For the admission guard they are git's all the
//! same: kept (never deleted as "not in git"), and put back to the template
//! when someone changes what server-side apply cannot heal.

use gitwarden_manifests::{Manifest, ObjectRef};
use gitwarden_shared::admission_object::registration_template;
use gitwarden_shared::names::{
    SYSTEM_NAMESPACE, WEBHOOK_REGISTRATION_CONFIGMAP, WEBHOOK_REGISTRATION_KEY,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::GroupVersionKind;
use serde_json::Value;

use super::kind::ADMISSION_GROUP;

/// The configurations of the template ConfigMap among `manifests`, with
/// their bodies; `None` when the revision holds no template ConfigMap (see
/// [`live_registered_configurations`]), empty when its template is unusable
/// (the webhook then registers nothing from it either, and says why).
pub fn registered_configurations<'a>(
    manifests: impl IntoIterator<Item = &'a Manifest>,
) -> Option<Vec<(ObjectRef, Value)>> {
    let template = manifests.into_iter().find(|m| {
        m.gvk.group.is_empty()
            && m.gvk.kind == "ConfigMap"
            && m.name == WEBHOOK_REGISTRATION_CONFIGMAP
            && m.namespace.as_deref() == Some(SYSTEM_NAMESPACE)
    })?;
    let Some(text) = template
        .field("data")
        .and_then(|data| data.get(WEBHOOK_REGISTRATION_KEY).cloned())
        .and_then(|text| text.as_str().map(str::to_owned))
    else {
        tracing::warn!(location = %template.location, key = WEBHOOK_REGISTRATION_KEY, "the webhook's template ConfigMap has no template key");
        return Some(Vec::new());
    };
    Some(configurations_in_template(&text, &template.location))
}

/// The configurations the live template ConfigMap describes, for a
/// repository that does not hold gitwarden's own install (it was installed
/// with `kubectl apply -k deploy/…` and the repository holds the
/// applications only). Without them the admission guard would delete the
/// webhook's registration as "not in git" and the webhook would register it
/// again, over and over. The template lives in gitwarden-system, which the
/// webhook's fail-closed entry keeps to the agent; a repository that holds
/// the install makes the configurations git's outright, which is stronger.
pub async fn live_registered_configurations(client: &kube::Client) -> Vec<(ObjectRef, Value)> {
    let configmaps: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), SYSTEM_NAMESPACE);
    match configmaps.get_opt(WEBHOOK_REGISTRATION_CONFIGMAP).await {
        Ok(Some(cm)) => {
            let location =
                format!("live ConfigMap {SYSTEM_NAMESPACE}/{WEBHOOK_REGISTRATION_CONFIGMAP}");
            match cm
                .data
                .as_ref()
                .and_then(|d| d.get(WEBHOOK_REGISTRATION_KEY))
            {
                Some(text) => configurations_in_template(text, &location),
                None => Vec::new(),
            }
        }
        Ok(None) => Vec::new(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the webhook's live template ConfigMap: its configurations are not kept this sync");
            Vec::new()
        }
    }
}

/// The configurations a template's text describes, with their bodies.
fn configurations_in_template(
    text: &str,
    location: &dyn std::fmt::Display,
) -> Vec<(ObjectRef, Value)> {
    match registration_template(text) {
        Ok(objects) => objects
            .into_iter()
            .filter_map(|object| {
                let kind = object["kind"].as_str()?.to_owned();
                let name = object["metadata"]["name"].as_str()?.to_owned();
                let gvk = GroupVersionKind::gvk(ADMISSION_GROUP, "v1", &kind);
                Some((ObjectRef::new(&gvk, None, &name), object))
            })
            .collect(),
        Err(e) => {
            tracing::warn!(location = %location, error = %e, "the webhook's template ConfigMap is unusable: its configurations are not git's");
            Vec::new()
        }
    }
}
