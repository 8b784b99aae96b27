//! The node does not outlive its control plane: a crash takes the node's
//! processes with it, and the next start rebuilds the node on the same
//! addresses, where the kubelet starts the pods the API still holds.

use gitwarden_tests::Identity;
use gitwarden_tests::node::NodeCluster;

#[tokio::test]
async fn after_a_control_plane_crash_the_rebuilt_node_runs_the_deployments_pods_again() {
    let node = NodeCluster::start_private().unwrap();
    let before = node.facts().unwrap();
    node.kubectl(
        Identity::Admin,
        &[
            "create",
            "deployment",
            "web",
            &format!("--image={}", gitwarden_tests::node::TOOLBOX_IMAGE),
            "--",
            "sleep",
            "3600",
        ],
    )
    .expect_success();
    node.kubectl(
        Identity::Admin,
        &["rollout", "status", "deployment/web", "--timeout=120s"],
    )
    .expect_success();

    node.kill().unwrap();
    node.start_again().unwrap();

    let after = node.facts().unwrap();
    assert_eq!(
        (
            after.ip.as_str(),
            after.pod_cidr.as_str(),
            after.service_cidr.as_str()
        ),
        (
            before.ip.as_str(),
            before.pod_cidr.as_str(),
            before.service_cidr.as_str()
        ),
        "the restarted node moved"
    );
    // The pod object survived in etcd; its containers did not. The kubelet
    // starts them again (a restart of the pod), and exec reaches them.
    let mut last = None;
    for _ in 0..100 {
        let restarts = node.kubectl(
            Identity::Admin,
            &[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={.items[0].status.containerStatuses[0].restartCount}",
            ],
        );
        let exec = node.kubectl(Identity::Admin, &["exec", "deployment/web", "--", "true"]);
        if restarts.success && restarts.stdout != "0" && exec.success {
            return;
        }
        last = Some((restarts, exec));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("the deployment's pod did not run again on the rebuilt node: {last:?}");
}
