//! Self-protection: gitwarden's own webhook configurations live in git (in
//! the local form `tests/testdata/agent/gitwarden-local` renders), and the agent heals them
//! when someone deletes or weakens them — changes no admission webhook ever
//! sees, because the API server never sends webhook configurations to webhooks.
//!
//! The configurations come from the real `tests/testdata/agent/gitwarden-local` (rendered with
//! the real `kubectl kustomize`), so this test breaks when deploy/ does.
//! This binary shares one cluster among tests running in parallel, so the
//! rendered configurations get a name of their own and select only labelled
//! objects in this test's namespace; everything else about them (rules,
//! match conditions, failure policies) is as in git.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use gitwarden_agent::status::{GuardState, Removal};
use gitwarden_tests::{Identity, testdata};
use serde::Deserialize as _;
use serde_json::{Value, json};

use crate::common::{AgentSetup, json as to_json, wait_for};

const VALIDATING: &str = "validatingwebhookconfiguration";
const MUTATING: &str = "mutatingwebhookconfiguration";

/// `kubectl kustomize tests/testdata/agent/gitwarden-local`, with the
/// placeholders filled in, as one JSON value per document.
fn render_examples(webhook_url: &str, ca_bundle: &str) -> Vec<Value> {
    let dir = gitwarden_tests::cluster::repo_root().join("tests/testdata/agent/gitwarden-local");
    let kubectl = gitwarden_tests::kubectl::kubectl_binary().unwrap();
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)
        .unwrap()
        .replace("${WEBHOOK_URL}", webhook_url)
        .replace("${CA_BUNDLE}", ca_bundle);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The documents of `rendered` of this kind (and name, when given).
fn find<'a>(rendered: &'a [Value], kind: &str, name: Option<&str>) -> Vec<&'a Value> {
    rendered
        .iter()
        .filter(|d| d["kind"] == kind && name.is_none_or(|n| d["metadata"]["name"] == n))
        .collect()
}

/// The label that objects must carry to be sent to this test's webhooks.
const SCOPE_LABEL: &str = "gitwarden.test/self-protection";

/// Gives a rendered webhook configuration a name of its own and makes every
/// one of its webhooks select only objects in `namespace` (by the label the
/// API server puts on every namespace) that carry [`SCOPE_LABEL`]: the
/// namespace selector alone would still send every cluster-scoped object,
/// and the unanswered URL would then refuse other tests' ClusterRoles.
fn scope_to(config: &Value, name: &str, namespace: &str) -> Value {
    let mut config = config.clone();
    config["metadata"]["name"] = json!(name);
    for webhook in config["webhooks"].as_array_mut().unwrap() {
        webhook["namespaceSelector"] =
            json!({"matchLabels": {"kubernetes.io/metadata.name": namespace}});
        webhook["objectSelector"] = json!({"matchLabels": {SCOPE_LABEL: namespace}});
    }
    config
}

/// Removes the test's webhook configurations when dropped, also after a
/// panic. Declared before the agent, so the agent is gone (dropped first)
/// and cannot heal them back.
struct RemoveOnDrop {
    admin: PathBuf,
    name: String,
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for kind in [VALIDATING, MUTATING] {
            let out = gitwarden_tests::kubectl::run_kubectl(
                &self.admin,
                &["delete", kind, &self.name, "--ignore-not-found"],
            );
            if !out.success {
                eprintln!("could not remove {kind} {}: {}", self.name, out.stderr);
            }
        }
    }
}

/// A closed local port: a webhook URL that nothing answers, so the
/// configuration's failurePolicy alone decides what happens to a request.
fn unanswered_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("https://127.0.0.1:{port}")
}

/// The live configuration, when it exists.
fn live(s: &AgentSetup, kind: &str, name: &str) -> Option<Value> {
    let out = s
        .cluster
        .kubectl(Identity::Admin, &["get", kind, name, "-o", "json"]);
    out.success
        .then(|| serde_json::from_str(&out.stdout).unwrap())
}

/// The repository's `gitwarden/gitwarden.yaml`: the webhook configurations
/// and the policy from `tests/testdata/agent/gitwarden-local`, scoped to this test (the
/// configurations named `name`, selecting only `namespace`; the policy in
/// `namespace`). Checks on the way that the examples are what the demo needs.
fn gitwarden_in_git(name: &str, namespace: &str) -> String {
    let ca = gitwarden_certs::CertificateAuthority::generate(
        "gitwarden-self-protection-test-ca",
        Duration::from_secs(3600),
    )
    .unwrap();
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca.cert_pem());
    let rendered = render_examples(&unanswered_url(), &ca_bundle);
    let validating = find(
        &rendered,
        "ValidatingWebhookConfiguration",
        Some("gitwarden"),
    );
    let mutating = find(&rendered, "MutatingWebhookConfiguration", Some("gitwarden"));
    let policy = find(&rendered, "ConfigMap", Some("gitwarden-policy"));
    assert_eq!(
        (validating.len(), mutating.len(), policy.len()),
        (1, 1, 1),
        "tests/testdata/agent/gitwarden-local must render both webhook configurations and the policy"
    );
    let validating = scope_to(validating[0], name, namespace);
    let first = &validating["webhooks"][0];
    assert_eq!(
        first["failurePolicy"], "Fail",
        "tests/testdata/agent/gitwarden-local: the first validating webhook must fail closed"
    );
    assert!(
        first["clientConfig"]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/validate")),
        "tests/testdata/agent/gitwarden-local: the local form calls the webhook by URL: {}",
        first["clientConfig"]
    );
    let mutating = scope_to(mutating[0], name, namespace);
    let mut policy = policy[0].clone();
    policy["metadata"]["namespace"] = json!(namespace);
    // The agent guards the admission chain with this policy: other tests'
    // admission objects, on the shared cluster, stay.
    let text = policy["data"]["policy.yaml"].as_str().unwrap_or_default();
    assert!(
        !text.contains("admissionChain"),
        "tests/testdata/agent/gitwarden-local allows admission objects outside git: {text}"
    );
    let allow: Vec<String> = crate::common::shared_allow(&[])
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect();
    policy["data"]["policy.yaml"] = json!(format!(
        "{text}\nadmissionChain:\n  allow: [{}]\n",
        allow.join(", ")
    ));
    [&validating, &mutating, &policy]
        .iter()
        .map(|d| serde_yaml_ng::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_or_weakened_webhook_configuration_is_healed_from_git() {
    let s = AgentSetup::new("self-protect").await;
    let ns = s.ns().to_string();
    let name = format!("gitwarden-{ns}");
    let documents = gitwarden_in_git(&name, &ns);

    let _remove = RemoveOnDrop {
        admin: s.cluster.kubeconfig(Identity::Admin),
        name: name.clone(),
    };
    let commit = s.commit(
        &[("gitwarden/gitwarden.yaml", &documents)],
        "gitwarden itself",
    );
    // With the admission guard on, as in a cluster: it must neither remove
    // gitwarden's configurations from git nor fight their healing.
    let _one = crate::common::ONE_GUARD.lock().await;
    let policy_configmap = format!("{ns}/gitwarden-policy");
    let agent = s.start_agent(&[
        "--interval",
        "1h",
        "--leader-elect=false",
        "--admission-guard=true",
        "--policy-configmap",
        &policy_configmap,
    ]);
    assert!(
        agent.synced(&commit).await,
        "first sync did not finish:\n{}",
        agent.log()
    );
    // The drift watches start right after the first sync is reported: give
    // their initial list a moment, or a change made before it is missed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let applied = live(&s, VALIDATING, &name).expect("the agent applied the configuration");
    assert_eq!(
        applied["metadata"]["labels"]["app.kubernetes.io/managed-by"], "gitwarden",
        "the configuration is managed by gitwarden"
    );
    let webhooks = applied["webhooks"].clone();
    s.kubectl(&["get", "configmap", "gitwarden-policy"])
        .expect_success();

    // An admin deletes it. No webhook sees this: only the agent can notice.
    s.cluster
        .kubectl(Identity::Admin, &["delete", VALIDATING, &name])
        .expect_success();
    let deleted = Instant::now();
    let healed = wait_for(Duration::from_secs(20), || async {
        live(&s, VALIDATING, &name)
            .filter(|now| now["metadata"]["uid"] != applied["metadata"]["uid"])
    })
    .await;
    let Some(healed) = healed else {
        panic!(
            "the deleted configuration was not recreated within 20s:\n{}",
            agent.log()
        )
    };
    eprintln!("deleted configuration back {:?} later", deleted.elapsed());
    assert_eq!(
        healed["webhooks"], webhooks,
        "the recreated configuration has the webhooks of git"
    );
    let event = wait_for(Duration::from_secs(10), || async {
        let out = s.cluster.kubectl(
            Identity::Admin,
            &[
                "-n",
                "default",
                "get",
                "events",
                "--field-selector",
                &format!("reason=DriftHealed,involvedObject.name={name}"),
                "-o",
                "jsonpath={.items[*].involvedObject.kind}",
            ],
        );
        out.stdout
            .contains("ValidatingWebhookConfiguration")
            .then_some(())
    })
    .await;
    assert!(
        event.is_some(),
        "no DriftHealed Event for the recreated configuration:\n{}",
        agent.log()
    );
    // The status is updated when the healing sync has finished, which can be
    // a moment after the object and its Event are back.
    let counted = wait_for(Duration::from_secs(10), || async {
        let status = agent.status().await?;
        (status.drift_healed >= 1).then_some(())
    })
    .await;
    assert!(
        counted.is_some(),
        "the agent's status does not count the heal: {:?}",
        agent.status().await
    );

    // An admin weakens it: the webhook would no longer fail closed.
    let patched = s.cluster.kubectl(
        Identity::Admin,
        &[
            "patch",
            VALIDATING,
            &name,
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Ignore"}]"#,
            "-o",
            "json",
        ],
    );
    let patched: Value = serde_json::from_str(patched.expect_success()).unwrap();
    assert_eq!(patched["webhooks"][0]["failurePolicy"], "Ignore");
    let weakened_version: u64 = patched["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let restored = wait_for(Duration::from_secs(20), || async {
        let now = live(&s, VALIDATING, &name)?;
        let version: u64 = now["metadata"]["resourceVersion"].as_str()?.parse().ok()?;
        (version > weakened_version && now["webhooks"][0]["failurePolicy"] == "Fail").then_some(now)
    })
    .await;
    let Some(restored) = restored else {
        panic!(
            "failurePolicy was not healed back to Fail within 20s:\n{}",
            agent.log()
        )
    };
    assert_eq!(
        restored["webhooks"], webhooks,
        "healed to exactly what git says"
    );

    // And it is in force: nothing answers at its URL, so it fails closed for
    // a human writing an object it selects.
    let refused = gitwarden_tests::kubectl::run_kubectl_stdin(
        &s.cluster.kubeconfig(Identity::Admin),
        &["create", "-f", "-"],
        &testdata::rendered(
            "agent/scoped-configmap.yaml",
            &[
                ("NAME", "after-healing"),
                ("NAMESPACE", &ns),
                ("SCOPE_LABEL", SCOPE_LABEL),
            ],
        )
        .unwrap(),
    );
    assert!(
        refused.expect_failure().contains("failed calling webhook"),
        "expected the healed webhook to fail closed: {}",
        refused.stderr
    );

    // The guard was on all along and took gitwarden's own configurations
    // for what they are: git's.
    let status = agent.status().await.unwrap();
    assert_eq!(
        status.admission_guard.state,
        GuardState::Armed,
        "{}",
        to_json(&status)
    );
    let removed: Vec<&Removal> = status
        .recent_admission_removals
        .iter()
        .filter(|r| r.name == name)
        .collect();
    assert!(removed.is_empty(), "{removed:#?}");
}
