//! Kubernetes Events the agent records: where `kubectl describe` and
//! `kubectl get events` show people what gitwarden did and why: drift healed
//! and break-glass windows held, reverted or deleted (from the sync loop), and
//! the admission guard's removals.

use std::collections::BTreeSet;

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

/// Puts a Warning Event on every object a drift-triggered sync re-applied, so
/// `kubectl describe` shows that someone changed it outside git and that
/// gitwarden put it back. Objects reverted because their break-glass window
/// closed get a `BreakGlassReverted` Event instead.
pub(crate) async fn record_drift_events(
    recorder: &kube::runtime::events::Recorder,
    synced: &gitwarden_agent::status::Synced,
) {
    use gitwarden_apply::Action;
    use kube::runtime::events::EventType;
    let reverted = &synced.report.break_glass.reverted;
    for o in synced
        .report
        .applied
        .iter()
        .filter(|o| matches!(o.action, Action::Configured | Action::Created))
        .filter(|o| !reverted.contains(&o.object))
    {
        let note = format!(
            "changed outside git; re-applied from git revision {}",
            synced.commit
        );
        gitwarden_agent::audit::report(
            gitwarden_agent::audit::AgentReportReason::DriftHealed,
            note.clone(),
            Some(reported(&o.object)),
        );
        publish_on(
            recorder,
            &o.object,
            EventType::Warning,
            "DriftHealed",
            "Reapply",
            note,
        )
        .await;
    }
}

/// Puts a Warning Event `HealthCheckFailed` on every workload the sync
/// changed that was not Current when the health wait ended, as Flux's
/// kustomize-controller reports a failed health check: `kubectl describe`
/// on the Deployment shows that git's change did not become ready, and why.
pub(crate) async fn record_health_events(
    recorder: &kube::runtime::events::Recorder,
    synced: &gitwarden_agent::status::Synced,
    timeout: std::time::Duration,
) {
    use gitwarden_agent::health::HealthStatus;
    use kube::runtime::events::EventType;
    for w in &synced.health {
        let Some(object) = &w.reference else {
            continue;
        };
        if w.health.status == HealthStatus::Current {
            continue;
        }
        let note = format!(
            "not ready {} after applying git revision {}: {:?}: {}",
            humantime::format_duration(timeout),
            synced.commit,
            w.health.status,
            w.health.message
        );
        publish_on(
            recorder,
            object,
            EventType::Warning,
            "HealthCheckFailed",
            "HealthCheck",
            note,
        )
        .await;
    }
}

/// The break-glass windows already announced with a `BreakGlassHeld` Event:
/// (object, end of window). Only the windows still held are remembered, so
/// the set stays as small as the number of open windows.
#[derive(Debug, Default)]
pub(crate) struct HeldWindows(BTreeSet<(gitwarden_manifests::ObjectRef, jiff::Timestamp)>);

impl HeldWindows {
    /// The windows of `held` not announced yet; afterwards the set holds
    /// exactly `held`'s windows.
    pub(crate) fn new_windows<'a>(
        &mut self,
        held: &'a [gitwarden_apply::Held],
    ) -> Vec<&'a gitwarden_apply::Held> {
        let now: BTreeSet<_> = held.iter().map(|h| (h.object.clone(), h.until)).collect();
        let fresh = held
            .iter()
            .filter(|h| !self.0.contains(&(h.object.clone(), h.until)))
            .collect();
        self.0 = now;
        fresh
    }
}

/// Break-glass Events: `BreakGlassHeld` once per window (not on every sync),
/// `BreakGlassReverted` when an object in git went back to git after its
/// window closed, `BreakGlassDeleted` when an object a window created, and
/// that git does not contain, was deleted. An Event on a deleted object stays
/// listable in its namespace until it expires.
pub(crate) async fn record_break_glass_events(
    recorder: &kube::runtime::events::Recorder,
    synced: &gitwarden_agent::status::Synced,
    announced: &mut HeldWindows,
) {
    use kube::runtime::events::EventType;
    let report = &synced.report.break_glass;
    for held in announced.new_windows(&report.held) {
        let note = if held.in_git {
            format!(
                "break-glass change left alone until {}; then reverted to git",
                held.until
            )
        } else {
            format!(
                "created or changed under break-glass, not in git; left alone until {}, then deleted if the window created it",
                held.until
            )
        };
        publish_on(
            recorder,
            &held.object,
            EventType::Warning,
            "BreakGlassHeld",
            "Hold",
            note,
        )
        .await;
    }
    for object in &report.reverted {
        let note = format!(
            "break-glass window closed; reverted to git revision {} and the break-glass stamps removed",
            synced.commit
        );
        gitwarden_agent::audit::report(
            gitwarden_agent::audit::AgentReportReason::BreakGlassReverted,
            note.clone(),
            Some(reported(object)),
        );
        publish_on(
            recorder,
            object,
            EventType::Normal,
            "BreakGlassReverted",
            "Revert",
            note,
        )
        .await;
    }
    for object in &report.deleted {
        let note =
            "break-glass window closed; created under break-glass and not in git, so deleted"
                .to_owned();
        gitwarden_agent::audit::report(
            gitwarden_agent::audit::AgentReportReason::BreakGlassExpired,
            note.clone(),
            Some(reported(object)),
        );
        publish_on(
            recorder,
            object,
            EventType::Normal,
            "BreakGlassDeleted",
            "Delete",
            note,
        )
        .await;
    }
}

/// An object of git as the audit report names it.
fn reported(object: &gitwarden_manifests::ObjectRef) -> gitwarden_agent::audit::ReportedObject {
    gitwarden_agent::audit::ReportedObject {
        group: object.group.clone(),
        version: object.version.clone(),
        kind: object.kind.clone(),
        namespace: object.namespace.clone(),
        name: object.name.clone(),
    }
}

/// Records one Event on an object of git.
async fn publish_on(
    recorder: &kube::runtime::events::Recorder,
    object: &gitwarden_manifests::ObjectRef,
    type_: kube::runtime::events::EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    publish(
        recorder,
        &crate::events::reference(object),
        type_,
        reason,
        action,
        note,
    )
    .await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kube::core::GroupVersionKind;

    #[test]
    fn a_held_window_is_announced_once_and_again_when_a_new_window_opens() {
        let object = gitwarden_manifests::ObjectRef::new(
            &GroupVersionKind::gvk("", "v1", "ConfigMap"),
            Some("shop"),
            "hotfix",
        );
        let held = |until: &str| gitwarden_apply::Held {
            object: object.clone(),
            until: until.parse().expect("a test timestamp"),
            in_git: false,
        };
        let mut announced = HeldWindows::default();
        let first = [held("2026-11-23T06:05:00Z")];
        assert_eq!(announced.new_windows(&first).len(), 1);
        assert_eq!(
            announced.new_windows(&first).len(),
            0,
            "same window, next sync"
        );
        let second = [held("2026-11-23T07:00:00Z")];
        assert_eq!(announced.new_windows(&second).len(), 1, "a new window");
        assert_eq!(announced.new_windows(&[]).len(), 0);
        assert_eq!(
            announced.new_windows(&second).len(),
            1,
            "forgotten once closed"
        );
    }
}
