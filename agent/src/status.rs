//! What the agent reports at GET /status, in `gitwarden-agent status`, and as
//! metrics: the source, the revision in force, the last attempt and success,
//! per-object results, drift healed, and the last error.

use std::sync::{Arc, RwLock};

use gitwarden_apply::{Action, SyncReport};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;

/// The agent's status document.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `leader`, `standby` or `starting`.
    pub role: String,
    /// The git repository (never with credentials).
    pub source: String,
    /// The commit applied last (kept while git is unreachable).
    pub revision: Option<String>,
    /// Who signed it, when verification is on.
    pub verified_signer: Option<String>,
    /// When the last sync attempt started (RFC 3339).
    pub last_attempt: Option<String>,
    /// When the last sync succeeded (RFC 3339).
    pub last_success: Option<String>,
    /// The last sync's report (objects, pruned, writes).
    pub last_report: Option<SyncReport>,
    /// Objects re-applied because someone changed them outside git, since start.
    pub drift_healed: u64,
    /// Objects reverted to git after their break-glass window closed, since start.
    pub break_glass_reverted: u64,
    /// Objects created under break-glass, not in git, deleted after their
    /// window closed, since start.
    pub break_glass_deleted: u64,
    /// The last error; cleared by the next success.
    pub error: Option<String>,
}

/// Labels of the per-object outcome counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
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
        Arc::new(Reporter {
            status: RwLock::new(Status {
                role: "starting".into(),
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
    pub fn set_role(&self, role: &str) {
        self.update(|s| s.role = role.to_string());
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

    /// Records a failed sync; the applied revision stays as it was.
    pub fn failure(&self, error: String) {
        self.failures.inc();
        self.update(|s| s.error = Some(error));
    }
}
