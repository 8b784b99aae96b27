//! Reporting where this replica stands in the leader election, loudly when
//! no leader is coming: `/status` (`leaderElection`), the gauge
//! `gitwarden_agent_leader_stuck`, an error log line and a Warning Event
//! `LeaderUnavailable` on the Lease, once per stuck period.

use std::sync::Arc;
use std::time::Duration;

use gitwarden_agent::leader::LeaseConfig;
use gitwarden_agent::standby::{Election, StandbyTracker, Standing};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::EventType;
use tokio::sync::watch;

use crate::reporter::Reporter;

/// How many lease durations a standby waits before it calls itself stuck:
/// a leader that died releases nothing, and its lease expires after one.
pub const STUCK_AFTER_LEASES: u32 = 3;

/// Follows the elector's observations until the channel closes.
pub async fn follow(
    client: kube::Client,
    lease: LeaseConfig,
    mut election: watch::Receiver<Election>,
    reporter: Arc<Reporter>,
) {
    let threshold: Duration = lease.lease_duration * STUCK_AFTER_LEASES;
    let mut tracker = StandbyTracker::new(threshold);
    let recorder = crate::events::recorder(client);
    let regarding = ObjectReference {
        api_version: Some("coordination.k8s.io/v1".into()),
        kind: Some("Lease".into()),
        namespace: Some(lease.namespace.clone()),
        name: Some(lease.name.clone()),
        ..Default::default()
    };
    while election.changed().await.is_ok() {
        let seen = election.borrow_and_update().clone();
        let assessment = tracker.observe(jiff::Timestamp::now(), &seen);
        if assessment.newly_stuck
            && let Standing::Stuck {
                message, reason, ..
            } = &assessment.standing
        {
            tracing::error!(lease = %lease.name, namespace = %lease.namespace, ?reason, %message,
                "no leader is coming: nothing syncs git, heals drift or guards the admission chain");
            gitwarden_agent::audit::report(
                gitwarden_agent::audit::AgentReportReason::LeaderUnavailable,
                format!("{message} (reported by {})", lease.identity),
                None,
            );
            crate::events::publish(
                &recorder,
                &regarding,
                EventType::Warning,
                "LeaderUnavailable",
                "Elect",
                format!("{message} (reported by {})", lease.identity),
            )
            .await;
        }
        reporter.leader_election(assessment.standing);
    }
}
