//! Break-glass: a time-limited, audited emergency change by a human.
//!
//! It applies when the object (for DELETE, the live object) carries a
//! `gitwarden.io/break-glass` reason. The requester must be in an allowed
//! group and the reason must not be blank. Then:
//!
//! - A **new window** (CREATE, or UPDATE that sets a different reason than
//!   the live object has): the TTL is the `gitwarden.io/break-glass-ttl`
//!   annotation or the policy's default, at most the policy's cap. `/mutate`
//!   stamps `-by`, `-at` and `-until`; `/validate` then sees those stamps and
//!   accepts them only if they fit this request (by the requester, opened
//!   about now, closing no later than now + TTL, allowing
//!   [`STAMP_CLOCK_SLACK`] between the two calls). Stamps carried over
//!   unchanged from the live object's previous window are not this window's
//!   and are replaced.
//! - An **existing window** (UPDATE keeping the live object's reason): the
//!   live object's stamps must be valid and `-until` in the future. The new
//!   object must keep those stamps (or drop them all, and `/mutate` puts
//!   them back); editing them is refused, so a window cannot be stretched.
//!   The TTL annotation is not consulted again: a longer window needs a new
//!   reason, which is a new, audited window.
//! - **DELETE**: the live object must carry an open window (annotate first,
//!   then delete).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use super::request::RequestView;
use super::{BreakGlassGrant, BreakGlassWindow, Decision, Reason, Verdict, messages};
use crate::names::{BREAK_GLASS, BREAK_GLASS_TTL, BREAK_GLASS_UNTIL};
use crate::policy::{HumanDuration, Policy};
use crate::stamps::Stamps;

/// How far the `-at` and `-until` stamps that `/mutate` wrote may drift from
/// what `/validate` would compute: the time between the two calls plus clock
/// differences between webhook replicas.
pub const STAMP_CLOCK_SLACK: SignedDuration = SignedDuration::from_secs(60);

type Annotations = BTreeMap<String, String>;

/// The break-glass decision, or `None` when the request asks for no
/// break-glass (no reason annotation) and the table goes on.
pub(super) fn decide(policy: &Policy, view: &RequestView<'_>, now: Timestamp) -> Option<Decision> {
    let annotations = view.break_glass_annotations()?;
    let raw_reason = annotations.get(BREAK_GLASS)?;
    Some(match judge(policy, view, annotations, raw_reason, now) {
        Ok(grant) => allow(view, grant),
        Err((reason, message)) => Decision::deny(reason, message),
    })
}

type Refusal = (Reason, String);

fn judge(
    policy: &Policy,
    view: &RequestView<'_>,
    annotations: &Annotations,
    raw_reason: &str,
    now: Timestamp,
) -> Result<BreakGlassGrant, Refusal> {
    if policy.break_glass.allowed_group(&view.requester).is_none() {
        return Err((
            Reason::BreakGlassNotAllowedGroup,
            messages::break_glass_not_allowed(policy, view),
        ));
    }
    let reason = raw_reason.trim();
    if reason.is_empty() {
        return Err((
            Reason::BreakGlassMissingReason,
            messages::break_glass_missing_reason(view),
        ));
    }
    if view.is_delete() {
        return delete(view, annotations, reason, now);
    }
    let old = view.old_annotations();
    // Comparing the raw annotation: any edit to the reason is a new window.
    let same_reason = old.and_then(|a| a.get(BREAK_GLASS)).map(String::as_str) == Some(raw_reason);
    if same_reason {
        existing_window(view, annotations, old, reason, now)
    } else {
        new_window(policy, view, annotations, old, reason, now)
    }
}

/// A DELETE: allowed only within the window open on the live object.
fn delete(
    view: &RequestView<'_>,
    live: &Annotations,
    reason: &str,
    now: Timestamp,
) -> Result<BreakGlassGrant, Refusal> {
    if !live.contains_key(BREAK_GLASS_UNTIL) {
        return Err((
            Reason::BreakGlassDeleteWithoutWindow,
            messages::break_glass_delete_without_window(view),
        ));
    }
    open_window(view, &Stamps::of(Some(live)), reason, now)
}

/// An UPDATE within the window the live object already carries.
fn existing_window(
    view: &RequestView<'_>,
    annotations: &Annotations,
    old: Option<&Annotations>,
    reason: &str,
    now: Timestamp,
) -> Result<BreakGlassGrant, Refusal> {
    let live = Stamps::of(old);
    let grant = open_window(view, &live, reason, now)?;
    let written = Stamps::of(Some(annotations));
    if !written.is_empty() && written != live {
        return Err((
            Reason::BreakGlassNotStamped,
            messages::break_glass_not_stamped(
                view,
                "they differ from the open window's; the window's stamps cannot be edited",
            ),
        ));
    }
    Ok(grant)
}

/// The window recorded in `stamps`, if it is valid and still open.
fn open_window(
    view: &RequestView<'_>,
    stamps: &Stamps<'_>,
    reason: &str,
    now: Timestamp,
) -> Result<BreakGlassGrant, Refusal> {
    let parsed = (
        stamps.by.filter(|by| !by.is_empty()),
        stamps.at(),
        stamps.until(),
    );
    let (Some(by), Some(at), Some(until)) = parsed else {
        return Err((
            Reason::BreakGlassExpired,
            messages::break_glass_no_valid_window(view),
        ));
    };
    if until <= now {
        return Err((
            Reason::BreakGlassExpired,
            messages::break_glass_expired(view, until),
        ));
    }
    Ok(BreakGlassGrant {
        reason: reason.to_owned(),
        by: by.to_owned(),
        at,
        until,
        window: BreakGlassWindow::Within,
    })
}

/// A CREATE or an UPDATE that opens a new window.
fn new_window(
    policy: &Policy,
    view: &RequestView<'_>,
    annotations: &Annotations,
    old: Option<&Annotations>,
    reason: &str,
    now: Timestamp,
) -> Result<BreakGlassGrant, Refusal> {
    let ttl = requested_ttl(policy, view, annotations)?;
    let written = Stamps::of(Some(annotations));
    let live = Stamps::of(old);
    let carried_over = view.has_old_object() && written == live;
    let mut grant = if written.is_empty() || carried_over {
        fresh_grant(view, reason, ttl, now)?
    } else {
        checked_stamps(view, &written, reason, ttl, now)?
    };
    if live.until().is_some_and(|until| until > now) {
        grant.window = BreakGlassWindow::Extended;
    }
    Ok(grant)
}

/// The TTL the change asks for, or the default; refused when it is not a
/// duration, is zero, or exceeds the cap.
fn requested_ttl(
    policy: &Policy,
    view: &RequestView<'_>,
    annotations: &Annotations,
) -> Result<HumanDuration, Refusal> {
    let Some(text) = annotations.get(BREAK_GLASS_TTL) else {
        return Ok(policy.break_glass.default_ttl);
    };
    let ttl = HumanDuration::parse(text.trim()).map_err(|error| {
        (
            Reason::BreakGlassTtlInvalid,
            messages::break_glass_ttl_invalid(view, &error.to_string()),
        )
    })?;
    if ttl.is_zero() {
        return Err((
            Reason::BreakGlassTtlInvalid,
            messages::break_glass_ttl_invalid(view, "a window must be longer than 0s"),
        ));
    }
    let cap = policy.break_glass.max_ttl;
    if ttl > cap {
        return Err((
            Reason::BreakGlassTtlOverCap,
            messages::break_glass_ttl_over_cap(view, ttl, cap),
        ));
    }
    Ok(ttl)
}

/// The window this request opens, from now (to the second) for `ttl`.
fn fresh_grant(
    view: &RequestView<'_>,
    reason: &str,
    ttl: HumanDuration,
    now: Timestamp,
) -> Result<BreakGlassGrant, Refusal> {
    let at = Timestamp::from_second(now.as_second()).unwrap_or(now);
    let until = at.checked_add(ttl.as_std()).map_err(|_| {
        (
            Reason::BreakGlassTtlInvalid,
            messages::break_glass_ttl_invalid(
                view,
                "the window would end beyond the representable time",
            ),
        )
    })?;
    Ok(BreakGlassGrant {
        reason: reason.to_owned(),
        by: view.requester.username.clone(),
        at,
        until,
        window: BreakGlassWindow::Opened,
    })
}

/// The window `/mutate` stamped for this request, if the stamps fit it.
fn checked_stamps(
    view: &RequestView<'_>,
    stamps: &Stamps<'_>,
    reason: &str,
    ttl: HumanDuration,
    now: Timestamp,
) -> Result<BreakGlassGrant, Refusal> {
    let refuse = |why: &str| {
        (
            Reason::BreakGlassNotStamped,
            messages::break_glass_not_stamped(view, why),
        )
    };
    let by = stamps
        .by
        .ok_or_else(|| refuse("gitwarden.io/break-glass-by is missing"))?;
    if by != view.requester.username {
        return Err(refuse(
            "gitwarden.io/break-glass-by names someone other than the requester",
        ));
    }
    let at = stamps
        .at()
        .ok_or_else(|| refuse("gitwarden.io/break-glass-at is missing or not an RFC 3339 time"))?;
    let until = stamps.until().ok_or_else(|| {
        refuse("gitwarden.io/break-glass-until is missing or not an RFC 3339 time")
    })?;
    let latest_until = now
        .checked_add(ttl.as_std())
        .and_then(|t| t.checked_add(STAMP_CLOCK_SLACK))
        .ok()
        .ok_or_else(|| refuse("the window would end beyond the representable time"))?;
    let opened_about_now = now
        .checked_sub(STAMP_CLOCK_SLACK)
        .is_ok_and(|earliest| earliest <= at)
        && now
            .checked_add(STAMP_CLOCK_SLACK)
            .is_ok_and(|latest| at <= latest);
    if !opened_about_now {
        return Err(refuse(
            "gitwarden.io/break-glass-at is not the time of this request",
        ));
    }
    if until <= now || until <= at || until > latest_until {
        return Err(refuse(
            "gitwarden.io/break-glass-until does not match the requested window",
        ));
    }
    Ok(BreakGlassGrant {
        reason: reason.to_owned(),
        by: by.to_owned(),
        at,
        until,
        window: BreakGlassWindow::Opened,
    })
}

fn allow(view: &RequestView<'_>, grant: BreakGlassGrant) -> Decision {
    Decision {
        verdict: Verdict::Allow,
        reason: Reason::BreakGlass,
        message: messages::break_glass_allowed(&grant),
        warnings: vec![messages::break_glass_warning(view, &grant)],
        audit: true,
        break_glass: Some(grant),
        source: None,
    }
}
