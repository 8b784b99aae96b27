//! A broken install cannot lock the cluster: with an image that cannot be
//! pulled, nothing registers a webhook, every write keeps working, and
//! `gitwarden-doctor` says which pod is stuck and why.

use std::time::Duration;

use gitwarden_tests::Identity;
use gitwarden_tests::doctor::doctor_text;
use gitwarden_tests::install::{InstallTarget, SYSTEM_NAMESPACE, jsonpath};
use gitwarden_tests::node::NodeCluster;
use gitwarden_tests::wait::wait_blocking;

#[test]
fn an_image_that_cannot_be_pulled_leaves_the_cluster_writable_and_doctor_says_why() {
    let node = NodeCluster::start_private().unwrap();
    let target = InstallTarget::prepare(&node).unwrap();
    target.install("install-broken-image").expect_success();

    // The webhook's pod is stuck pulling; nothing else will ever start it.
    let reason = wait_blocking(Duration::from_secs(120), || {
        let r = jsonpath(
            &node,
            &["pod", "gitwarden-webhook-0", "-n", SYSTEM_NAMESPACE],
            "{.status.containerStatuses[0].state.waiting.reason}",
        );
        (r == "ErrImagePull" || r == "ImagePullBackOff").then_some(r)
    });
    assert!(
        reason.is_some(),
        "the webhook pod never reported a pull failure"
    );
    // The agents are up (their image is fine) and have synced nothing they
    // could enforce with.
    for kind in [
        "validatingwebhookconfiguration",
        "mutatingwebhookconfiguration",
    ] {
        let out = node.kubectl(Identity::Admin, &["get", kind, "gitwarden"]);
        assert!(
            out.stderr.contains("NotFound"),
            "{kind} gitwarden exists with a webhook that cannot answer: {out:?}"
        );
    }

    // Every write still works, for people and controllers alike.
    node.kubectl(Identity::Admin, &["create", "namespace", "still-writable"])
        .expect_success();
    node.kubectl(
        Identity::Admin,
        &[
            "-n",
            "still-writable",
            "create",
            "configmap",
            "by-hand",
            "--from-literal=ok=yes",
        ],
    )
    .expect_success();

    // doctor names the stuck step, the pod and the reason.
    let report = doctor_text(&node.kubeconfig(Identity::Admin), &[]).unwrap();
    assert!(
        report.stdout.contains("nothing enforces"),
        "{}",
        report.stdout
    );
    assert!(
        report.stdout.contains("ErrImagePull") || report.stdout.contains("ImagePullBackOff"),
        "{}",
        report.stdout
    );
    assert!(
        report.stdout.contains("does-not-exist"),
        "{}",
        report.stdout
    );
}
