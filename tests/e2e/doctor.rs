//! `gitwarden-doctor` against the real cluster: it names who can still
//! bypass git through RBAC, with the binding that grants it, and exits
//! non-zero when anyone unexpected can.
//!
//! The shared cluster has no webhook installed here (the webhook's own test
//! binary checks doctor's webhook and certificate checks with one installed),
//! so every run also reports the missing configuration: these tests look at
//! the RBAC findings by check id and subject.

use std::process::Command;

use gitwarden_agent::status::Status;
use gitwarden_tests::binaries::binary;
use gitwarden_tests::doctor::{Finding, Severity, doctor, doctor_text};
use gitwarden_tests::git::git;
use gitwarden_tests::webhook::apply;
use gitwarden_tests::{Identity, TestCluster, testdata};

/// A unique lowercase suffix: tests share one cluster.
fn unique() -> String {
    format!("{:06}", rand::random::<u32>() % 1_000_000)
}

/// Cluster-wide RBAC objects a test created, deleted again on drop (also on
/// a failed assertion).
struct Cleanup {
    kubeconfig: std::path::PathBuf,
    objects: Vec<(String, Option<String>)>,
}

impl Cleanup {
    fn new(cluster: &TestCluster) -> Self {
        Cleanup {
            kubeconfig: cluster.kubeconfig(Identity::Admin),
            objects: Vec::new(),
        }
    }

    /// Applies a manifest and remembers `kind/name` (in `namespace`) for removal.
    fn apply(&mut self, manifest: &str, object: &str, namespace: Option<&str>) {
        self.objects
            .push((object.to_string(), namespace.map(str::to_string)));
        apply(&self.kubeconfig, manifest).unwrap();
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (object, namespace) in self.objects.iter().rev() {
            let mut args = vec!["delete", object.as_str(), "--ignore-not-found"];
            if let Some(ns) = namespace {
                args.extend(["-n", ns.as_str()]);
            }
            let _ = gitwarden_tests::kubectl::run_kubectl(&self.kubeconfig, &args);
        }
    }
}

fn ensure_system_namespace(cluster: &TestCluster) {
    apply(
        &cluster.kubeconfig(Identity::Admin),
        &testdata::rendered("namespace.yaml", &[("NAME", "gitwarden-system")]).unwrap(),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_alice_and_carol_as_cluster_admins_who_can_bypass_git_and_exits_non_zero() {
    let cluster = TestCluster::shared();
    let run = doctor(&cluster.kubeconfig(Identity::Admin), &[]).unwrap();
    assert_eq!(run.code, 1, "{:#?}", run.report);
    for user in ["alice", "carol"] {
        let subject = format!("User {user}");
        for check in [
            "rbac/impersonate",
            "rbac/agent-token",
            "rbac/webhook-configuration",
            "rbac/exec",
        ] {
            let found = run.about(check, &subject);
            assert_eq!(found.len(), 1, "{check} {subject}: {:#?}", run.report);
            assert_eq!(found[0].severity, Severity::Critical, "{:#?}", found[0]);
            assert_eq!(
                found[0].via[0],
                format!("ClusterRoleBinding test-cluster-admin-{user} → ClusterRole cluster-admin"),
                "{:#?}",
                found[0]
            );
        }
    }
    // system:masters (admin) cannot be found through RBAC: it is reported as such.
    let masters = run.checks("rbac/system-masters");
    assert_eq!(masters.len(), 1, "{:#?}", run.report);
    assert_eq!(masters[0].severity, Severity::Warning);
    // Control-plane components hold some of these rights by design: expected, not critical.
    let criticals_for_system: Vec<&Finding> = run
        .report
        .findings
        .iter()
        .filter(|f| {
            f.severity == Severity::Critical
                && f.subject
                    .as_deref()
                    .is_some_and(|s| s.contains("kube-system") || s.starts_with("User system:"))
        })
        .collect();
    assert!(criticals_for_system.is_empty(), "{criticals_for_system:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_granted_only_impersonation_of_service_accounts_is_reported_for_that_alone() {
    let cluster = TestCluster::shared();
    let id = unique();
    let mallory = format!("mallory-{id}");
    let role = format!("doctor-impersonate-sa-{id}");
    let mut cleanup = Cleanup::new(cluster);
    cleanup.apply(
        &testdata::rendered(
            "e2e/impersonate-service-accounts-clusterrole.yaml",
            &[("NAME", &role)],
        )
        .unwrap(),
        &format!("clusterrole/{role}"),
        None,
    );
    cleanup.apply(
        &testdata::rendered(
            "e2e/user-clusterrolebinding.yaml",
            &[("NAME", &role), ("USER", &mallory)],
        )
        .unwrap(),
        &format!("clusterrolebinding/{role}"),
        None,
    );
    // The right is real: the API server lets mallory act as the agent.
    let can = cluster.kubectl(
        Identity::Admin,
        &[
            "auth",
            "can-i",
            "impersonate",
            "serviceaccounts",
            "-n",
            "gitwarden-system",
            "--as",
            &mallory,
        ],
    );
    assert_eq!(can.stdout.trim(), "yes", "{can:?}");

    let run = doctor(&cluster.kubeconfig(Identity::Admin), &[]).unwrap();
    assert_eq!(run.code, 1);
    let subject = format!("User {mallory}");
    let found = run.about("rbac/impersonate", &subject);
    assert_eq!(found.len(), 1, "{:#?}", run.report);
    assert_eq!(found[0].severity, Severity::Critical);
    assert_eq!(
        found[0].via[0],
        format!("ClusterRoleBinding {role} → ClusterRole {role}")
    );
    assert_eq!(run.checks_naming(&subject), ["rbac/impersonate"]);

    // Once the binding is gone, so is the finding.
    drop(cleanup);
    let run = doctor(&cluster.kubeconfig(Identity::Admin), &[]).unwrap();
    assert!(run.checks_naming(&subject).is_empty(), "{:#?}", run.report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_the_agents_token_is_reported_but_minting_another_service_accounts_is_not() {
    let cluster = TestCluster::shared();
    ensure_system_namespace(cluster);
    let id = unique();
    let minter = format!("minter-{id}");
    let other_minter = format!("other-minter-{id}");
    let agent_role = format!("doctor-agent-token-{id}");
    let other_role = format!("doctor-other-token-{id}");
    let mut cleanup = Cleanup::new(cluster);
    // A ClusterRole bound by a RoleBinding in gitwarden-system ...
    cleanup.apply(
        &testdata::rendered(
            "e2e/token-minter-clusterrole.yaml",
            &[("NAME", &agent_role)],
        )
        .unwrap(),
        &format!("clusterrole/{agent_role}"),
        None,
    );
    cleanup.apply(
        &testdata::rendered(
            "e2e/user-rolebinding.yaml",
            &[
                ("NAME", &agent_role),
                ("ROLE_KIND", "ClusterRole"),
                ("USER", &minter),
            ],
        )
        .unwrap(),
        &format!("rolebinding/{agent_role}"),
        Some("gitwarden-system"),
    );
    // ... and a Role there for another service account's token.
    cleanup.apply(
        &testdata::rendered("e2e/token-minter-role.yaml", &[("NAME", &other_role)]).unwrap(),
        &format!("role/{other_role}"),
        Some("gitwarden-system"),
    );
    cleanup.apply(
        &testdata::rendered(
            "e2e/user-rolebinding.yaml",
            &[
                ("NAME", &other_role),
                ("ROLE_KIND", "Role"),
                ("USER", &other_minter),
            ],
        )
        .unwrap(),
        &format!("rolebinding/{other_role}"),
        Some("gitwarden-system"),
    );
    for (user, sa, expected) in [
        (&minter, "gitwarden-agent", "yes"),
        (&other_minter, "gitwarden-agent", "no"),
        (&other_minter, "builder", "yes"),
    ] {
        let can = cluster.kubectl(
            Identity::Admin,
            &[
                "auth",
                "can-i",
                "create",
                &format!("serviceaccounts/{sa}"),
                "--subresource=token",
                "-n",
                "gitwarden-system",
                "--as",
                user,
            ],
        );
        assert_eq!(can.stdout.trim(), expected, "{user} {sa}: {can:?}");
    }

    let run = doctor(&cluster.kubeconfig(Identity::Admin), &[]).unwrap();
    assert_eq!(run.code, 1);
    let found = run.about("rbac/agent-token", &format!("User {minter}"));
    assert_eq!(found.len(), 1, "{:#?}", run.report);
    assert_eq!(found[0].severity, Severity::Critical);
    assert_eq!(
        found[0].via[0],
        format!("RoleBinding gitwarden-system/{agent_role} → ClusterRole {agent_role}")
    );
    assert_eq!(
        run.checks_naming(&format!("User {minter}")),
        ["rbac/agent-token"]
    );
    assert!(
        run.checks_naming(&format!("User {other_minter}"))
            .is_empty(),
        "{:#?}",
        run.report
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubeconfig_that_cannot_read_rbac_is_a_critical_finding_not_a_clean_bill() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("doctor-nobody").await.unwrap();
    let (_, kubeconfig) = cluster
        .mint_service_account_token(ns.name(), "nobody")
        .await
        .unwrap();
    let run = doctor(&kubeconfig, &[]).unwrap();
    assert_eq!(run.code, 1, "{:#?}", run.report);
    let read = run.checks("rbac/read");
    assert_eq!(read.len(), 1, "{:#?}", run.report);
    assert_eq!(read[0].severity, Severity::Critical);
    assert!(read[0].message.contains("forbidden"), "{:#?}", read[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_does_not_answer_is_critical() {
    let cluster = TestCluster::shared();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let run = doctor(
        &cluster.kubeconfig(Identity::Admin),
        &["--agent-url", &url, "--timeout", "2s"],
    )
    .unwrap();
    assert_eq!(run.code, 1);
    let status = run.checks("agent/status");
    assert_eq!(status.len(), 1, "{:#?}", run.report);
    assert_eq!(status[0].severity, Severity::Critical);
    assert!(
        status[0].message.contains(&format!("{url}/status")),
        "{:#?}",
        status[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_report_names_the_subject_and_its_binding() {
    let cluster = TestCluster::shared();
    let run = doctor_text(&cluster.kubeconfig(Identity::Admin), &[]).unwrap();
    let (code, text) = (run.code, run.stdout);
    assert_eq!(code, 1, "{text}");
    assert!(text.starts_with("gitwarden doctor: "), "{text}");
    assert!(
        text.contains("CRITICAL  User alice can mint the agent's token"),
        "{text}"
    );
    assert!(
        text.contains(
            "via ClusterRoleBinding test-cluster-admin-alice → ClusterRole cluster-admin"
        ),
        "{text}"
    );
    assert!(text.contains("\nWebhook configurations\n"), "{text}");
}

/// A `gitwarden-agent run` process, killed when dropped.
struct RunningAgent(std::process::Child);

impl Drop for RunningAgent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An agent that synced one commit and reviews tokens on /status, as
/// `deploy/base` runs it.
struct SyncedAgent {
    _process: RunningAgent,
    _cleanup: Cleanup,
    _namespace: gitwarden_tests::namespace::TestNamespace,
    _repo: tempfile::TempDir,
    _cache: tempfile::TempDir,
    url: String,
    commit: String,
    /// The agent's own service account: admin of its namespace, nothing more.
    agent_kubeconfig: std::path::PathBuf,
}

/// The bearer token of a kubeconfig's user.
async fn token_of(kubeconfig: &std::path::Path) -> String {
    let config = gitwarden_runtime::client::config(Some(kubeconfig))
        .await
        .unwrap();
    gitwarden_runtime::credential::bearer_token(&config)
        .await
        .unwrap()
}

async fn synced_agent(cluster: &TestCluster) -> SyncedAgent {
    let ns = cluster.namespace("doctor-agent").await.unwrap();
    let admin_token = token_of(&cluster.kubeconfig(Identity::Admin)).await;
    // The agent's identity: a real service-account token, admin of its namespace only.
    let (_, agent_kubeconfig) = cluster
        .mint_service_account_token(ns.name(), "agent")
        .await
        .unwrap();
    apply(
        &cluster.kubeconfig(Identity::Admin),
        &testdata::rendered(
            "e2e/agent-admin-rolebinding.yaml",
            &[("NAMESPACE", ns.name())],
        )
        .unwrap(),
    )
    .unwrap();
    let mut cleanup = Cleanup::new(cluster);
    cleanup.apply(
        &testdata::rendered(
            "e2e/agent-auth-delegator-binding.yaml",
            &[("NAMESPACE", ns.name())],
        )
        .unwrap(),
        &format!("clusterrolebinding/{}-agent-auth-delegator", ns.name()),
        None,
    );
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(
        repo.path().join("settings.yaml"),
        testdata::rendered("settings-configmap.yaml", &[("NAMESPACE", ns.name())]).unwrap(),
    )
    .unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "first"]);
    let commit = git(repo.path(), &["rev-parse", "HEAD"]);
    let cache = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let process = RunningAgent(
        Command::new(binary("gitwarden-agent").unwrap())
            .arg("run")
            .arg("--repo")
            .arg(format!("file://{}", repo.path().display()))
            .arg("--cache-dir")
            .arg(cache.path())
            .arg("--kubeconfig")
            .arg(&agent_kubeconfig)
            .args([
                "--inventory-namespace",
                ns.name(),
                "--default-namespace",
                ns.name(),
            ])
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--leader-elect=false",
                "--status-auth",
                "kubernetes",
            ])
            .args(["--interval", "1h", "--health-timeout", "0s"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let synced = gitwarden_tests::wait_for(std::time::Duration::from_secs(60), || async {
        let status: Status = reqwest::Client::new()
            .get(format!("{url}/status"))
            .bearer_auth(&admin_token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        status.last_success.is_some().then_some(status)
    })
    .await;
    assert!(synced.is_some(), "the agent did not sync within 60s");
    SyncedAgent {
        _process: process,
        _cleanup: cleanup,
        _namespace: ns,
        _repo: repo,
        _cache: cache,
        url,
        commit,
        agent_kubeconfig,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_agent_is_reported_with_its_revision_and_last_success() {
    let cluster = TestCluster::shared();
    let SyncedAgent { url, commit, .. } = &synced_agent(cluster).await;
    // doctor presents its own user's token: the agent reviews it.
    let run = doctor(&cluster.kubeconfig(Identity::Admin), &["--agent-url", url]).unwrap();
    let agent = run.checks("agent");
    assert_eq!(agent.len(), 1, "{agent:#?}");
    assert_eq!(agent[0].check, "agent/last-success");
    assert_eq!(agent[0].severity, Severity::Info);
    let message = &agent[0].message;
    assert!(
        message.contains(&format!("last synced revision {commit}")),
        "{message}"
    );

    // A last success older than --agent-max-age is a warning.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let run = doctor(
        &cluster.kubeconfig(Identity::Admin),
        &["--agent-url", url, "--agent-max-age", "1s"],
    )
    .unwrap();
    let stale = run.checks("agent/last-success");
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].severity, Severity::Warning, "{:#?}", stale[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_refuses_doctors_user_is_a_warning_that_names_the_cluster_role() {
    let cluster = TestCluster::shared();
    let agent = synced_agent(cluster).await;
    // A real token whose user RBAC does not let `get` /status.
    let run = doctor(&agent.agent_kubeconfig, &["--agent-url", &agent.url]).unwrap();
    let refused = run.checks("agent/status-refused");
    assert_eq!(refused.len(), 1, "{:#?}", run.report);
    assert_eq!(refused[0].severity, Severity::Warning);
    assert!(
        refused[0].message.contains("403")
            && refused[0].message.contains("gitwarden-status-reader"),
        "{:#?}",
        refused[0]
    );
    assert!(run.checks("agent/last-success").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitwarden_agent_status_reads_a_reviewing_agent_with_the_callers_kubeconfig() {
    let cluster = TestCluster::shared();
    let agent = synced_agent(cluster).await;
    let status = |kubeconfig: &std::path::Path| {
        Command::new(binary("gitwarden-agent").unwrap())
            .args(["status", "--url", &agent.url, "--kubeconfig"])
            .arg(kubeconfig)
            .output()
            .unwrap()
    };
    let admin = status(&cluster.kubeconfig(Identity::Admin));
    let stdout = String::from_utf8_lossy(&admin.stdout);
    assert!(
        admin.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&admin.stderr)
    );
    assert!(
        stdout.contains(&format!("revision:      {}", agent.commit)),
        "{stdout}"
    );

    let refused = status(&agent.agent_kubeconfig);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refused /status (403 Forbidden)"),
        "{stderr}"
    );
    assert!(stderr.contains("gitwarden-status-reader"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_webhooks_certificate_is_read_from_its_secret_and_checked_against_the_ca_bundle()
{
    use base64::Engine as _;
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("doctor-svc").await.unwrap();
    let name = format!("doctor-svc-{}", unique());
    let day = std::time::Duration::from_secs(86_400);
    let ca = gitwarden_certs::CertificateAuthority::generate("doctor-svc-ca", day).unwrap();
    let service_dns = format!("gitwarden-webhook.{}.svc", ns.name());
    let serving = ca.issue_serving_cert(&[&service_dns], &[], day).unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let secret = |cert: &str| {
        testdata::rendered(
            "e2e/webhook-tls-secret.yaml",
            &[
                ("NAMESPACE", ns.name()),
                ("TLS_CRT", &b64(cert)),
                ("TLS_KEY", &b64(&serving.key_pem)),
            ],
        )
        .unwrap()
    };
    let admin = cluster.kubeconfig(Identity::Admin);
    apply(&admin, &secret(&serving.cert_pem)).unwrap();
    // A configuration that can never affect another test: it fails open and
    // matches only a resource that does not exist.
    let mut cleanup = Cleanup::new(cluster);
    cleanup.apply(
        &testdata::rendered(
            "e2e/service-webhook-configuration.yaml",
            &[
                ("NAME", &name),
                ("CA_BUNDLE", &b64(ca.cert_pem())),
                ("NAMESPACE", ns.name()),
            ],
        )
        .unwrap(),
        &format!("validatingwebhookconfiguration/{name}"),
        None,
    );
    let args = [
        "--webhook-configuration",
        &name,
        "--namespace",
        ns.name(),
        "--timeout",
        "2s",
    ];

    let run = doctor(&admin, &args).unwrap();
    let certs = run.checks("certificate");
    let issuer = run.checks("certificate/ca-bundle");
    assert_eq!(issuer.len(), 1, "{certs:#?}");
    assert_eq!(issuer[0].severity, Severity::Info, "{:#?}", issuer[0]);
    let message = &issuer[0].message;
    assert!(
        message.contains(&format!("from Secret {}/gitwarden-webhook-tls", ns.name())),
        "{message}"
    );
    assert!(message.contains(&service_dns), "{message}");
    // Both certificates expire within a day: warnings, not yet critical.
    let expiry = run.checks("certificate/expiry");
    assert_eq!(expiry.len(), 2, "{certs:#?}");
    assert!(
        expiry.iter().all(|f| f.severity == Severity::Warning),
        "{expiry:#?}"
    );

    // A serving certificate from another CA in the Secret: critical.
    let stranger = gitwarden_certs::CertificateAuthority::generate("stranger", day).unwrap();
    let foreign = stranger
        .issue_serving_cert(&[&service_dns], &[], day)
        .unwrap();
    apply(&admin, &secret(&foreign.cert_pem)).unwrap();
    let run = doctor(&admin, &args).unwrap();
    assert_eq!(run.code, 1);
    let bad = run.critical("certificate/ca-bundle");
    assert_eq!(bad.len(), 1, "{:#?}", run.report);
    assert!(
        bad[0].message.contains("validate.doctor.example.invalid"),
        "{:#?}",
        bad[0]
    );
}

#[test]
fn a_kubeconfig_that_does_not_exist_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let run = doctor_text(&dir.path().join("missing.kubeconfig"), &[]).unwrap();
    let (code, output) = (run.code, run.stderr);
    assert_eq!(code, 2);
    assert!(output.contains("missing.kubeconfig"), "{output}");
}

/// Writes the Lease `gitwarden-agent` in `namespace` (as admin: the test
/// harness, standing in for whoever got write access to it) and returns
/// doctor's exit code and its one `leader/lease` finding for that Lease.
fn lease_finding(
    cluster: &TestCluster,
    namespace: &str,
    holder: &str,
    renewed: jiff::Timestamp,
    seconds: i32,
) -> (i32, Finding) {
    apply(
        &cluster.kubeconfig(Identity::Admin),
        &testdata::rendered(
            "e2e/agent-lease.yaml",
            &[
                ("NAMESPACE", namespace),
                ("HOLDER", holder),
                ("SECONDS", &seconds.to_string()),
                (
                    "RENEW_TIME",
                    &renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                ),
            ],
        )
        .unwrap(),
    )
    .unwrap();
    let run = doctor(
        &cluster.kubeconfig(Identity::Admin),
        &["--lease-namespace", namespace],
    )
    .unwrap();
    let found = run.checks("leader/lease");
    assert_eq!(found.len(), 1, "{:#?}", run.report);
    (run.code, found[0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_held_by_anyone_but_the_agent_is_critical_and_names_the_holder_and_expiry() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("doctor-lease-foreign").await.unwrap();
    let renewed = jiff::Timestamp::now();
    let (code, finding) = lease_finding(cluster, ns.name(), "mallory", renewed, 86_400);
    assert_eq!(code, 1);
    assert_eq!(finding.severity, Severity::Critical, "{finding:#?}");
    let message = &finding.message;
    assert!(message.contains("\"mallory\""), "{message}");
    let until = renewed
        .checked_add(jiff::SignedDuration::from_secs(86_400))
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%S")
        .to_string();
    assert!(
        message.contains(&until),
        "names the expiry {until}: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_held_by_a_pod_of_the_agents_service_account_is_fine() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("doctor-lease-agent").await.unwrap();
    apply(
        &cluster.kubeconfig(Identity::Admin),
        &testdata::rendered("e2e/agent-pod.yaml", &[("NAMESPACE", ns.name())]).unwrap(),
    )
    .unwrap();
    let (_, finding) = lease_finding(
        cluster,
        ns.name(),
        "gitwarden-agent-0_0badc0de",
        jiff::Timestamp::now(),
        15,
    );
    assert_eq!(finding.severity, Severity::Info, "{finding:#?}");
    let message = &finding.message;
    assert!(message.contains("gitwarden-agent-0_0badc0de"), "{message}");
    assert!(message.contains("pod gitwarden-agent-0"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_expired_long_ago_is_critical() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("doctor-lease-expired").await.unwrap();
    let an_hour_ago = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(3600))
        .unwrap();
    let (code, finding) = lease_finding(
        cluster,
        ns.name(),
        "gitwarden-agent-0_0badc0de",
        an_hour_ago,
        15,
    );
    assert_eq!(code, 1);
    assert_eq!(finding.severity, Severity::Critical, "{finding:#?}");
    assert!(finding.message.contains("expired"), "{finding:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_webhook_is_explained_by_the_step_that_is_stuck() {
    // A cluster of its own: the steps are gitwarden-system's Secret and
    // ConfigMaps, which other tests write.
    let cluster = TestCluster::start_private().unwrap();
    let admin = cluster.kubeconfig(Identity::Admin);
    let root = gitwarden_tests::cluster::repo_root();
    let registration = |run: &gitwarden_tests::doctor::DoctorRun| {
        let found = run.checks("webhook/registration");
        assert_eq!(found.len(), 1, "{:#?}", run.report);
        assert_eq!(found[0].severity, Severity::Critical);
        found[0].message.clone()
    };

    apply(
        &admin,
        &std::fs::read_to_string(root.join("deploy/base/namespace.yaml")).unwrap(),
    )
    .unwrap();
    let message = registration(&doctor(&admin, &[]).unwrap());
    assert!(
        message.contains("the template the webhook registers"),
        "{message}"
    );

    // The template as deploy/base generates it, and an empty certificate
    // Secret: the bootstrap has not run.
    let rendered = cluster.kubectl(
        Identity::Admin,
        &["kustomize", root.join("deploy/base").to_str().unwrap()],
    );
    let template = rendered
        .expect_success()
        .split("\n---\n")
        .find(|doc| doc.contains("name: gitwarden-webhook-configurations"))
        .unwrap()
        .to_owned();
    apply(&admin, &template).unwrap();
    apply(
        &admin,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: gitwarden-webhook-tls\n  namespace: gitwarden-system\n",
    )
    .unwrap();
    let message = registration(&doctor(&admin, &[]).unwrap());
    assert!(
        message.contains("holds no serving certificate")
            && message.contains("gitwarden-certs-bootstrap"),
        "{message}"
    );

    // Certificates there, but no webhook pod: said so.
    let ca = gitwarden_certs::CertificateAuthority::generate(
        "doctor-test-ca",
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(ca.cert_pem());
    apply(
        &admin,
        &format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: gitwarden-webhook-tls\n  namespace: gitwarden-system\ndata:\n  tls.crt: {encoded}\n"),
    )
    .unwrap();
    let message = registration(&doctor(&admin, &[]).unwrap());
    assert!(message.contains("no webhook pod exists"), "{message}");
}
