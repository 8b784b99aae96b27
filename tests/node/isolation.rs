//! Nothing the node or its pods send leaves the machine: the node's network
//! namespace has no default route, the host routes the pod range only through
//! the node's veth and forwards nothing for it, and no masquerading could
//! rewrite it for another interface. The harness checks this before the
//! kubelet starts; here the same checks run again, and pods and the node try.

use gitwarden_tests::node::{NodeCluster, run_host};

#[tokio::test]
async fn the_harness_network_check_passes_on_the_running_node() {
    let node = NodeCluster::shared();
    let check = node.network_check();
    let report = check.expect_success();
    assert!(!report.contains("FAIL"), "{report}");
    for expected in [
        "has no route",
        "the host's FORWARD chain jumps to",
        "cannot masquerade",
    ] {
        assert!(
            report.contains(expected),
            "no check mentions {expected:?}:\n{report}"
        );
    }
}

#[tokio::test]
async fn a_pod_cannot_reach_anything_beyond_the_machine() {
    let node = NodeCluster::shared();
    let ns = node.namespace("node-egress").await.unwrap();
    node.run_toolbox(ns.name(), "prober", &[], &["sleep", "3600"])
        .unwrap();
    let gateway =
        run_host(std::process::Command::new("ip").args(["-4", "route", "show", "default"]));
    let mut targets = vec!["1.1.1.1".to_string()];
    targets.extend(
        gateway
            .stdout
            .split_whitespace()
            .skip_while(|w| *w != "via")
            .nth(1)
            .map(str::to_string),
    );
    for target in targets {
        let out = node.exec(
            ns.name(),
            "prober",
            &[
                "timeout",
                "5",
                "wget",
                "-q",
                "-O-",
                &format!("http://{target}/"),
            ],
        );
        assert!(!out.success, "the pod reached {target}: {}", out.stdout);
        assert!(
            out.stderr.contains("Network is unreachable"),
            "reaching {target} failed, but not for want of a route: {}",
            out.stderr
        );
    }
}

#[tokio::test]
async fn the_node_itself_has_no_route_off_the_machine() {
    let node = NodeCluster::shared();
    let route = node
        .in_node_netns(&["ip", "route", "get", "1.1.1.1"])
        .unwrap();
    assert!(!route.success, "the node has a route: {}", route.stdout);
    let default = node
        .in_node_netns(&["ip", "-4", "route", "show", "default"])
        .unwrap();
    assert_eq!(default.expect_success(), "");
}

#[tokio::test]
async fn the_host_routes_the_pod_range_only_through_the_nodes_veth() {
    let node = NodeCluster::shared();
    let facts = node.facts().unwrap();
    let (network, _) = facts.pod_cidr.split_once('/').unwrap();
    let pod_address = network
        .rsplit_once('.')
        .map(|(a, _)| format!("{a}.77"))
        .unwrap();
    let route = run_host(std::process::Command::new("ip").args(["route", "get", &pod_address]));
    assert!(
        route
            .expect_success()
            .contains(&format!("via {} dev {} ", facts.ip, facts.host_interface)),
        "{}",
        route.stdout
    );
    let service = run_host(std::process::Command::new("ip").args([
        "route",
        "get",
        &facts.kubernetes_service_ip,
    ]));
    assert!(
        !service.success,
        "the host routes the Service range: {}",
        service.stdout
    );
}
