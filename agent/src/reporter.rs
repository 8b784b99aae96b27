//! The agent's reporter: keeps the status document ([`gitwarden_agent::status`])
//! current and exports it as metrics, updated by the sync loop.

use std::sync::{Arc, RwLock};

use gitwarden_agent::standby::Standing;
use gitwarden_agent::status::{
    GuardState, GuardStatus, RECENT_REMOVALS, RefusalReport, Removal, Role, Status,
};
use gitwarden_apply::{Action, SyncReport};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the per-object outcome counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

/// Labels of the admission-object removal counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

/// Labels of the admission refusal counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin_kind: &'static str,
    plugin: String,
}

/// Labels of the revision info gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevisionLabels {
    revision: String,
}

/// Shared status plus metrics, updated by the sync loop.
pub struct Reporter {
    status: RwLock<Status>,
    /// Sync duration.
    sync_seconds: Histogram,
    objects: Family<ActionLabels, Counter>,
    pruned: Counter,
    drift_healed: Counter,
    break_glass_held: Gauge,
    break_glass_reverted: Counter,
    break_glass_deleted: Counter,
    failures: Counter,
    last_success: Gauge,
    revision: Family<RevisionLabels, Gauge>,
    admission_removed: Family<KindLabels, Counter>,
    admission_restored: Family<KindLabels, Counter>,
    admission_refused: Family<PluginLabels, Counter>,
    leader_stuck: Gauge,
    /// The registry rendered at /metrics.
    pub registry: Registry,
}

impl Reporter {
    /// A reporter with its metrics registered under `gitwarden_agent`.
    pub fn new(source: String) -> Arc<Self> {
        let sync_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        let objects = Family::<ActionLabels, Counter>::default();
        let (pruned, drift_healed, failures) =
            (Counter::default(), Counter::default(), Counter::default());
        let last_success = Gauge::default();
        let break_glass_held = Gauge::default();
        let (break_glass_reverted, break_glass_deleted) = (Counter::default(), Counter::default());
        let revision = Family::<RevisionLabels, Gauge>::default();
        let mut registry = Registry::default();
        let sub = registry.sub_registry_with_prefix("gitwarden_agent");
        sub.register(
            "sync_duration_seconds",
            "Time of a whole sync",
            sync_seconds.clone(),
        );
        sub.register(
            "objects",
            "Objects by sync outcome (created, configured, unchanged, failed, break_glass)",
            objects.clone(),
        );
        sub.register(
            "pruned_objects",
            "Objects deleted because they left git",
            pruned.clone(),
        );
        sub.register(
            "drift_healed",
            "Objects re-applied after a change outside git",
            drift_healed.clone(),
        );
        sub.register(
            "break_glass_held",
            "Objects under an open break-glass window at the last sync",
            break_glass_held.clone(),
        );
        sub.register(
            "break_glass_reverted",
            "Objects reverted to git after their break-glass window closed",
            break_glass_reverted.clone(),
        );
        sub.register(
            "break_glass_deleted",
            "Objects created under break-glass and not in git, deleted after their window closed",
            break_glass_deleted.clone(),
        );
        sub.register(
            "sync_failures",
            "Syncs that failed (git, manifests or cluster)",
            failures.clone(),
        );
        sub.register(
            "last_success_timestamp_seconds",
            "When the last sync succeeded (Unix seconds)",
            last_success.clone(),
        );
        sub.register(
            "revision_info",
            "The applied revision, as a label (value 1)",
            revision.clone(),
        );
        let admission_removed = Family::<KindLabels, Counter>::default();
        sub.register(
            "admission_objects_removed",
            "Admission objects (webhook configurations, admission policies, bindings) deleted because they were neither in git nor allowed by the policy",
            admission_removed.clone(),
        );
        let admission_restored = Family::<KindLabels, Counter>::default();
        sub.register(
            "admission_objects_restored",
            "Admission objects from git restored after someone added to them what a re-apply does not remove",
            admission_restored.clone(),
        );
        let admission_refused = Family::<PluginLabels, Counter>::default();
        sub.register(
            "admission_refused",
            "Objects of git refused by an admission plugin gitwarden does not own, per attempt",
            admission_refused.clone(),
        );
        let leader_stuck = Gauge::default();
        sub.register(
            "leader_stuck",
            "1 while this replica waits for a leader that is not coming (a Lease holder that does not renew, an unreachable Lease)",
            leader_stuck.clone(),
        );
        Arc::new(Reporter {
            status: RwLock::new(Status {
                role: Role::Starting,
                source,
                ..Default::default()
            }),
            sync_seconds,
            objects,
            pruned,
            drift_healed,
            break_glass_held,
            break_glass_reverted,
            break_glass_deleted,
            failures,
            last_success,
            revision,
            admission_removed,
            admission_restored,
            admission_refused,
            leader_stuck,
            registry,
        })
    }

    /// A copy of the status.
    pub fn status(&self) -> Status {
        self.status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.write().unwrap_or_else(|e| e.into_inner()));
    }

    /// Records this replica's role.
    pub fn set_role(&self, role: Role) {
        self.update(|s| s.role = role);
    }

    /// Records the start of an attempt.
    pub fn attempt(&self) {
        self.update(|s| s.last_attempt = Some(jiff::Timestamp::now().to_string()));
    }

    /// Records a sync that ran to the end. A sync with failed objects, a
    /// refused prune or a failed delete counts as a failure: `error` names
    /// them and `lastSuccess` stays. `drift` says whether the sync was triggered
    /// by a change in the cluster rather than in git: then every re-applied
    /// object was drift.
    pub fn success(&self, commit: &str, signer: Option<String>, report: SyncReport, drift: bool) {
        self.sync_seconds.observe(report.duration.as_secs_f64());
        let mut healed = 0;
        for o in &report.applied {
            let label = match &o.action {
                Action::Created => "created",
                Action::Configured => "configured",
                Action::Recreated => "recreated",
                Action::Unchanged => "unchanged",
                Action::Failed(_) => "failed",
                Action::BreakGlass(_) => "break_glass",
            };
            self.objects
                .get_or_create(&ActionLabels { action: label })
                .inc();
            let reverted = report.break_glass.reverted.contains(&o.object);
            if drift && !reverted && matches!(o.action, Action::Configured | Action::Created) {
                healed += 1;
                tracing::warn!(object = %o.object, "drift healed: changed outside git, re-applied from git");
            }
        }
        self.pruned.inc_by(report.pruned.len() as u64);
        self.drift_healed.inc_by(healed);
        let bg = &report.break_glass;
        let (reverted, deleted) = (bg.reverted.len() as u64, bg.deleted.len() as u64);
        self.break_glass_held
            .set(i64::try_from(bg.held.len()).unwrap_or(i64::MAX));
        self.break_glass_reverted.inc_by(reverted);
        self.break_glass_deleted.inc_by(deleted);
        let problems = report.problems();
        if problems.is_some() {
            self.failures.inc();
        }
        let now = jiff::Timestamp::now();
        if problems.is_none() {
            self.last_success.set(now.as_second());
        }
        self.revision.clear();
        self.revision
            .get_or_create(&RevisionLabels {
                revision: commit.to_string(),
            })
            .set(1);
        self.update(|s| {
            s.revision = Some(commit.to_string());
            s.verified_signer = signer;
            if problems.is_none() {
                s.last_success = Some(now.to_string());
            }
            s.last_report = Some(report);
            s.drift_healed += healed;
            s.break_glass_reverted += reverted;
            s.break_glass_deleted += deleted;
            s.error = problems.map(|p| format!("sync incomplete: {p}"));
        });
    }

    /// Records the health of the workloads a sync changed; a sync that
    /// changed none keeps the last ones.
    pub fn health(&self, workloads: &[gitwarden_agent::status::WorkloadHealth]) {
        if workloads.is_empty() {
            return;
        }
        self.update(|s| s.workloads = workloads.to_vec());
    }

    /// Records a failed sync; the applied revision stays as it was.
    pub fn failure(&self, error: String) {
        self.failures.inc();
        self.update(|s| s.error = Some(error));
    }

    /// Records the admission refusals of the last attempt (empty: none),
    /// counting each.
    pub fn admission_refusals(&self, refusals: Vec<RefusalReport>) {
        for r in &refusals {
            self.admission_refused
                .get_or_create(&PluginLabels {
                    plugin_kind: r.refused_by.plugin_kind(),
                    plugin: r.refused_by.plugin().to_owned(),
                })
                .inc();
        }
        self.update(|s| s.admission_refusals = refusals);
    }

    /// Records the admission-chain guard's state.
    pub fn admission_guard(&self, guard: GuardStatus) {
        self.update(|s| s.admission_guard = guard);
    }

    /// Records whether the guard is armed (keeping the kinds it watches).
    pub fn admission_guard_state(&self, state: GuardState) {
        self.update(|s| s.admission_guard.state = state);
    }

    /// Records one admission object deleted by the guard.
    pub fn admission_object_removed(&self, removal: Removal) {
        self.admission_removed
            .get_or_create(&KindLabels {
                kind: removal.kind.clone(),
            })
            .inc();
        self.update(|s| {
            s.admission_objects_removed += 1;
            s.recent_admission_removals.push(removal);
            let excess = s
                .recent_admission_removals
                .len()
                .saturating_sub(RECENT_REMOVALS);
            s.recent_admission_removals.drain(..excess);
        });
    }

    /// Records one admission object from git restored by the guard.
    pub fn admission_object_restored(&self, kind: &str) {
        self.admission_restored
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
        self.update(|s| s.admission_objects_restored += 1);
    }

    /// Records where this replica stands in the leader election.
    pub fn leader_election(&self, standing: Standing) {
        self.leader_stuck.set(i64::from(standing.is_stuck()));
        self.update(|s| s.leader_election = standing);
    }
}
