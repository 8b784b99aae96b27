//! Failure: the cluster fails closed without the webhook, gitwarden's own
//! namespace stays repairable by the agent alone, and no acknowledged audit record is ever lost.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gitwarden_tests::Identity;
use gitwarden_tests::admission_review::AdmissionReview;
use gitwarden_tests::loopback::pem_to_der;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

use crate::common::{Setup, audit_id};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_webhook_fails_closed_and_only_the_agent_still_writes() {
    let s = Setup::new("fail-closed").await;
    s.gitwarden.kill();
    let err = s
        .kubectl(Identity::Alice, &["create", "configmap", "while-down"])
        .expect_failure()
        .to_string();
    assert!(err.contains("failed calling webhook"), "{err}");
    // The agent's own writes never depend on the webhook.
    s.agent(&["create", "configmap", "from-git"])
        .expect_success();
    // gitwarden-system fails closed for people too (the agent repairs it;
    // see side_doors.rs).
    let err = s
        .cluster
        .kubectl(
            Identity::Admin,
            &[
                "-n",
                "gitwarden-system",
                "create",
                "configmap",
                &format!("repair-{}", s.ns()),
            ],
        )
        .expect_failure()
        .to_string();
    assert!(err.contains("failed calling webhook"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_of_denials_loses_no_record_a_client_saw() {
    let s = Setup::new("kill-burst").await;
    let alice = s.cluster.client(Identity::Alice).await.unwrap();
    let seen: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let other_errors = Arc::new(Mutex::new(0usize));
    let mut workers = Vec::new();
    for worker in 0..8 {
        let api: Api<ConfigMap> = Api::namespaced(alice.clone(), s.ns());
        let seen = seen.clone();
        let other_errors = other_errors.clone();
        workers.push(tokio::spawn(async move {
            for n in 0..60 {
                let cm: ConfigMap = serde_json::from_value(
                    serde_json::json!({ "metadata": { "name": format!("burst-{worker}-{n}") } }),
                )
                .unwrap();
                match api.create(&PostParams::default(), &cm).await {
                    Err(kube::Error::Api(status))
                        if status.message.contains("must be made in git") =>
                    {
                        let id = audit_id(&status.message).expect("denial without an audit id");
                        seen.lock().unwrap().insert(id);
                    }
                    Err(_) => *other_errors.lock().unwrap() += 1,
                    Ok(_) => panic!("alice created a ConfigMap"),
                }
            }
        }));
    }
    // Let the burst run, then pull the plug in the middle of it.
    while seen.lock().unwrap().len() < 100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.gitwarden.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.gitwarden.restart().await.unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert!(
        *other_errors.lock().unwrap() > 0,
        "the kill happened after the burst: nothing was interrupted"
    );

    let stored: BTreeSet<String> = s
        .audit("&user=alice")
        .await
        .into_iter()
        .map(|r| r.id)
        .collect();
    let missing: Vec<&String> = seen.difference(&stored).collect();
    assert!(
        missing.is_empty(),
        "{} denials the client saw have no audit record: {missing:?}",
        missing.len()
    );
    let (intact, report) = s.gitwarden.verify().unwrap();
    assert!(intact, "{report}");
    eprintln!(
        "kill -9 burst: {} denials seen, {} records stored",
        seen.len(),
        stored.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_admission_reviews_get_400_and_the_webhook_keeps_serving() {
    let s = Setup::new("garbage").await;
    let url = format!("{}/validate", s.gitwarden.url);
    let bodies: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}".to_vec(),
        b"{\"request\": {\"uid\": 7}}".to_vec(),
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"group":"","version":"v1","kind":"ConfigMap"}"#.to_vec(),
        vec![0xff; 4096],
    ];
    for body in bodies {
        let resp = s
            .gitwarden
            .http()
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
    }
    // The webhook answers 413 from the Content-Length alone and closes; a
    // client still writing the body may see the close (broken pipe) before
    // the answer, so a few tries are allowed to read the answer itself.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let oversized = vec![b' '; 7 * 1024 * 1024];
        match s
            .gitwarden
            .http()
            .post(&url)
            .header("content-type", "application/json")
            .body(oversized)
            .send()
            .await
        {
            Ok(resp) => {
                statuses.push(resp.status().as_u16());
                break;
            }
            Err(e) if e.is_request() => continue,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(statuses, [413], "no 413 in five tries");
    // Still deciding real requests.
    s.kubectl(Identity::Alice, &["create", "configmap", "after-garbage"])
        .expect_failure();
    let metrics = s.gitwarden.metrics().await.unwrap();
    assert!(
        metrics.contains("gitwarden_webhook_bad_requests_total{endpoint=\"validate\"} 5"),
        "{metrics}"
    );
}

/// A human's dry run: always allowed, so every failure is the transport's.
fn allowed_review() -> serde_json::Value {
    let object = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "probe", "namespace": "default" }
    });
    AdmissionReview::create(object)
        .uid("rotation-probe")
        .by("alice", &["developers"])
        .dry_run(true)
        .to_json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_certificate_under_a_stream_of_requests_fails_none() {
    let s = Setup::new("rotate").await;
    let client = s.gitwarden.fresh_connection_client().unwrap();
    let url = format!("{}/validate", s.gitwarden.url);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut streams = Vec::new();
    for _ in 0..4 {
        let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
        streams.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut certs) = (0usize, Vec::new(), BTreeSet::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match client.post(&url).json(&allowed_review()).send().await {
                    Ok(resp) if resp.status().is_success() => {
                        ok += 1;
                        if let Some(info) = resp.extensions().get::<reqwest::tls::TlsInfo>() {
                            certs.insert(
                                info.peer_certificate()
                                    .map(<[u8]>::to_vec)
                                    .unwrap_or_default(),
                            );
                        }
                    }
                    Ok(resp) => failed.push(format!("HTTP {}", resp.status())),
                    Err(e) => failed.push(format!("{e:?}")),
                }
            }
            (ok, failed, certs)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let new_cert = pem_to_der(&s.gitwarden.rotate_certificate().unwrap());
    // The webhook polls every 500 ms in tests; give it a few rounds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut total, mut failures, mut seen) = (0, Vec::new(), BTreeSet::new());
    for stream in streams {
        let (ok, failed, certs) = stream.await.unwrap();
        total += ok;
        failures.extend(failed);
        seen.extend(certs);
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during rotation: {:?}",
        failures.len(),
        total + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        seen.contains(&new_cert),
        "no connection was served with the new certificate ({} distinct seen)",
        seen.len()
    );
    assert!(
        seen.len() >= 2,
        "the old certificate was never seen: the stream started too late"
    );
    let metrics = s.gitwarden.metrics().await.unwrap();
    assert!(
        metrics.contains("gitwarden_webhook_tls_reloads_total{result=\"ok\"}"),
        "{metrics}"
    );
    eprintln!("certificate rotation: {total} requests on fresh connections, 0 failed");
}
