//! The side doors, tried as an attacker with cluster-admin would try them with
//! plain kubectl: alice (cluster-admin by RBAC), admin (system:masters), carol
//! (break-glass group). Each test asserts the cluster's state afterwards, not
//! only the answer, and that the control plane keeps writing.

use std::time::Duration;

use gitwarden_shared::audit::AuditRecord;
use gitwarden_tests::kubectl::run_kubectl_stdin;
use gitwarden_tests::{Identity, testdata};

use crate::common::{Setup, audit_id, wait_for};

/// kubectl as `who`, anywhere in the cluster.
fn kubectl(s: &Setup, who: Identity, args: &[&str]) -> gitwarden_tests::KubectlOutput {
    s.cluster.kubectl(who, args)
}

/// `kubectl apply -f -` as `who`.
fn apply_as(s: &Setup, who: Identity, manifest: &str) -> gitwarden_tests::KubectlOutput {
    run_kubectl_stdin(&s.cluster.kubeconfig(who), &["apply", "-f", "-"], manifest)
}

/// `kubectl apply -f -` as the agent.
fn apply_as_agent(s: &Setup, manifest: &str) -> gitwarden_tests::KubectlOutput {
    run_kubectl_stdin(
        s.gitwarden.agent_kubeconfig(),
        &["apply", "-f", "-"],
        manifest,
    )
}

fn exists(s: &Setup, args: &[&str]) -> bool {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    kubectl(s, Identity::Admin, &full).success
}

/// The audit record a denial names, read back from the log.
async fn record_of(s: &Setup, denial: &str) -> AuditRecord {
    let id = audit_id(denial).unwrap_or_else(|| panic!("no audit record in: {denial}"));
    let records = s.gitwarden.audit("limit=10000").await.unwrap();
    records
        .into_iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("audit record {id} not found"))
}

fn lease_holder(s: &Setup) -> String {
    kubectl(
        s,
        Identity::Admin,
        &[
            "-n",
            "gitwarden-system",
            "get",
            "lease",
            "gitwarden-agent",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
    )
    .expect_success()
    .to_string()
}

// --- 1. Leases -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_cannot_take_the_agents_leader_lease_or_delete_it() {
    let s = Setup::new("lease").await;
    apply_as_agent(&s, &testdata::read("webhook/agent-lease.yaml").unwrap()).expect_success();

    let err = kubectl(
        &s,
        Identity::Alice,
        &[
            "-n",
            "gitwarden-system",
            "patch",
            "lease",
            "gitwarden-agent",
            "--type=merge",
            "-p",
            r#"{"spec":{"holderIdentity":"alice","leaseDurationSeconds":86400}}"#,
        ],
    )
    .expect_failure()
    .to_string();
    assert!(err.contains("denied the request"), "{err}");
    assert_eq!(record_of(&s, &err).await.reason, "not_from_git");
    let err = kubectl(
        &s,
        Identity::Admin,
        &[
            "-n",
            "gitwarden-system",
            "delete",
            "lease",
            "gitwarden-agent",
        ],
    )
    .expect_failure()
    .to_string();
    assert!(err.contains("denied the request"), "{err}");
    assert_eq!(lease_holder(&s), "agent-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_write_leases_and_events_only_through_git_but_workloads_keep_writing_theirs() {
    let s = Setup::new("lease-workload").await;
    let lease = s.fixture("webhook/leader-lease.yaml", &[]);
    let err = apply_as(&s, Identity::Admin, &lease)
        .expect_failure()
        .to_string();
    assert!(err.contains("denied the request"), "{err}");
    let event = s.fixture("webhook/fake-event.yaml", &[]);
    let err = apply_as(&s, Identity::Alice, &event)
        .expect_failure()
        .to_string();
    assert!(err.contains("denied the request"), "{err}");
    assert!(!exists(&s, &["-n", s.ns(), "lease", "leader"]));

    // A workload's service account with RBAC for leases (both from git).
    s.agent_apply(&s.fixture("webhook/lease-operator.yaml", &[]));
    let token = s
        .agent(&["create", "token", "operator"])
        .expect_success()
        .trim()
        .to_string();
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    gitwarden_tests::cluster::write_token_kubeconfig(
        kubeconfig.path(),
        s.cluster.server(),
        &s.cluster.ca_file(),
        "operator",
        &token,
    )
    .unwrap();
    run_kubectl_stdin(kubeconfig.path(), &["apply", "-f", "-"], &lease).expect_success();
    assert!(exists(&s, &["-n", s.ns(), "lease", "leader"]));
}

// --- 3. Exempt identities confined -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cannot_run_a_pod_as_a_kube_system_controller() {
    let s = Setup::new("borrow-pod").await;
    let err = kubectl(
        &s,
        Identity::Admin,
        &[
            "-n",
            "kube-system",
            "run",
            "gc-thief",
            "--image=registry.invalid/x:1",
            "--restart=Never",
            r#"--overrides={"spec":{"serviceAccountName":"generic-garbage-collector"}}"#,
        ],
    )
    .expect_failure()
    .to_string();
    assert!(
        err.contains("kube-system/generic-garbage-collector"),
        "{err}"
    );
    assert_eq!(record_of(&s, &err).await.reason, "borrowed_identity");
    assert!(!exists(&s, &["-n", "kube-system", "pod", "gc-thief"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_cannot_make_a_workload_whose_pods_would_run_as_a_controller_or_the_agent() {
    let s = Setup::new("borrow-workload").await;
    for (namespace, service_account, kind) in [
        ("kube-system", "namespace-controller", "Deployment"),
        ("kube-system", "replicaset-controller", "DaemonSet"),
        ("kube-public", "default", "Job"),
    ] {
        let restart = if kind == "Job" { "Never" } else { "Always" };
        let (api, selector) = match kind {
            "Job" => ("batch/v1", ""),
            _ => ("apps/v1", "selector: {matchLabels: {app: thief}}"),
        };
        let manifest = testdata::rendered(
            "webhook/thief-workload.yaml",
            &[
                ("API", api),
                ("KIND", kind),
                ("NAMESPACE", namespace),
                ("SELECTOR", selector),
                ("SERVICE_ACCOUNT", service_account),
                ("RESTART", restart),
            ],
        )
        .unwrap();
        let out = apply_as(&s, Identity::Alice, &manifest);
        if service_account == "default" {
            // kube-public's default account is nobody's identity: allowed.
            out.expect_success();
            kubectl(
                &s,
                Identity::Alice,
                &["-n", namespace, "delete", "job", "thief"],
            )
            .expect_success();
            continue;
        }
        let err = out.expect_failure().to_string();
        assert!(
            err.contains("borrowed") || err.contains("would run as"),
            "{kind}: {err}"
        );
        assert!(
            !exists(&s, &["-n", namespace, &kind.to_lowercase(), "thief"]),
            "{kind}"
        );
    }
    let err = apply_as(
        &s,
        Identity::Admin,
        &testdata::read("webhook/agent-thief-pod.yaml").unwrap(),
    )
    .expect_failure()
    .to_string();
    assert!(err.contains("gitwarden-system/gitwarden-agent"), "{err}");
    assert!(!exists(
        &s,
        &["-n", "gitwarden-system", "pod", "agent-thief"]
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_mints_a_controllers_token_or_fills_a_token_secret_for_it() {
    let s = Setup::new("borrow-token").await;
    let err = kubectl(
        &s,
        Identity::Admin,
        &[
            "-n",
            "kube-system",
            "create",
            "token",
            "generic-garbage-collector",
        ],
    )
    .expect_failure()
    .to_string();
    assert!(err.contains("mint a token"), "{err}");
    let err = kubectl(
        &s,
        Identity::Alice,
        &[
            "-n",
            "gitwarden-system",
            "create",
            "token",
            "gitwarden-agent",
        ],
    )
    .expect_failure()
    .to_string();
    assert!(err.contains("denied"), "{err}");
    let err = apply_as(
        &s,
        Identity::Alice,
        &testdata::read("webhook/gc-token-secret.yaml").unwrap(),
    )
    .expect_failure()
    .to_string();
    assert!(err.contains("filled with a token"), "{err}");
    assert!(!exists(&s, &["-n", "kube-system", "secret", "gc-token"]));

    // The controller manager keeps minting its controllers' tokens (it runs
    // them with --use-service-account-credentials).
    let controller_manager = s
        .cluster
        .dir()
        .join("pki/kube-controller-manager.kubeconfig");
    let token = s
        .cluster
        .kubectl_with(
            &controller_manager,
            &[
                "-n",
                "kube-system",
                "create",
                "token",
                "generic-garbage-collector",
            ],
        )
        .expect_success()
        .trim()
        .to_string();
    assert!(token.starts_with("ey"), "not a token: {token}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_keep_running_kube_system_add_ons_and_the_controllers_keep_making_their_pods() {
    let s = Setup::new("kube-system-addon").await;
    // An add-on upgrade as system:masters: its own service account, no node access.
    apply_as(
        &s,
        Identity::Admin,
        &testdata::read("webhook/dns-addon.yaml").unwrap(),
    )
    .expect_success();
    // The deployment and replicaset controllers (exempt by name) made the Pods.
    let pods = wait_for(Duration::from_secs(30), || async {
        let out = kubectl(
            &s,
            Identity::Admin,
            &[
                "-n",
                "kube-system",
                "get",
                "pods",
                "-l",
                "app=dns-addon",
                "-o",
                "name",
            ],
        );
        (out.stdout.lines().count() == 2).then_some(out.stdout)
    })
    .await;
    assert!(
        pods.is_some(),
        "the controllers did not create the add-on's pods"
    );
    kubectl(
        &s,
        Identity::Admin,
        &[
            "-n",
            "kube-system",
            "delete",
            "deployment,serviceaccount",
            "dns-addon",
        ],
    )
    .expect_success();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_debug_node_and_privileged_pods_are_refused_in_kube_system() {
    let s = Setup::new("node-access").await;
    apply_as_agent(&s, &testdata::read("webhook/node.yaml").unwrap()).expect_success();
    let debug = kubectl(
        &s,
        Identity::Admin,
        &[
            "debug",
            "node/side-door-node",
            "-n",
            "kube-system",
            "--image=registry.invalid/busybox:1",
        ],
    );
    let err = debug.expect_failure().to_string();
    assert!(err.contains("reach its node"), "{err}");
    assert_eq!(record_of(&s, &err).await.reason, "node_access");
    let err = kubectl(
        &s,
        Identity::Alice,
        &["-n", "kube-system", "run", "priv", "--image=registry.invalid/x:1", "--restart=Never",
          r#"--overrides={"spec":{"containers":[{"name":"priv","image":"registry.invalid/x:1","securityContext":{"privileged":true}}]}}"#],
    )
    .expect_failure()
    .to_string();
    assert!(err.contains("privileged container"), "{err}");
    let pods = kubectl(
        &s,
        Identity::Admin,
        &["-n", "kube-system", "get", "pods", "-o", "name"],
    )
    .expect_success()
    .to_string();
    assert!(
        !pods.contains("node-debugger") && !pods.contains("priv"),
        "{pods}"
    );
    s.cluster
        .kubectl_with(
            s.gitwarden.agent_kubeconfig(),
            &["delete", "node", "side-door-node"],
        )
        .expect_success();
}

// --- 4. gitwarden-system fails closed -----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_webhook_down_nobody_but_gitwarden_changes_gitwarden_system() {
    let s = Setup::new("system-closed").await;
    s.gitwarden.kill();
    let repair = format!("repair-{}", s.ns());
    let err = kubectl(
        &s,
        Identity::Admin,
        &["-n", "gitwarden-system", "create", "configmap", &repair],
    )
    .expect_failure()
    .to_string();
    assert!(err.contains("failed calling webhook"), "{err}");
    let err = kubectl(
        &s,
        Identity::Admin,
        &["delete", "namespace", "gitwarden-system", "--wait=false"],
    )
    .expect_failure()
    .to_string();
    assert!(err.contains("failed calling webhook"), "{err}");
    // The agent repairs gitwarden whatever state the webhook is in.
    s.cluster
        .kubectl_with(
            s.gitwarden.agent_kubeconfig(),
            &["-n", "gitwarden-system", "create", "configmap", &repair],
        )
        .expect_success();
    s.cluster
        .kubectl_with(
            s.gitwarden.agent_kubeconfig(),
            &["-n", "gitwarden-system", "delete", "configmap", &repair],
        )
        .expect_success();
    let phase = kubectl(
        &s,
        Identity::Admin,
        &[
            "get",
            "namespace",
            "gitwarden-system",
            "-o",
            "jsonpath={.status.phase}",
        ],
    );
    assert_eq!(phase.expect_success(), "Active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cannot_delete_gitwardens_namespace_or_exec_into_its_pods() {
    let s = Setup::new("system-namespace").await;
    let err = kubectl(
        &s,
        Identity::Admin,
        &["delete", "namespace", "gitwarden-system", "--wait=false"],
    )
    .expect_failure()
    .to_string();
    assert!(err.contains("denied the request"), "{err}");
    let phase = kubectl(
        &s,
        Identity::Admin,
        &[
            "get",
            "namespace",
            "gitwarden-system",
            "-o",
            "jsonpath={.status.phase}",
        ],
    );
    assert_eq!(phase.expect_success(), "Active");

    apply_as_agent(&s, &testdata::read("webhook/agent-pod.yaml").unwrap()).expect_success();
    for args in [
        vec![
            "-n",
            "gitwarden-system",
            "exec",
            "agent-pod",
            "--",
            "cat",
            "/var/run/secrets/kubernetes.io/serviceaccount/token",
        ],
        vec!["-n", "gitwarden-system", "attach", "agent-pod"],
    ] {
        let err = kubectl(&s, Identity::Admin, &args)
            .expect_failure()
            .to_string();
        assert!(err.contains("gitwarden's own Pods"), "{args:?}: {err}");
        assert_eq!(record_of(&s, &err).await.reason, "gitwarden_pod_access");
    }
    s.cluster
        .kubectl_with(
            s.gitwarden.agent_kubeconfig(),
            &[
                "-n",
                "gitwarden-system",
                "delete",
                "pod",
                "agent-pod",
                "--grace-period=0",
                "--force",
            ],
        )
        .expect_success();
}

// --- 5. Break-glass never touches gitwarden --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carol_cannot_break_glass_on_the_policy_or_the_agents_rbac() {
    let s = Setup::new("bg-gitwarden").await;
    let before = kubectl(
        &s,
        Identity::Admin,
        &[
            "-n",
            "gitwarden-system",
            "get",
            "configmap",
            "gitwarden-policy",
            "-o",
            "jsonpath={.data}",
        ],
    )
    .expect_success()
    .to_string();
    let err = kubectl(
        &s,
        Identity::Carol,
        &["-n", "gitwarden-system", "patch", "configmap", "gitwarden-policy", "--type=merge", "-p",
          r#"{"metadata":{"annotations":{"gitwarden.io/break-glass":"INC-7 add me"}},"data":{"policy.yaml":"exempt:\n  users: [carol]\n"}}"#],
    )
    .expect_failure()
    .to_string();
    assert!(err.contains("Changing gitwarden is a commit"), "{err}");
    assert_eq!(record_of(&s, &err).await.reason, "break_glass_on_gitwarden");
    let after = kubectl(
        &s,
        Identity::Admin,
        &[
            "-n",
            "gitwarden-system",
            "get",
            "configmap",
            "gitwarden-policy",
            "-o",
            "jsonpath={.data}",
        ],
    )
    .expect_success()
    .to_string();
    assert_eq!(before, after);

    apply_as_agent(
        &s,
        &testdata::read("webhook/agent-writer-clusterrole.yaml").unwrap(),
    )
    .expect_success();
    let err = kubectl(
        &s,
        Identity::Carol,
        &[
            "patch",
            "clusterrole",
            "gitwarden-agent-writer",
            "--type=merge",
            "-p",
            r#"{"metadata":{"annotations":{"gitwarden.io/break-glass":"INC-7"}},"rules":[]}"#,
        ],
    )
    .expect_failure()
    .to_string();
    assert!(err.contains("break-glass never applies"), "{err}");
    let rules = kubectl(
        &s,
        Identity::Admin,
        &[
            "get",
            "clusterrole",
            "gitwarden-agent-writer",
            "-o",
            "jsonpath={.rules[0].verbs}",
        ],
    )
    .expect_success()
    .to_string();
    assert!(rules.contains('*'), "{rules}");
    // Break-glass on an ordinary object still works.
    s.managed_configmap("ordinary");
    s.kubectl(
        Identity::Carol,
        &[
            "annotate",
            "configmap",
            "ordinary",
            "gitwarden.io/break-glass=INC-7 still fine",
        ],
    )
    .expect_success();
}

// --- The front door holds for the other routes of the threat model -------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_apis_and_certificate_requests_for_system_identities_are_refused() {
    let s = Setup::new("front-door").await;
    let err = apply_as(
        &s,
        Identity::Alice,
        &testdata::read("webhook/evil-apiservice.yaml").unwrap(),
    )
    .expect_failure()
    .to_string();
    assert!(err.contains("denied the request"), "{err}");
    assert!(!exists(&s, &["apiservice", "v1.evil.example.com"]));
    let err = apply_as(
        &s,
        Identity::Admin,
        &csr_for("system:kube-controller-manager"),
    )
    .expect_failure()
    .to_string();
    assert!(err.contains("denied the request"), "{err}");
    assert!(!exists(&s, &["csr", "kcm-thief"]));
}

/// A CertificateSigningRequest object asking for a client certificate as
/// `common_name`.
fn csr_for(common_name: &str) -> String {
    use base64::Engine as _;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    let request = base64::engine::general_purpose::STANDARD.encode(pem);
    testdata::rendered("webhook/client-csr.yaml", &[("REQUEST", &request)]).unwrap()
}
