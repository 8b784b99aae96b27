//! Why gitwarden's webhook configurations are not registered.
//!
//! The webhook registers them itself once a replica can answer, so their
//! absence after an install is not the problem but its symptom: the cluster
//! is writable because no replica is ready. This says which step is stuck —
//! the template, the certificates, the pods (an image that cannot be pulled,
//! a crash loop) — so whoever installed gitwarden knows what to fix.

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::Client;
use kube::api::{Api, ListParams};

use crate::report::Finding;
use gitwarden_shared::names::{
    WEBHOOK_REGISTRATION_CONFIGMAP, WEBHOOK_REGISTRATION_KEY, WEBHOOK_TLS_SECRET,
};

/// The label selector of the webhook's pods (`deploy/base/webhook.yaml`).
const WEBHOOK_PODS: &str = "app.kubernetes.io/name=gitwarden,app.kubernetes.io/component=webhook";

/// The label selector of the certificate bootstrap Job's pods (set by the Job
/// controller).
const BOOTSTRAP_JOB_PODS: &str = "batch.kubernetes.io/job-name=gitwarden-certs-bootstrap";

/// One finding naming the first stuck step, for a cluster where the
/// ValidatingWebhookConfiguration does not exist.
pub async fn why_unregistered(client: &Client, system_namespace: &str) -> Finding {
    const CHECK: &str = "webhook/registration";
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), system_namespace);
    match configmaps.get_opt(WEBHOOK_REGISTRATION_CONFIGMAP).await {
        Ok(Some(cm))
            if cm
                .data
                .as_ref()
                .is_some_and(|d| d.contains_key(WEBHOOK_REGISTRATION_KEY)) => {}
        Ok(_) => {
            return Finding::critical(
                CHECK,
                format!(
                    "nothing enforces: ConfigMap {system_namespace}/{WEBHOOK_REGISTRATION_CONFIGMAP} (key {WEBHOOK_REGISTRATION_KEY}), the template the webhook registers its configurations from, is missing; apply deploy/base (or register the configurations from deploy/local or deploy/admission yourself)"
                ),
            );
        }
        Err(e) => {
            return Finding::critical(
                CHECK,
                format!("nothing enforces, and the template ConfigMap cannot be read: {e}"),
            );
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), system_namespace);
    match secrets.get_opt(WEBHOOK_TLS_SECRET).await {
        Ok(Some(secret))
            if secret
                .data
                .as_ref()
                .is_some_and(|d| d.get("tls.crt").is_some_and(|v| !v.0.is_empty())) => {}
        Ok(_) => {
            // The Job runs the webhook's image: an image that cannot be
            // pulled shows here first, and is the thing to fix.
            let job_pods = pod_states(client, system_namespace, BOOTSTRAP_JOB_PODS).await;
            let job_pods = match job_pods {
                Ok(states) if !states.is_empty() => format!("; its pods: {}", states.join("; ")),
                _ => String::new(),
            };
            return Finding::critical(
                CHECK,
                format!(
                    "nothing enforces: Secret {system_namespace}/{WEBHOOK_TLS_SECRET} holds no serving certificate yet, so no webhook replica can answer; check Job gitwarden-certs-bootstrap (`kubectl -n {system_namespace} logs job/gitwarden-certs-bootstrap`) or cert-manager's Certificate gitwarden-webhook-tls{job_pods}"
                ),
            );
        }
        Err(e) => {
            return Finding::critical(
                CHECK,
                format!("nothing enforces, and Secret {WEBHOOK_TLS_SECRET} cannot be read: {e}"),
            );
        }
    }
    let states = match pod_states(client, system_namespace, WEBHOOK_PODS).await {
        Ok(states) => states,
        Err(e) => {
            return Finding::critical(
                CHECK,
                format!("nothing enforces, and the webhook pods cannot be listed: {e}"),
            );
        }
    };
    if states.is_empty() {
        return Finding::critical(
            CHECK,
            format!(
                "nothing enforces: no webhook pod exists in {system_namespace} (StatefulSet gitwarden-webhook: `kubectl -n {system_namespace} describe statefulset gitwarden-webhook`)"
            ),
        );
    }
    Finding::critical(
        CHECK,
        format!(
            "nothing enforces: no webhook replica has registered the configurations, which it does once it can answer; webhook pods: {}",
            states.join("; ")
        ),
    )
}

/// The state of every pod matching `selector`, as [`pod_state`] says it.
async fn pod_states(
    client: &Client,
    namespace: &str,
    selector: &str,
) -> Result<Vec<String>, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let listed = pods.list(&ListParams::default().labels(selector)).await?;
    Ok(listed.items.iter().map(pod_state).collect())
}

/// `gitwarden-webhook-0: ImagePullBackOff (Back-off pulling image "…")`.
fn pod_state(pod: &Pod) -> String {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let status = pod.status.as_ref();
    let waiting = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .find_map(|c| c.state.as_ref()?.waiting.as_ref());
    if let Some(waiting) = waiting {
        let reason = waiting.reason.as_deref().unwrap_or("Waiting");
        return match waiting.message.as_deref() {
            Some(message) => format!("{name}: {reason} ({message})"),
            None => format!("{name}: {reason}"),
        };
    }
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
    if ready {
        format!("{name}: Ready (registration failing: see its log)")
    } else {
        format!(
            "{name}: {phase}, not ready (its /readyz says why: policy, certificate, audit volume)"
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_that_cannot_pull_its_image_is_named_with_the_reason() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "gitwarden-webhook-0"},
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "webhook", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ErrImageNeverPull", "message": "image \"x\" is not present"}}
            }]}
        }))
        .unwrap();
        assert_eq!(
            pod_state(&pod),
            "gitwarden-webhook-0: ErrImageNeverPull (image \"x\" is not present)"
        );
    }

    #[test]
    fn a_running_unready_pod_points_at_readyz() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "gitwarden-webhook-1"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}
        }))
        .unwrap();
        assert!(pod_state(&pod).starts_with("gitwarden-webhook-1: Running, not ready"));
    }
}
