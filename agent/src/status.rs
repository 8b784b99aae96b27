//! The agent's status document, served at GET /status and printed by
//! `gitwarden-agent status`: the source, the revision in force, the last
//! attempt and success, per-object results, drift healed, admission plugins
//! that refused git, admission objects removed, where the replica stands in
//! the leader election, and the last error.
//!
//! The types live in the library so that everything reading the document
//! (the `status` command, the end-to-end tests, tooling) reads it typed,
//! with the same names the agent writes.

use crate::standby::Standing;
use gitwarden_apply::{AdmissionRefusal, SyncReport};
use gitwarden_manifests::{Location, ObjectRef};
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
    /// The health (kstatus rules) of the workloads the last change created
    /// or configured, when the wait after it ended (at most the health
    /// timeout); kept until a sync changes workloads again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<WorkloadHealth>,
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

/// What `gitwarden-agent sync` prints (and the loop's Events summarise): a
/// synced revision and its report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Synced {
    /// The source URL (never with credentials: they come from files).
    pub source: String,
    /// The commit applied.
    pub commit: String,
    /// The signer, when verification is on.
    pub signer: Option<String>,
    /// What the apply engine did.
    pub report: SyncReport,
    /// Readiness of the workloads this sync created or changed, waited for at
    /// most the health timeout (never blocking the next sync).
    pub health: Vec<WorkloadHealth>,
}

/// The readiness of one workload after the sync (kstatus rules).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadHealth {
    /// The object.
    pub object: String,
    /// The object as git names it, for Events on it (not part of the
    /// status document: `object` says it for people).
    #[serde(skip)]
    pub reference: Option<ObjectRef>,
    /// `Current`, `InProgress`, `Failed`, … and why.
    #[serde(flatten)]
    pub health: crate::health::ObjectHealth,
}
