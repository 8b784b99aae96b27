//! `gitwarden-agent run`: the continuous loop (the drift watch is in
//! `drift`, the Events it records in `events`). Sync on an interval (with
//! jitter), on a signed push notification, and on drift: a change to a
//! managed object by anyone else triggers a resync that re-applies only what
//! changed. Errors keep the last applied revision and back off. Only the
//! leader of a Lease syncs; a standby takes over when the leader dies. When
//! a break-glass window is open the loop also wakes up just after it closes,
//! to revert or delete what it held, and records break-glass Events.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use gitwarden_agent::leader::{LeaderElector, LeaseConfig};
use gitwarden_source::{Backoff, SeededRandom, interval_with_jitter};
use kube::core::GroupVersionKind;
use tokio::sync::{Notify, watch};

use crate::pipeline::Pipeline;
use crate::reporter::Reporter;
use gitwarden_agent::status::Role;

/// Settings of the loop.
pub struct LoopSettings {
    /// Time between syncs.
    pub interval: Duration,
    /// Share of the interval added or removed at random, so replicas of many
    /// clusters do not hit the git server in lockstep.
    pub jitter: f64,
    /// Shortest time between two drift-triggered resyncs.
    pub drift_debounce: Duration,
}

/// Runs syncs until leadership is lost (the caller exits then).
pub async fn sync_loop(
    pipeline: Pipeline,
    reporter: Arc<Reporter>,
    trigger: Arc<Notify>,
    settings: LoopSettings,
    client: kube::Client,
    mut leading: watch::Receiver<bool>,
) {
    let mut random = SeededRandom::from_entropy();
    let mut backoff = Backoff::new(
        Duration::from_secs(2),
        settings.interval.max(Duration::from_secs(2)),
    );
    let drift = Arc::new(Notify::new());
    let mut watched: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut watchers = tokio::task::JoinSet::new();
    let mut drift_triggered = false;
    let mut announced = crate::events::HeldWindows::default();
    let mut refusals_announced = crate::refusals::Announced::default();
    let recorder = crate::events::recorder(client.clone());
    // Reported to the audit log once per failure streak, and once when it ends.
    let mut failing = false;
    loop {
        if !*leading.borrow() {
            return;
        }
        reporter.attempt();
        let delay = match pipeline.sync().await {
            Ok(synced) => {
                let complete = synced.report.is_success();
                if complete && std::mem::take(&mut failing) {
                    gitwarden_agent::audit::report(
                        gitwarden_agent::audit::AgentReportReason::SyncRecovered,
                        format!("sync succeeded again at revision {}", synced.commit),
                        None,
                    );
                }
                if complete {
                    backoff.reset();
                } else if let Some(problems) = synced.report.problems() {
                    tracing::error!(%problems, "sync incomplete; retrying with backoff");
                }
                let kinds = crate::drift::managed_kinds(&synced.report);
                if drift_triggered {
                    crate::events::record_drift_events(&recorder, &synced).await;
                }
                crate::events::record_break_glass_events(&recorder, &synced, &mut announced).await;
                crate::events::record_health_events(&recorder, &synced, pipeline.health_timeout())
                    .await;
                reporter.health(&synced.health);
                crate::refusals::record(
                    &recorder,
                    &reporter,
                    crate::refusals::from_report(&synced.report),
                    &mut refusals_announced,
                )
                .await;
                let next_expiry = synced.report.break_glass.next_expiry();
                reporter.success(
                    &synced.commit,
                    synced.signer.clone(),
                    synced.report,
                    drift_triggered,
                );
                if kinds != watched {
                    watchers.abort_all();
                    for (group, version, kind) in &kinds {
                        let gvk = GroupVersionKind::gvk(group, version, kind);
                        if let Some(resolved) = pipeline.discovery().resolve(&gvk) {
                            watchers.spawn(crate::drift::watch_drift(
                                client.clone(),
                                resolved.resource.clone(),
                                drift.clone(),
                                pipeline.git_objects(),
                            ));
                        }
                    }
                    watched = kinds;
                }
                let interval = if complete {
                    interval_with_jitter(settings.interval, settings.jitter, &mut random)
                } else {
                    backoff.next_delay(&mut random)
                };
                until_expiry(next_expiry, jiff::Timestamp::now())
                    .map_or(interval, |expiry| expiry.min(interval))
            }
            Err(e) => {
                crate::refusals::record(
                    &recorder,
                    &reporter,
                    crate::refusals::from_error(&e),
                    &mut refusals_announced,
                )
                .await;
                let unverified = matches!(
                    &e,
                    crate::pipeline::PipelineError::Source(
                        gitwarden_source::SourceError::Unverified { .. }
                    )
                );
                let message = format!("{:#}", anyhow::Error::new(e));
                if !std::mem::replace(&mut failing, true) {
                    let reason = if unverified {
                        gitwarden_agent::audit::AgentReportReason::SignatureVerificationFailed
                    } else {
                        gitwarden_agent::audit::AgentReportReason::SyncFailed
                    };
                    gitwarden_agent::audit::report(reason, message.clone(), None);
                }
                tracing::error!(error = %message, "sync failed; keeping the last applied revision");
                reporter.failure(message);
                backoff.next_delay(&mut random)
            }
        };
        drift_triggered = false;
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = trigger.notified() => {}
            () = drift.notified() => {
                // Let a burst of changes settle, then heal them in one resync.
                tokio::time::sleep(settings.drift_debounce).await;
                drift_triggered = true;
            }
            _ = leading.changed() => {}
        }
    }
}

/// How long to sleep until a held break-glass window closes (plus a second,
/// so the window is really closed when the sync reads it), `None` when no
/// window is open. A window already past yields a short delay.
fn until_expiry(expiry: Option<jiff::Timestamp>, now: jiff::Timestamp) -> Option<Duration> {
    let left = expiry?.duration_since(now);
    let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
    Some(left + Duration::from_secs(1))
}

/// Runs the loop under leader election; returns when this replica should exit.
pub async fn run_with_leader_election<F, Fut>(
    client: kube::Client,
    lease: LeaseConfig,
    reporter: Arc<Reporter>,
    work: F,
) -> anyhow::Result<()>
where
    F: FnOnce(watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    reporter.set_role(Role::Standby);
    let (observer, election) = watch::channel(gitwarden_agent::standby::Election::Starting);
    let standing = tokio::spawn(crate::leader_report::follow(
        client.clone(),
        lease.clone(),
        election,
        reporter.clone(),
    ));
    let elector = LeaderElector::new(client, lease)?.with_observer(observer);
    let reporter_for_work = reporter.clone();
    let outcome = elector
        .run(
            gitwarden_runtime::signals::shutdown_signal(),
            move |leading| {
                reporter_for_work.set_role(Role::Leader);
                work(leading)
            },
        )
        .await;
    standing.abort();
    let outcome = outcome?;
    tracing::info!(?outcome, "leader election ended");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_sync_wakes_just_after_the_earliest_window_closes() {
        let now: jiff::Timestamp = "2026-11-23T06:00:00Z".parse().unwrap();
        let later = now
            .checked_add(jiff::SignedDuration::from_secs(30))
            .unwrap();
        assert_eq!(
            until_expiry(Some(later), now),
            Some(Duration::from_secs(31))
        );
        let past = now.checked_sub(jiff::SignedDuration::from_secs(5)).unwrap();
        assert_eq!(until_expiry(Some(past), now), Some(Duration::from_secs(1)));
        assert_eq!(until_expiry(None, now), None);
    }
}
