//! What a sync did, per object: the agent's `/status` body.

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
}

/// An object that left git but was deliberately not deleted, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// The object.
    pub object: ObjectRef,
    /// Why it was kept (prune disabled, delete failed, not gitwarden's).
    pub reason: String,
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

    /// Whether every object applied and the prune was not refused.
    pub fn is_success(&self) -> bool {
        self.failures().next().is_none()
            && self.prune_refused.is_none()
            && self
                .kept
                .iter()
                .all(|kept| !kept.reason.starts_with("delete failed"))
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
