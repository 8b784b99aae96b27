//! `gitwarden-agent sync` and `diff`: from a commit to the cluster.

use std::time::Duration;

use gitwarden_apply::Action;
use gitwarden_tests::testdata;

use crate::common::{AgentSetup, actions, json};

/// The app in git: its settings and its Deployment, in one file.
fn app() -> String {
    format!(
        "{}---\n{}",
        testdata::read("settings-configmap.yaml").unwrap(),
        testdata::read("agent/web-deployment.yaml").unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sync_applies_the_commit_and_a_resync_sends_no_writes() {
    let s = AgentSetup::new("agent-first").await;
    let commit = s.commit(
        &[("app/web.yaml", &app()), ("README.md", "not a manifest")],
        "first",
    );
    let first = s.sync();
    assert_eq!(first.commit, commit);
    assert!(
        actions(&first).iter().all(|(_, a)| *a == Action::Created),
        "{}",
        json(&first.report)
    );
    let label = s.kubectl(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.metadata.labels.app\\.kubernetes\\.io/managed-by}",
    ]);
    assert_eq!(label.expect_success(), "gitwarden");
    let again = s.sync();
    assert_eq!(again.report.write_requests, 0, "{}", json(&again.report));
    assert!(
        actions(&again).iter().all(|(_, a)| *a == Action::Unchanged),
        "{}",
        json(&again.report)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_commit_is_applied_and_a_deleted_file_is_pruned() {
    let s = AgentSetup::new("agent-prune").await;
    let extra = |name| testdata::rendered("agent/empty-configmap.yaml", &[("NAME", name)]).unwrap();
    s.commit(
        &[
            ("app/web.yaml", &app()),
            ("app/extra.yaml", &extra("extra")),
            ("app/more.yaml", &extra("more")),
        ],
        "first",
    );
    s.sync();
    s.commit(
        &[("app/web.yaml", &app().replace("hello", "bonjour"))],
        "translate",
    );
    s.remove("app/extra.yaml");
    let report = s.sync();
    assert!(
        actions(&report).contains(&(
            "v1 ConfigMap ".to_string() + s.ns() + "/settings",
            Action::Configured
        )),
        "{}",
        json(&report.report)
    );
    assert_eq!(report.report.pruned.len(), 1, "{}", json(&report.report));
    assert_eq!(
        s.kubectl(&[
            "get",
            "configmap",
            "settings",
            "-o",
            "jsonpath={.data.greeting}"
        ])
        .expect_success(),
        "bonjour"
    );
    s.kubectl(&["get", "configmap", "extra"]).expect_failure();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yaml_error_applies_nothing_and_names_the_file_and_line() {
    let s = AgentSetup::new("agent-yaml").await;
    let broken = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n  namespace: ${NAMESPACE}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [broken\n";
    s.commit(
        &[("app/web.yaml", &app()), ("app/broken.yaml", broken)],
        "broken",
    );
    let run = s.agent("sync", &[]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("app/broken.yaml:"), "{}", run.stderr);
    s.kubectl(&["get", "configmap", "settings"])
        .expect_failure();
    s.kubectl(&["get", "configmap", "ok"]).expect_failure();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_commit_is_not_applied_when_signatures_are_required() {
    let s = AgentSetup::new("agent-unsigned").await;
    s.commit(&[("app/web.yaml", &app())], "unsigned");
    let signers = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(signers.path(), "ops@example.invalid ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBj9Hi2K0VfPQ8kVP8JbDvDlUmTVd0EaN1XDlLt4Uq9V\n").unwrap();
    let run = s.agent(
        "sync",
        &["--allowed-signers", signers.path().to_str().unwrap()],
    );
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.to_lowercase().contains("sign"), "{}", run.stderr);
    s.kubectl(&["get", "configmap", "settings"])
        .expect_failure();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_exits_0_in_sync_1_with_differences_and_2_on_errors() {
    let s = AgentSetup::new("agent-diff").await;
    s.commit(&[("app/web.yaml", &app())], "first");
    let before = s.agent("diff", &[]);
    assert_eq!(before.code, 1, "{}", before.stdout);
    assert!(before.stdout.contains("+ create"), "{}", before.stdout);
    s.sync();
    assert_eq!(s.agent("diff", &[]).code, 0);
    s.commit(
        &[("app/web.yaml", &app().replace("replicas: 2", "replicas: 3"))],
        "scale",
    );
    let changed = s.agent("diff", &[]);
    assert_eq!(changed.code, 1);
    assert!(
        changed.stdout.contains(r#""path":"/spec/replicas""#),
        "{}",
        changed.stdout
    );
    assert_eq!(
        s.kubectl(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}"
        ])
        .expect_success(),
        "2",
        "diff wrote"
    );
    let unreachable = s.agent("diff", &["--branch", "no-such-branch"]);
    assert_eq!(unreachable.code, 2, "{}", unreachable.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_break_glass_change_is_left_alone_until_its_window_closes_then_reverted() {
    let s = AgentSetup::new("agent-bg").await;
    s.commit(&[("app/web.yaml", &app())], "first");
    s.sync();
    // What the webhook lets carol do and stamps (no webhook in this cluster).
    // Long enough for the patch and one sync even on a loaded machine.
    let window = 15;
    let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(window);
    let patch = format!(
        r#"{{"metadata":{{"annotations":{{"gitwarden.io/break-glass":"INC-9","gitwarden.io/break-glass-by":"carol","gitwarden.io/break-glass-at":"{}","gitwarden.io/break-glass-until":"{until}"}}}},"spec":{{"replicas":5}}}}"#,
        jiff::Timestamp::now()
    );
    s.kubectl(&["patch", "deployment", "web", "--type=merge", "-p", &patch])
        .expect_success();
    let held = s.sync();
    let web = format!("apps/v1 Deployment {}/web", s.ns());
    assert!(
        actions(&held)
            .iter()
            .any(|(o, a)| *o == web && matches!(a, Action::BreakGlass(_))),
        "{}",
        json(&held.report)
    );
    assert_eq!(
        s.kubectl(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}"
        ])
        .expect_success(),
        "5"
    );

    let left = until
        .duration_since(jiff::Timestamp::now())
        .as_secs_f64()
        .max(0.0);
    tokio::time::sleep(Duration::from_secs_f64(left + 1.0)).await;
    let reverted = s.sync();
    assert!(
        !actions(&reverted)
            .iter()
            .any(|(o, a)| *o == web && matches!(a, Action::BreakGlass(_))),
        "{}",
        json(&reverted.report)
    );
    assert_eq!(
        s.kubectl(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}"
        ])
        .expect_success(),
        "2"
    );
    let annotations = s.kubectl(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.metadata.annotations}",
    ]);
    assert!(
        !annotations
            .expect_success()
            .contains("gitwarden.io/break-glass"),
        "{}",
        annotations.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_repository_keeps_the_cluster_and_says_where() {
    let s = AgentSetup::new("agent-gone").await;
    s.commit(&[("app/web.yaml", &app())], "first");
    s.sync();
    std::fs::remove_dir_all(s.repo.path().join(".git")).unwrap();
    let run = s.agent("sync", &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains(&s.repo.path().display().to_string()),
        "{}",
        run.stderr
    );
    s.kubectl(&["get", "deployment", "web"]).expect_success();
}

/// A Role and the RoleBinding to it, added in one commit: the binding's
/// dry-run cannot compare permissions with a Role that does not exist yet, so
/// this only passes because the shipped ClusterRole grants `bind` and
/// `escalate` (deploy/base/rbac-agent.yaml; the agent tests run with it).
fn rbac() -> String {
    testdata::read("agent/deployer-rbac.yaml").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_and_its_binding_added_in_one_commit_are_applied_with_the_shipped_rbac() {
    let s = AgentSetup::new("agent-rbac").await;
    s.commit(&[("rbac/deployer.yaml", &rbac())], "rbac from git");
    let report = s.sync();
    assert!(
        actions(&report).iter().all(|(_, a)| *a == Action::Created),
        "{}",
        json(&report.report)
    );
    let bound = s.kubectl(&[
        "get",
        "rolebinding",
        "deployer",
        "-o",
        "jsonpath={.roleRef.name}",
    ]);
    assert_eq!(bound.expect_success(), "deployer");
}

/// `count` ConfigMaps in one file: more of one kind in one namespace than
/// the plan reads one by one, so the agent reads their live state with a
/// LIST.
fn many_config_maps(count: usize) -> String {
    (0..count)
        .map(|i| {
            let (name, index) = (format!("cm-{i:02}"), i.to_string());
            let vars = [("NAME", name.as_str()), ("INDEX", index.as_str())];
            "---\n".to_owned()
                + &testdata::rendered("agent/numbered-configmap.yaml", &vars).unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_of_many_objects_read_by_one_list_rewrites_only_what_changed_outside_git() {
    let s = AgentSetup::new("agent-many").await;
    s.commit(&[("app/many.yaml", &many_config_maps(40))], "many");
    let first = s.sync();
    assert_eq!(first.report.write_requests, 41, "{}", json(&first.report));
    s.kubectl(&[
        "patch",
        "configmap",
        "cm-07",
        "--type=merge",
        "-p",
        r#"{"data":{"index":"changed"}}"#,
    ])
    .expect_success();
    s.kubectl(&["delete", "configmap", "cm-21"])
        .expect_success();

    let again = s.sync();
    let object = |name: &str| format!("v1 ConfigMap {}/{name}", s.ns());
    let changed: Vec<(String, Action)> = actions(&again)
        .into_iter()
        .filter(|(_, action)| *action != Action::Unchanged)
        .collect();
    assert_eq!(
        changed,
        [
            (object("cm-07"), Action::Configured),
            (object("cm-21"), Action::Created)
        ],
        "{}",
        json(&again.report)
    );
    assert_eq!(
        s.kubectl(&["get", "configmap", "cm-07", "-o", "jsonpath={.data.index}"])
            .expect_success(),
        "7"
    );
    s.kubectl(&["get", "configmap", "cm-21"]).expect_success();
    let third = s.sync();
    assert_eq!(third.report.write_requests, 0, "{}", json(&third.report));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_and_its_new_service_account_are_applied_from_one_commit() {
    let s = AgentSetup::new("agent-pod-sa").await;
    s.commit(
        &[(
            "app/worker.yaml",
            &testdata::read("agent/worker-pod.yaml").unwrap(),
        )],
        "a worker and its account",
    );
    let report = s.sync();
    assert!(
        actions(&report).iter().all(|(_, a)| *a == Action::Created),
        "{}",
        json(&report.report)
    );
    let account = s.kubectl(&[
        "get",
        "pod",
        "worker",
        "-o",
        "jsonpath={.spec.serviceAccountName}",
    ]);
    assert_eq!(account.expect_success(), "worker");
}
