//! Enforcement starts only when the API server can reach a webhook replica:
//! a replica registers the configurations once it can answer *and* the
//! webhook Service has a ready endpoint. Before the kubelet's readiness probe
//! passes, the pod is not behind the Service, and a configuration registered
//! then would make every write in the cluster fail.

use std::time::{Duration, Instant};

use gitwarden_tests::Identity;
use gitwarden_tests::install::{INSTALL_LIMIT, InstallTarget, SYSTEM_NAMESPACE, jsonpath};
use gitwarden_tests::node::NodeCluster;
use gitwarden_tests::wait::wait_blocking;

/// Whether the webhook Service has a ready endpoint.
fn service_has_ready_endpoint(node: &NodeCluster) -> bool {
    let ready = jsonpath(
        node,
        &[
            "endpointslices",
            "-n",
            SYSTEM_NAMESPACE,
            "-l",
            "kubernetes.io/service-name=gitwarden-webhook",
        ],
        "{.items[*].endpoints[*].conditions.ready}",
    );
    ready.split_whitespace().any(|r| r == "true")
}

fn registered(node: &NodeCluster) -> bool {
    node.kubectl(
        Identity::Admin,
        &["get", "validatingwebhookconfiguration", "gitwarden"],
    )
    .success
}

#[test]
fn nothing_is_registered_until_the_webhook_service_has_a_ready_endpoint() {
    let node = NodeCluster::start_private().unwrap();
    let target = InstallTarget::prepare(&node).unwrap();
    target.install("install-slow-readiness").expect_success();

    // Until the probe passes (20 s after each container starts), the
    // configuration must not exist, and writes keep working.
    let started = Instant::now();
    let mut writes = 0;
    while !service_has_ready_endpoint(&node) && started.elapsed() < INSTALL_LIMIT {
        // Read the configuration first, then the endpoints: a configuration
        // seen while the endpoints are still not ready was registered early.
        let exists = registered(&node);
        assert!(
            !exists || service_has_ready_endpoint(&node),
            "the configuration was registered {:?} after the install while the Service had no ready endpoint",
            started.elapsed()
        );
        let name = format!("before-enforcing-{writes}");
        let write = node.kubectl(
            Identity::Admin,
            &["-n", "default", "create", "configmap", &name],
        );
        assert!(
            write.success || write.stderr.contains("denied the request: gitwarden"),
            "a write failed while gitwarden was not reachable: {}",
            write.stderr
        );
        writes += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(15),
        "the Service had a ready endpoint after {waited:?}: the probe delay did not apply"
    );
    assert!(writes > 10, "only {writes} writes were tried");

    // Once a replica is behind the Service, the configurations follow and
    // people are refused.
    let enforcing = wait_blocking(Duration::from_secs(60), || {
        let out = node.kubectl(
            Identity::Alice,
            &["-n", "default", "create", "configmap", "after-enforcing"],
        );
        out.stderr
            .contains("denied the request: gitwarden")
            .then_some(())
    });
    assert!(
        enforcing.is_some(),
        "gitwarden never enforced after its Service got a ready endpoint"
    );
}
