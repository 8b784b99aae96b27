//! Step 6: break-glass windows.

use super::*;
use crate::decision::{BreakGlassGrant, BreakGlassWindow, Reason, Verdict};

const REASON: &str = "INC-42: checkout is down";

/// The annotations of a window opened by `by` at `opened` (seconds from
/// now) lasting `hours`.
fn window(by: &str, opened: i64, hours: i64) -> Vec<(&'static str, String)> {
    vec![
        ("gitwarden.io/break-glass-by", by.to_owned()),
        ("gitwarden.io/break-glass-at", at(opened)),
        ("gitwarden.io/break-glass-until", at(opened + hours * HOUR)),
    ]
}

/// [`annotated`] with a reason, optional extra annotations (owned values).
fn with_reason(reason: &str, extra: &[(&str, String)]) -> serde_json::Value {
    let mut all: Vec<(&str, &str)> = vec![("gitwarden.io/break-glass", reason)];
    all.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
    annotated(&all)
}

fn grant(d: &Decision) -> &BreakGlassGrant {
    d.break_glass.as_ref().unwrap()
}

// --- New windows ------------------------------------------------------------

#[test]
fn create_with_a_reason_opens_a_window_for_the_default_ttl() {
    let d = Req::create()
        .no_old()
        .object(with_reason(REASON, &[]))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlass);
    assert_eq!(d.verdict, Verdict::Allow);
    assert!(d.audit);
    assert_eq!(
        grant(&d),
        &BreakGlassGrant {
            reason: REASON.into(),
            by: "oncall".into(),
            at: now(),
            until: at(HOUR).parse().unwrap(),
            window: BreakGlassWindow::Opened,
        }
    );
}

#[test]
fn allowed_break_glass_warns_with_object_user_expiry_and_reason() {
    let d = Req::create()
        .no_old()
        .object(with_reason(REASON, &[]))
        .user(ONCALL)
        .decide();
    assert_eq!(
        d.warnings,
        [format!(
            "gitwarden: break-glass change to Deployment shop/web by oncall allowed until {}; \
             the agent will revert it to git after that unless git catches up. Reason: {REASON}",
            at(HOUR)
        )]
    );
}

#[test]
fn update_that_adds_a_reason_opens_a_window() {
    let d = Req::update()
        .object(with_reason(REASON, &[]))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlass);
    assert_eq!(grant(&d).window, BreakGlassWindow::Opened);
}

#[test]
fn reason_is_trimmed_in_the_grant() {
    let d = Req::update()
        .object(with_reason("  INC-7  ", &[]))
        .user(ONCALL)
        .decide();
    assert_eq!(grant(&d).reason, "INC-7");
}

#[test]
fn window_opens_at_the_whole_second() {
    let req = Req::create()
        .no_old()
        .object(with_reason(REASON, &[]))
        .user(ONCALL)
        .build();
    let later = now()
        .checked_add(jiff::SignedDuration::from_millis(1500))
        .unwrap();
    let d = decide(&Policy::default(), &req, later);
    assert_eq!(grant(&d).at.to_string(), at(1));
    assert_eq!(grant(&d).until.to_string(), at(1 + HOUR));
}

#[test]
fn requested_ttl_sets_the_window_length() {
    let ttl = [("gitwarden.io/break-glass-ttl", "30m".to_owned())];
    let d = Req::update()
        .object(with_reason(REASON, &ttl))
        .user(ONCALL)
        .decide();
    assert_eq!(grant(&d).until.to_string(), at(1800));
}

#[test]
fn requested_ttl_equal_to_the_cap_is_allowed() {
    let ttl = [("gitwarden.io/break-glass-ttl", "4h".to_owned())];
    let d = Req::update()
        .object(with_reason(REASON, &ttl))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlass);
}

#[test]
fn requested_ttl_over_the_cap_is_denied_naming_the_cap() {
    let ttl = [("gitwarden.io/break-glass-ttl", "5h".to_owned())];
    let d = Req::update()
        .object(with_reason(REASON, &ttl))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassTtlOverCap);
    assert!(d.audit);
    assert!(
        d.message
            .contains("asks for 5h but the policy allows at most 4h"),
        "{}",
        d.message
    );
}

#[test]
fn unparsable_ttl_is_denied() {
    let ttl = [("gitwarden.io/break-glass-ttl", "soon".to_owned())];
    let d = Req::update()
        .object(with_reason(REASON, &ttl))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassTtlInvalid);
    assert!(d.message.contains("\"soon\""), "{}", d.message);
}

#[test]
fn zero_ttl_is_denied() {
    let ttl = [("gitwarden.io/break-glass-ttl", "0s".to_owned())];
    let d = Req::update()
        .object(with_reason(REASON, &ttl))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassTtlInvalid);
}

// --- Who may, and why -------------------------------------------------------

#[test]
fn outsider_is_denied_naming_the_allowed_groups() {
    let d = Req::update()
        .object(with_reason(REASON, &[]))
        .user(ALICE)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassNotAllowedGroup);
    assert!(d.audit);
    assert!(
        d.message
            .contains("only members of \"gitwarden:break-glass\""),
        "{}",
        d.message
    );
}

#[test]
fn cluster_admin_outside_the_groups_may_not_break_glass() {
    let d = Req::update()
        .object(with_reason(REASON, &[]))
        .user(ADMIN)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassNotAllowedGroup);
}

#[test]
fn policy_may_name_other_break_glass_groups() {
    let p = policy("breakGlass:\n  groups: [system:masters]\n");
    let d = Req::update()
        .object(with_reason(REASON, &[]))
        .user(ADMIN)
        .decide_with(&p);
    assert_eq!(d.reason, Reason::BreakGlass);
}

#[test]
fn disabled_break_glass_denies_everyone() {
    let p = policy("breakGlass:\n  groups: []\n");
    let d = Req::update()
        .object(with_reason(REASON, &[]))
        .user(ONCALL)
        .decide_with(&p);
    assert_eq!(d.reason, Reason::BreakGlassNotAllowedGroup);
    assert!(
        d.message.contains("break-glass is disabled by the policy"),
        "{}",
        d.message
    );
}

#[test]
fn empty_reason_is_denied() {
    let d = Req::update()
        .object(with_reason("", &[]))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassMissingReason);
}

#[test]
fn blank_reason_is_denied() {
    let d = Req::update()
        .object(with_reason(" \t ", &[]))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassMissingReason);
    assert!(d.message.contains("must say why"), "{}", d.message);
}

#[test]
fn break_glass_does_not_override_the_agent_token_rule() {
    let d = Req::create()
        .resource("", "serviceaccounts", "TokenRequest")
        .sub("token")
        .ns("gitwarden-system")
        .name("gitwarden-agent")
        .object(with_reason(REASON, &[]))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::AgentTokenMint);
}

#[test]
fn break_glass_applies_to_a_status_update() {
    let d = Req::update()
        .sub("status")
        .object(with_reason(REASON, &[]))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlass);
}

// --- Stamps seen by /validate ------------------------------------------------

#[test]
fn validate_accepts_the_stamps_mutate_wrote() {
    let d = Req::create()
        .no_old()
        .object(with_reason(REASON, &window("oncall", -2, 1)))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlass);
    let g = grant(&d);
    assert_eq!(g.window, BreakGlassWindow::Opened);
    assert_eq!(g.at.to_string(), at(-2));
    assert_eq!(g.until.to_string(), at(HOUR - 2));
}

#[test]
fn forged_until_beyond_the_ttl_is_denied() {
    let mut stamps = window("oncall", 0, 1);
    stamps[2].1 = at(24 * HOUR);
    let d = Req::create()
        .no_old()
        .object(with_reason(REASON, &stamps))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassNotStamped);
    assert!(d.audit);
}

#[test]
fn until_within_the_cap_but_beyond_the_requested_ttl_is_denied() {
    let mut stamps = window("oncall", 0, 4);
    stamps.push(("gitwarden.io/break-glass-ttl", "30m".to_owned()));
    let d = Req::create()
        .no_old()
        .object(with_reason(REASON, &stamps))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassNotStamped);
}

#[test]
fn until_allows_a_minute_of_clock_slack() {
    let mut stamps = window("oncall", 0, 1);
    stamps[2].1 = at(HOUR + 60);
    let d = Req::create()
        .no_old()
        .object(with_reason(REASON, &stamps))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlass);
    stamps[2].1 = at(HOUR + 61);
    let d = Req::create()
        .no_old()
        .object(with_reason(REASON, &stamps))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassNotStamped);
}

#[test]
fn stamps_naming_someone_else_are_denied() {
    let d = Req::create()
        .no_old()
        .object(with_reason(REASON, &window("bob", 0, 1)))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassNotStamped);
    assert!(
        d.message.contains("someone other than the requester"),
        "{}",
        d.message
    );
}

#[test]
fn stale_stamps_on_a_create_are_denied() {
    let d = Req::create()
        .no_old()
        .object(with_reason(REASON, &window("oncall", -3 * HOUR, 4)))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassNotStamped);
}

#[test]
fn unreadable_until_stamp_is_denied() {
    let mut stamps = window("oncall", 0, 1);
    stamps[2].1 = "tomorrow".into();
    let d = Req::create()
        .no_old()
        .object(with_reason(REASON, &stamps))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassNotStamped);
}

#[test]
fn partial_stamps_are_denied() {
    let stamps = [("gitwarden.io/break-glass-until", at(HOUR))];
    let d = Req::create()
        .no_old()
        .object(with_reason(REASON, &stamps))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassNotStamped);
}

#[test]
fn new_reason_over_a_previous_windows_stamps_opens_a_fresh_window() {
    let previous = window("bob", -5 * HOUR, 1);
    let d = Req::update()
        .old(with_reason("INC-1", &previous))
        .object(with_reason(REASON, &previous))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlass);
    let g = grant(&d);
    assert_eq!(g.window, BreakGlassWindow::Opened);
    assert_eq!((g.by.as_str(), g.at), ("oncall", now()));
}

#[test]
fn new_reason_over_a_window_still_open_extends_it() {
    let open = window("bob", -HOUR / 2, 1);
    let d = Req::update()
        .old(with_reason("INC-1", &open))
        .object(with_reason(REASON, &open))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlass);
    let g = grant(&d);
    assert_eq!(g.window, BreakGlassWindow::Extended);
    assert_eq!((g.by.as_str(), g.at), ("oncall", now()));
    assert_eq!(g.until.to_string(), at(HOUR));
    assert!(d.message.contains("extending"), "{}", d.message);
}

// --- Existing windows ---------------------------------------------------------

#[test]
fn update_within_an_open_window_is_allowed_with_the_windows_stamps() {
    let open = with_reason(REASON, &window("bob", -HOUR / 2, 1));
    let d = Req::update()
        .old(open.clone())
        .object(open)
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlass);
    let g = grant(&d);
    assert_eq!(g.window, BreakGlassWindow::Within);
    assert_eq!(g.by, "bob");
    assert_eq!(g.at.to_string(), at(-HOUR / 2));
    assert_eq!(g.until.to_string(), at(HOUR / 2));
    assert!(
        d.warnings[0].contains("by oncall allowed until"),
        "{}",
        d.warnings[0]
    );
}

#[test]
fn open_window_ignores_a_changed_ttl() {
    let stamps = window("oncall", -60, 1);
    let mut edited = stamps.clone();
    edited.push(("gitwarden.io/break-glass-ttl", "99h".to_owned()));
    let d = Req::update()
        .old(with_reason(REASON, &stamps))
        .object(with_reason(REASON, &edited))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlass);
    assert_eq!(grant(&d).until.to_string(), at(HOUR - 60));
}

#[test]
fn extending_an_open_window_by_editing_until_is_denied() {
    let stamps = window("oncall", -60, 1);
    let mut stretched = stamps.clone();
    stretched[2].1 = at(3 * HOUR);
    let d = Req::update()
        .old(with_reason(REASON, &stamps))
        .object(with_reason(REASON, &stretched))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassNotStamped);
    assert!(d.message.contains("cannot be edited"), "{}", d.message);
}

#[test]
fn dropping_the_stamps_within_an_open_window_is_allowed() {
    let d = Req::update()
        .old(with_reason(REASON, &window("bob", -60, 1)))
        .object(with_reason(REASON, &[]))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlass);
    assert_eq!(grant(&d).by, "bob");
}

#[test]
fn update_after_the_window_expired_is_denied() {
    let expired = with_reason(REASON, &window("oncall", -2 * HOUR, 1));
    let d = Req::update()
        .old(expired.clone())
        .object(expired)
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassExpired);
    assert!(d.audit);
    assert!(
        d.message.contains(&format!("expired at {}", at(-HOUR))),
        "{}",
        d.message
    );
    assert!(d.message.contains("new reason"), "{}", d.message);
}

#[test]
fn window_ending_exactly_now_has_expired() {
    let ended = with_reason(REASON, &window("oncall", -HOUR, 1));
    let d = Req::update()
        .old(ended.clone())
        .object(ended)
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassExpired);
}

#[test]
fn same_reason_without_stamps_on_the_live_object_is_no_window() {
    let unstamped = with_reason(REASON, &[]);
    let d = Req::update()
        .old(unstamped.clone())
        .object(unstamped)
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassExpired);
    assert!(d.message.contains("no valid window"), "{}", d.message);
}

#[test]
fn outsider_may_not_work_in_someone_elses_open_window() {
    let open = with_reason(REASON, &window("oncall", -60, 1));
    let d = Req::update()
        .old(open.clone())
        .object(open)
        .user(ALICE)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassNotAllowedGroup);
}

// --- DELETE ---------------------------------------------------------------------

#[test]
fn delete_within_an_open_window_is_allowed() {
    let d = Req::delete()
        .old(with_reason(REASON, &window("oncall", -60, 1)))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlass);
    assert!(d.audit);
    assert_eq!(grant(&d).window, BreakGlassWindow::Within);
    assert_eq!(d.warnings.len(), 1);
}

#[test]
fn delete_with_a_reason_but_no_window_is_denied() {
    let d = Req::delete()
        .old(with_reason(REASON, &[]))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassDeleteWithoutWindow);
    assert!(
        d.message.contains("Annotate first, then delete"),
        "{}",
        d.message
    );
}

#[test]
fn delete_after_the_window_expired_is_denied() {
    let d = Req::delete()
        .old(with_reason(REASON, &window("oncall", -2 * HOUR, 1)))
        .user(ONCALL)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassExpired);
}

#[test]
fn delete_without_a_reason_on_the_live_object_is_not_break_glass() {
    let d = Req::delete().user(ONCALL).decide();
    assert_eq!(d.reason, Reason::NotFromGit);
}

#[test]
fn delete_by_an_outsider_within_an_open_window_is_denied() {
    let d = Req::delete()
        .old(with_reason(REASON, &window("oncall", -60, 1)))
        .user(ADMIN)
        .decide();
    assert_eq!(d.reason, Reason::BreakGlassNotAllowedGroup);
}

#[test]
fn dry_run_break_glass_is_an_unaudited_dry_run() {
    let d = Req::update()
        .object(with_reason(REASON, &[]))
        .user(ONCALL)
        .dry_run()
        .decide();
    assert_eq!(d.reason, Reason::DryRun);
    assert!(d.break_glass.is_none());
}
