//! What the agent reports at GET /status, in `gitwarden-agent status`, and as
//! metrics: the source, the revision in force, the last attempt and success,
//! per-object results, drift healed, admission plugins that refused git,
//! admission objects removed, where the replica stands in the leader
//! election, and the last error.

use std::sync::{Arc, RwLock};

use gitwarden_agent::standby::Standing;
use gitwarden_apply::{Action, AdmissionRefusal, SyncReport};
use gitwarden_manifests::{Location, ObjectRef};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

/// What an agent replica is doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Not yet leading nor waiting (before the first election).
    #[default]
    Starting,
    /// Leading: this replica syncs.
    Leader,
    /// Waiting for the Lease: another replica leads.
    Standby,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Starting => "starting",
            Role::Leader => "leader",
            Role::Standby => "standby",
        })
    }
}

/// The agent's status document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// What this replica is doing.
    pub role: Role,
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
    /// Objects of git that an admission plugin gitwarden does not own
    /// refused at the last attempt (dry-run or apply), naming the plugin.
    /// Empty when nothing was refused.
    pub admission_refusals: Vec<RefusalReport>,
    /// The admission-chain guard: which kinds it watches, which it cannot.
    pub admission_guard: GuardStatus,
    /// Admission objects deleted because they were neither in git nor
    /// allowed by the policy, since start.
    pub admission_objects_removed: u64,
    /// Admission objects from git restored because someone changed them
    /// beyond what a re-apply heals, since start.
    pub admission_objects_restored: u64,
    /// The latest of those removals (at most [`RECENT_REMOVALS`]), newest last.
    pub recent_admission_removals: Vec<Removal>,
    /// Where this replica stands in the leader election; `stuck` when no
    /// leader is coming (a holder that does not renew, an unreachable Lease).
    pub leader_election: Standing,
}

/// How many removals `/status` lists.
pub const RECENT_REMOVALS: usize = 20;

/// One object of git refused by an admission plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusalReport {
    /// The object.
    pub object: ObjectRef,
    /// Its manifest's `file:line`.
    pub location: Location,
    /// The plugin that refused it.
    pub refused_by: AdmissionRefusal,
    /// Which request was refused.
    pub stage: RefusalStage,
    /// The API server's message.
    pub message: String,
}

/// Which of the agent's requests an admission plugin refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RefusalStage {
    /// The whole-revision server-side dry-run: nothing of the revision was applied.
    DryRun,
    /// The apply of this object (the rest of the revision applied).
    Apply,
}

/// One admission object the agent deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Removal {
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its uid (the delete was conditional on it).
    pub uid: String,
    /// When it was deleted (RFC 3339).
    pub at: String,
    /// What became of its audit record.
    pub audit: AuditFate,
}

/// What became of a removal's audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AuditFate {
    /// Queued for the webhook's audit log (delivered with retries).
    Queued,
    /// No `--audit-url`: logged, evented and counted only.
    NotAudited,
    /// The delivery queue was full: logged as an error instead.
    Overflowed,
}

/// The admission-chain guard's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GuardStatus {
    /// `off` (disabled or not leading), `waiting` (not yet knowing git or
    /// the policy: removes nothing), `armed`.
    pub state: GuardState,
    /// The kinds watched, as `Kind (group/version)`.
    pub watching: Vec<String>,
    /// Kinds not watched, and why (not served, not permitted).
    pub skipped: Vec<String>,
}

/// See [`GuardStatus::state`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GuardState {
    /// Disabled, or this replica does not lead.
    #[default]
    Off,
    /// Watching, but git or the policy is not known yet: nothing is removed.
    Waiting,
    /// Removing what is neither in git nor allowed.
    Armed,
}

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
