//! The test cluster itself is real: these tests prove what every other end-to-end
//! test stands on (identities, kubectl, controllers, admission webhooks).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::{Json, Router, extract::State, routing::post};
use base64::Engine as _;
use gitwarden_tests::admission_review::response;
use gitwarden_tests::{Identity, TestCluster, wait_for};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};

fn whoami(cluster: &TestCluster, kubeconfig: &std::path::Path) -> Value {
    let out = cluster.kubectl_with(kubeconfig, &["auth", "whoami", "-o", "json"]);
    serde_json::from_str(out.expect_success()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_creates_and_reads_a_configmap_with_kubectl() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("harness-kubectl").await.unwrap();
    cluster
        .kubectl(
            Identity::Alice,
            &[
                "-n",
                ns.name(),
                "create",
                "configmap",
                "greeting",
                "--from-literal=hello=world",
            ],
        )
        .expect_success();
    let out = cluster.kubectl(
        Identity::Alice,
        &[
            "-n",
            ns.name(),
            "get",
            "configmap",
            "greeting",
            "-o",
            "jsonpath={.data.hello}",
        ],
    );
    assert_eq!(out.expect_success(), "world");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_reports_user_and_groups_of_each_kubeconfig() {
    let cluster = TestCluster::shared();
    let expected = [
        (Identity::Admin, vec!["system:masters"]),
        (Identity::Alice, vec!["developers"]),
        (Identity::Carol, vec!["developers", "gitwarden:break-glass"]),
    ];
    for (who, groups) in expected {
        let review = whoami(cluster, &cluster.kubeconfig(who));
        let user = &review["status"]["userInfo"];
        assert_eq!(user["username"], who.user());
        let got: Vec<&str> = user["groups"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for g in groups {
            assert!(
                got.contains(&g),
                "{} should be in {g}, got {got:?}",
                who.user()
            );
        }
        assert!(got.contains(&"system:authenticated"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_reports_a_minted_service_account_token_bound_to_its_pod() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("harness-token").await.unwrap();
    let (_token, kubeconfig) = cluster
        .mint_service_account_token(ns.name(), "robot")
        .await
        .unwrap();
    let review = whoami(cluster, &kubeconfig);
    let user = &review["status"]["userInfo"];
    assert_eq!(
        user["username"],
        format!("system:serviceaccount:{}:robot", ns.name())
    );
    let groups: Vec<&str> = user["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(groups.contains(&"system:serviceaccounts"), "{groups:?}");
    assert!(
        groups.contains(&format!("system:serviceaccounts:{}", ns.name()).as_str()),
        "{groups:?}"
    );
    assert_eq!(
        user["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["robot-token-holder"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_completes() {
    let cluster = TestCluster::shared();
    let admin = cluster.client(Identity::Admin).await.unwrap();
    let name = format!("harness-doomed-{}", rand::random::<u32>() % 1_000_000);
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap(),
        )
        .await
        .unwrap();
    cluster
        .kubectl(
            Identity::Admin,
            &["-n", &name, "create", "configmap", "content"],
        )
        .expect_success();
    // The namespace controller must empty the namespace and remove its finalizer.
    cluster
        .kubectl(
            Identity::Admin,
            &["delete", "namespace", &name, "--wait=true", "--timeout=60s"],
        )
        .expect_success();
    assert!(namespaces.get_opt(&name).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_by_admin_gets_a_replicaset_from_the_controller_manager() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("harness-deploy").await.unwrap();
    cluster
        .kubectl(
            Identity::Admin,
            &[
                "-n",
                ns.name(),
                "create",
                "deployment",
                "web",
                "--image=registry.invalid/web:1",
            ],
        )
        .expect_success();
    let replicasets: Api<ReplicaSet> =
        Api::namespaced(cluster.client(Identity::Admin).await.unwrap(), ns.name());
    let found = wait_for(Duration::from_secs(30), || async {
        let list = replicasets
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?;
        list.items.into_iter().next()
    })
    .await
    .expect("the deployment controller created no ReplicaSet within 30s");
    let owner = &found.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Deployment", "web")
    );
}

/// What the probe webhook saw: (username, resource, name).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

async fn probe_webhook(State(seen): State<Seen>, Json(review): Json<Value>) -> Json<Value> {
    let req = &review["request"];
    let user = req["userInfo"]["username"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let resource = req["resource"]["resource"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = req["object"]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let deny = resource == "configmaps" && name.starts_with("forbidden-");
    seen.lock().unwrap().push((user, resource, name));
    let uid = req["uid"].as_str().unwrap_or_default();
    Json(response(
        uid,
        deny.then_some("the probe webhook refuses forbidden-* names"),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_webhook_at_a_loopback_url_is_called_with_real_identities() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("harness-webhook").await.unwrap();

    let ca = gitwarden_certs::CertificateAuthority::generate("probe-ca", Duration::from_secs(3600))
        .unwrap();
    let serving = ca
        .issue_serving_cert(
            &["localhost"],
            &["127.0.0.1".parse().unwrap()],
            Duration::from_secs(3600),
        )
        .unwrap();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        serving.cert_pem.into_bytes(),
        serving.key_pem.into_bytes(),
    )
    .await
    .unwrap();
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/validate", post(probe_webhook))
        .with_state(seen.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener, tls)
        .unwrap()
        .handle(handle.clone())
        .serve(app.into_make_service());
    tokio::spawn(server);

    let admin = cluster.client(Identity::Admin).await.unwrap();
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(admin);
    let config_name = format!("probe-{}", ns.name());
    let config: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": { "name": config_name },
        "webhooks": [{
            "name": "probe.gitwarden.io",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 5,
            "clientConfig": {
                "url": format!("https://127.0.0.1:{}/validate", addr.port()),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(ca.cert_pem()),
            },
            "rules": [{
                "apiGroups": ["", "apps"], "apiVersions": ["v1"], "operations": ["CREATE"],
                "resources": ["configmaps", "replicasets"], "scope": "Namespaced"
            }],
            "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": ns.name() } }
        }]
    }))
    .unwrap();
    configs
        .create(&PostParams::default(), &config)
        .await
        .unwrap();

    // The API server picks up new webhook configurations asynchronously.
    let denial = wait_for(Duration::from_secs(20), || async {
        let out = cluster.kubectl(
            Identity::Alice,
            &["-n", ns.name(), "create", "configmap", "forbidden-one"],
        );
        (!out.success).then_some(out.stderr)
    })
    .await;
    let denial = denial.expect("the webhook never denied forbidden-one within 20s");
    assert!(
        denial.contains("the probe webhook refuses forbidden-* names"),
        "{denial}"
    );
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|(u, r, n)| u == "alice" && r == "configmaps" && n == "forbidden-one")
    );

    // A controller's write reaches the webhook under the controller's own identity.
    cluster
        .kubectl(
            Identity::Admin,
            &[
                "-n",
                ns.name(),
                "create",
                "deployment",
                "web",
                "--image=registry.invalid/web:1",
            ],
        )
        .expect_success();
    let controller_write = wait_for(Duration::from_secs(30), || async {
        seen.lock()
            .unwrap()
            .iter()
            .find(|(_, r, _)| r == "replicasets")
            .map(|(u, _, _)| u.clone())
    })
    .await;
    assert_eq!(
        controller_write.as_deref(),
        Some("system:serviceaccount:kube-system:deployment-controller")
    );

    configs
        .delete(&config_name, &DeleteParams::default())
        .await
        .unwrap();
    handle.shutdown();
}
