//! Follows the policy ConfigMap (`gitwarden-system/gitwarden-policy`, key
//! `policy.yaml`) for the `admissionChain` section the admission guard needs.
//!
//! The policy is read from the cluster, like the webhook reads it, so the
//! agent and the webhook agree on it. A missing ConfigMap is the default
//! policy (allow nothing outside git); a document that does not parse keeps
//! the last good one (or allows nothing if there was none), and says so.

use futures::StreamExt;
use gitwarden_agent::admission_chain::{PolicyInForce, PolicyTracker, PolicyUpdate};
use gitwarden_shared::names::POLICY_KEY;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use crate::cli::Namespaced;

/// Watches `configmap` and publishes the `admissionChain` in force: `None`
/// until the ConfigMap was first listed (the guard removes nothing before).
pub async fn follow(
    client: kube::Client,
    configmap: Namespaced,
    publish: watch::Sender<Option<PolicyInForce>>,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, &configmap.namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={}", configmap.name));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut tracker = PolicyTracker::default();
    let mut listed: Option<Option<String>> = None;
    while let Some(event) = events.next().await {
        let text = match event {
            Ok(watcher::Event::Init) => {
                listed = Some(None);
                continue;
            }
            Ok(watcher::Event::InitApply(cm)) => {
                listed = Some(policy_text(cm));
                continue;
            }
            Ok(watcher::Event::InitDone) => listed.take().flatten(),
            Ok(watcher::Event::Apply(cm)) => policy_text(cm),
            Ok(watcher::Event::Delete(_)) => None,
            Err(e) => {
                tracing::warn!(policy = %configmap, error = %e, "policy watch interrupted; retrying");
                continue;
            }
        };
        let update = tracker.observe(text.as_deref());
        match &update {
            PolicyUpdate::Loaded => {
                tracing::info!(policy = %configmap, "admission-chain policy loaded")
            }
            PolicyUpdate::Missing => tracing::info!(policy = %configmap,
                "no policy ConfigMap (or no policy.yaml): the default policy is in force, no admission object is allowed outside git"),
            PolicyUpdate::KeptLastGood { error } => tracing::error!(policy = %configmap, %error,
                "the policy does not parse; keeping the last good admissionChain"),
            PolicyUpdate::NothingAllowed { error } => tracing::error!(policy = %configmap, %error,
                "the policy does not parse and none was good before: no admission object is allowed outside git"),
        }
        publish.send_replace(tracker.current());
    }
}

fn policy_text(cm: ConfigMap) -> Option<String> {
    cm.data.and_then(|mut data| data.remove(POLICY_KEY))
}
