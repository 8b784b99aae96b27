//! The node's add-ons, as any local cluster has them: cluster DNS (CoreDNS
//! behind Service kube-dns) and a default StorageClass whose claims bind to
//! the node's local volumes.

use gitwarden_tests::Identity;
use gitwarden_tests::node::{NodeCluster, TOOLBOX_IMAGE, WEB_PORT};

#[tokio::test]
async fn pods_reach_a_service_by_its_dns_name() {
    let node = NodeCluster::shared();
    let facts = node.facts().unwrap();
    let ns = node.namespace("node-dns").await.unwrap();
    node.run_web(ns.name(), "web", &[("app", "web")], "found-by-name")
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

    let resolv = node.exec(ns.name(), "client", &["cat", "/etc/resolv.conf"]);
    assert!(
        resolv
            .stdout
            .contains(&format!("nameserver {}", facts.cluster_dns)),
        "{resolv:?}"
    );
    let url = format!("http://web.{}.svc/", ns.name());
    let mut last = None;
    for _ in 0..50 {
        let out = node.exec(ns.name(), "client", &["wget", "-q", "-O-", &url]);
        if out.success {
            assert_eq!(out.stdout.trim(), "found-by-name");
            return;
        }
        last = Some(out);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("{url} never answered: {last:?}");
}

#[tokio::test]
async fn names_outside_the_cluster_do_not_resolve() {
    // CoreDNS has no upstream: nothing is forwarded off the machine.
    let node = NodeCluster::shared();
    let ns = node.namespace("node-dns-out").await.unwrap();
    node.run_toolbox(ns.name(), "client", &[], &["sleep", "3600"])
        .unwrap();
    let inside = node.exec(
        ns.name(),
        "client",
        &["nslookup", "kubernetes.default.svc.cluster.local"],
    );
    assert!(inside.success, "{inside:?}");
    let outside = node.exec(ns.name(), "client", &["nslookup", "deb.debian.org."]);
    assert!(!outside.success, "{outside:?}");
}

#[tokio::test]
async fn a_claim_without_a_class_binds_and_its_data_outlives_the_pod() {
    let node = NodeCluster::shared();
    let ns = node.namespace("node-storage").await.unwrap();
    node.apply(
        ns.name(),
        &serde_json::json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        })
        .to_string(),
    )
    .unwrap();
    let pod = |name: &str| {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                // As the webhook's StatefulSet runs: not root, the volume
                // made writable for the pod's group.
                "securityContext": {"runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532},
                "containers": [{
                    "name": "main", "image": TOOLBOX_IMAGE, "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
            },
        })
        .to_string()
    };
    node.apply(ns.name(), &pod("writer")).unwrap();
    node.wait_ready(ns.name(), "writer").unwrap();
    let phase = node.kubectl(
        Identity::Admin,
        &[
            "get",
            "pvc",
            "data",
            "-n",
            ns.name(),
            "-o",
            "jsonpath={.status.phase}",
        ],
    );
    assert_eq!(phase.stdout.trim(), "Bound", "{phase:?}");
    let write = node.exec(
        ns.name(),
        "writer",
        &["sh", "-c", "echo kept > /data/record"],
    );
    assert!(write.success, "{write:?}");

    node.kubectl(
        Identity::Admin,
        &["delete", "pod", "writer", "-n", ns.name(), "--wait=true"],
    )
    .expect_success();
    node.apply(ns.name(), &pod("reader")).unwrap();
    node.wait_ready(ns.name(), "reader").unwrap();
    let read = node.exec(ns.name(), "reader", &["cat", "/data/record"]);
    assert_eq!(read.stdout.trim(), "kept", "{read:?}");
}
