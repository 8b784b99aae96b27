//! The admission decision: one pure function from (policy, request, time) to
//! allow or deny, with the reason, the message, warnings, whether to audit,
//! and the break-glass window the change runs under.
//!
//! Both webhook endpoints call [`decide`] with the same inputs. `/mutate`
//! additionally turns an allowed break-glass decision into a patch with
//! [`mutation_patch`] (stamping who opened the window, when, and until when);
//! `/validate` only reports the verdict and, because it sees the object after
//! `/mutate` stamped it, checks those stamps. Keeping one function means the
//! two calls cannot disagree about the rules, and the whole table can be
//! tested without a cluster.
//!
//! Decision order, first match wins:
//!
//! 0. `CREATE serviceaccounts/token` for the agent's service account: deny
//!    unless the requester is a node; for an exempt service account: deny
//!    unless the requester is a node or itself exempt. Before dry-run,
//!    because a dry-run TokenRequest still returns a signed token.
//! 1. Dry-run: allow, not audited (they change nothing; `kubectl diff`).
//! 2. The agent: allow.
//! 3. Exempt identities (system components): allow.
//! 4. Confinement, in every namespace: a Pod, pod template or legacy token
//!    Secret that would run as (or hand out) an exempt identity or the
//!    agent, or a Pod that reaches its node: deny (`confinement`).
//! 5. gitwarden's own control objects (`gitwarden_objects`): deny, with
//!    their own reasons for break-glass and for exec/attach/port-forward;
//!    neither the namespace scope nor exempt resources apply to them.
//! 6. Exempt resources (reviews; events and leases written by service
//!    accounts): allow.
//! 7. Not protected (namespace out of scope and no managed-by label on the
//!    new or the old object): allow. Cluster-scoped objects, `namespaces`
//!    included, are always in scope. Subresources are judged like their
//!    parent resource.
//! 8. Break-glass, when the object (the live object for DELETE) carries a
//!    `gitwarden.io/break-glass` reason: allow with a warning and an audit
//!    record, or deny saying which rule failed (the rules are in the
//!    `break_glass` submodule: new window, open window, DELETE).
//! 9. Everything else: deny, audited, saying where the change must go.

mod break_glass;
mod confinement;
mod gitwarden_objects;
mod messages;
mod patch;
mod request;

use jiff::Timestamp;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;
use serde::{Deserialize, Serialize};

use crate::names::NODES_GROUP;
use crate::policy::Policy;
use crate::source::SourceRef;
use request::RequestView;

pub use break_glass::STAMP_CLOCK_SLACK;
pub use patch::mutation_patch;

/// Whether the request may proceed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The API server may carry out the request.
    Allow,
    /// The API server must refuse the request with the decision's message.
    Deny,
}

/// Why a decision was made: a stable code for logs, metrics and the audit
/// log, one per row of the decision table. Each reason implies its verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Allowed: a dry-run request changes nothing.
    DryRun,
    /// Allowed: the requester is the agent.
    Agent,
    /// Allowed: the requester is an exempt system component.
    ExemptIdentity,
    /// Allowed: the resource is exempt (events, leases, reviews).
    ExemptResource,
    /// Allowed: the object is outside the protected namespaces and not
    /// managed by gitwarden.
    UnprotectedNamespace,
    /// Allowed: a break-glass change within an open window.
    BreakGlass,
    /// Denied: someone other than a node asked for a token of the agent's
    /// service account.
    AgentTokenMint,
    /// Denied: a change to a protected object that did not come from git.
    NotFromGit,
    /// Denied: break-glass asked for by someone outside the allowed groups.
    BreakGlassNotAllowedGroup,
    /// Denied: break-glass without a reason.
    BreakGlassMissingReason,
    /// Denied: the requested break-glass TTL exceeds the policy's cap.
    BreakGlassTtlOverCap,
    /// Denied: the requested break-glass TTL is not a valid duration.
    BreakGlassTtlInvalid,
    /// Denied: the break-glass window has expired (or was never valid).
    BreakGlassExpired,
    /// Denied: the break-glass stamps were not set by gitwarden for this
    /// window (forged, stale or edited).
    BreakGlassNotStamped,
    /// Denied: a DELETE under a break-glass reason that never opened a
    /// window; the live object must be annotated first.
    BreakGlassDeleteWithoutWindow,
    /// Denied: the request would run as, or hand out a token of, an exempt
    /// identity or the agent (a Pod, a pod template, a legacy token Secret,
    /// a TokenRequest), in any namespace.
    BorrowedIdentity,
    /// Denied: the request would run a Pod that reaches its node
    /// (privileged, host namespaces, hostPath, node-level capabilities).
    NodeAccess,
    /// Denied: break-glass on one of gitwarden's own control objects (its
    /// policy, admission chain, workloads, RBAC, inventory, Leases,
    /// Secrets); changing gitwarden is a commit.
    BreakGlassOnGitwarden,
    /// Denied: exec, attach or port-forward into gitwarden's own Pods, which
    /// hold its credentials.
    GitwardenPodAccess,
}

impl Reason {
    /// Every reason, in decision-table order (for metrics registration and
    /// exhaustive tests).
    pub const ALL: [Reason; 19] = [
        Reason::AgentTokenMint,
        Reason::DryRun,
        Reason::Agent,
        Reason::ExemptIdentity,
        Reason::BorrowedIdentity,
        Reason::NodeAccess,
        Reason::GitwardenPodAccess,
        Reason::BreakGlassOnGitwarden,
        Reason::ExemptResource,
        Reason::UnprotectedNamespace,
        Reason::BreakGlass,
        Reason::BreakGlassNotAllowedGroup,
        Reason::BreakGlassMissingReason,
        Reason::BreakGlassTtlInvalid,
        Reason::BreakGlassTtlOverCap,
        Reason::BreakGlassExpired,
        Reason::BreakGlassNotStamped,
        Reason::BreakGlassDeleteWithoutWindow,
        Reason::NotFromGit,
    ];

    /// The stable snake_case code (also the serde form), e.g. `not_from_git`.
    pub const fn code(self) -> &'static str {
        match self {
            Reason::DryRun => "dry_run",
            Reason::Agent => "agent",
            Reason::ExemptIdentity => "exempt_identity",
            Reason::ExemptResource => "exempt_resource",
            Reason::UnprotectedNamespace => "unprotected_namespace",
            Reason::BreakGlass => "break_glass",
            Reason::AgentTokenMint => "agent_token_mint",
            Reason::NotFromGit => "not_from_git",
            Reason::BreakGlassNotAllowedGroup => "break_glass_not_allowed_group",
            Reason::BreakGlassMissingReason => "break_glass_missing_reason",
            Reason::BreakGlassTtlOverCap => "break_glass_ttl_over_cap",
            Reason::BreakGlassTtlInvalid => "break_glass_ttl_invalid",
            Reason::BreakGlassExpired => "break_glass_expired",
            Reason::BreakGlassNotStamped => "break_glass_not_stamped",
            Reason::BreakGlassDeleteWithoutWindow => "break_glass_delete_without_window",
            Reason::BorrowedIdentity => "borrowed_identity",
            Reason::NodeAccess => "node_access",
            Reason::BreakGlassOnGitwarden => "break_glass_on_gitwarden",
            Reason::GitwardenPodAccess => "gitwarden_pod_access",
        }
    }

    /// The verdict this reason stands for.
    pub const fn verdict(self) -> Verdict {
        match self {
            Reason::DryRun
            | Reason::Agent
            | Reason::ExemptIdentity
            | Reason::ExemptResource
            | Reason::UnprotectedNamespace
            | Reason::BreakGlass => Verdict::Allow,
            _ => Verdict::Deny,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// The break-glass window a change runs under: recorded in the audit log,
/// stamped on the object by `/mutate`, and read back by the agent to know
/// when to revert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakGlassGrant {
    /// The reason given in `gitwarden.io/break-glass` (trimmed).
    pub reason: String,
    /// Who opened the window.
    pub by: String,
    /// When the window opened.
    pub at: Timestamp,
    /// When the window closes.
    pub until: Timestamp,
    /// Whether this request opens the window, extends one, or works within
    /// one opened earlier.
    pub window: BreakGlassWindow,
}

/// What a break-glass request did to its object's window: the audit record
/// and the notifications tell an extension apart from a first opening,
/// because a window stretched again and again is an emergency that never
/// ends and the platform team wants to see it as such.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakGlassWindow {
    /// A new window on an object that had none open.
    Opened,
    /// A new window (a new reason) on an object whose window was still open:
    /// the emergency was prolonged.
    Extended,
    /// A change within the window already open.
    Within,
}

/// The outcome of [`decide`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Allow or deny.
    pub verdict: Verdict,
    /// Which rule decided.
    pub reason: Reason,
    /// A sentence for humans: the denial message kubectl shows, or what an
    /// allow was based on (for logs).
    pub message: String,
    /// Warnings to return to the client (kubectl prints them).
    pub warnings: Vec<String>,
    /// Whether the webhook must write an audit record before answering:
    /// every denial and every break-glass allow.
    pub audit: bool,
    /// The break-glass window, for break-glass allows.
    pub break_glass: Option<BreakGlassGrant>,
    /// Where in git the refused object comes from (the file to edit
    /// instead), when the agent recorded it on the live object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
}

impl Decision {
    /// An ordinary allow: no warning, no audit record.
    fn allow(reason: Reason, message: String) -> Self {
        Self {
            verdict: Verdict::Allow,
            reason,
            message,
            warnings: Vec::new(),
            audit: false,
            break_glass: None,
            source: None,
        }
    }

    /// A denial, always audited.
    fn deny(reason: Reason, message: String) -> Self {
        Self {
            verdict: Verdict::Deny,
            reason,
            message,
            warnings: Vec::new(),
            audit: true,
            break_glass: None,
            source: None,
        }
    }

    /// A denial of a change to an object from git.
    fn not_from_git(policy: &Policy, view: &RequestView<'_>) -> Self {
        Self::deny(
            Reason::NotFromGit,
            messages::not_from_git(policy, view, None),
        )
    }

    /// The decision for `req` once it is known where in git the object is
    /// written (the agent records it in its inventory, which the webhook
    /// reads): a denial then says which file and line to edit, with a link
    /// when the policy has a template; a break-glass record carries it.
    /// Other decisions are returned as they are.
    pub fn locate(
        self,
        policy: &Policy,
        req: &AdmissionRequest<DynamicObject>,
        source: SourceRef,
    ) -> Decision {
        match (self.reason, self.verdict) {
            (Reason::NotFromGit, Verdict::Deny) => {
                let view = RequestView::new(req);
                Decision {
                    message: messages::not_from_git(policy, &view, Some(&source)),
                    source: Some(source),
                    ..self
                }
            }
            (Reason::BreakGlass, Verdict::Allow) => Decision {
                source: Some(source),
                ..self
            },
            _ => self,
        }
    }

    /// Whether knowing where the object is written in git would add to this
    /// decision (see [`Decision::locate`]): a refusal of a change to an object
    /// from git, or a break-glass change.
    pub fn wants_source(&self) -> bool {
        matches!(
            (self.reason, self.verdict),
            (Reason::NotFromGit, Verdict::Deny) | (Reason::BreakGlass, Verdict::Allow)
        )
    }

    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }

    /// The message with the audit record's id appended, so that whoever was
    /// refused can quote it when asking why.
    pub fn message_with_audit_id(&self, id: &str) -> String {
        format!("{} (gitwarden audit record {id})", self.message)
    }
}

/// Decide an admission request under `policy` at time `now` (see the module
/// docs for the order of the rules).
pub fn decide(policy: &Policy, req: &AdmissionRequest<DynamicObject>, now: Timestamp) -> Decision {
    let view = RequestView::new(req);
    let requester = &view.requester;

    if let Some((namespace, name)) = view.token_request_target() {
        let node = requester.in_group(NODES_GROUP);
        if policy.agent.covers_service_account(namespace, name) && !node {
            return Decision::deny(Reason::AgentTokenMint, messages::agent_token_mint(&view));
        }
        if policy.exempt.covers_service_account(namespace, name)
            && !node
            && policy.exempt.matches(requester).is_none()
        {
            let breach = confinement::Breach::BorrowedIdentity {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                route: confinement::Route::TokenRequest,
            };
            return Decision::deny(
                Reason::BorrowedIdentity,
                messages::confinement(policy, &view, &breach),
            );
        }
    }
    if req.dry_run {
        return Decision::allow(
            Reason::DryRun,
            "allowed: dry-run requests change nothing".into(),
        );
    }
    if let Some(rule) = policy.agent.matches(requester) {
        return Decision::allow(
            Reason::Agent,
            format!(
                "allowed: {:?} is the gitwarden agent ({rule})",
                requester.username
            ),
        );
    }
    if let Some(rule) = policy.exempt.matches(requester) {
        return Decision::allow(
            Reason::ExemptIdentity,
            format!(
                "allowed: {:?} is an exempt system component ({rule})",
                requester.username
            ),
        );
    }
    if let Some(breach) = confinement::breach(policy, &view) {
        let reason = match breach {
            confinement::Breach::BorrowedIdentity { .. } => Reason::BorrowedIdentity,
            confinement::Breach::NodeAccess(_) => Reason::NodeAccess,
        };
        return Decision::deny(reason, messages::confinement(policy, &view, &breach));
    }
    if gitwarden_objects::is_gitwarden_object(policy, &view) {
        if view.is_connect() {
            return Decision::deny(
                Reason::GitwardenPodAccess,
                messages::gitwarden_pod_access(&view),
            );
        }
        if view.asks_for_break_glass() {
            return Decision::deny(
                Reason::BreakGlassOnGitwarden,
                messages::break_glass_on_gitwarden(policy, &view),
            );
        }
        return Decision::not_from_git(policy, &view);
    }
    if let Some(rule) =
        policy.exempt_resource(&view.group, &view.resource, view.subresource(), requester)
    {
        return Decision::allow(
            Reason::ExemptResource,
            format!("allowed: {rule} is exempt from gitwarden"),
        );
    }
    if !view.is_protected(&policy.namespaces) {
        return Decision::allow(
            Reason::UnprotectedNamespace,
            format!(
                "allowed: {} is not protected by gitwarden",
                view.describe_object()
            ),
        );
    }
    if let Some(decision) = break_glass::decide(policy, &view, now) {
        return decision;
    }
    Decision::not_from_git(policy, &view)
}

#[cfg(test)]
mod tests;
