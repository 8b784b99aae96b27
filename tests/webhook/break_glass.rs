//! Break-glass: an allowed group, a written reason, a bounded window, a
//! warning, stamps, and an audit record — or a clear refusal.

use std::time::Duration;

use gitwarden_tests::Identity;

use crate::common::Setup;

const REASON: &str = "gitwarden.io/break-glass";

fn patch_with_reason(reason: &str, ttl: Option<&str>, value: &str) -> String {
    let ttl = ttl
        .map(|t| format!(r#","gitwarden.io/break-glass-ttl":"{t}""#))
        .unwrap_or_default();
    format!(
        r#"{{"metadata":{{"annotations":{{"{REASON}":"{reason}"{ttl}}}}},"data":{{"k":"{value}"}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carol_breaks_glass_with_a_warning_stamps_and_an_audit_record() {
    let s = Setup::new("bg-carol").await;
    s.managed_configmap("settings");
    let out = s.kubectl(
        Identity::Carol,
        &[
            "patch",
            "configmap",
            "settings",
            "-p",
            &patch_with_reason("INC-42 database down", None, "hotfix"),
        ],
    );
    out.expect_success();
    assert!(
        out.stderr.contains("Warning:") && out.stderr.contains("break-glass"),
        "kubectl printed no warning: {}",
        out.stderr
    );
    assert!(out.stderr.contains("revert"), "{}", out.stderr);
    assert_eq!(s.configmap_field("settings", "{.data.k}"), "hotfix");
    assert_eq!(
        s.configmap_field(
            "settings",
            "{.metadata.annotations.gitwarden\\.io/break-glass-by}"
        ),
        "carol"
    );
    let at: jiff::Timestamp = s
        .configmap_field(
            "settings",
            "{.metadata.annotations.gitwarden\\.io/break-glass-at}",
        )
        .parse()
        .unwrap();
    let until: jiff::Timestamp = s
        .configmap_field(
            "settings",
            "{.metadata.annotations.gitwarden\\.io/break-glass-until}",
        )
        .parse()
        .unwrap();
    assert_eq!(
        until.duration_since(at).as_secs(),
        3600,
        "default TTL is 1h"
    );

    let records = s.audit("&decision=break-glass").await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].user, "carol");
    assert_eq!(
        records[0].break_glass_reason.as_deref(),
        Some("INC-42 database down")
    );
    assert_eq!(
        records[0]
            .break_glass_until
            .expect("a break-glass record says until when"),
        until
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_outside_the_break_glass_group_is_refused() {
    let s = Setup::new("bg-alice").await;
    s.managed_configmap("settings");
    let err = s
        .kubectl(
            Identity::Alice,
            &[
                "patch",
                "configmap",
                "settings",
                "-p",
                &patch_with_reason("I am in a hurry", None, "x"),
            ],
        )
        .expect_failure()
        .to_string();
    assert!(err.contains("gitwarden:break-glass"), "{err}");
    let records = s.audit("&user=alice").await;
    assert_eq!(records[0].reason, "break_glass_not_allowed_group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_without_a_reason_is_refused() {
    let s = Setup::new("bg-noreason").await;
    s.managed_configmap("settings");
    let err = s
        .kubectl(
            Identity::Carol,
            &[
                "patch",
                "configmap",
                "settings",
                "-p",
                &patch_with_reason("  ", None, "x"),
            ],
        )
        .expect_failure()
        .to_string();
    assert!(err.contains("must say why"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_longer_than_the_cap_is_refused() {
    let s = Setup::new("bg-cap").await;
    s.managed_configmap("settings");
    let err = s
        .kubectl(
            Identity::Carol,
            &[
                "patch",
                "configmap",
                "settings",
                "-p",
                &patch_with_reason("long outage", Some("5h"), "x"),
            ],
        )
        .expect_failure()
        .to_string();
    assert!(err.contains("4h"), "the refusal names the cap: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_break_glass_window_is_refused() {
    let s = Setup::new("bg-expired").await;
    s.managed_configmap("settings");
    s.kubectl(
        Identity::Carol,
        &[
            "patch",
            "configmap",
            "settings",
            "-p",
            &patch_with_reason("short fix", Some("2s"), "first"),
        ],
    )
    .expect_success();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let err = s
        .kubectl(
            Identity::Carol,
            &[
                "patch",
                "configmap",
                "settings",
                "-p",
                &patch_with_reason("short fix", None, "second"),
            ],
        )
        .expect_failure()
        .to_string();
    assert!(err.contains("expired"), "{err}");
    assert_eq!(s.configmap_field("settings", "{.data.k}"), "first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_under_break_glass_needs_the_annotation_on_the_live_object_first() {
    let s = Setup::new("bg-delete").await;
    s.managed_configmap("doomed");
    s.kubectl(Identity::Carol, &["delete", "configmap", "doomed"])
        .expect_failure();
    s.kubectl(
        Identity::Carol,
        &[
            "annotate",
            "configmap",
            "doomed",
            &format!("{REASON}=INC-7 poisoned config"),
        ],
    )
    .expect_success();
    s.kubectl(Identity::Carol, &["delete", "configmap", "doomed"])
        .expect_success();
    let records = s.audit("&user=carol").await;
    let ops: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r.operation.as_str(), r.decision.as_str()))
        .collect();
    assert_eq!(
        ops,
        vec![
            ("DELETE", "break-glass"),
            ("UPDATE", "break-glass"),
            ("DELETE", "denied")
        ]
    );
}
