//! What a sync did, per object: the agent's `/status` body.

use crate::refusal::AdmissionRefusal;
use gitwarden_manifests::{Location, ObjectRef};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What happened to one object of the revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", content = "message", rename_all = "camelCase")]
pub enum Action {
    /// The object did not exist and was created.
    Created,
    /// The object existed and the apply changed it.
    Configured,
    /// Git changed a field the API server will not change in place, and
    /// the object is marked `gitwarden.io/force: enabled`: deleted and
    /// created again.
    Recreated,
    /// Nothing to do: no request was sent, or the apply changed nothing.
    Unchanged,
    /// The apply failed; the message is the API server's.
    Failed(String),
    /// Left alone: a human broke glass on it and the window is still open
    /// (the message says until when). Reverted to git once it closes.
    BreakGlass(String),
}

/// One object's outcome, with where it is written in git.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectResult {
    /// The object.
    pub object: ObjectRef,
    /// What happened.
    #[serde(flatten)]
    pub action: Action,
    /// Its manifest's `file:line`.
    pub location: Location,
    /// The admission plugin that refused the apply, when the failure was
    /// such a refusal (see [`AdmissionRefusal`]).
    #[serde(default, rename = "refusedBy", skip_serializing_if = "Option::is_none")]
    pub refused_by: Option<AdmissionRefusal>,
}

/// An object that left git (or whose break-glass window closed) and was not
/// deleted, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// The object.
    pub object: ObjectRef,
    /// Why, as a closed outcome: only [`KeepCause::Failed`] makes the sync
    /// a failure (and keeps the object in the inventory for a retry).
    pub cause: KeepCause,
    /// Why, for people (the API server's message for a failure).
    pub reason: String,
}

impl Kept {
    /// Whether the object should have gone and did not: a failed delete.
    pub fn is_failure(&self) -> bool {
        self.cause == KeepCause::Failed
    }
}

/// Why an object was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KeepCause {
    /// It carries `gitwarden.io/prune: disabled`.
    PruneDisabled,
    /// It no longer carries gitwarden's managed-by label: not gitwarden's.
    NotManaged,
    /// It existed before a break-glass window changed it and is not in git:
    /// left in place, only the break-glass label removed.
    PredatesBreakGlass,
    /// The delete (or the label's removal) failed; retried on the next sync.
    Failed,
}

/// An object under an open break-glass window, left alone by this sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    /// The object.
    pub object: ObjectRef,
    /// When the window closes (`gitwarden.io/break-glass-until`): the agent
    /// syncs again then, to revert or delete the object.
    pub until: jiff::Timestamp,
    /// Whether git contains the object (then it is reverted at `until`;
    /// otherwise, if the window created it, it is deleted).
    pub in_git: bool,
}

/// What a sync did about break-glass: windows still open, and what happened
/// to objects whose window closed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakGlassReport {
    /// Objects under an open window, in git or not.
    pub held: Vec<Held>,
    /// Objects in git whose window closed: re-applied from git, and their
    /// break-glass stamps and label removed.
    pub reverted: Vec<ObjectRef>,
    /// Objects a break-glass request created that git does not contain,
    /// deleted because their window closed.
    pub deleted: Vec<ObjectRef>,
    /// Objects outside git whose window closed and that were not deleted,
    /// with the reason (`gitwarden.io/prune: disabled`, changed rather than
    /// created under break-glass, or the delete failed).
    pub kept: Vec<Kept>,
}

impl BreakGlassReport {
    /// The earliest end of an open window, when one is open: the agent
    /// should sync again at that time.
    pub fn next_expiry(&self) -> Option<jiff::Timestamp> {
        self.held.iter().map(|held| held.until).min()
    }
}

/// The outcome of one sync, serialisable as the agent's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    /// The git revision synced.
    pub revision: String,
    /// Every object of the revision, in apply order.
    pub applied: Vec<ObjectResult>,
    /// Objects deleted because they left git, in prune order.
    pub pruned: Vec<ObjectRef>,
    /// Objects that left git and were not deleted, with the reason.
    pub kept: Vec<Kept>,
    /// Why the prune as a whole was refused (too large a share of the
    /// inventory), `None` when it ran.
    pub prune_refused: Option<String>,
    /// Break-glass windows held, and objects reverted, deleted or kept
    /// because their window closed.
    #[serde(default)]
    pub break_glass: BreakGlassReport,
    /// Requests the sync sent that could change the cluster (applies,
    /// deletes, inventory writes; dry-runs excluded): zero on a no-op resync.
    pub write_requests: u64,
    /// Server-side dry-run requests the sync sent.
    pub dry_run_requests: u64,
    /// How long the sync took.
    #[serde(with = "duration_millis")]
    pub duration: Duration,
}

impl SyncReport {
    /// How many objects ended with `action` kind (compared by variant, the
    /// message of `Failed` ignored), for metrics and summaries.
    pub fn count(&self, action: &Action) -> usize {
        self.applied
            .iter()
            .filter(|result| {
                std::mem::discriminant(&result.action) == std::mem::discriminant(action)
            })
            .count()
    }

    /// The objects whose apply failed.
    pub fn failures(&self) -> impl Iterator<Item = &ObjectResult> {
        self.applied
            .iter()
            .filter(|result| matches!(result.action, Action::Failed(_)))
    }

    /// Whether every object applied, the prune was not refused, and every
    /// delete (prune or break-glass) that was due went through.
    pub fn is_success(&self) -> bool {
        self.problems().is_none()
    }

    /// Why the sync did not fully converge, for the status's `error` and
    /// the log: failed applies, a refused prune and failed deletes, each
    /// naming the object. `None` when everything that was due happened.
    /// Such a sync is not a success: the agent retries it with backoff
    /// instead of waiting a whole interval, and `lastSuccess` stays put.
    pub fn problems(&self) -> Option<String> {
        let mut problems: Vec<String> = self
            .failures()
            .map(|result| match &result.action {
                Action::Failed(why) => format!("{} ({}): {why}", result.object, result.location),
                _ => result.object.to_string(),
            })
            .collect();
        problems.extend(self.prune_refused.iter().cloned());
        problems.extend(
            self.kept
                .iter()
                .chain(&self.break_glass.kept)
                .filter(|kept| kept.is_failure())
                .map(|kept| format!("{}: {}", kept.object, kept.reason)),
        );
        const SHOWN: usize = 5;
        match problems.len() {
            0 => None,
            n if n <= SHOWN => Some(problems.join("; ")),
            n => Some(format!(
                "{}; and {} more (see lastReport)",
                problems[..SHOWN].join("; "),
                n - SHOWN
            )),
        }
    }
}

/// Durations as whole milliseconds in JSON, readable by humans and tools.
mod duration_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(deserializer)?))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kube::core::GroupVersionKind;

    fn held(name: &str, until: &str) -> Held {
        Held {
            object: ObjectRef::new(
                &GroupVersionKind::gvk("", "v1", "ConfigMap"),
                Some("ns"),
                name,
            ),
            until: until.parse().unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            in_git: false,
        }
    }

    #[test]
    fn the_next_expiry_is_the_earliest_open_window() {
        let report = BreakGlassReport {
            held: vec![
                held("late", "2026-11-23T10:00:00Z"),
                held("early", "2026-11-23T09:00:00Z"),
            ],
            ..Default::default()
        };
        assert_eq!(
            report.next_expiry(),
            Some("2026-11-23T09:00:00Z".parse().unwrap())
        );
        assert_eq!(BreakGlassReport::default().next_expiry(), None);
    }

    #[test]
    fn a_failed_break_glass_delete_makes_the_sync_unsuccessful() {
        let mut report = SyncReport {
            revision: "abc".into(),
            applied: Vec::new(),
            pruned: Vec::new(),
            kept: Vec::new(),
            prune_refused: None,
            break_glass: BreakGlassReport::default(),
            write_requests: 0,
            dry_run_requests: 0,
            duration: Duration::ZERO,
        };
        assert!(report.is_success());
        report.break_glass.kept.push(Kept {
            object: held("x", "").object,
            cause: KeepCause::PruneDisabled,
            reason: "gitwarden.io/prune: disabled".into(),
        });
        assert!(report.is_success(), "a deliberate keep is no failure");
        report.break_glass.kept.push(Kept {
            object: held("y", "").object,
            cause: KeepCause::Failed,
            reason: "delete failed: forbidden".into(),
        });
        assert!(!report.is_success());
        let problems = report.problems().unwrap();
        assert!(
            problems.contains("ns/y") || problems.contains("y"),
            "{problems}"
        );
        assert!(problems.contains("delete failed: forbidden"), "{problems}");
        assert!(!problems.contains("prune: disabled"), "{problems}");
    }

    #[test]
    fn problems_name_failed_objects_with_their_location_and_a_refused_prune() {
        let failed = |name: &str| ObjectResult {
            object: held(name, "").object,
            action: Action::Failed("connection refused".into()),
            location: gitwarden_manifests::Location::new("apps/web.yaml", 3),
            refused_by: None,
        };
        let mut report = SyncReport {
            revision: "abc".into(),
            applied: vec![failed("web")],
            pruned: Vec::new(),
            kept: Vec::new(),
            prune_refused: Some("refusing to prune 40 of 100 objects".into()),
            break_glass: BreakGlassReport::default(),
            write_requests: 0,
            dry_run_requests: 0,
            duration: Duration::ZERO,
        };
        let problems = report.problems().unwrap();
        assert!(problems.contains("apps/web.yaml:3"), "{problems}");
        assert!(problems.contains("connection refused"), "{problems}");
        assert!(problems.contains("refusing to prune"), "{problems}");
        report.prune_refused = None;
        report.applied = (0..8).map(|i| failed(&format!("web-{i}"))).collect();
        let problems = report.problems().unwrap();
        assert!(
            problems.ends_with("and 3 more (see lastReport)"),
            "{problems}"
        );
    }

    #[test]
    fn a_report_without_break_glass_reads_back_with_an_empty_one() {
        let json = r#"{"revision":"abc","applied":[],"pruned":[],"kept":[],"pruneRefused":null,
            "writeRequests":0,"dryRunRequests":0,"duration":5}"#;
        let report: SyncReport = serde_json::from_str(json).unwrap();
        assert_eq!(report.break_glass, BreakGlassReport::default());
    }
}
