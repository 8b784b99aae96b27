//! The sentences people read: denial messages (kubectl prints them after
//! "admission webhook ... denied the request:") and break-glass warnings.
//!
//! Each denial says what was refused, why, and what to do instead, because
//! the person reading it is usually in the middle of something urgent.

use jiff::Timestamp;

use super::request::RequestView;
use super::{BreakGlassGrant, BreakGlassWindow};
use crate::names::{BREAK_GLASS, BREAK_GLASS_TTL, BREAK_GLASS_UNTIL};
use crate::policy::{HumanDuration, Policy};
use crate::source::SourceRef;

/// The wording when the policy names no git repository.
const GENERIC_GIT_SOURCE: &str = "the git repository gitwarden syncs from";

/// Where changes must go: the policy's git source or the generic phrase.
fn git_source(policy: &Policy) -> &str {
    policy.git_source.as_deref().unwrap_or(GENERIC_GIT_SOURCE)
}

/// The break-glass groups as `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
fn groups(policy: &Policy) -> String {
    let quoted: Vec<String> = policy
        .break_glass
        .groups
        .iter()
        .map(|g| format!("{g:?}"))
        .collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// How break-glass works under this policy, in one sentence.
fn break_glass_howto(policy: &Policy) -> String {
    if policy.break_glass.groups.is_empty() {
        return "Break-glass is disabled by the policy.".to_owned();
    }
    format!(
        "Members of {} may annotate {BREAK_GLASS}=<reason> (optionally {BREAK_GLASS_TTL}, at most {}) \
         for a time-limited emergency change.",
        groups(policy),
        policy.break_glass.max_ttl,
    )
}

/// Step 7: a change to a protected object that did not come from git.
/// With the object's `source` (recorded by the agent), it says exactly which
/// file and line to edit, and links there when the policy has a template.
pub(super) fn not_from_git(
    policy: &Policy,
    view: &RequestView<'_>,
    source: Option<&SourceRef>,
) -> String {
    let delete_hint = if view.is_delete() && !policy.break_glass.groups.is_empty() {
        " To delete under break-glass, annotate the live object first, then delete it."
    } else {
        ""
    };
    let instead = match source {
        Some(source) => format!(
            "must be made in git: edit {} in {}, and the gitwarden agent applies it",
            where_to_edit(policy, source),
            git_source(policy)
        ),
        None => format!(
            "must be made in git ({}) and are applied by the gitwarden agent",
            git_source(policy)
        ),
    };
    format!(
        "gitwarden: {} of {} denied: changes to protected objects {instead}. {}{delete_hint}",
        view.verb(),
        view.describe_object(),
        break_glass_howto(policy),
    )
}

/// `apps/web.yaml line 12 (kustomization overlays/prod), branch main
/// (https://…#L12)`: the file to edit, as exact as the policy allows.
fn where_to_edit(policy: &Policy, source: &SourceRef) -> String {
    let mut text = format!("{} line {}", source.path, source.line);
    if let Some(commit) = &source.commit {
        let short = commit.get(..12).unwrap_or(commit);
        text.push_str(&format!(" (as of commit {short})"));
    }
    if let Some(kustomization) = &source.kustomization {
        text.push_str(&format!(
            " (rendered by the kustomization in {kustomization})"
        ));
    }
    let branch = policy
        .git_branch
        .as_deref()
        .map(|b| format!(", branch {b}"))
        .unwrap_or_default();
    let link = source_link(policy, source)
        .map(|l| format!(" <{l}>"))
        .unwrap_or_default();
    format!("{text}{link}{branch}")
}

/// The policy's link template filled in for `source`.
pub fn source_link(policy: &Policy, source: &SourceRef) -> Option<String> {
    let template = policy.source_link.as_deref()?;
    Some(
        template
            .replace("{path}", &source.path)
            .replace("{line}", &source.line.to_string())
            .replace("{branch}", policy.git_branch.as_deref().unwrap_or_default()),
    )
}

/// Step 0: someone other than a node asked for the agent's token.
pub(super) fn agent_token_mint(view: &RequestView<'_>) -> String {
    format!(
        "gitwarden: creating a token for the agent's service account {:?} in namespace {:?} denied: \
         whoever holds it can write anything as the agent, bypassing git. \
         Only nodes (system:nodes) may request it, for the agent's own pod.",
        view.req.name,
        view.req.namespace.as_deref().unwrap_or_default(),
    )
}

pub(super) fn break_glass_not_allowed(policy: &Policy, view: &RequestView<'_>) -> String {
    let allowed = if policy.break_glass.groups.is_empty() {
        "break-glass is disabled by the policy".to_owned()
    } else {
        format!(
            "only members of {} may make break-glass changes",
            groups(policy)
        )
    };
    format!(
        "gitwarden: break-glass {} of {} by {:?} denied: {allowed}. \
         Otherwise, make the change in git ({}).",
        view.verb(),
        view.describe_object(),
        view.requester.username,
        git_source(policy),
    )
}

pub(super) fn break_glass_missing_reason(view: &RequestView<'_>) -> String {
    format!(
        "gitwarden: break-glass {} of {} denied: the {BREAK_GLASS} annotation must say why the \
         emergency change is needed; it is blank.",
        view.verb(),
        view.describe_object(),
    )
}

pub(super) fn break_glass_ttl_invalid(view: &RequestView<'_>, why: &str) -> String {
    format!(
        "gitwarden: break-glass {} of {} denied: the {BREAK_GLASS_TTL} annotation is not usable: {why}.",
        view.verb(),
        view.describe_object(),
    )
}

pub(super) fn break_glass_ttl_over_cap(
    view: &RequestView<'_>,
    asked: HumanDuration,
    cap: HumanDuration,
) -> String {
    format!(
        "gitwarden: break-glass {} of {} denied: {BREAK_GLASS_TTL} asks for {asked} but the policy \
         allows at most {cap}.",
        view.verb(),
        view.describe_object(),
    )
}

pub(super) fn break_glass_expired(view: &RequestView<'_>, until: Timestamp) -> String {
    format!(
        "gitwarden: break-glass {} of {} denied: its break-glass window expired at {until}; \
         set a new reason in {BREAK_GLASS} to open a new window.",
        view.verb(),
        view.describe_object(),
    )
}

pub(super) fn break_glass_no_valid_window(view: &RequestView<'_>) -> String {
    format!(
        "gitwarden: break-glass {} of {} denied: the live object carries a break-glass reason but no \
         valid window (its gitwarden.io/break-glass-by/-at/-until stamps are missing or unreadable); \
         set a new reason in {BREAK_GLASS} to open a new window.",
        view.verb(),
        view.describe_object(),
    )
}

pub(super) fn break_glass_not_stamped(view: &RequestView<'_>, why: &str) -> String {
    format!(
        "gitwarden: break-glass {} of {} denied: the gitwarden.io/break-glass-by/-at/-until \
         annotations are stamped by gitwarden, and these were not stamped for this request: {why}. \
         Remove them (or leave the window's own stamps unchanged) and retry.",
        view.verb(),
        view.describe_object(),
    )
}

pub(super) fn break_glass_delete_without_window(view: &RequestView<'_>) -> String {
    format!(
        "gitwarden: break-glass delete of {} denied: the live object has a break-glass reason but no \
         open window ({BREAK_GLASS_UNTIL} is missing). Annotate first, then delete: set \
         {BREAK_GLASS}=<reason> on the live object, then delete it.",
        view.describe_object(),
    )
}

/// The log line for an allowed break-glass change (not shown to the user;
/// the warning is).
pub(super) fn break_glass_allowed(grant: &BreakGlassGrant) -> String {
    let window = match grant.window {
        BreakGlassWindow::Opened => "new",
        BreakGlassWindow::Extended => "extending",
        BreakGlassWindow::Within => "open",
    };
    format!(
        "allowed: break-glass within the {window} window opened by {:?} at {}, until {}. Reason: {}",
        grant.by, grant.at, grant.until, grant.reason,
    )
}

/// The warning kubectl prints for an allowed break-glass change.
pub(super) fn break_glass_warning(view: &RequestView<'_>, grant: &BreakGlassGrant) -> String {
    format!(
        "gitwarden: break-glass change to {} by {} allowed until {}; the agent will revert it to git \
         after that unless git catches up. Reason: {}",
        view.short_object(),
        view.requester.username,
        grant.until,
        grant.reason,
    )
}

/// Step 3a (and 0 for TokenRequests): an exempt identity or node access
/// would reach a person.
pub(super) fn confinement(
    policy: &Policy,
    view: &RequestView<'_>,
    breach: &super::confinement::Breach,
) -> String {
    use super::confinement::{Breach, Route};
    match breach {
        Breach::BorrowedIdentity {
            namespace,
            name,
            route,
        } => {
            let how = match route {
                Route::PodServiceAccount => "would run as",
                Route::LegacyTokenSecret => "would be filled with a token of",
                Route::TokenRequest => "would mint a token of",
            };
            format!(
                "gitwarden: {} of {} denied: it {how} the service account {namespace}/{name}, \
                 an identity gitwarden trusts (the agent or a system controller); whoever holds \
                 its token could write anything, bypassing git. Run workloads as their own \
                 service accounts; workloads that need it belong in git ({}).",
                view.verb(),
                view.describe_object(),
                git_source(policy),
            )
        }
        Breach::NodeAccess(how) => format!(
            "gitwarden: {} of {} denied: it would reach its node ({how}), where every token on \
             that node can be read, the gitwarden agent's included. Such workloads belong in git \
             ({}), or the policy must name them under workloads.nodeAccessAllowed.",
            view.verb(),
            view.describe_object(),
            git_source(policy),
        ),
    }
}

/// Step 3b: exec, attach or port-forward into gitwarden's own Pods.
pub(super) fn gitwarden_pod_access(view: &RequestView<'_>) -> String {
    format!(
        "gitwarden: {} to {} denied: gitwarden's own Pods hold the credentials that make git \
         the only write path; nobody but gitwarden may exec, attach or port-forward into them. \
         Use the logs, /status and /metrics instead.",
        view.verb(),
        view.describe_object(),
    )
}

/// Step 3b: break-glass on gitwarden's own control objects.
pub(super) fn break_glass_on_gitwarden(policy: &Policy, view: &RequestView<'_>) -> String {
    format!(
        "gitwarden: break-glass {} of {} denied: break-glass never applies to gitwarden's own \
         control objects (its policy, admission chain, workloads, service accounts, RBAC, \
         inventory, Leases and Secrets), because an emergency change there would not be \
         temporary or not be audited. Changing gitwarden is a commit to {}.",
        view.verb(),
        view.describe_object(),
        git_source(policy),
    )
}
