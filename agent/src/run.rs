//! `gitwarden-agent run`: the continuous loop. Sync on an interval (with
//! jitter), on a signed push notification, and on drift: a change to a
//! managed object by anyone else triggers a resync that re-applies only what
//! changed. Errors keep the last applied revision and back off. Only the
//! leader of a Lease syncs; a standby takes over when the leader dies. When
//! a break-glass window is open the loop also wakes up just after it closes,
//! to revert or delete what it held, and records break-glass Events.

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
use crate::status::{Reporter, Role};

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
    let mut announced = HeldWindows::default();
    let mut refusals_announced = crate::refusals::Announced::default();
    let recorder = crate::events::recorder(client.clone());
    loop {
        if !*leading.borrow() {
            return;
        }
        reporter.attempt();
        let delay = match pipeline.sync().await {
            Ok(synced) => {
                let complete = synced.report.is_success();
                if complete {
                    backoff.reset();
                } else if let Some(problems) = synced.report.problems() {
                    tracing::error!(%problems, "sync incomplete; retrying with backoff");
                }
                let kinds = managed_kinds(&synced.report);
                if drift_triggered {
                    record_drift_events(&recorder, &synced).await;
                }
                record_break_glass_events(&recorder, &synced, &mut announced).await;
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
                            watchers.spawn(watch_drift(
                                client.clone(),
                                resolved.resource.clone(),
                                drift.clone(),
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

/// How long to sleep until a held break-glass window closes (plus a second,
/// so the window is really closed when the sync reads it), `None` when no
/// window is open. A window already past yields a short delay.
fn until_expiry(expiry: Option<jiff::Timestamp>, now: jiff::Timestamp) -> Option<Duration> {
    let left = expiry?.duration_since(now);
    let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
    Some(left + Duration::from_secs(1))
}

/// Puts a Warning Event on every object a drift-triggered sync re-applied, so
/// `kubectl describe` shows that someone changed it outside git and that
/// gitwarden put it back. Objects reverted because their break-glass window
/// closed get a `BreakGlassReverted` Event instead.
async fn record_drift_events(
    recorder: &kube::runtime::events::Recorder,
    synced: &crate::pipeline::Synced,
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
        publish(
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

/// The break-glass windows already announced with a `BreakGlassHeld` Event:
/// (object, end of window). Only the windows still held are remembered, so
/// the set stays as small as the number of open windows.
#[derive(Debug, Default)]
struct HeldWindows(BTreeSet<(gitwarden_manifests::ObjectRef, jiff::Timestamp)>);

impl HeldWindows {
    /// The windows of `held` not announced yet; afterwards the set holds
    /// exactly `held`'s windows.
    fn new_windows<'a>(
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
async fn record_break_glass_events(
    recorder: &kube::runtime::events::Recorder,
    synced: &crate::pipeline::Synced,
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
        publish(
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
        publish(
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
        publish(
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

/// Records one Event on an object of git.
async fn publish(
    recorder: &kube::runtime::events::Recorder,
    object: &gitwarden_manifests::ObjectRef,
    type_: kube::runtime::events::EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    crate::events::publish(
        recorder,
        &crate::events::reference(object),
        type_,
        reason,
        action,
        note,
    )
    .await;
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
/// and signals drift on every change after the initial list that
/// [`DriftFilter`] lets through: status-only updates by controllers are not
/// drift. gitwarden's own applies also produce events; the resync they
/// trigger finds nothing to do and sends no writes, so the loop settles.
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
    let mut filter = DriftFilter::default();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::InitDone) => initial = false,
            Ok(watcher::Event::Init) => filter.clear(),
            Ok(watcher::Event::InitApply(object)) => {
                filter.changed(&object.metadata);
            }
            Ok(watcher::Event::Apply(object)) => {
                if filter.changed(&object.metadata) && !initial {
                    drift.notify_one()
                }
            }
            Ok(watcher::Event::Delete(object)) => {
                filter.deleted(&object.metadata);
                if !initial {
                    drift.notify_one()
                }
            }
            Err(e) => {
                tracing::debug!(kind = %resource.kind, error = %e, "drift watch interrupted; retrying")
            }
        }
    }
}

/// Remembers, per watched object, what of it can be drift, so that updates
/// that change nothing gitwarden applies are not mistaken for drift.
///
/// An object with `metadata.generation` (Deployments, custom resources with a
/// status subresource, …) only changes its spec when the generation moves;
/// a status update by its controller keeps the generation. So such an update
/// is drift only if the generation, the labels or the annotations changed.
/// Objects without a generation (ConfigMaps, Secrets, …) have no status to
/// update: every change counts, as before.
#[derive(Debug, Default)]
struct DriftFilter {
    seen: std::collections::HashMap<String, u64>,
}

impl DriftFilter {
    /// Whether this version of the object may be drift, remembering it.
    fn changed(&mut self, meta: &kube::core::ObjectMeta) -> bool {
        let key = Self::key(meta);
        let Some(fingerprint) = Self::fingerprint(meta) else {
            self.seen.remove(&key);
            return true;
        };
        self.seen.insert(key, fingerprint) != Some(fingerprint)
    }

    /// Forgets a deleted object.
    fn deleted(&mut self, meta: &kube::core::ObjectMeta) {
        self.seen.remove(&Self::key(meta));
    }

    /// Forgets everything (a re-list starts).
    fn clear(&mut self) {
        self.seen.clear();
    }

    fn key(meta: &kube::core::ObjectMeta) -> String {
        match &meta.uid {
            Some(uid) => uid.clone(),
            None => format!(
                "{}/{}",
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default()
            ),
        }
    }

    /// A digest of the generation, labels and annotations; `None` for an
    /// object without a generation.
    fn fingerprint(meta: &kube::core::ObjectMeta) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        let generation = meta.generation?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        generation.hash(&mut hasher);
        meta.labels.hash(&mut hasher);
        meta.annotations.hash(&mut hasher);
        Some(hasher.finish())
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
    use kube::core::ObjectMeta;

    fn deployment(generation: i64, replicas_label: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some("web".into()),
            namespace: Some("shop".into()),
            uid: Some("u-1".into()),
            generation: Some(generation),
            resource_version: Some(format!("{generation}{replicas_label}")),
            labels: Some([("tier".to_owned(), replicas_label.to_owned())].into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_status_only_update_of_an_object_with_a_generation_is_not_drift() {
        let mut filter = DriftFilter::default();
        assert!(filter.changed(&deployment(1, "web")), "first sight");
        let mut status_update = deployment(1, "web");
        status_update.resource_version = Some("99".into());
        status_update.managed_fields = Some(vec![Default::default()]);
        assert!(!filter.changed(&status_update));
    }

    #[test]
    fn a_new_generation_or_changed_labels_or_annotations_are_drift() {
        let mut filter = DriftFilter::default();
        filter.changed(&deployment(1, "web"));
        assert!(filter.changed(&deployment(2, "web")), "spec changed");
        assert!(filter.changed(&deployment(2, "db")), "label changed");
        let mut annotated = deployment(2, "db");
        annotated.annotations =
            Some([("gitwarden.io/break-glass".to_owned(), "INC".to_owned())].into());
        assert!(filter.changed(&annotated), "annotation added");
        assert!(!filter.changed(&annotated), "same again");
    }

    #[test]
    fn every_update_of_an_object_without_a_generation_is_drift() {
        let mut filter = DriftFilter::default();
        let mut config_map = deployment(1, "web");
        config_map.generation = None;
        assert!(filter.changed(&config_map));
        assert!(filter.changed(&config_map));
    }

    #[test]
    fn a_deleted_and_recreated_object_is_drift_again() {
        let mut filter = DriftFilter::default();
        filter.changed(&deployment(1, "web"));
        filter.deleted(&deployment(1, "web"));
        assert!(filter.changed(&deployment(1, "web")));
    }

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
