//! Pods are scheduled onto the node, run, and get an address of the pod range.

use gitwarden_tests::Identity;
use gitwarden_tests::node::{NodeCluster, in_cidr};

#[tokio::test]
async fn a_pod_is_scheduled_runs_and_gets_an_ip_in_the_pod_range() {
    let node = NodeCluster::shared();
    let facts = node.facts().unwrap();
    let ns = node.namespace("node-pod").await.unwrap();
    node.run_toolbox(ns.name(), "sleeper", &[], &["sleep", "3600"])
        .unwrap();

    let placed = node
        .kubectl(
            Identity::Admin,
            &[
                "get",
                "pod",
                "sleeper",
                "-n",
                ns.name(),
                "-o",
                "jsonpath={.spec.nodeName} {.status.phase} {.status.podIP}",
            ],
        )
        .expect_success()
        .to_string();
    let fields: Vec<&str> = placed.split(' ').collect();
    assert_eq!(fields[..2], [facts.name.as_str(), "Running"], "{placed}");
    assert!(
        in_cidr(fields[2], &facts.pod_cidr),
        "pod IP {} is outside the pod range {}",
        fields[2],
        facts.pod_cidr
    );
}

#[tokio::test]
async fn the_pods_address_is_the_one_it_sees_on_its_own_interface() {
    let node = NodeCluster::shared();
    let ns = node.namespace("node-pod-ip").await.unwrap();
    node.run_toolbox(ns.name(), "sleeper", &[], &["sleep", "3600"])
        .unwrap();
    let pod_ip = node
        .kubectl(
            Identity::Admin,
            &[
                "get",
                "pod",
                "sleeper",
                "-n",
                ns.name(),
                "-o",
                "jsonpath={.status.podIP}",
            ],
        )
        .expect_success()
        .to_string();
    let inside = node.exec(
        ns.name(),
        "sleeper",
        &["ip", "-4", "-o", "addr", "show", "eth0"],
    );
    assert!(
        inside.expect_success().contains(&format!("inet {pod_ip}/")),
        "eth0 in the pod: {}",
        inside.stdout
    );
}
