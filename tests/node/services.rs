//! kube-proxy routes a Service's ClusterIP to the pods behind it.

use gitwarden_tests::Identity;
use gitwarden_tests::node::{NodeCluster, WEB_PORT, in_cidr};

#[tokio::test]
async fn a_service_routes_to_its_pod_from_another_pod() {
    let node = NodeCluster::shared();
    let facts = node.facts().unwrap();
    let ns = node.namespace("node-svc").await.unwrap();
    node.run_web(ns.name(), "web", &[("app", "web")], "served-by-web")
        .unwrap();
    node.apply(
        ns.name(),
        &serde_json::json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": WEB_PORT}]},
        })
        .to_string(),
    )
    .unwrap();
    node.run_toolbox(ns.name(), "client", &[], &["sleep", "3600"])
        .unwrap();
    let cluster_ip = node
        .kubectl(
            Identity::Admin,
            &[
                "get",
                "service",
                "web",
                "-n",
                ns.name(),
                "-o",
                "jsonpath={.spec.clusterIP}",
            ],
        )
        .expect_success()
        .to_string();
    assert!(in_cidr(&cluster_ip, &facts.service_cidr), "{cluster_ip}");

    // The endpoint appears asynchronously (endpointslice controller, then
    // kube-proxy's rules): retry for a bounded time.
    let url = format!("http://{cluster_ip}/");
    let mut last = None;
    for _ in 0..50 {
        let out = node.exec(ns.name(), "client", &["wget", "-q", "-O-", &url]);
        if out.success {
            assert_eq!(out.stdout.trim(), "served-by-web");
            return;
        }
        last = Some(out);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("the Service never answered: {last:?}");
}

#[tokio::test]
async fn the_api_server_reaches_a_services_pod_at_its_ip() {
    // What admission webhooks behind a Service need: kube-apiserver resolves
    // the Service to its endpoints and connects to the pod IP from the host.
    let node = NodeCluster::shared();
    let ns = node.namespace("node-apiproxy").await.unwrap();
    node.run_web(ns.name(), "web", &[("app", "web")], "reached-by-apiserver")
        .unwrap();
    node.apply(
        ns.name(),
        &serde_json::json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": WEB_PORT}]},
        })
        .to_string(),
    )
    .unwrap();
    let path = format!("/api/v1/namespaces/{}/services/web:80/proxy/", ns.name());
    let mut last = None;
    for _ in 0..50 {
        let out = node.kubectl(Identity::Admin, &["get", "--raw", &path]);
        if out.success {
            assert_eq!(out.stdout.trim(), "reached-by-apiserver");
            return;
        }
        last = Some(out);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("kube-apiserver never reached the Service's pod: {last:?}");
}
