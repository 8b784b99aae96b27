//! The admission chain belongs to git: with the guard on, `gitwarden-agent
//! run` deletes every webhook configuration, admission policy and binding
//! that is neither in git nor allowed by the policy's `admissionChain.allow`,
//! within seconds, and records it; an admission plugin that refuses what git
//! says is reported by name.
//!
//! The attackers are the real kubectl as admin (`system:masters`) and alice
//! (cluster-admin by RBAC): no webhook ever sees these kinds, so only the
//! agent can notice. A guarding agent removes every admission object its
//! git and policy do not name, cluster-wide: these tests run one at a time
//! ([`ONE_GUARD`]; other tests' agents run with the guard off), and their
//! policies allow the names other tests give the admission objects they keep.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gitwarden_agent::status::{AuditFate, GuardState, RefusalStage, Removal};
use gitwarden_apply::AdmissionRefusal;
use gitwarden_manifests::Location;
use gitwarden_shared::audit::{AuditDecision, AuditRecord};
use gitwarden_tests::Identity;
use gitwarden_tests::loopback::LoopbackWebhook;
use gitwarden_tests::testdata;
use gitwarden_tests::webhook::{apply, render};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
    ValidatingWebhookConfiguration,
};
use kube::Resource;
use kube::api::Api;

use crate::common::{AgentSetup, ONE_GUARD, RunningAgent, cleanup, json, shared_allow, wait_for};

/// The agent's username, as a ValidatingAdmissionPolicy sees it.
const AGENT: &str = "system:serviceaccount:gitwarden-system:gitwarden-agent";

/// The policy ConfigMap (in the test's namespace) allowing `allow` outside
/// git, besides the objects other tests keep ([`shared_allow`]).
fn policy(allow: &[&str]) -> String {
    let names: Vec<String> = shared_allow(allow)
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect();
    testdata::rendered(
        "agent/admission-chain-policy.yaml",
        &[("ALLOW", &names.join(", "))],
    )
    .unwrap()
}

fn settings(value: &str) -> String {
    testdata::rendered("agent/settings-value-configmap.yaml", &[("VALUE", value)]).unwrap()
}

/// A ValidatingWebhookConfiguration without webhooks: in the admission
/// chain, harmless to every other test.
fn empty_validating(name: &str) -> String {
    testdata::rendered(
        "agent/empty-validating-webhook-configuration.yaml",
        &[("NAME", name)],
    )
    .unwrap()
}

/// A ValidatingAdmissionPolicy and its binding refusing the agent's writes
/// to ConfigMaps in `ns` (named `name`), or, with `only`, writes of that
/// one ConfigMap by anyone.
fn refusing_policy(name: &str, ns: &str, only: Option<&str>) -> String {
    let expression = match only {
        None => format!("request.userInfo.username != '{AGENT}'"),
        Some(configmap) => format!("object.metadata.name != '{configmap}'"),
    };
    testdata::rendered(
        "agent/refusing-admission-policy.yaml",
        &[
            ("NAME", name),
            ("NAMESPACE", ns),
            ("EXPRESSION", &expression),
        ],
    )
    .unwrap()
}

/// A MutatingWebhookConfiguration for ConfigMaps in `ns` calling a URL
/// nothing answers, failing open: it changes nothing yet, but whoever
/// controls that URL could rewrite what the agent applies.
fn rogue_mutating(name: &str, ns: &str) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    testdata::rendered(
        "agent/rogue-mutating-webhook-configuration.yaml",
        &[
            ("NAME", name),
            ("NAMESPACE", ns),
            ("PORT", &port.to_string()),
        ],
    )
    .unwrap()
}

/// `kubectl create -f -` as `who`, which must succeed.
fn create_as(s: &AgentSetup, who: Identity, manifest: &str) {
    gitwarden_tests::kubectl::run_kubectl_stdin(
        &s.cluster.kubeconfig(who),
        &["create", "-f", "-"],
        manifest,
    )
    .expect_success();
}

/// A file holding the agent's push-notification token.
fn hook_token() -> tempfile::NamedTempFile {
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "push-secret\n").unwrap();
    token
}

/// Starts a guarding agent following the policy in the test's namespace.
fn start_guarded(s: &AgentSetup, token: &tempfile::NamedTempFile, extra: &[&str]) -> RunningAgent {
    let policy = format!("{}/gitwarden-policy", s.ns());
    let token = token.path().to_str().unwrap().to_owned();
    let mut args = vec![
        "--admission-guard=true",
        "--policy-configmap",
        &policy,
        "--interval",
        "1h",
        "--hook-token-file",
        &token,
    ];
    args.extend_from_slice(extra);
    s.start_agent(&args)
}

/// Starts a guarding agent that records what it does in `audit_log`.
fn start_audited(
    s: &AgentSetup,
    token: &tempfile::NamedTempFile,
    audit_log: &AuditWebhook,
) -> RunningAgent {
    let audit_ca = audit_log.ca();
    start_guarded(
        s,
        token,
        &[
            "--audit-url",
            &audit_log.url,
            "--audit-ca",
            audit_ca.to_str().unwrap(),
        ],
    )
}

/// Waits until the agent synced `commit` and its guard removes what it must.
async fn armed(agent: &RunningAgent, commit: &str) {
    let ready = wait_for(Duration::from_secs(60), || async {
        let status = agent.status().await?;
        (status.revision.as_deref() == Some(commit)
            && status.last_success.is_some()
            && status.admission_guard.state == GuardState::Armed)
            .then_some(())
    })
    .await;
    assert!(
        ready.is_some(),
        "the agent did not sync and arm its guard: {:?}\n{}",
        agent.status().await,
        agent.log()
    );
}

/// Asks the agent for a sync now (`POST /hook`).
async fn poke(agent: &RunningAgent) {
    let accepted = reqwest::Client::new()
        .post(format!("{}/hook", agent.url))
        .bearer_auth("push-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
}

/// Whether the object `name` of kind `K` exists, and its uid.
async fn uid_of<K>(s: &AgentSetup, name: &str) -> Option<String>
where
    K: Resource<Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let admin = s.cluster.client(Identity::Admin).await.unwrap();
    Api::<K>::all(admin)
        .get_opt(name)
        .await
        .unwrap()
        .and_then(|o| o.meta().uid.clone())
}

/// Waits (polling every 50 ms) until `name` of kind `K` is gone; how long
/// that took from `since`.
async fn gone<K>(s: &AgentSetup, name: &str, since: Instant) -> Option<Duration>
where
    K: Resource<Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let admin = s.cluster.client(Identity::Admin).await.unwrap();
    let api = Api::<K>::all(admin);
    while since.elapsed() < Duration::from_secs(20) {
        if api.get_opt(name).await.unwrap().is_none() {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// The kinds of the objects named `name` with an Event of this reason in `namespace`.
fn event_kinds(s: &AgentSetup, namespace: &str, reason: &str, name: &str) -> String {
    s.cluster
        .kubectl(
            Identity::Admin,
            &[
                "-n",
                namespace,
                "get",
                "events",
                "--field-selector",
                &format!("reason={reason},involvedObject.name={name}"),
                "-o",
                "jsonpath={.items[*].type}/{.items[*].involvedObject.kind}",
            ],
        )
        .stdout
}

/// The value of a metric sample whose line starts with `series` (name and labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(series))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rogue_admission_objects_are_removed_within_seconds_and_recorded() {
    let _one = ONE_GUARD.lock().await;
    let s = AgentSetup::new("adm-rogue").await;
    let ns = s.ns().to_owned();
    let in_git = format!("in-git-{ns}");
    let rogue_policy = format!("rogue-policy-{ns}");
    let rogue_webhook = format!("rogue-webhook-{ns}");
    let _cleanup = cleanup(
        &s,
        &[
            ("validatingwebhookconfiguration", &in_git),
            ("validatingadmissionpolicy", &rogue_policy),
            ("validatingadmissionpolicybinding", &rogue_policy),
            ("mutatingwebhookconfiguration", &rogue_webhook),
        ],
    );
    let commit = s.commit(
        &[
            ("gitwarden/policy.yaml", &policy(&[])),
            ("gitwarden/chain.yaml", &empty_validating(&in_git)),
            ("app/settings.yaml", &settings("one")),
        ],
        "gitwarden, its admission chain, and an app",
    );
    let token = hook_token();
    let agent = start_guarded(&s, &token, &[]);
    armed(&agent, &commit).await;
    let in_git_uid = uid_of::<ValidatingWebhookConfiguration>(&s, &in_git)
        .await
        .expect("the configuration in git was applied");

    // admin (system:masters) adds a policy refusing every write of the agent
    // in the namespace; alice (cluster-admin) adds a mutating webhook.
    create_as(
        &s,
        Identity::Admin,
        &refusing_policy(&rogue_policy, &ns, None),
    );
    let policy_created = Instant::now();
    create_as(&s, Identity::Alice, &rogue_mutating(&rogue_webhook, &ns));
    let webhook_created = Instant::now();

    let policy_gone = gone::<ValidatingAdmissionPolicy>(&s, &rogue_policy, policy_created).await;
    let binding_gone =
        gone::<ValidatingAdmissionPolicyBinding>(&s, &rogue_policy, policy_created).await;
    let webhook_gone =
        gone::<MutatingWebhookConfiguration>(&s, &rogue_webhook, webhook_created).await;
    eprintln!(
        "removed after creation: policy {policy_gone:?}, binding {binding_gone:?}, webhook {webhook_gone:?}"
    );
    for (what, after) in [
        ("ValidatingAdmissionPolicy", policy_gone),
        ("ValidatingAdmissionPolicyBinding", binding_gone),
        ("MutatingWebhookConfiguration", webhook_gone),
    ] {
        let after =
            after.unwrap_or_else(|| panic!("{what} not removed within 20s:\n{}", agent.log()));
        assert!(
            after < Duration::from_secs(10),
            "{what} removed only after {after:?}"
        );
    }

    // Recorded: a Warning Event on each (cluster-scoped: in `default`).
    for (name, kind) in [
        (&rogue_policy, "ValidatingAdmissionPolicy"),
        (&rogue_policy, "ValidatingAdmissionPolicyBinding"),
        (&rogue_webhook, "MutatingWebhookConfiguration"),
    ] {
        let event = wait_for(Duration::from_secs(10), || async {
            let found = event_kinds(&s, "default", "AdmissionObjectRemoved", name);
            (found.contains("Warning") && found.contains(kind)).then_some(())
        })
        .await;
        assert!(
            event.is_some(),
            "no AdmissionObjectRemoved Event for {kind} {name}:\n{}",
            agent.log()
        );
    }
    // … counted by kind …
    let metrics = agent.metrics().await.unwrap();
    for kind in [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "MutatingWebhookConfiguration",
    ] {
        let series = format!("gitwarden_agent_admission_objects_removed_total{{kind=\"{kind}\"}}");
        assert!(
            sample(&metrics, &series).is_some_and(|n| n >= 1.0),
            "{series} missing:\n{metrics}"
        );
    }
    // … and listed in /status, unaudited without --audit-url.
    let status = agent.status().await.unwrap();
    let removed: Vec<&Removal> = status
        .recent_admission_removals
        .iter()
        .filter(|r| r.name == rogue_webhook || r.name == rogue_policy)
        .collect();
    assert_eq!(removed.len(), 3, "{}", json(&status));
    assert!(
        removed.iter().all(|r| r.audit == AuditFate::NotAudited),
        "{removed:#?}"
    );
    assert!(status.admission_objects_removed >= 3);

    // What git contains stays, untouched.
    assert_eq!(
        uid_of::<ValidatingWebhookConfiguration>(&s, &in_git).await,
        Some(in_git_uid),
        "the configuration from git must not be removed or replaced"
    );

    // And the next commit applies: nothing refuses the agent any more.
    let next = s.commit(&[("app/settings.yaml", &settings("two"))], "settings two");
    poke(&agent).await;
    let applied = wait_for(Duration::from_secs(30), || async {
        let status = agent.status().await?;
        (status.revision.as_deref() == Some(next.as_str()) && status.error.is_none()).then_some(())
    })
    .await;
    assert!(
        applied.is_some(),
        "the next sync did not apply: {:?}",
        agent.status().await
    );
    let value = s.kubectl(&[
        "get",
        "configmap",
        "settings",
        "-o",
        "jsonpath={.data.value}",
    ]);
    assert_eq!(value.expect_success(), "two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_admission_object_held_by_a_finalizer_is_removed_and_counted_once() {
    let _one = ONE_GUARD.lock().await;
    let s = AgentSetup::new("adm-final").await;
    let ns = s.ns().to_owned();
    let rogue = format!("rogue-held-{ns}");
    let _cleanup = cleanup(&s, &[("validatingadmissionpolicy", &rogue)]);
    let commit = s.commit(
        &[
            ("gitwarden/policy.yaml", &policy(&[])),
            ("app/settings.yaml", &settings("one")),
        ],
        "an app",
    );
    let token = hook_token();
    let agent = start_guarded(&s, &token, &[]);
    armed(&agent, &commit).await;

    // A finalizer nobody will ever remove: a plain delete would leave the
    // policy in place, marked for deletion.
    create_as(
        &s,
        Identity::Alice,
        &testdata::rendered("agent/finalized-admission-policy.yaml", &[("NAME", &rogue)]).unwrap(),
    );
    let removed = gone::<ValidatingAdmissionPolicy>(&s, &rogue, Instant::now()).await;
    eprintln!("held by a finalizer, removed after {removed:?}");
    assert!(removed.is_some(), "still there:\n{}", agent.log());
    let counted = wait_for(Duration::from_secs(5), || async {
        let status = agent.status().await?;
        Some(
            status
                .recent_admission_removals
                .iter()
                .filter(|r| r.name == rogue)
                .count(),
        )
    })
    .await;
    assert_eq!(counted, Some(1), "one object, one removal");
}

/// A ValidatingWebhookConfiguration for git whose one webhook can never
/// matter to anyone: it selects only objects labelled
/// `gitwarden.test/never`, and fails open.
fn harmless_validating(name: &str, ns: &str) -> String {
    testdata::rendered(
        "agent/harmless-validating-webhook-configuration.yaml",
        &[("NAME", name), ("NAMESPACE", ns)],
    )
    .unwrap()
}

/// alice's JSON patch adding a webhook of her own to a configuration from
/// git (it fails open and selects nothing, so it harms no other test).
const ALICES_WEBHOOK: &str = r#"[{"op":"add","path":"/webhooks/-","value":{"name":"evil.example.com","clientConfig":{"url":"https://127.0.0.1:9/evil"},"failurePolicy":"Ignore","sideEffects":"None","admissionReviewVersions":["v1"],"objectSelector":{"matchLabels":{"gitwarden.test/never":"true"}}}}]"#;

/// `kubectl patch --type=json` of the configuration `name` as `who`.
fn json_patch(s: &AgentSetup, who: Identity, manager: &str, name: &str, patch: &str) {
    s.cluster
        .kubectl(
            who,
            &[
                "patch",
                "validatingwebhookconfiguration",
                name,
                "--type=json",
                "--field-manager",
                manager,
                "-p",
                patch,
            ],
        )
        .expect_success();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_object_from_git_added_to_outside_git_is_restored_keeping_its_ca_bundle() {
    let _one = ONE_GUARD.lock().await;
    let s = AgentSetup::new("adm-restore").await;
    let ns = s.ns().to_owned();
    let name = format!("in-git-{ns}");
    let _cleanup = cleanup(&s, &[("validatingwebhookconfiguration", &name)]);
    let commit = s.commit(
        &[
            ("gitwarden/policy.yaml", &policy(&[])),
            ("gitwarden/chain.yaml", &harmless_validating(&name, &ns)),
        ],
        "gitwarden's admission chain",
    );
    let audit_log = AuditWebhook::start(&s).await;
    let token = hook_token();
    let agent = start_audited(&s, &token, &audit_log);
    armed(&agent, &commit).await;
    let uid = uid_of::<ValidatingWebhookConfiguration>(&s, &name)
        .await
        .unwrap();

    // gitwarden-certs injects the CA bundle, which git does not hold: by design.
    let ca = inject_ca_bundle(&s, "gitwarden-certs", &name);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = agent.status().await.unwrap();
    assert_eq!(
        status.admission_objects_restored, 0,
        "the CA bundle must not be fought"
    );

    // admin switches the webhook off with a match condition; alice adds a
    // webhook of her own. Server-side apply alone would keep both.
    json_patch(
        &s,
        Identity::Admin,
        "kubectl-patch",
        &name,
        r#"[{"op":"add","path":"/webhooks/0/matchConditions/-","value":{"name":"bypass","expression":"false"}}]"#,
    );
    let changed = Instant::now();
    json_patch(&s, Identity::Alice, "kubectl-patch", &name, ALICES_WEBHOOK);
    let admin = s.cluster.client(Identity::Admin).await.unwrap();
    let api = Api::<ValidatingWebhookConfiguration>::all(admin);
    let restored = wait_for(Duration::from_secs(15), || async {
        let live = api.get(&name).await.ok()?;
        let webhooks = live.webhooks.clone()?;
        let conditions: Vec<String> = webhooks[0]
            .match_conditions
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect();
        (webhooks.len() == 1 && conditions == ["in-git"]).then_some(live)
    })
    .await;
    let Some(restored) = restored else {
        panic!(
            "not restored: {:?}\n{}",
            api.get(&name).await.ok().and_then(|l| l.webhooks),
            agent.log()
        )
    };
    eprintln!("restored {:?} after the change", changed.elapsed());
    assert_eq!(
        restored.metadata.uid,
        Some(uid),
        "restored in place, not re-created"
    );
    let webhook = &restored.webhooks.unwrap()[0];
    assert_eq!(webhook.name, "check.gitwarden.test");
    assert_eq!(
        webhook
            .client_config
            .ca_bundle
            .as_ref()
            .map(|b| b.0.clone()),
        Some(ca.cert_pem().as_bytes().to_vec()),
        "the injected CA bundle stays"
    );

    let event = wait_for(Duration::from_secs(10), || async {
        let found = event_kinds(&s, "default", "AdmissionObjectRestored", &name);
        found.contains("Warning").then_some(())
    })
    .await;
    assert!(
        event.is_some(),
        "no AdmissionObjectRestored Event:\n{}",
        agent.log()
    );
    let metrics = agent.metrics().await.unwrap();
    let series =
        "gitwarden_agent_admission_objects_restored_total{kind=\"ValidatingWebhookConfiguration\"}";
    assert!(
        sample(&metrics, series).is_some_and(|n| n >= 1.0),
        "{series} missing:\n{metrics}"
    );
    let status = agent.status().await.unwrap();
    assert_eq!(status.admission_objects_removed, 0, "{}", json(&status));
    // Restored once per change, then settled: no fight with the re-apply.
    let restores = status.admission_objects_restored;
    assert!((1..=2).contains(&restores), "{}", json(&status));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = agent.status().await.unwrap();
    assert_eq!(later.admission_objects_restored, restores);
    // And the restore is in the audit log, as the agent's own update.
    let record = wait_for(Duration::from_secs(20), || async {
        audit_log.records().into_iter().find(|r| {
            r.reason == "admission_object_restored" && r.name.as_deref() == Some(name.as_str())
        })
    })
    .await
    .unwrap_or_else(|| panic!("no restore record: {:#?}", audit_log.records()));
    assert_eq!(record.decision, AuditDecision::Removed);
    assert_eq!(record.operation, "UPDATE");
    assert_eq!(record.user, AGENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_object_the_policy_allows_is_left_alone() {
    let _one = ONE_GUARD.lock().await;
    let s = AgentSetup::new("adm-allow").await;
    let ns = s.ns().to_owned();
    let allowed = format!("allowed-{ns}");
    let rogue = format!("rogue-{ns}");
    let _cleanup = cleanup(
        &s,
        &[
            ("validatingwebhookconfiguration", &allowed),
            ("validatingwebhookconfiguration", &rogue),
        ],
    );
    let commit = s.commit(
        &[
            ("gitwarden/policy.yaml", &policy(&["allowed-*"])),
            ("app/settings.yaml", &settings("one")),
        ],
        "a policy allowing allowed-*",
    );
    let token = hook_token();
    let agent = start_guarded(&s, &token, &[]);
    armed(&agent, &commit).await;

    create_as(&s, Identity::Alice, &empty_validating(&allowed));
    let allowed_uid = uid_of::<ValidatingWebhookConfiguration>(&s, &allowed)
        .await
        .unwrap();
    // Created after it, through the same watch: once this one is gone, the
    // allowed one has been judged too.
    create_as(&s, Identity::Alice, &empty_validating(&rogue));
    let rogue_gone = gone::<ValidatingWebhookConfiguration>(&s, &rogue, Instant::now()).await;
    assert!(
        rogue_gone.is_some(),
        "the guard is not working:\n{}",
        agent.log()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert_eq!(
        uid_of::<ValidatingWebhookConfiguration>(&s, &allowed).await,
        Some(allowed_uid),
        "an object named by admissionChain.allow must be left alone:\n{}",
        agent.log()
    );
    assert_eq!(
        event_kinds(&s, "default", "AdmissionObjectRemoved", &allowed),
        "/",
        "no removal Event for the allowed object"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_policy_that_refuses_the_agent_is_reported_by_name() {
    let _one = ONE_GUARD.lock().await;
    let s = AgentSetup::new("adm-refused").await;
    let ns = s.ns().to_owned();
    let refuser = format!("allowed-refuser-{ns}");
    let _cleanup = cleanup(
        &s,
        &[
            ("validatingadmissionpolicy", &refuser),
            ("validatingadmissionpolicybinding", &refuser),
        ],
    );
    // The policy allows the refusing ValidatingAdmissionPolicy: the guard
    // leaves it, and the agent must say who stands between git and the cluster.
    apply(
        &s.cluster.kubeconfig(Identity::Admin),
        &render(&policy(&["allowed-*"]), &[("NAMESPACE", &ns)]),
    )
    .unwrap();
    create_as(
        &s,
        Identity::Admin,
        &refusing_policy(&refuser, &ns, Some("refused")),
    );
    // Policies take effect a moment after they are created.
    let in_force = wait_for(Duration::from_secs(20), || async {
        let probe = s.kubectl(&["create", "configmap", "refused", "--dry-run=server"]);
        (!probe.success && probe.stderr.contains(&refuser)).then_some(())
    })
    .await;
    assert!(in_force.is_some(), "the refusing policy never took effect");

    let commit = s.commit(
        &[(
            "app/refused.yaml",
            &testdata::rendered("agent/configmap.yaml", &[("NAME", "refused")]).unwrap(),
        )],
        "a ConfigMap the policy refuses",
    );
    let token = hook_token();
    let agent = start_guarded(&s, &token, &[]);

    let status = wait_for(Duration::from_secs(60), || async {
        let status = agent.status().await?;
        (status.admission_refusals.len() == 1).then_some(status)
    })
    .await;
    let Some(status) = status else {
        panic!(
            "no admission refusal in the status: {:?}\n{}",
            agent.status().await,
            agent.log()
        )
    };
    let refusal = &status.admission_refusals[0];
    // The object as written (`v1 ConfigMap ns/name`): ObjectRef's own
    // equality ignores the version.
    assert_eq!(
        refusal.object.to_string(),
        format!("v1 ConfigMap {ns}/refused"),
        "{refusal:#?}"
    );
    assert_eq!(
        refusal.location,
        Location::new("app/refused.yaml", 1),
        "{refusal:#?}"
    );
    assert_eq!(refusal.stage, RefusalStage::DryRun, "{refusal:#?}");
    assert_eq!(
        refusal.refused_by,
        AdmissionRefusal::ValidatingAdmissionPolicy {
            policy: refuser.clone(),
            binding: Some(refuser.clone()),
        },
        "{refusal:#?}"
    );
    assert!(
        status.error.as_deref().unwrap_or("").contains(&refuser),
        "the error names the policy: {}",
        json(&status)
    );
    assert!(
        status.last_success.is_none(),
        "nothing of {commit} was applied"
    );

    let event = wait_for(Duration::from_secs(10), || async {
        let found = event_kinds(&s, &ns, "AdmissionRefused", "refused");
        (found.contains("Warning") && found.contains("ConfigMap")).then_some(())
    })
    .await;
    assert!(
        event.is_some(),
        "no AdmissionRefused Event:\n{}",
        agent.log()
    );
    let message = s.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "reason=AdmissionRefused,involvedObject.name=refused",
        "-o",
        "jsonpath={.items[0].message}",
    ]);
    assert!(message.stdout.contains(&refuser), "{}", message.stdout);

    let metrics = agent.metrics().await.unwrap();
    let series = format!(
        "gitwarden_agent_admission_refused_total{{plugin_kind=\"validating_admission_policy\",plugin=\"{refuser}\"}}"
    );
    assert!(
        sample(&metrics, &series).is_some_and(|n| n >= 1.0),
        "{series} missing:\n{metrics}"
    );

    // The guard arms once it has seen git's objects and the policy (its own
    // task, so a moment after the refusal is reported) and spares the
    // allowed policy.
    let armed = wait_for(Duration::from_secs(10), || async {
        let status = agent.status().await?;
        (status.admission_guard.state == GuardState::Armed).then_some(())
    })
    .await;
    assert!(
        armed.is_some(),
        "the guard never armed: {:?}\n{}",
        agent.status().await.map(|s| json(&s)),
        agent.log()
    );
    assert!(
        uid_of::<ValidatingAdmissionPolicy>(&s, &refuser)
            .await
            .is_some()
    );
}

/// The real `gitwarden-webhook`, serving only its audit log (registered
/// nowhere, so it refuses nothing): where the agent's removals are recorded.
struct AuditWebhook {
    webhook: LoopbackWebhook,
    url: String,
}

impl AuditWebhook {
    /// Starts it on the test's policy ConfigMap (gitwarden's default
    /// policy, applied here: the webhook reads it before it serves).
    async fn start(s: &AgentSetup) -> AuditWebhook {
        apply(
            &s.cluster.kubeconfig(Identity::Admin),
            &render(&policy(&[]), &[("NAMESPACE", s.ns())]),
        )
        .unwrap();
        let webhook = LoopbackWebhook::start(
            &s.cluster.kubeconfig(Identity::Admin),
            &format!("{}/gitwarden-policy", s.ns()),
        )
        .await
        .unwrap();
        let url = webhook.url.clone();
        AuditWebhook { webhook, url }
    }

    fn ca(&self) -> PathBuf {
        self.webhook.ca_file()
    }

    /// Every record of the audit log.
    fn records(&self) -> Vec<AuditRecord> {
        self.webhook.audit_records()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_admission_object_is_recorded_in_the_audit_log_as_removed() {
    let _one = ONE_GUARD.lock().await;
    let s = AgentSetup::new("adm-audit").await;
    let ns = s.ns().to_owned();
    let rogue = format!("rogue-audited-{ns}");
    let _cleanup = cleanup(&s, &[("validatingwebhookconfiguration", &rogue)]);
    let webhook = AuditWebhook::start(&s).await;
    let commit = s.commit(&[("app/settings.yaml", &settings("one"))], "an app");
    let token = hook_token();
    let agent = start_audited(&s, &token, &webhook);
    armed(&agent, &commit).await;

    create_as(&s, Identity::Alice, &empty_validating(&rogue));
    assert!(
        gone::<ValidatingWebhookConfiguration>(&s, &rogue, Instant::now())
            .await
            .is_some(),
        "not removed:\n{}",
        agent.log()
    );
    let record = wait_for(Duration::from_secs(20), || async {
        webhook.records().into_iter().find(|r| {
            r.decision == AuditDecision::Removed && r.name.as_deref() == Some(rogue.as_str())
        })
    })
    .await;
    let Some(record) = record else {
        panic!(
            "no `removed` audit record for {rogue}: {:#?}\n--- agent ---\n{}",
            webhook.records(),
            agent.log()
        )
    };
    assert_eq!(record.reason, "admission_object_not_in_git", "{record:#?}");
    assert_eq!(record.operation, "DELETE");
    assert_eq!(record.group, "admissionregistration.k8s.io");
    assert_eq!(record.resource, "validatingwebhookconfigurations");
    assert_eq!(
        record.user, AGENT,
        "the webhook names the authenticated agent"
    );
    let status = agent.status().await.unwrap();
    let removal = status
        .recent_admission_removals
        .iter()
        .find(|r| r.name == rogue)
        .cloned();
    assert_eq!(removal.unwrap().audit, AuditFate::Queued);
}

/// The template ConfigMap the webhook registers its configurations from
/// (`deploy/base` generates it from webhook-configuration.yaml), holding
/// `configuration`.
fn registration_template(configuration: &str) -> String {
    let indented: String = configuration
        .lines()
        .map(|line| format!("    {line}\n"))
        .collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gitwarden-webhook-configurations\n  namespace: gitwarden-system\ndata:\n  webhook-configuration.yaml: |\n{indented}"
    )
}

/// Commits gitwarden's policy and a registration template holding the
/// harmless configuration `name`, and registers it as the webhook does once
/// it is ready (the webhook's own tests cover that); the commit, and what
/// removes the template the sync applies into gitwarden-system when the test
/// ends (also after a failed assertion: later guard tests would take it for
/// git's).
fn registered_from_template(s: &AgentSetup, name: &str) -> (String, RegistrationTemplate) {
    let template = harmless_validating(name, s.ns());
    let commit = s.commit(
        &[
            ("gitwarden/policy.yaml", &policy(&[])),
            (
                "gitwarden/registration.yaml",
                &registration_template(&template),
            ),
        ],
        "gitwarden's webhook registers its configuration from this template",
    );
    gitwarden_tests::kubectl::run_kubectl_stdin(
        &s.cluster.kubeconfig(Identity::Admin),
        &["create", "--field-manager", "gitwarden-webhook", "-f", "-"],
        &template,
    )
    .expect_success();
    (
        commit,
        RegistrationTemplate {
            admin: s.cluster.kubeconfig(Identity::Admin),
        },
    )
}

/// Removes the template ConfigMap a test's sync applied into gitwarden-system
/// when dropped. Declared before the agent, so dropped after it.
struct RegistrationTemplate {
    admin: PathBuf,
}

impl Drop for RegistrationTemplate {
    fn drop(&mut self) {
        let _ = gitwarden_tests::kubectl::run_kubectl(
            &self.admin,
            &[
                "-n",
                "gitwarden-system",
                "delete",
                "configmap",
                "gitwarden-webhook-configurations",
                "--ignore-not-found",
            ],
        );
    }
}

/// Puts a fresh CA's bundle on the first webhook of configuration `name`, as
/// `manager` (gitwarden-certs or the webhook) does; git never holds it.
fn inject_ca_bundle(
    s: &AgentSetup,
    manager: &str,
    name: &str,
) -> gitwarden_certs::CertificateAuthority {
    use base64::Engine as _;
    let ca = gitwarden_certs::CertificateAuthority::generate(
        "gitwarden-injected-test-ca",
        Duration::from_secs(3600),
    )
    .unwrap();
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca.cert_pem());
    json_patch(
        s,
        Identity::Admin,
        manager,
        name,
        &format!(
            r#"[{{"op":"add","path":"/webhooks/0/clientConfig/caBundle","value":"{bundle}"}}]"#
        ),
    );
    ca
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_the_webhook_registers_from_gits_template_is_kept_and_restored() {
    let _one = ONE_GUARD.lock().await;
    let s = AgentSetup::new("adm-registered").await;
    let ns = s.ns().to_owned();
    let name = format!("registered-{ns}");
    let _cleanup = cleanup(&s, &[("validatingwebhookconfiguration", &name)]);
    let (commit, _template) = registered_from_template(&s, &name);
    let uid = uid_of::<ValidatingWebhookConfiguration>(&s, &name)
        .await
        .unwrap();
    let token = hook_token();
    let agent = start_guarded(&s, &token, &[]);
    armed(&agent, &commit).await;

    // Not in git as an object, but in git's template: kept.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        uid_of::<ValidatingWebhookConfiguration>(&s, &name).await,
        Some(uid.clone()),
        "kept: {}",
        agent.log()
    );
    let status = agent.status().await.unwrap();
    assert_eq!(status.admission_objects_removed, 0, "{}", json(&status));

    // alice adds a webhook of her own: put back as the template says.
    json_patch(&s, Identity::Alice, "kubectl-patch", &name, ALICES_WEBHOOK);
    let admin = s.cluster.client(Identity::Admin).await.unwrap();
    let api = Api::<ValidatingWebhookConfiguration>::all(admin);
    let restored = wait_for(Duration::from_secs(15), || async {
        let live = api.get(&name).await.ok()?;
        (live.webhooks.as_ref()?.len() == 1).then_some(live)
    })
    .await
    .unwrap_or_else(|| panic!("not restored:\n{}", agent.log()));
    assert_eq!(restored.metadata.uid, Some(uid), "restored in place");
    let status = agent.status().await.unwrap();
    assert!(status.admission_objects_restored >= 1, "{}", json(&status));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_configuration_from_gits_template_is_created_again_at_once_with_its_ca_bundle() {
    let _one = ONE_GUARD.lock().await;
    let s = AgentSetup::new("adm-recreate").await;
    let ns = s.ns().to_owned();
    let name = format!("recreated-{ns}");
    let _cleanup = cleanup(&s, &[("validatingwebhookconfiguration", &name)]);
    // Registered, with the CA bundle the webhook serves with. No webhook runs
    // afterwards (crashed, its node gone), so nothing but the agent can put
    // the configuration back.
    let (commit, _template) = registered_from_template(&s, &name);
    let ca = inject_ca_bundle(&s, "gitwarden-webhook", &name);
    let uid = uid_of::<ValidatingWebhookConfiguration>(&s, &name)
        .await
        .unwrap();
    let audit_log = AuditWebhook::start(&s).await;
    let token = hook_token();
    // A sync an hour away: only the guard can bring it back in this test.
    let agent = start_audited(&s, &token, &audit_log);
    armed(&agent, &commit).await;

    // admin deletes it: no webhook can refuse that, and enforcement stops.
    let deleted = Instant::now();
    s.cluster
        .kubectl(
            Identity::Admin,
            &["delete", "validatingwebhookconfiguration", &name],
        )
        .expect_success();
    let admin = s.cluster.client(Identity::Admin).await.unwrap();
    let api = Api::<ValidatingWebhookConfiguration>::all(admin);
    let back = wait_for(Duration::from_secs(10), || async {
        let live = api.get_opt(&name).await.ok()??;
        (live.metadata.uid.as_deref() != Some(uid.as_str())).then_some(live)
    })
    .await;
    let Some(back) = back else {
        panic!("not created again:\n{}", agent.log())
    };
    eprintln!("created again {:?} after the delete", deleted.elapsed());
    let webhooks = back.webhooks.unwrap_or_default();
    assert_eq!(webhooks.len(), 1, "{webhooks:#?}");
    assert_eq!(webhooks[0].name, "check.gitwarden.test");
    assert_eq!(
        webhooks[0]
            .client_config
            .ca_bundle
            .as_ref()
            .map(|b| b.0.clone()),
        Some(ca.cert_pem().as_bytes().to_vec()),
        "created again with the CA bundle it held, so the API server can call the webhook"
    );

    let event = wait_for(Duration::from_secs(10), || async {
        let found = event_kinds(&s, "default", "AdmissionObjectRecreated", &name);
        found.contains("Warning").then_some(())
    })
    .await;
    assert!(
        event.is_some(),
        "no AdmissionObjectRecreated Event:\n{}",
        agent.log()
    );
    let status = agent.status().await.unwrap();
    assert_eq!(status.admission_objects_restored, 1, "{}", json(&status));
    assert_eq!(status.admission_objects_removed, 0, "{}", json(&status));
    let record = wait_for(Duration::from_secs(20), || async {
        audit_log.records().into_iter().find(|r| {
            r.reason == "admission_object_recreated" && r.name.as_deref() == Some(name.as_str())
        })
    })
    .await
    .unwrap_or_else(|| panic!("no re-creation record: {:#?}", audit_log.records()));
    assert_eq!(record.decision, AuditDecision::Removed);
    assert_eq!(record.operation, "CREATE");
    assert_eq!(record.user, AGENT);

    // Kept from then on, like the configuration it replaced.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        uid_of::<ValidatingWebhookConfiguration>(&s, &name).await,
        back.metadata.uid,
        "{}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_object_git_removes_is_pruned_and_not_created_again() {
    let _one = ONE_GUARD.lock().await;
    let s = AgentSetup::new("adm-pruned").await;
    let ns = s.ns().to_owned();
    let name = format!("leaving-{ns}");
    let _cleanup = cleanup(&s, &[("validatingwebhookconfiguration", &name)]);
    let commit = s.commit(
        &[
            ("gitwarden/policy.yaml", &policy(&[])),
            ("gitwarden/chain.yaml", &harmless_validating(&name, &ns)),
        ],
        "an admission object in git",
    );
    let token = hook_token();
    // Two objects in the inventory: removing one is half of it.
    let agent = start_guarded(&s, &token, &["--allow-mass-prune"]);
    armed(&agent, &commit).await;
    assert!(
        uid_of::<ValidatingWebhookConfiguration>(&s, &name)
            .await
            .is_some()
    );

    let removed = s.remove("gitwarden/chain.yaml");
    poke(&agent).await;
    let pruned = wait_for(Duration::from_secs(30), || async {
        let status = agent.status().await?;
        (status.revision.as_deref() == Some(removed.as_str())
            && uid_of::<ValidatingWebhookConfiguration>(&s, &name)
                .await
                .is_none())
        .then_some(())
    })
    .await;
    assert!(pruned.is_some(), "not pruned:\n{}", agent.log());
    // Gone for good: what left git is not git's to put back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        uid_of::<ValidatingWebhookConfiguration>(&s, &name).await,
        None,
        "{}",
        agent.log()
    );
    let status = agent.status().await.unwrap();
    assert_eq!(status.admission_objects_restored, 0, "{}", json(&status));
}
