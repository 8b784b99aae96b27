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
use kube::core::GroupVersionKind;
use serde_json::Value;

use super::kind::ADMISSION_GROUP;

/// The configurations of the template ConfigMap among `manifests`, with
/// their bodies; none when the revision holds no template or an unusable
/// one (the webhook then registers nothing from it either, and says why).
pub fn registered_configurations<'a>(
    manifests: impl IntoIterator<Item = &'a Manifest>,
) -> Vec<(ObjectRef, Value)> {
    let Some(template) = manifests.into_iter().find(|m| {
        m.gvk.group.is_empty()
            && m.gvk.kind == "ConfigMap"
            && m.name == WEBHOOK_REGISTRATION_CONFIGMAP
            && m.namespace.as_deref() == Some(SYSTEM_NAMESPACE)
    }) else {
        return Vec::new();
    };
    let Some(text) = template
        .field("data")
        .and_then(|data| data.get(WEBHOOK_REGISTRATION_KEY).cloned())
        .and_then(|text| text.as_str().map(str::to_owned))
    else {
        tracing::warn!(location = %template.location, key = WEBHOOK_REGISTRATION_KEY, "the webhook's template ConfigMap has no template key");
        return Vec::new();
    };
    match registration_template(&text) {
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
            tracing::warn!(location = %template.location, error = %e, "the webhook's template ConfigMap is unusable: its configurations are not git's");
            Vec::new()
        }
    }
}
