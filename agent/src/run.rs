//! `gitwarden-agent run`: the continuous loop. Sync on an interval (with
//! jitter), on a signed push notification, and on drift: a change to a
//! managed object by anyone else triggers a resync that re-applies only what
//! changed. Errors keep the last applied revision and back off. Only the
//! leader of a Lease syncs; a standby takes over when the leader dies.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use gitwarden_agent::leader::{LeaderElector, LeaseConfig};
use gitwarden_source::{Backoff, SeededRandom, interval_with_jitter};
use kube::api::{Api, DynamicObject, PartialObjectMeta};
use kube::core::GroupVersionKind;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{Notify, watch};

use crate::pipeline::Pipeline;
use crate::status::Reporter;

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
    let recorder = kube::runtime::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: "gitwarden-agent".into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    loop {
        if !*leading.borrow() {
            return;
        }
        reporter.attempt();
        let delay = match pipeline.sync().await {
            Ok(synced) => {
                backoff.reset();
                let kinds = managed_kinds(&synced.report);
                if drift_triggered {
                    record_drift_events(&recorder, &synced).await;
                }
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
                            watchers.spawn(watch_drift(
                                client.clone(),
                                resolved.resource.clone(),
                                drift.clone(),
                            ));
                        }
                    }
                    watched = kinds;
                }
                interval_with_jitter(settings.interval, settings.jitter, &mut random)
            }
            Err(e) => {
                let message = format!("{:#}", anyhow::Error::new(e));
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

/// Puts a Warning Event on every object a drift-triggered sync re-applied, so
/// `kubectl describe` shows that someone changed it outside git and that
/// gitwarden put it back.
async fn record_drift_events(
    recorder: &kube::runtime::events::Recorder,
    synced: &crate::pipeline::Synced,
) {
    use gitwarden_apply::Action;
    use kube::runtime::events::{Event, EventType};
    for o in synced
        .report
        .applied
        .iter()
        .filter(|o| matches!(o.action, Action::Configured | Action::Created))
    {
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(o.object.api_version()),
            kind: Some(o.object.kind.clone()),
            namespace: o.object.namespace.clone(),
            name: Some(o.object.name.clone()),
            ..Default::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: "DriftHealed".into(),
            note: Some(format!(
                "changed outside git; re-applied from git revision {}",
                synced.commit
            )),
            action: "Reapply".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(object = %o.object, error = %e, "could not record the drift Event");
        }
    }
}

/// The kinds of the objects gitwarden manages: (group, version, kind).
fn managed_kinds(report: &gitwarden_apply::SyncReport) -> BTreeSet<(String, String, String)> {
    report
        .applied
        .iter()
        .map(|o| {
            (
                o.object.group.clone(),
                o.object.version.clone(),
                o.object.kind.clone(),
            )
        })
        .collect()
}

/// Watches one kind's managed objects (label `app.kubernetes.io/managed-by=gitwarden`)
/// and signals drift on every change after the initial list. gitwarden's own
/// applies also produce events; the resync they trigger finds nothing to do
/// and sends no writes, so the loop settles.
async fn watch_drift(
    client: kube::Client,
    resource: kube::discovery::ApiResource,
    drift: Arc<Notify>,
) {
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &resource);
    let selector = format!(
        "{}={}",
        gitwarden_shared::names::MANAGED_BY_LABEL,
        gitwarden_shared::names::MANAGED_BY_VALUE
    );
    let mut events = watcher(api, watcher::Config::default().labels(&selector))
        .default_backoff()
        .boxed();
    let mut initial = true;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::InitDone) => initial = false,
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) if !initial => {
                drift.notify_one()
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(kind = %resource.kind, error = %e, "drift watch interrupted; retrying")
            }
        }
    }
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
    reporter.set_role("standby");
    let elector = LeaderElector::new(client, lease)?;
    let reporter_for_work = reporter.clone();
    let outcome = elector
        .run(shutdown_signal(), move |leading| {
            reporter_for_work.set_role("leader");
            work(leading)
        })
        .await?;
    tracing::info!(?outcome, "leader election ended");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
