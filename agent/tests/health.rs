//! Health waiting against the real API server (tests/cluster).
//!
//! The test cluster runs the deployment, replicaset and job controllers but no
//! scheduler and no kubelet: pods are created and never run. So a Deployment
//! gets as far as "pods exist, none available" and a Job as "active, not
//! complete" — exactly the stuck rollouts the timeout must bound.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use gitwarden_agent::health::{HealthRef, HealthStatus, wait_for_health, wait_for_health_every};
use gitwarden_tests::{Identity, TestCluster};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::core::ApiResource;
use serde_json::json;
use tokio::time::Instant;

fn deployment(name: &str, replicas: i32, progress_deadline: Option<i32>) -> Deployment {
    let mut spec = json!({
        "replicas": replicas,
        "selector": { "matchLabels": { "app": name } },
        "template": {
            "metadata": { "labels": { "app": name } },
            "spec": { "containers": [{ "name": "main", "image": "registry.invalid/never-pulled:1" }] },
        },
    });
    if let Some(seconds) = progress_deadline {
        spec["progressDeadlineSeconds"] = json!(seconds);
    }
    serde_json::from_value(json!({ "metadata": { "name": name }, "spec": spec })).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_deployment_and_job_stay_in_progress_and_the_timeout_bounds_the_wait() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("health").await.unwrap();
    let client = cluster.client(Identity::Admin).await.unwrap();

    Api::<Deployment>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &deployment("web", 2, None))
        .await
        .unwrap();
    let job: Job = serde_json::from_value(json!({
        "metadata": { "name": "migrate" },
        "spec": {
            "backoffLimit": 0,
            "template": { "spec": {
                "restartPolicy": "Never",
                "containers": [{ "name": "main", "image": "registry.invalid/never-pulled:1" }],
            } },
        },
    }))
    .unwrap();
    Api::<Job>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    let cm: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "settings" }, "data": { "a": "1" } }))
            .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();

    let refs = [
        HealthRef::new(
            ApiResource::erase::<Deployment>(&()),
            Some(ns.name()),
            "web",
        ),
        HealthRef::new(ApiResource::erase::<Job>(&()), Some(ns.name()), "migrate"),
        HealthRef::new(
            ApiResource::erase::<ConfigMap>(&()),
            Some(ns.name()),
            "settings",
        ),
        HealthRef::new(
            ApiResource::erase::<ConfigMap>(&()),
            Some(ns.name()),
            "absent",
        ),
    ];
    let timeout = Duration::from_secs(4);
    let started = Instant::now();
    let results = wait_for_health(&client, &refs, timeout).await;
    let took = started.elapsed();
    for (r, h) in &results {
        eprintln!("{r}: {} — {}", h.status, h.message);
    }

    assert!(
        took >= timeout - Duration::from_millis(100),
        "returned early: {took:?}"
    );
    assert!(
        took < timeout + Duration::from_millis(500),
        "overran the timeout: {took:?}"
    );
    assert_eq!(results.len(), refs.len());
    assert_eq!(results[0].0, refs[0], "results keep the order of refs");

    let (deploy, job, settings, absent) =
        (&results[0].1, &results[1].1, &results[2].1, &results[3].1);
    assert_eq!(deploy.status, HealthStatus::InProgress);
    assert!(
        deploy.message.contains("not ready after"),
        "{}",
        deploy.message
    );
    assert!(
        deploy.message.contains("Available: 0/2"),
        "{}",
        deploy.message
    );
    assert_eq!(job.status, HealthStatus::InProgress);
    assert!(job.message.contains("not ready after"), "{}", job.message);
    assert!(job.message.contains("Job in progress"), "{}", job.message);
    assert!(job.message.contains("active: 1"), "{}", job.message);
    assert_eq!(settings.status, HealthStatus::Current);
    assert_eq!(absent.status, HealthStatus::NotFound);
    assert!(absent.message.contains("not found"), "{}", absent.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_objects_end_the_wait_early() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("health").await.unwrap();
    let client = cluster.client(Identity::Admin).await.unwrap();
    // Zero replicas need no kubelet: the rollout completes.
    Api::<Deployment>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &deployment("idle", 0, None))
        .await
        .unwrap();
    let refs = [HealthRef::new(
        ApiResource::erase::<Deployment>(&()),
        Some(ns.name()),
        "idle",
    )];
    let started = Instant::now();
    let results = wait_for_health_every(
        &client,
        &refs,
        Duration::from_secs(20),
        Duration::from_millis(200),
    )
    .await;
    let took = started.elapsed();
    let health = &results[0].1;
    assert_eq!(health.status, HealthStatus::Current, "{health:?}");
    assert!(
        took < Duration::from_secs(10),
        "waited {took:?} for a settled object"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_past_its_progress_deadline_is_failed() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("health").await.unwrap();
    let client = cluster.client(Identity::Admin).await.unwrap();
    Api::<Deployment>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &deployment("slow", 1, Some(1)))
        .await
        .unwrap();
    let refs = [HealthRef::new(
        ApiResource::erase::<Deployment>(&()),
        Some(ns.name()),
        "slow",
    )];
    let results = wait_for_health_every(
        &client,
        &refs,
        Duration::from_secs(30),
        Duration::from_millis(500),
    )
    .await;
    let health = &results[0].1;
    eprintln!("{}: {}", health.status, health.message);
    assert_eq!(health.status, HealthStatus::Failed, "{health:?}");
    assert!(
        health.message.contains("Progress deadline exceeded"),
        "{}",
        health.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_yields_unknown_within_the_timeout() {
    // A client pointed at a closed port: the wait must still end on time.
    let config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let refs = [HealthRef::new(
        ApiResource::erase::<Job>(&()),
        Some("default"),
        "x",
    )];
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let results = wait_for_health_every(&client, &refs, timeout, Duration::from_millis(200)).await;
    let took = started.elapsed();
    assert!(
        took < timeout + Duration::from_millis(500),
        "overran: {took:?}"
    );
    assert_eq!(
        results[0].1.status,
        HealthStatus::Unknown,
        "{:?}",
        results[0].1
    );
}
