//! The node's own credentials are a node's, no more: the Node authorizer lets
//! it read only what its pods use, and NodeRestriction keeps it off other
//! Nodes and off the labels reserved to administrators.

use gitwarden_tests::Identity;
use gitwarden_tests::node::NodeCluster;

#[tokio::test]
async fn the_nodes_credentials_identify_it_as_a_node() {
    let node = NodeCluster::shared();
    let facts = node.facts().unwrap();
    let whoami = node.kubectl_with(
        &node.node_kubeconfig(),
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ],
    );
    assert_eq!(
        whoami.expect_success(),
        format!(
            "system:node:{} [\"system:nodes\",\"system:authenticated\"]",
            facts.name
        )
    );
}

#[tokio::test]
async fn the_node_reads_a_secret_its_pod_uses_and_no_other() {
    let node = NodeCluster::shared();
    let ns = node.namespace("node-authz").await.unwrap();
    for name in ["used", "unrelated"] {
        node.kubectl(
            Identity::Admin,
            &[
                "create",
                "secret",
                "generic",
                name,
                "-n",
                ns.name(),
                "--from-literal=k=v",
            ],
        )
        .expect_success();
    }
    node.apply(
        ns.name(),
        &serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "consumer"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": gitwarden_tests::node::TOOLBOX_IMAGE,
                    "imagePullPolicy": "Never", "command": ["sleep", "3600"],
                    "volumeMounts": [{"name": "s", "mountPath": "/s"}]}],
                "volumes": [{"name": "s", "secret": {"secretName": "used"}}],
            },
        })
        .to_string(),
    )
    .unwrap();
    node.wait_ready(ns.name(), "consumer").unwrap();

    let as_node = |secret: &str| {
        node.kubectl_with(
            &node.node_kubeconfig(),
            &["get", "secret", secret, "-n", ns.name(), "-o", "name"],
        )
    };
    assert_eq!(as_node("used").expect_success(), "secret/used\n");
    let denied = as_node("unrelated");
    assert!(
        denied
            .expect_failure()
            .contains("no relationship found between node"),
        "{}",
        denied.stderr
    );
}

#[tokio::test]
async fn the_node_cannot_modify_another_node() {
    let node = NodeCluster::shared();
    let other = format!("other-node-{:06}", rand::random::<u32>() % 1_000_000);
    node.apply(
        "default",
        &serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": other}})
            .to_string(),
    )
    .unwrap();
    let attempt = node.kubectl_with(
        &node.node_kubeconfig(),
        &["label", "node", &other, "hijacked=yes"],
    );
    node.kubectl(Identity::Admin, &["delete", "node", &other, "--wait=false"])
        .expect_success();
    assert!(
        attempt
            .expect_failure()
            .contains("only its own Node object"),
        "{}",
        attempt.stderr
    );
}

#[tokio::test]
async fn the_node_cannot_set_labels_reserved_to_administrators_on_itself() {
    let node = NodeCluster::shared();
    let facts = node.facts().unwrap();
    let attempt = node.kubectl_with(
        &node.node_kubeconfig(),
        &[
            "label",
            "node",
            &facts.name,
            "node-restriction.kubernetes.io/trusted=yes",
        ],
    );
    assert!(
        attempt
            .expect_failure()
            .contains("is not allowed to modify labels: node-restriction.kubernetes.io/trusted"),
        "{}",
        attempt.stderr
    );
}
