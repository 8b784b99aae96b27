//! The install manifests are accepted by a real API server: the base, and the
//! cert-manager overlay with cert-manager's real CRDs installed.

use std::time::Duration;

use gitwarden_tests::cluster::repo_root;
use gitwarden_tests::kubectl::wait_condition;
use gitwarden_tests::{Identity, TestCluster, wait_for};
use serde_json::Value;

/// The server-side dry run cannot create the namespace the rest lives in.
fn ensure_system_namespace(cluster: &TestCluster) {
    let created = cluster.kubectl(
        Identity::Admin,
        &["create", "namespace", "gitwarden-system"],
    );
    assert!(
        created.success || created.stderr.contains("AlreadyExists"),
        "{}",
        created.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_base_is_accepted_by_a_server_side_dry_run() {
    let cluster = TestCluster::shared();
    ensure_system_namespace(cluster);
    let base = repo_root().join("deploy/base");
    let out = cluster.kubectl(
        Identity::Admin,
        &["apply", "--dry-run=server", "-k", base.to_str().unwrap()],
    );
    let stdout = out.expect_success();
    // The configurations are the webhook's to register once it is ready:
    // installing the base must not start enforcing.
    assert!(
        !stdout.contains("webhookconfiguration"),
        "the base installs no webhook configuration:\n{stdout}"
    );
    for object in [
        "statefulset.apps/gitwarden-webhook",
        "deployment.apps/gitwarden-agent",
        "clusterrole.rbac.authorization.k8s.io/gitwarden-agent-writer",
        "configmap/gitwarden-webhook-configurations",
        "clusterrole.rbac.authorization.k8s.io/gitwarden-webhook-registration",
        "poddisruptionbudget.policy/gitwarden-webhook",
        "networkpolicy.networking.k8s.io/gitwarden",
        "cronjob.batch/gitwarden-certs",
        "job.batch/gitwarden-certs-bootstrap",
        "secret/gitwarden-webhook-tls",
        "secret/gitwarden-webhook-ca",
        "serviceaccount/gitwarden-certs",
        "role.rbac.authorization.k8s.io/gitwarden-certs",
        "clusterrole.rbac.authorization.k8s.io/gitwarden-certs",
    ] {
        assert!(stdout.contains(object), "{object} missing from:\n{stdout}");
    }
}

fn rendered_overlay(cluster: &TestCluster) -> Vec<Value> {
    let overlay = repo_root().join("deploy/overlays/cert-manager");
    let out = cluster.kubectl(Identity::Admin, &["kustomize", overlay.to_str().unwrap()]);
    serde_yaml_ng::Deserializer::from_str(out.expect_success())
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cert_manager_overlay_replaces_gitwarden_certs_with_a_ca_chain_and_its_own_template() {
    let cluster = TestCluster::shared();
    let docs = rendered_overlay(cluster);
    for (kind, name) in [
        ("Job", "gitwarden-certs-bootstrap"),
        ("Secret", "gitwarden-webhook-tls"),
        ("Secret", "gitwarden-webhook-ca"),
    ] {
        assert!(
            find(&docs, kind, name).is_none(),
            "{kind} {name} must be removed: cert-manager makes the certificates"
        );
    }
    for kind in [
        "CronJob",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
    ] {
        assert!(
            find(&docs, kind, "gitwarden-certs").is_none(),
            "{kind} gitwarden-certs must be removed"
        );
    }
    // The webhook registers the overlay's template, which keeps cert-manager's
    // controller (not gitwarden-certs) off the webhook's path.
    let template = find(&docs, "ConfigMap", "gitwarden-webhook-configurations").unwrap();
    let text = template["data"]["webhook-configuration.yaml"]
        .as_str()
        .unwrap();
    let configurations = gitwarden_shared::admission_object::registration_template(text).unwrap();
    assert_eq!(configurations.len(), 2);
    assert!(!text.contains("gitwarden-system:gitwarden-certs"), "{text}");
    assert_eq!(
        text.matches("system:serviceaccount:cert-manager:cert-manager")
            .count(),
        3
    );
    assert!(find(&docs, "ValidatingWebhookConfiguration", "gitwarden").is_none());
    let selfsigned = find(&docs, "Issuer", "gitwarden-selfsigned").unwrap();
    assert!(selfsigned["spec"]["selfSigned"].is_object());
    let ca = find(&docs, "Certificate", "gitwarden-webhook-ca").unwrap();
    assert_eq!(ca["spec"]["isCA"], true);
    assert_eq!(ca["spec"]["issuerRef"]["name"], "gitwarden-selfsigned");
    let ca_issuer = find(&docs, "Issuer", "gitwarden-ca").unwrap();
    assert_eq!(
        ca_issuer["spec"]["ca"]["secretName"],
        ca["spec"]["secretName"]
    );
    let serving = find(&docs, "Certificate", "gitwarden-webhook-tls").unwrap();
    assert_eq!(serving["spec"]["issuerRef"]["name"], "gitwarden-ca");
    // The Secret the webhook StatefulSet mounts.
    let webhook = find(&docs, "StatefulSet", "gitwarden-webhook").unwrap();
    assert_eq!(
        serving["spec"]["secretName"],
        webhook["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"]
    );
    let names: Vec<&str> = serving["spec"]["dnsNames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        names,
        [
            "gitwarden-webhook.gitwarden-system.svc",
            "gitwarden-webhook.gitwarden-system.svc.cluster.local"
        ]
    );
    let policy = find(&docs, "ConfigMap", "gitwarden-policy").unwrap();
    let text = policy["data"]["policy.yaml"].as_str().unwrap();
    assert!(
        text.contains("system:serviceaccount:cert-manager:cert-manager"),
        "{text}"
    );
    assert!(!text.contains("gitwarden-certs"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cert_manager_overlay_is_accepted_by_a_server_side_dry_run_with_real_crds() {
    let cluster = TestCluster::shared();
    ensure_system_namespace(cluster);
    let fixtures = repo_root().join("tests/fixtures/cert-manager");
    for crd in [
        "cert-manager.io_issuers.yaml",
        "cert-manager.io_certificates.yaml",
    ] {
        // Server-side: the Issuer CRD is too large for the last-applied annotation.
        cluster
            .kubectl(
                Identity::Admin,
                &[
                    "apply",
                    "--server-side",
                    "--force-conflicts",
                    "-f",
                    fixtures.join(crd).to_str().unwrap(),
                ],
            )
            .expect_success();
    }
    for crd in [
        "crd/issuers.cert-manager.io",
        "crd/certificates.cert-manager.io",
    ] {
        wait_condition(
            &cluster.kubeconfig(Identity::Admin),
            None,
            crd,
            "Established",
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let overlay = repo_root().join("deploy/overlays/cert-manager");
    // Discovery of the new kinds can trail the Established condition briefly.
    let mut last = String::new();
    let accepted = wait_for(Duration::from_secs(30), || {
        let out = cluster.kubectl(
            Identity::Admin,
            &["apply", "--dry-run=server", "-k", overlay.to_str().unwrap()],
        );
        if !out.success {
            last = out.stderr.clone();
        }
        let ok = out.success.then_some(out.stdout);
        async move { ok }
    })
    .await;
    let stdout = accepted.unwrap_or_else(|| panic!("the overlay was refused: {last}"));
    for object in [
        "issuer.cert-manager.io/gitwarden-selfsigned",
        "issuer.cert-manager.io/gitwarden-ca",
        "certificate.cert-manager.io/gitwarden-webhook-ca",
        "certificate.cert-manager.io/gitwarden-webhook-tls",
        "configmap/gitwarden-webhook-configurations",
        "clusterrole.rbac.authorization.k8s.io/gitwarden-webhook-registration",
        "statefulset.apps/gitwarden-webhook",
    ] {
        assert!(stdout.contains(object), "{object} missing from:\n{stdout}");
    }
    assert!(
        !stdout.contains("cronjob.batch/gitwarden-certs"),
        "{stdout}"
    );
}
