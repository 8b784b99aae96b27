//! Kubernetes Events the agent records: where `kubectl describe` and
//! `kubectl get events` show people what gitwarden did and why.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// The agent's Event recorder (reporting controller `gitwarden-agent`,
/// instance `$POD_NAME`).
pub fn recorder(client: kube::Client) -> Recorder {
    Recorder::new(
        client,
        Reporter {
            controller: "gitwarden-agent".into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    )
}

/// The reference to an object of git, for [`publish`].
pub fn reference(object: &gitwarden_manifests::ObjectRef) -> ObjectReference {
    ObjectReference {
        api_version: Some(object.api_version()),
        kind: Some(object.kind.clone()),
        namespace: object.namespace.clone(),
        name: Some(object.name.clone()),
        ..Default::default()
    }
}

/// Records one Event about `regarding`; a failure is logged, never fatal.
/// Events of cluster-scoped objects land in the `default` namespace.
pub async fn publish(
    recorder: &Recorder,
    regarding: &ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, regarding).await {
        tracing::warn!(
            kind = regarding.kind.as_deref().unwrap_or_default(),
            name = regarding.name.as_deref().unwrap_or_default(),
            reason,
            error = %e,
            "could not record the Event"
        );
    }
}
