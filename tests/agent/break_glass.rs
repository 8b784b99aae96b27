//! Break-glass end to end: carol changes things through the real webhook
//! (which stamps and labels them), and `gitwarden-agent run` holds them while
//! the window is open, then reverts what git contains and deletes what the
//! window created, with an Event for each step.
//!
//! This binary shares one cluster among tests running in parallel, so each
//! test runs its own webhook process and registers it under a name of its own
//! for its own namespace only (as `self_protection` does): other tests' admin
//! writes never reach it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use gitwarden_agent::status::Status;
use gitwarden_apply::{Held, Kept};
use gitwarden_manifests::ObjectRef;
use gitwarden_tests::Identity;
use gitwarden_tests::loopback::LoopbackWebhook;
use gitwarden_tests::testdata;
use gitwarden_tests::webhook::{apply, render};
use serde::Deserialize as _;
use serde_json::{Value, json};

use crate::common::{AgentSetup, RunningAgent, json as to_json, wait_for};

const VALIDATING: &str = "validatingwebhookconfiguration";
const MUTATING: &str = "mutatingwebhookconfiguration";

/// The real `gitwarden-webhook`, enforcing in one namespace only.
///
/// Declare it after the [`AgentSetup`] so it is dropped first: with it gone,
/// admin can delete the namespace again.
struct ScopedWebhook {
    webhook: LoopbackWebhook,
    admin: PathBuf,
    name: String,
}

impl ScopedWebhook {
    /// Starts the webhook (policy from a ConfigMap in the test namespace),
    /// registers `deploy/local/webhook-configuration.yaml` scoped to the
    /// namespace, and returns once alice is refused there.
    async fn start(s: &AgentSetup) -> ScopedWebhook {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ns = s.ns().to_owned();
        let admin = s.cluster.kubeconfig(Identity::Admin);
        apply(
            &admin,
            &testdata::rendered("agent/break-glass-policy.yaml", &[("NAMESPACE", &ns)]).unwrap(),
        )
        .unwrap();
        // The agent's inventory is in the test namespace: the webhook reads
        // from it where refused objects are written in git.
        let policy = format!("{ns}/gitwarden-policy");
        let loopback =
            LoopbackWebhook::launch(gitwarden_tests::loopback::PolicySource::ConfigMap {
                kubeconfig: &admin,
                name: &policy,
            })
            .args(["--inventory-namespace", &ns])
            .start()
            .await
            .unwrap();
        let url = loopback.url.clone();
        let ca_pem = loopback.ca_pem().to_owned();
        let name = format!("gitwarden-{ns}");
        let webhook = ScopedWebhook {
            webhook: loopback,
            admin: admin.clone(),
            name: name.clone(),
        };
        let template = std::fs::read_to_string(
            gitwarden_tests::cluster::repo_root().join("deploy/local/webhook-configuration.yaml"),
        )
        .unwrap();
        let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
        let rendered = render(
            &template,
            &[("WEBHOOK_URL", &url), ("CA_BUNDLE", &ca_bundle)],
        );
        for document in serde_yaml_ng::Deserializer::from_str(&rendered) {
            let mut config = Value::deserialize(document).unwrap();
            if config.is_null() {
                continue;
            }
            config["metadata"]["name"] = json!(name);
            // The first entry of each is the one for ordinary namespaces.
            let first = config["webhooks"][0].clone();
            config["webhooks"] = json!([first]);
            config["webhooks"][0]["namespaceSelector"] =
                json!({"matchLabels": {"kubernetes.io/metadata.name": ns}});
            apply(&admin, &serde_yaml_ng::to_string(&config).unwrap()).unwrap();
        }
        // Probes are never deleted (admin is refused here too); the
        // namespace goes at the end of the test.
        let probes = std::sync::atomic::AtomicUsize::new(0);
        let enforcing = wait_for(Duration::from_secs(30), || async {
            let probe = format!(
                "enforcement-probe-{}",
                probes.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            );
            let out = s
                .cluster
                .kubectl(Identity::Alice, &["-n", &ns, "create", "configmap", &probe]);
            (!out.success && out.stderr.contains("gitwarden")).then_some(())
        })
        .await;
        assert!(
            enforcing.is_some(),
            "the webhook did not start enforcing in {ns}:\n{}",
            webhook.log()
        );
        webhook
    }

    fn log(&self) -> String {
        self.webhook.log()
    }
}

impl Drop for ScopedWebhook {
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
        // The process itself stops when `webhook` is dropped.
    }
}

/// A file holding the agent's push-notification token.
fn hook_token() -> tempfile::NamedTempFile {
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "push-secret\n").unwrap();
    token
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

/// Whether `object` is the (namespaced) ConfigMap `name`, written
/// `v1 ConfigMap <namespace>/<name>`.
fn is_config_map(object: &ObjectRef, name: &str) -> bool {
    let written = object.to_string();
    written.starts_with("v1 ConfigMap ") && written.ends_with(&format!("/{name}"))
}

/// The entries of the last report's `breakGlass.held` naming ConfigMap `name`.
fn held_entries(status: &Status, name: &str) -> Vec<Held> {
    status
        .last_report
        .iter()
        .flat_map(|report| &report.break_glass.held)
        .filter(|entry| is_config_map(&entry.object, name))
        .cloned()
        .collect()
}

/// The entries of the last report's `breakGlass.kept` naming ConfigMap `name`.
fn kept_entries(status: &Status, name: &str) -> Vec<Kept> {
    status
        .last_report
        .iter()
        .flat_map(|report| &report.break_glass.kept)
        .filter(|entry| is_config_map(&entry.object, name))
        .cloned()
        .collect()
}

/// The names of the objects that carry an Event with this reason.
fn events(s: &AgentSetup, reason: &str) -> String {
    s.kubectl(&[
        "get",
        "events",
        "--field-selector",
        &format!("reason={reason}"),
        "-o",
        "jsonpath={.items[*].involvedObject.name}",
    ])
    .stdout
    .clone()
}

/// A ConfigMap carol creates under break-glass (with one more annotation,
/// `key: value`, unless empty).
fn carol_creates(s: &AgentSetup, name: &str, ttl: &str, more_annotations: &str) {
    let manifest = testdata::rendered(
        "agent/break-glass-configmap.yaml",
        &[
            ("NAME", name),
            ("NAMESPACE", s.ns()),
            ("TTL", ttl),
            ("MORE_ANNOTATIONS", more_annotations),
        ],
    )
    .unwrap();
    apply(&s.cluster.kubeconfig(Identity::Carol), &manifest).unwrap();
}

/// carol, under break-glass with `reason` for `ttl`, sets ConfigMap
/// settings' greeting to `hotfix` with kubectl.
fn carol_sets_a_hotfix_greeting(s: &AgentSetup, reason: &str, ttl: &str) {
    let patch = serde_json::json!({
        "metadata": {"annotations": {
            "gitwarden.io/break-glass": reason,
            "gitwarden.io/break-glass-ttl": ttl,
        }},
        "data": {"greeting": "hotfix"},
    })
    .to_string();
    s.cluster
        .kubectl(
            Identity::Carol,
            &["-n", s.ns(), "patch", "configmap", "settings", "-p", &patch],
        )
        .expect_success();
}

fn configmap_field(s: &AgentSetup, name: &str, jsonpath: &str) -> String {
    s.kubectl(&[
        "get",
        "configmap",
        name,
        "-o",
        &format!("jsonpath={jsonpath}"),
    ])
    .expect_success()
    .to_owned()
}

fn settings() -> String {
    testdata::read("settings-configmap.yaml").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_created_under_break_glass_outside_git_are_held_then_deleted_unless_prune_is_disabled()
 {
    let s = AgentSetup::new("bg-created").await;
    let commit = s.commit(&[("app/settings.yaml", &settings())], "first");
    let webhook = ScopedWebhook::start(&s).await;
    let token = hook_token();
    let agent = s.start_agent(&[
        "--interval",
        "1h",
        "--leader-elect=false",
        "--hook-token-file",
        token.path().to_str().unwrap(),
    ]);
    assert!(agent.synced(&commit).await, "{}", agent.log());

    // alice may not do this; carol may, for a short window.
    s.cluster
        .kubectl(
            Identity::Alice,
            &[
                "-n",
                s.ns(),
                "create",
                "configmap",
                "hotfix",
                "--from-literal=k=by-hand",
            ],
        )
        .expect_failure();
    carol_creates(&s, "hotfix", "12s", "");
    carol_creates(&s, "keepme", "12s", "gitwarden.io/prune: disabled");
    assert_eq!(
        configmap_field(
            &s,
            "hotfix",
            "{.metadata.labels.gitwarden\\.io/break-glass}"
        ),
        "created",
        "the mutating webhook labels what break-glass creates"
    );
    let until: jiff::Timestamp = configmap_field(
        &s,
        "hotfix",
        "{.metadata.annotations.gitwarden\\.io/break-glass-until}",
    )
    .parse()
    .unwrap();

    // While the window is open the agent leaves both alone and says so.
    poke(&agent).await;
    let held = wait_for(Duration::from_secs(20), || async {
        let status = agent.status().await?;
        let held = held_entries(&status, "hotfix");
        (!held.is_empty()).then_some(held)
    })
    .await;
    let held = held.unwrap_or_else(|| panic!("hotfix never reported held:\n{}", agent.log()));
    assert!(!held[0].in_git);
    assert_eq!(held[0].until, until);
    assert!(
        jiff::Timestamp::now() < until,
        "the window closed before the test could observe it held; raise the TTL"
    );
    configmap_field(&s, "hotfix", "{.data.k}");
    let announced = wait_for(Duration::from_secs(10), || async {
        events(&s, "BreakGlassHeld")
            .contains("hotfix")
            .then_some(())
    })
    .await;
    assert!(
        announced.is_some(),
        "no BreakGlassHeld Event:\n{}",
        agent.log()
    );

    // After the window the agent wakes up on its own (interval 1h, no poke)
    // and deletes what the window created and git does not contain.
    let gone = wait_for(Duration::from_secs(40), || async {
        let out = s.kubectl(&[
            "get",
            "configmap",
            "hotfix",
            "--ignore-not-found",
            "-o",
            "name",
        ]);
        (out.success && out.stdout.trim().is_empty()).then_some(Instant::now())
    })
    .await;
    assert!(
        gone.is_some(),
        "hotfix was not deleted after its window:\n{}",
        agent.log()
    );
    let late = jiff::Timestamp::now().duration_since(until);
    eprintln!("hotfix deleted {late:?} after its window closed");
    assert!(
        jiff::Timestamp::now() > until,
        "deleted before its window closed"
    );
    let deleted_event = wait_for(Duration::from_secs(10), || async {
        events(&s, "BreakGlassDeleted")
            .contains("hotfix")
            .then_some(())
    })
    .await;
    assert!(
        deleted_event.is_some(),
        "no BreakGlassDeleted Event:\n{}",
        agent.log()
    );

    // prune: disabled keeps it, and the status says why (its window may
    // close a moment after hotfix's, so perhaps one sync later).
    let kept = wait_for(Duration::from_secs(20), || async {
        let status = agent.status().await?;
        let kept = kept_entries(&status, "keepme");
        (!kept.is_empty()).then_some((status, kept))
    })
    .await;
    let (status, kept) =
        kept.unwrap_or_else(|| panic!("keepme never reported kept:\n{}", agent.log()));
    assert!(
        kept[0].reason.contains("gitwarden.io/prune: disabled"),
        "{}",
        to_json(&status)
    );
    assert!(status.break_glass_deleted >= 1, "{}", to_json(&status));
    assert_eq!(configmap_field(&s, "keepme", "{.data.k}"), "by-hand");
    // What git contains is untouched.
    assert_eq!(configmap_field(&s, "settings", "{.data.greeting}"), "hello");
    let metrics = reqwest::get(format!("{}/metrics", agent.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("gitwarden_agent_break_glass_deleted_total") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
    drop(webhook);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_in_git_changed_under_break_glass_is_reverted_with_its_stamps_and_label_removed()
{
    let s = AgentSetup::new("bg-revert").await;
    let commit = s.commit(&[("app/settings.yaml", &settings())], "first");
    let webhook = ScopedWebhook::start(&s).await;
    let agent = s.start_agent(&["--interval", "1h", "--leader-elect=false"]);
    assert!(agent.synced(&commit).await, "{}", agent.log());

    carol_sets_a_hotfix_greeting(&s, "INC-78 wrong greeting", "12s");
    assert_eq!(
        configmap_field(
            &s,
            "settings",
            "{.metadata.labels.gitwarden\\.io/break-glass}"
        ),
        "changed",
        "the mutating webhook labels what break-glass changes"
    );
    let until: jiff::Timestamp = configmap_field(
        &s,
        "settings",
        "{.metadata.annotations.gitwarden\\.io/break-glass-until}",
    )
    .parse()
    .unwrap();

    // The drift watch sees carol's change; the window holds it.
    let announced = wait_for(Duration::from_secs(20), || async {
        events(&s, "BreakGlassHeld")
            .contains("settings")
            .then_some(())
    })
    .await;
    assert!(
        announced.is_some(),
        "no BreakGlassHeld Event:\n{}",
        agent.log()
    );
    let status = agent.status().await.unwrap();
    let held = held_entries(&status, "settings");
    assert_eq!(held.len(), 1, "{}", to_json(&status));
    assert!(held[0].in_git);
    assert!(
        jiff::Timestamp::now() < until,
        "window closed too early; raise the TTL"
    );
    assert_eq!(
        configmap_field(&s, "settings", "{.data.greeting}"),
        "hotfix"
    );

    // After it: git's value, and no trace of the window on the object.
    let reverted = wait_for(Duration::from_secs(40), || async {
        let object: Value = serde_json::from_str(
            &s.kubectl(&["get", "configmap", "settings", "-o", "json"])
                .stdout,
        )
        .ok()?;
        let annotations = object["metadata"]["annotations"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let labels = object["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        (object["data"]["greeting"] == "hello"
            && !annotations
                .keys()
                .any(|k| k.starts_with("gitwarden.io/break-glass"))
            && !labels.contains_key("gitwarden.io/break-glass"))
        .then_some(labels)
    })
    .await;
    let labels =
        reverted.unwrap_or_else(|| panic!("settings was not reverted cleanly:\n{}", agent.log()));
    assert_eq!(labels["app.kubernetes.io/managed-by"], "gitwarden");
    assert!(
        jiff::Timestamp::now() > until,
        "reverted before the window closed"
    );
    let event = wait_for(Duration::from_secs(10), || async {
        events(&s, "BreakGlassReverted")
            .contains("settings")
            .then_some(())
    })
    .await;
    assert!(
        event.is_some(),
        "no BreakGlassReverted Event:\n{}",
        agent.log()
    );
    let status = agent.status().await.unwrap();
    assert!(status.break_glass_reverted >= 1, "{}", to_json(&status));
    assert!(
        held_entries(&status, "settings").is_empty(),
        "{}",
        to_json(&status)
    );
    drop(webhook);
}

/// `diff` says what a sync would do: an object under an open window is left
/// alone (and reverted once it closes), so it shows as held, not as a change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_shows_an_object_under_an_open_window_as_held_not_as_a_change() {
    let s = AgentSetup::new("bg-diff").await;
    s.commit(&[("app/settings.yaml", &settings())], "first");
    let webhook = ScopedWebhook::start(&s).await;
    s.sync();
    carol_sets_a_hotfix_greeting(&s, "INC-79 hotfix", "10m");
    let until = configmap_field(
        &s,
        "settings",
        "{.metadata.annotations.gitwarden\\.io/break-glass-until}",
    );
    let diff = s.agent("diff", &[]);
    assert_eq!(
        diff.code, 0,
        "a sync would change nothing now:\n{}",
        diff.stdout
    );
    let held = diff
        .stdout
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "= held   v1 ConfigMap {}/settings (app/settings.yaml:",
                s.ns()
            ))
        })
        .unwrap_or_else(|| panic!("settings is not shown held:\n{}", diff.stdout));
    assert!(
        held.ends_with(&format!(
            "break-glass window open until {until}; a sync reverts it to git after that"
        )),
        "{held}"
    );
    assert!(!diff.stdout.contains("~ change"), "{}", diff.stdout);
    assert_eq!(
        configmap_field(&s, "settings", "{.data.greeting}"),
        "hotfix"
    );
    drop(webhook);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alices_denial_names_the_file_and_line_to_edit_and_the_audit_record_carries_them() {
    let s = AgentSetup::new("bg-source").await;
    // The settings are the second document of their file.
    let file = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: first\ndata:\n  a: b\n---\n{}",
        settings()
    );
    let line = 1 + file
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with("apiVersion"))
        .nth(1)
        .map(|(i, _)| i)
        .unwrap();
    let source = format!("app/settings.yaml:{line}");
    let commit = s.commit(&[("app/settings.yaml", &file)], "two objects");
    let webhook = ScopedWebhook::start(&s).await;
    let agent = s.start_agent(&["--interval", "1h", "--leader-elect=false"]);
    assert!(agent.synced(&commit).await, "{}", agent.log());
    // The agent records where each object is written in its inventory (not
    // on the object: a line moving in git would rewrite the object).
    let inventory = s
        .kubectl(&[
            "get",
            "configmaps",
            "-l",
            "gitwarden.io/inventory",
            "-o",
            "jsonpath={.items[*].data.entries}",
        ])
        .expect_success()
        .to_string();
    assert!(
        inventory.contains(&format!("@{source} v1 ConfigMap {}/settings", s.ns())),
        "{inventory}"
    );

    // The webhook reads the inventory at most once a second when an object
    // is missing from what it read: a refusal right after the sync may still
    // lack the line, the next one has it.
    let expected = format!(
        "must be made in git: edit app/settings.yaml line {line} (as of commit {}) in ",
        &commit[..12]
    );
    let refused = wait_for(Duration::from_secs(15), || async {
        let refused = s
            .cluster
            .kubectl(
                Identity::Alice,
                &["-n", s.ns(), "label", "configmap", "settings", "team=mine"],
            )
            .expect_failure()
            .to_string();
        refused.contains(&expected).then_some(refused)
    })
    .await;
    assert!(
        refused.is_some(),
        "no refusal named the line:\n{}",
        webhook.log()
    );
    let record = webhook
        .webhook
        .audit_records()
        .into_iter()
        .rev()
        .find(|r| r.user == "alice" && r.name.as_deref() == Some("settings"))
        .expect("the denial is audited");
    let recorded = record.source.expect("the record names the source");
    assert_eq!(recorded.to_string(), source);
    assert_eq!(recorded.commit.as_deref(), Some(commit.as_str()));
    drop(agent);
}
