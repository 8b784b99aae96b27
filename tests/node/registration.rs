//! The node registers itself, as a real kubelet, and becomes Ready.

use gitwarden_tests::Identity;
use gitwarden_tests::node::NodeCluster;

#[tokio::test]
async fn the_node_registers_with_its_node_ip_and_is_ready() {
    let node = NodeCluster::shared();
    let facts = node.facts().unwrap();
    let ready = node
        .kubectl(
            Identity::Admin,
            &[
                "get",
                "node",
                &facts.name,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.status.addresses[?(@.type==\"InternalIP\")].address}",
            ],
        )
        .expect_success()
        .to_string();
    assert_eq!(ready, format!("True {}", facts.ip));
}

#[tokio::test]
async fn the_kubelet_runs_the_control_planes_kubernetes_version_on_containerd() {
    let node = NodeCluster::shared();
    let facts = node.facts().unwrap();
    let versions = node
        .kubectl(
            Identity::Admin,
            &[
                "get",
                "node",
                &facts.name,
                "-o",
                "jsonpath={.status.nodeInfo.kubeletVersion} {.status.nodeInfo.containerRuntimeVersion}",
            ],
        )
        .expect_success()
        .to_string();
    let go_mod =
        std::fs::read_to_string(gitwarden_tests::cluster::repo_root().join("tests/cluster/go.mod"))
            .unwrap();
    let kubernetes = go_mod
        .lines()
        .find_map(|l| l.trim().strip_prefix("k8s.io/kubernetes "))
        .unwrap()
        .trim();
    let (kubelet, runtime) = versions.split_once(' ').unwrap();
    assert_eq!(kubelet, kubernetes);
    assert!(runtime.starts_with("containerd://2."), "{runtime}");
}

#[tokio::test]
async fn the_node_is_schedulable_once_ready() {
    let node = NodeCluster::shared();
    let facts = node.facts().unwrap();
    let taints = node
        .kubectl(
            Identity::Admin,
            &["get", "node", &facts.name, "-o", "jsonpath={.spec.taints}"],
        )
        .expect_success()
        .to_string();
    assert_eq!(taints, "", "the Ready node still has taints: {taints}");
}
