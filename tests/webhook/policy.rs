//! The policy lives in a ConfigMap and takes effect without a restart.

use std::time::Duration;

use gitwarden_tests::Identity;

use crate::common::{Setup, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_takes_effect_without_a_restart() {
    let s = Setup::new("policy-live").await;
    s.managed_configmap("settings");
    s.kubectl(
        Identity::Alice,
        &[
            "annotate",
            "configmap",
            "settings",
            "gitwarden.io/break-glass=urgent",
        ],
    )
    .expect_failure();
    s.gitwarden
        .set_policy("breakGlass:\n  groups: [\"gitwarden:break-glass\", developers]\n")
        .unwrap();
    let allowed = wait_for(Duration::from_secs(20), || async {
        s.kubectl(
            Identity::Alice,
            &[
                "annotate",
                "--overwrite",
                "configmap",
                "settings",
                "gitwarden.io/break-glass=urgent",
            ],
        )
        .success
        .then_some(())
    })
    .await;
    assert!(
        allowed.is_some(),
        "alice was still refused 20s after the policy added her group:\n{}",
        s.gitwarden.log_tail(20)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_keeps_the_last_good_one_and_says_why() {
    let s = Setup::new("policy-bad").await;
    s.gitwarden
        .set_policy("exempt:\n  groups: [\"system:masters\"]\n")
        .unwrap();
    let reported = wait_for(Duration::from_secs(20), || async {
        let metrics = s.gitwarden.metrics().await.ok()?;
        metrics
            .contains("gitwarden_webhook_policy_valid 0")
            .then_some(())
    })
    .await;
    assert!(
        reported.is_some(),
        "the invalid policy was not reported in metrics"
    );
    let ready: serde_json::Value = s
        .gitwarden
        .http()
        .get(format!("{}/readyz", s.gitwarden.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        ready["policy"]["lastError"]
            .as_str()
            .unwrap()
            .contains("system:masters"),
        "{ready}"
    );
    // Still enforcing the previous policy: admin is not exempt.
    s.kubectl(Identity::Admin, &["create", "configmap", "sneaky"])
        .expect_failure();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_outside_the_policy_scope_is_open_but_managed_objects_stay_protected() {
    let s = Setup::new("policy-scope").await;
    s.managed_configmap("managed");
    s.gitwarden
        .set_policy(&format!("namespaces:\n  exempt: [\"{}\"]\n", s.ns()))
        .unwrap();
    let open = wait_for(Duration::from_secs(20), || async {
        s.kubectl(Identity::Alice, &["create", "configmap", "scratch"])
            .success
            .then_some(())
    })
    .await;
    assert!(
        open.is_some(),
        "the namespace never became writable for alice"
    );
    // Removing the managed-by label must not lift the protection: oldObject counts.
    let err = s
        .kubectl(
            Identity::Alice,
            &[
                "label",
                "configmap",
                "managed",
                "app.kubernetes.io/managed-by-",
            ],
        )
        .expect_failure()
        .to_string();
    assert!(err.contains("must be made in git"), "{err}");
}
