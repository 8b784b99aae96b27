//! Kubernetes 1.36+ manifest-based admission configuration: gitwarden's webhook
//! configurations loaded by kube-apiserver from files (`deploy/admission/`),
//! not from API objects, so no one — not even `system:masters` — can delete
//! them through the API. Runs on a private control plane: the configuration
//! is a kube-apiserver flag, and it makes the whole cluster fail closed.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use gitwarden_tests::cluster::repo_root;
use gitwarden_tests::loopback::{LoopbackWebhook, PolicySource};
use gitwarden_tests::webhook::{apply, render};
use gitwarden_tests::{Identity, TestCluster, testdata};

const NAMESPACE: &str = "payments";

/// The real `gitwarden-webhook`, serving the shipped policy from a file (it
/// needs no cluster to start, so it can run before kube-apiserver calls it).
struct Webhook {
    loopback: LoopbackWebhook,
    _policy_dir: tempfile::TempDir,
}

impl Webhook {
    async fn start() -> Webhook {
        let policy_dir = tempfile::tempdir().unwrap();
        // The policy deploy/base ships, taken out of its ConfigMap.
        let shipped: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            &std::fs::read_to_string(repo_root().join("deploy/base/policy.yaml")).unwrap(),
        )
        .unwrap();
        let policy = shipped["data"]["policy.yaml"].as_str().unwrap();
        let policy_file = policy_dir.path().join("policy.yaml");
        std::fs::write(&policy_file, policy).unwrap();
        let loopback = LoopbackWebhook::start_with(PolicySource::File(&policy_file))
            .await
            .unwrap();
        Webhook {
            loopback,
            _policy_dir: policy_dir,
        }
    }

    fn url(&self) -> String {
        self.loopback.url.clone()
    }

    /// Renders `deploy/admission/` for this webhook into `dir`; returns the
    /// AdmissionConfiguration file to hand to kube-apiserver.
    fn render_admission_config(&self, dir: &Path) -> PathBuf {
        let shipped = repo_root().join("deploy/admission");
        let ca_bundle = base64::engine::general_purpose::STANDARD.encode(self.loopback.ca_pem());
        let manifests_dir = dir.display().to_string();
        let vars = [
            ("WEBHOOK_URL", self.url()),
            ("CA_BUNDLE", ca_bundle),
            ("MANIFESTS_DIR", manifests_dir),
        ];
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for file in [
            "admission-config.yaml",
            "validating/gitwarden.yaml",
            "mutating/gitwarden.yaml",
        ] {
            let text = std::fs::read_to_string(shipped.join(file)).unwrap();
            let out = dir.join(file);
            std::fs::create_dir_all(out.parent().unwrap()).unwrap();
            let rendered = render(&text, &vars);
            assert!(!rendered.contains("${"), "{file}: unrendered variable");
            std::fs::write(&out, rendered).unwrap();
        }
        dir.join("admission-config.yaml")
    }

    async fn audit_ids(&self, user: &str) -> Vec<String> {
        self.loopback.audit_ids(user).await.unwrap()
    }

    fn kill(&mut self) {
        self.loopback.kill();
    }
}

/// A ValidatingWebhookConfiguration that would call nothing real.
fn webhook_configuration(name: &str) -> String {
    testdata::rendered("e2e/noop-webhook-configuration.yaml", &[("NAME", name)]).unwrap()
}

/// alice's attempt to write a ConfigMap in the protected namespace.
fn alice_writes(cluster: &TestCluster, name: &str) -> gitwarden_tests::KubectlOutput {
    cluster.kubectl(
        Identity::Alice,
        &[
            "-n",
            NAMESPACE,
            "create",
            "configmap",
            name,
            "--from-literal=k=by-hand",
        ],
    )
}

/// The audit record id a denial message names.
fn audit_id(message: &str) -> Option<String> {
    let start = message.find("audit record ")? + "audit record ".len();
    Some(
        message[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_configured_from_manifest_files_enforces_and_cannot_be_deleted_through_the_api() {
    let mut webhook = Webhook::start().await;
    let cluster = TestCluster::start_private().unwrap();
    let admin = cluster.kubeconfig(Identity::Admin);
    // Set-up that needs admin's writes, before gitwarden enforces: a namespace
    // to protect, and the agent's identity with a real token.
    cluster
        .kubectl(Identity::Admin, &["create", "namespace", NAMESPACE])
        .expect_success();
    apply(
        &admin,
        &testdata::rendered("namespace.yaml", &[("NAME", "gitwarden-system")]).unwrap(),
    )
    .unwrap();
    apply(
        &admin,
        &testdata::read("agent-as-cluster-admin.yaml").unwrap(),
    )
    .unwrap();
    let (_, agent) = cluster
        .mint_service_account_token("gitwarden-system", "gitwarden-agent")
        .await
        .unwrap();
    alice_writes(&cluster, "before").expect_success();

    // What an operator does: add the flag to kube-apiserver and restart it.
    let manifests = tempfile::tempdir().unwrap();
    let config = webhook.render_admission_config(manifests.path());
    cluster.set_admission_config(Some(&config)).unwrap();
    cluster.stop().unwrap();
    cluster.start_again().unwrap();

    // Enforced from the first request after start-up, with an audit record.
    let denied = alice_writes(&cluster, "by-hand");
    let message = denied.expect_failure();
    assert!(
        message.contains("admission webhook \"validate.gitwarden.io\" denied the request")
            && message.contains("must be made in git"),
        "{message}"
    );
    let id = audit_id(message).unwrap();
    assert!(
        webhook.audit_ids("alice").await.contains(&id),
        "no audit record {id}"
    );

    // The configurations are not API objects: nothing to list, nothing to delete.
    let listed = cluster.kubectl(
        Identity::Admin,
        &[
            "get",
            "validatingwebhookconfigurations,mutatingwebhookconfigurations",
            "-o",
            "name",
        ],
    );
    assert!(
        !listed.expect_success().contains("gitwarden"),
        "{}",
        listed.stdout
    );
    for kind in [
        "validatingwebhookconfiguration",
        "mutatingwebhookconfiguration",
    ] {
        let delete = cluster.kubectl(
            Identity::Admin,
            &["delete", kind, "gitwarden.static.k8s.io"],
        );
        assert!(
            delete.expect_failure().contains("NotFound"),
            "{kind}: {}",
            delete.stderr
        );
    }
    // Nor can anyone shadow them: the .static.k8s.io names are reserved.
    let shadow = cluster.kubectl_full(
        &admin,
        &["create", "-f", "-"],
        &webhook_configuration("gitwarden.static.k8s.io"),
        &[],
    );
    assert!(
        shadow
            .expect_failure()
            .contains("reserved for static manifest-based configurations"),
        "{}",
        shadow.stderr
    );
    // Unlike API-registered webhooks, static ones see webhook configurations:
    // a new one from outside git is refused like any other change.
    let other = cluster.kubectl_full(
        &admin,
        &["create", "-f", "-"],
        &webhook_configuration("admin-made"),
        &[],
    );
    assert!(
        other
            .expect_failure()
            .contains("admission webhook \"validate.gitwarden.io\" denied the request"),
        "{}",
        other.stderr
    );

    // Admission policies and their bindings too, whoever writes them, and
    // break-glass does not open the admission chain.
    let policy = testdata::read("e2e/freeze-agent-policy.yaml").unwrap();
    let binding = testdata::read("e2e/freeze-agent-policy-binding.yaml").unwrap();
    for (who, manifest) in [(Identity::Alice, &policy), (Identity::Admin, &binding)] {
        let refused = cluster.kubectl_full(
            &cluster.kubeconfig(who),
            &["create", "-f", "-"],
            manifest,
            &[],
        );
        assert!(
            refused
                .expect_failure()
                .contains("admission webhook \"validate.gitwarden.io\" denied the request"),
            "{}",
            refused.stderr
        );
    }
    let policies = cluster.kubectl(
        Identity::Admin,
        &[
            "get",
            "validatingadmissionpolicies,validatingadmissionpolicybindings",
            "-o",
            "name",
        ],
    );
    assert!(
        !policies.expect_success().contains("freeze-agent"),
        "{}",
        policies.stdout
    );
    let glass = policy.replace(
        "metadata: {name: freeze-agent}",
        "metadata: {name: freeze-agent, annotations: {gitwarden.io/break-glass: INC-8}}",
    );
    let refused = cluster.kubectl_full(
        &cluster.kubeconfig(Identity::Carol),
        &["create", "-f", "-"],
        &glass,
        &[],
    );
    assert!(
        refused
            .expect_failure()
            .contains("break-glass never applies"),
        "{}",
        refused.stderr
    );

    // Enforcement stays after all of that; git's path (the agent) stays open.
    alice_writes(&cluster, "after-delete").expect_failure();
    cluster
        .kubectl_with(
            &agent,
            &[
                "-n",
                NAMESPACE,
                "create",
                "configmap",
                "from-git",
                "--from-literal=k=git",
            ],
        )
        .expect_success();

    // The static mutating webhook stamps a break-glass change.
    let emergency =
        testdata::rendered("e2e/emergency-configmap.yaml", &[("NAMESPACE", NAMESPACE)]).unwrap();
    let broke_glass = cluster.kubectl_full(
        &cluster.kubeconfig(Identity::Carol),
        &["create", "-f", "-"],
        &emergency,
        &[],
    );
    broke_glass.expect_success();
    assert!(
        broke_glass.stderr.contains("Warning:"),
        "{}",
        broke_glass.stderr
    );
    let stamped = cluster.kubectl(
        Identity::Admin,
        &[
            "-n",
            NAMESPACE,
            "get",
            "configmap",
            "emergency",
            "-o",
            "jsonpath={.metadata.annotations.gitwarden\\.io/break-glass-by}",
        ],
    );
    assert_eq!(stamped.expect_success(), "carol");

    // With the webhook down the cluster fails closed: nobody can remove the
    // configuration to get around that.
    webhook.kill();
    let closed = alice_writes(&cluster, "while-down");
    assert!(
        closed
            .expect_failure()
            .contains("failed calling webhook \"validate.gitwarden.io\""),
        "{}",
        closed.stderr
    );
}
