//! `kubectl gitwarden`, run by the real kubectl's plugin mechanism (the
//! built `kubectl-gitwarden` on `PATH`), with people's own kubeconfigs:
//! `status` and `audit` authorized by RBAC through TokenReview and
//! SubjectAccessReview, `break-glass` opening a window carol can use, and
//! `why` telling managed, commit, window and denials.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gitwarden_tests::git::Repo;
use gitwarden_tests::kubectl::run_plugin as plugin;
use gitwarden_tests::{Identity, wait_for};
use serde_json::Value;

use crate::common::Setup;

/// `gitwarden-agent run` against a repository, its /status behind RBAC.
struct Agent {
    child: Child,
    url: String,
    log: PathBuf,
    _cache: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- agent log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

fn start_agent(s: &Setup, repo: &Repo) -> Agent {
    let cache = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = cache.path().join("agent.log");
    let child = Command::new(gitwarden_tests::binaries::binary("gitwarden-agent").unwrap())
        .arg("run")
        .args(["--repo", &repo.url()])
        .arg("--cache-dir")
        .arg(cache.path().join("cache"))
        .arg("--kubeconfig")
        .arg(s.gitwarden.agent_kubeconfig())
        .args([
            "--inventory-namespace",
            s.ns(),
            "--default-namespace",
            s.ns(),
        ])
        .args(["--lease-namespace", s.ns()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admission-guard=false", "--interval", "1h"])
        .args(["--status-auth", "kubernetes"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Agent {
        child,
        url: format!("http://127.0.0.1:{port}"),
        log,
        _cache: cache,
    }
}

/// A repository holding the ConfigMap `settings` of the test namespace.
fn repo_with_settings(s: &Setup) -> (Repo, String) {
    let repo = Repo::new().unwrap();
    repo.write(
        "apps/settings.yaml",
        &format!(
            "# the app's settings\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: {}\ndata:\n  k: from-git\n",
            s.ns()
        ),
    )
    .unwrap();
    let commit = repo.commit_all("settings").unwrap();
    (repo, commit)
}

/// The flags that point the plugin at the loopback webhook and the agent.
fn endpoints(s: &Setup, agent: &Agent) -> Vec<String> {
    vec![
        "--webhook-url".into(),
        s.gitwarden.url.clone(),
        "--webhook-ca".into(),
        s.gitwarden.ca_file().display().to_string(),
        "--agent-url".into(),
        agent.url.clone(),
    ]
}

fn with<'a>(base: &'a [String], args: &[&'a str]) -> Vec<&'a str> {
    args.iter()
        .copied()
        .chain(base.iter().map(String::as_str))
        .collect()
}

async fn wait_for_revision(s: &Setup, agent: &Agent, commit: &str) {
    let base = endpoints(s, agent);
    let alice = s.cluster.kubeconfig(Identity::Alice);
    let seen = wait_for(Duration::from_secs(60), || {
        let out = plugin(&alice, &with(&base, &["status", "-o", "json"]));
        async move {
            let status: Value = serde_json::from_str(&out.stdout).ok()?;
            (status["revision"].as_str() == Some(commit) && status["lastSuccess"].is_string())
                .then_some(())
        }
    })
    .await;
    assert!(
        seen.is_some(),
        "the agent did not apply {commit} within 60s"
    );
}

/// A service account in kube-public (unprotected, so people may make one
/// while the webhook enforces) and a kubeconfig with its real token.
async fn service_account(s: &Setup, name: &str) -> PathBuf {
    s.cluster
        .mint_service_account_token("kube-public", name)
        .await
        .unwrap()
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_audit_answer_whom_rbac_allows_through_kubectl() {
    let s = Setup::new("kplugin-rbac").await;
    let (repo, commit) = repo_with_settings(&s);
    let agent = start_agent(&s, &repo);
    wait_for_revision(&s, &agent, &commit).await;
    let base = endpoints(&s, &agent);
    let alice = s.cluster.kubeconfig(Identity::Alice);

    // status: a table for people and the agent's document for programs.
    let table = plugin(&alice, &with(&base, &["status"]));
    let text = table.expect_success();
    for word in ["FIELD", "REVISION", &commit, "LAST SUCCESS", "LEADER"] {
        assert!(text.contains(word), "{word} missing:\n{text}");
    }
    let json: Value = serde_json::from_str(
        plugin(&alice, &with(&base, &["status", "-o", "json"])).expect_success(),
    )
    .unwrap();
    assert_eq!(json["revision"], commit.as_str());

    // A denial to read back.
    s.kubectl(
        Identity::Alice,
        &[
            "patch",
            "configmap",
            "settings",
            "-p",
            r#"{"data":{"k":"by-hand"}}"#,
        ],
    )
    .expect_failure();

    // Readers bound to the shipped ClusterRoles, outsiders not.
    let reader_name = format!("{}-reader", s.ns());
    let outsider_name = format!("{}-outsider", s.ns());
    let reader = service_account(&s, &reader_name).await;
    let outsider = service_account(&s, &outsider_name).await;
    let roles = std::fs::read_to_string(
        gitwarden_tests::cluster::repo_root().join("deploy/base/rbac-readers.yaml"),
    )
    .unwrap();
    s.agent_apply(&roles);
    for role in ["audit", "status"] {
        s.agent_apply(&format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {reader_name}-{role}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: gitwarden-{role}-reader\nsubjects:\n  - kind: ServiceAccount\n    name: {reader_name}\n    namespace: kube-public\n"
        ));
    }

    let ns = s.ns().to_owned();
    let audit_args = [
        "audit",
        "-n",
        ns.as_str(),
        "--user",
        "alice",
        "--since",
        "1h",
    ];
    let allowed = wait_for(Duration::from_secs(20), || {
        let out = plugin(&reader, &with(&base, &audit_args));
        async move { out.success.then_some(out) }
    })
    .await
    .expect("the reader bound to gitwarden-audit-reader was not let in within 20s");
    for word in [
        "TIME",
        "DECISION",
        "alice",
        "denied",
        "configmaps",
        "settings",
        "not_from_git",
    ] {
        assert!(
            allowed.stdout.contains(word),
            "{word} missing:\n{}",
            allowed.stdout
        );
    }
    let records: Vec<Value> = serde_json::from_str(
        plugin(
            &reader,
            &with(&base, &[&audit_args[..], &["-o", "json"]].concat()),
        )
        .expect_success(),
    )
    .unwrap();
    assert!(!records.is_empty());
    assert!(
        records
            .iter()
            .all(|r| r["user"] == "alice" && r["namespace"] == ns.as_str())
    );
    plugin(&reader, &with(&base, &["status"])).expect_success();

    // The outsider holds a valid token, but RBAC does not let it read.
    let refused = plugin(&outsider, &with(&base, &audit_args));
    let err = refused.expect_failure();
    assert!(err.contains("403"), "{err}");
    assert!(
        err.contains(&format!(
            "system:serviceaccount:kube-public:{outsider_name}"
        )) && err.contains("nonResourceURLs [\"/audit\"]"),
        "the refusal says who and what to grant: {err}"
    );
    let err = plugin(&outsider, &with(&base, &["status"]))
        .expect_failure()
        .to_string();
    assert!(err.contains("403") && err.contains("/status"), "{err}");

    // A token the API server does not know is not authenticated at all.
    let err = plugin(
        &alice,
        &with(&base, &["audit", "--token", "not-a-real-token"]),
    )
    .expect_failure()
    .to_string();
    assert!(err.contains("401"), "{err}");

    // Nobody reads /audit or /status without a credential.
    let resp = s
        .gitwarden
        .http()
        .get(format!("{}/audit", s.gitwarden.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = reqwest::get(format!("{}/status", agent.url)).await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_opens_a_window_carol_uses_and_why_explains_the_object() {
    let s = Setup::new("kplugin-bg").await;
    let (repo, commit) = repo_with_settings(&s);
    let agent = start_agent(&s, &repo);
    wait_for_revision(&s, &agent, &commit).await;
    let base = endpoints(&s, &agent);
    let carol = s.cluster.kubeconfig(Identity::Carol);
    let alice = s.cluster.kubeconfig(Identity::Alice);
    let ns = s.ns().to_owned();

    // alice is refused: a denial for `why` to show.
    s.kubectl(
        Identity::Alice,
        &[
            "patch",
            "configmap",
            "settings",
            "-p",
            r#"{"data":{"k":"by-hand"}}"#,
        ],
    )
    .expect_failure();

    // Before: managed, from git, no window.
    let before = plugin(
        &alice,
        &with(&base, &["why", "configmap/settings", "-n", &ns]),
    );
    let text = before.expect_success();
    assert!(text.contains("MANAGED") && text.contains("yes"), "{text}");
    assert!(text.contains(&commit), "the commit is named:\n{text}");
    assert!(
        text.contains("BREAK-GLASS  none") || text.contains("none"),
        "{text}"
    );
    assert!(
        text.contains("LAST DENIALS") && text.contains("alice"),
        "{text}"
    );

    // alice cannot break glass (not in the group): the webhook's message.
    let err = plugin(
        &alice,
        &with(
            &base,
            &[
                "break-glass",
                "cm/settings",
                "-n",
                &ns,
                "--reason",
                "in a hurry",
            ],
        ),
    )
    .expect_failure()
    .to_string();
    assert!(err.contains("gitwarden:break-glass"), "{err}");

    // carol opens a 30m window in one step.
    let out = plugin(
        &carol,
        &with(
            &base,
            &[
                "break-glass",
                "configmap/settings",
                "-n",
                &ns,
                "--reason",
                "INC-77 cache stampede",
                "--ttl",
                "30m",
                "-o",
                "json",
            ],
        ),
    );
    let window: Value = serde_json::from_str(out.expect_success()).unwrap();
    let w = &window["breakGlass"];
    assert_eq!(w["open"], true, "{window:#}");
    assert_eq!(w["by"], "carol");
    assert_eq!(w["reason"], "INC-77 cache stampede");
    let at: jiff::Timestamp = w["at"].as_str().unwrap().parse().unwrap();
    let until: jiff::Timestamp = w["until"].as_str().unwrap().parse().unwrap();
    assert_eq!(until.duration_since(at).as_secs(), 30 * 60);

    // The window is real: carol's plain edit now passes, alice's still not.
    s.kubectl(
        Identity::Carol,
        &[
            "patch",
            "configmap",
            "settings",
            "-p",
            r#"{"data":{"k":"hotfix"}}"#,
        ],
    )
    .expect_success();
    assert_eq!(s.configmap_field("settings", "{.data.k}"), "hotfix");
    s.kubectl(
        Identity::Alice,
        &[
            "patch",
            "configmap",
            "settings",
            "-p",
            r#"{"data":{"k":"mine"}}"#,
        ],
    )
    .expect_failure();
    let records = s.audit("&decision=break-glass").await;
    // The opening and carol's edit in the window: each one is recorded.
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(
        records.iter().all(|r| r.user == "carol"
            && r.break_glass_reason.as_deref() == Some("INC-77 cache stampede"))
    );

    // why: managed, the commit, the open window, the denials.
    let out = plugin(
        &carol,
        &with(
            &base,
            &[
                "why",
                "configmap/settings",
                "-n",
                &ns,
                "--inventory-namespace",
                &ns,
                "-o",
                "json",
            ],
        ),
    );
    let why: Value = serde_json::from_str(out.expect_success()).unwrap();
    assert_eq!(why["managed"], true, "{why:#}");
    assert_eq!(why["managedBy"]["label"], true);
    assert_eq!(why["revision"], commit.as_str());
    assert_eq!(why["breakGlass"]["open"], true);
    assert_eq!(why["breakGlass"]["by"], "carol");
    let denials = why["denials"].as_array().unwrap();
    assert!(denials.len() >= 2, "{why:#}");
    assert!(
        denials
            .iter()
            .all(|d| d["user"] == "alice" && d["name"] == "settings")
    );
    // Where it is written in git, from the agent's inventory (the document
    // starts on line 2, under a comment).
    assert_eq!(why["source"]["path"], "apps/settings.yaml", "{why:#}");
    assert_eq!(why["source"]["line"], 2, "{why:#}");
    let text = plugin(
        &carol,
        &with(
            &base,
            &[
                "why",
                "cm/settings",
                "-n",
                &ns,
                "--inventory-namespace",
                &ns,
            ],
        ),
    );
    let text = text.expect_success();
    assert!(
        text.contains("open until") && text.contains("by carol"),
        "{text}"
    );
    assert!(text.contains("apps/settings.yaml:2"), "{text}");

    // An object gitwarden does not manage says so.
    let out = plugin(&carol, &with(&base, &["why", "namespace/kube-public"]));
    assert!(
        out.expect_success()
            .contains("no: not applied by gitwarden"),
        "{}",
        out.stdout
    );

    // `kubectl gitwarden --help` works through kubectl too.
    let help = plugin(&carol, &["--help"]);
    assert!(
        help.expect_success().contains("break-glass"),
        "{}",
        help.stdout
    );
}
