//! Pods reach the API server the way in-cluster clients do: through Service
//! `default/kubernetes`, verifying the API server's certificate with the
//! cluster CA from their service-account volume.

use gitwarden_tests::Identity;
use gitwarden_tests::node::NodeCluster;
use serde_json::Value;

#[tokio::test]
async fn a_pod_reaches_the_api_server_through_the_kubernetes_service() {
    let node = NodeCluster::shared();
    let facts = node.facts().unwrap();
    let ns = node.namespace("node-api").await.unwrap();
    node.run_toolbox(ns.name(), "client", &[], &["sleep", "3600"])
        .unwrap();

    let env = node.exec(
        ns.name(),
        "client",
        &["sh", "-c", "echo $KUBERNETES_SERVICE_HOST"],
    );
    assert_eq!(env.expect_success().trim(), facts.kubernetes_service_ip);
    // kubectl inside the pod: in-cluster configuration, no kubeconfig.
    let whoami = node.exec(
        ns.name(),
        "client",
        &["kubectl", "auth", "whoami", "-o", "json"],
    );
    let review: Value = serde_json::from_str(whoami.expect_success()).unwrap();
    assert_eq!(
        review["status"]["userInfo"]["username"],
        format!("system:serviceaccount:{}:default", ns.name())
    );
    assert_eq!(
        review["status"]["userInfo"]["extra"]["authentication.kubernetes.io/pod-name"][0],
        "client"
    );
}

#[tokio::test]
async fn the_kubernetes_service_points_at_the_api_server_on_the_nodes_link() {
    let node = NodeCluster::shared();
    let facts = node.facts().unwrap();
    let service = node
        .kubectl(
            Identity::Admin,
            &[
                "get",
                "service",
                "kubernetes",
                "-n",
                "default",
                "-o",
                "jsonpath={.spec.clusterIP}",
            ],
        )
        .expect_success()
        .to_string();
    assert_eq!(service, facts.kubernetes_service_ip);
    let endpoints = node
        .kubectl(
            Identity::Admin,
            &[
                "get",
                "endpointslice",
                "kubernetes",
                "-n",
                "default",
                "-o",
                "jsonpath={.endpoints[*].addresses[*]}",
            ],
        )
        .expect_success()
        .to_string();
    assert_eq!(endpoints, facts.host_ip);
}
