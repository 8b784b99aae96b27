//! A lost cluster is rebuilt from git alone: a second, fresh cluster (new
//! etcd, new node) plus the one install command plus the same repository
//! converges to the same objects, healthy, with no other human write and no
//! pipeline run again.

use std::time::{Duration, Instant};

use gitwarden_tests::install::{inventory_objects, jsonpath, synced_revision, wait_ready_replicas};
use gitwarden_tests::node::NodeCluster;
use gitwarden_tests::wait::wait_blocking;

use crate::installed::{disrupting, installed, wait_until_enforcing_and_synced};

#[test]
fn a_fresh_cluster_with_the_same_install_and_repository_converges_to_the_same_objects() {
    let installed = installed();
    // No other test changes the repository while the two are compared.
    let _disrupting = disrupting();
    let first = installed.node;
    let head = installed.target.head().unwrap();
    assert!(
        wait_blocking(Duration::from_secs(120), || synced_revision(first)
            .contains(&head)
            .then_some(()))
        .is_some(),
        "the first cluster never applied {head}"
    );

    let second = NodeCluster::start_private().unwrap();
    let target = installed.target.mirror(&second).unwrap();
    assert_eq!(target.head().unwrap(), head);
    let started = Instant::now();
    target.install("install").expect_success();
    wait_until_enforcing_and_synced(&second, &head).unwrap();
    let converged = started.elapsed();
    // Healthy, not just present: the application's pods run.
    let ready = wait_ready_replicas(
        &second,
        "shop",
        "deployment",
        "web",
        2,
        Duration::from_secs(120),
    );
    assert!(
        ready.is_some(),
        "shop/web never became ready on the rebuilt cluster"
    );
    eprintln!(
        "disaster recovery: the rebuilt cluster enforced and applied {head} {:.1}s after kubectl apply -k, its app Ready {:.1}s after",
        converged.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    let (before, after) = (inventory_objects(first), inventory_objects(&second));
    assert!(before.len() >= 4, "{before:?}");
    assert_eq!(
        after, before,
        "the rebuilt cluster holds other objects than the lost one"
    );
    for (kind, name, namespace, path) in [
        ("configmap", "web-settings", "shop", "{.data}"),
        ("service", "web", "shop", "{.spec.ports}"),
        (
            "deployment",
            "web",
            "shop",
            "{.spec.template.spec.containers[0].image}",
        ),
    ] {
        assert_eq!(
            jsonpath(&second, &[kind, name, "-n", namespace], path),
            jsonpath(first, &[kind, name, "-n", namespace], path),
            "{kind} {namespace}/{name}"
        );
    }
}
