//! Repositories with kustomizations, end to end: the agent renders them with
//! the pinned kustomize (built by `tests/tools/build kustomize`) the way
//! Flux's kustomize-controller builds them, applies what was rendered, names
//! the resource file and kustomization in errors, and refuses everything
//! that could bring in content from outside the verified commit.

use gitwarden_apply::Action;
use gitwarden_tests::{testdata, tools};

use crate::common::{AgentSetup, actions};

/// The overlay and base fixtures (tests/testdata/agent/kustomize), as
/// (path in the repository, text).
fn overlay_files() -> Vec<(&'static str, String)> {
    [
        "base/kustomization.yaml",
        "base/settings.yaml",
        "base/web.yaml",
        "overlays/prod/kustomization.yaml",
        "overlays/prod/replicas.yaml",
    ]
    .into_iter()
    .map(|path| {
        let text = testdata::read(&format!("agent/kustomize/{path}")).unwrap();
        (path, text)
    })
    .collect()
}

fn commit(s: &AgentSetup, files: &[(&str, String)], message: &str) -> String {
    let borrowed: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
    s.commit(&borrowed, message)
}

/// `gitwarden-agent SUBCOMMAND --kustomize … EXTRA`.
fn agent(s: &AgentSetup, subcommand: &str, extra: &[&str]) -> crate::common::Run {
    let kustomize = tools::tool("kustomize").unwrap();
    let mut args = vec!["--kustomize", kustomize.to_str().unwrap()];
    args.extend_from_slice(extra);
    s.agent(subcommand, &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlay_is_rendered_applied_and_then_resynced_without_a_write() {
    let s = AgentSetup::new("kustomize").await;
    commit(&s, &overlay_files(), "base and overlay");
    let run = agent(&s, "sync", &["-o", "json", "--path", "overlays/prod"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let synced = run.synced();
    // Health is judged on rendered workloads as on any other: the patched
    // Deployment (no node runs its pods here) is reported, not ready.
    let web = synced
        .health
        .iter()
        .find(|h| h.object.ends_with("/prod-web"))
        .unwrap_or_else(|| panic!("no health for prod-web: {:?}", synced.health));
    assert_ne!(
        web.health.status,
        gitwarden_agent::health::HealthStatus::Current,
        "{web:?}"
    );
    let created: Vec<String> = actions(&synced)
        .into_iter()
        .filter(|(_, a)| *a == Action::Created)
        .map(|(o, _)| o)
        .collect();
    assert_eq!(created.len(), 4, "{created:?}");
    // The prefix, the namespace, the label and the patch are kustomize's work.
    let replicas = s
        .kubectl(&[
            "get",
            "deployment",
            "prod-web",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .expect_success()
        .to_string();
    assert_eq!(replicas, "3");
    let labels = s
        .kubectl(&[
            "get",
            "configmap",
            "prod-settings",
            "-o",
            "jsonpath={.metadata.labels.env}",
        ])
        .expect_success()
        .to_string();
    assert_eq!(labels, "prod");
    // Build annotations never reach the cluster.
    let annotations = s
        .kubectl(&[
            "get",
            "configmap",
            "prod-settings",
            "-o",
            "jsonpath={.metadata.annotations}",
        ])
        .expect_success()
        .to_string();
    assert!(
        !annotations.contains("config.kubernetes.io/origin"),
        "{annotations}"
    );
    // The objects remember their resource file and the kustomization.
    let location = synced
        .report
        .applied
        .iter()
        .find(|o| o.object.name == "prod-limits")
        .map(|o| o.location.to_string());
    assert_eq!(
        location.as_deref(),
        Some("base/settings.yaml:8 (kustomization overlays/prod)")
    );

    let again = agent(&s, "sync", &["-o", "json", "--path", "overlays/prod"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.synced().report.write_requests, 0);
    let diff = agent(&s, "diff", &["--path", "overlays/prod"]);
    assert_eq!(
        diff.code, 0,
        "in sync, diff says:\n{}\n{}",
        diff.stdout, diff.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_base_is_refused_naming_the_kustomization_and_nothing_is_applied() {
    let s = AgentSetup::new("kustomize-remote").await;
    let mut files = overlay_files();
    files.push((
        "overlays/prod/kustomization.yaml",
        "resources:\n  - ../../base\n  - https://github.com/example/gitops//base?ref=main\nnamespace: ${NAMESPACE}\n"
            .to_string(),
    ));
    commit(&s, &files, "a remote base");
    let run = agent(&s, "sync", &["--path", "overlays/prod"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains(
            "kustomization overlays/prod/kustomization.yaml: resources[1] \"https://github.com/example/gitops//base?ref=main\": remote content is not allowed"
        ),
        "{}",
        run.stderr
    );
    assert!(!s.kubectl(&["get", "configmap", "settings"]).success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_charts_are_refused_before_kustomize_runs() {
    let s = AgentSetup::new("kustomize-helm").await;
    commit(
        &s,
        &[(
            "kustomization.yaml",
            "helmCharts:\n  - name: podinfo\n    repo: https://stefanprodan.github.io/podinfo\n"
                .to_string(),
        )],
        "a chart",
    );
    let run = agent(&s, "sync", &[]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains(
            "kustomization kustomization.yaml: helmCharts: Helm chart inflation is not allowed"
        ),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_object_in_a_base_names_its_file_line_and_the_kustomization() {
    let s = AgentSetup::new("kustomize-invalid").await;
    let mut files = overlay_files();
    files.push((
        "base/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_A_Valid_Name\n".to_string(),
    ));
    commit(&s, &files, "an invalid name");
    let run = agent(&s, "sync", &["--path", "overlays/prod"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains("base/settings.yaml:6 (kustomization overlays/prod)"),
        "{}",
        run.stderr
    );
    assert!(!s.kubectl(&["get", "configmap", "prod-settings"]).success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_root_kustomization_nested_ones_are_built_as_units_beside_plain_files() {
    let s = AgentSetup::new("kustomize-units").await;
    let mut files = overlay_files();
    // A plain manifest beside the kustomizations, as in a Flux repository.
    files.push((
        "plain.yaml",
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\n  namespace: {}\ndata:\n  a: b\n", s.ns()),
    ));
    // Point the base at the test namespace too: built as a unit of its own here.
    files.push((
        "base/kustomization.yaml",
        testdata::read("agent/kustomize/base/kustomization.yaml").unwrap()
            + "namespace: ${NAMESPACE}\n",
    ));
    // The overlay uses the base too: a unit of its own, its objects apart by
    // their prefix.
    commit(&s, &files, "a Flux-style repository");
    let run = agent(&s, "sync", &["-o", "json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    for name in ["plain", "settings", "prod-settings"] {
        s.kubectl(&["get", "configmap", name]).expect_success();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sops_encrypted_secret_in_a_base_is_decrypted_after_the_overlay_renames_it() {
    let s = AgentSetup::new("kustomize-sops").await;
    let scratch = tempfile::tempdir().unwrap();
    let (key, recipient) = tools::age_key(scratch.path(), "cluster").unwrap();
    let plain = scratch.path().join("secret.yaml");
    std::fs::write(
        &plain,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: database\nstringData:\n  password: from-sops\n",
    )
    .unwrap();
    let encrypted = tools::sops_encrypt(
        &plain,
        &[
            "--age",
            &recipient,
            "--encrypted-regex",
            "^(data|stringData)$",
        ],
    )
    .unwrap();
    let mut files = overlay_files();
    files.push(("base/secret.yaml", encrypted));
    files.push((
        "base/kustomization.yaml",
        testdata::read("agent/kustomize/base/kustomization.yaml")
            .unwrap()
            .replace("  - web.yaml\n", "  - web.yaml\n  - secret.yaml\n"),
    ));
    commit(&s, &files, "an encrypted secret in the base");
    let run = agent(
        &s,
        "sync",
        &[
            "--path",
            "overlays/prod",
            "--sops-age-key-file",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let stored = s
        .kubectl(&[
            "get",
            "secret",
            "prod-database",
            "-o",
            "jsonpath={.data.password}",
        ])
        .expect_success()
        .to_string();
    use base64::Engine as _;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(stored.trim())
            .unwrap(),
        b"from-sops"
    );
    assert!(!run.stderr.contains("from-sops") && !run.stdout.contains("from-sops"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_removed_from_the_base_is_shown_by_diff_then_pruned() {
    let s = AgentSetup::new("kustomize-prune").await;
    commit(&s, &overlay_files(), "base and overlay");
    let run = agent(&s, "sync", &["--path", "overlays/prod"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    s.kubectl(&["get", "configmap", "prod-limits"])
        .expect_success();

    let mut files = overlay_files();
    files.push((
        "base/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  greeting: hello\n"
            .to_string(),
    ));
    commit(&s, &files, "limits leave the base");
    let diff = agent(&s, "diff", &["--path", "overlays/prod"]);
    assert_eq!(diff.code, 1, "{}\n{}", diff.stdout, diff.stderr);
    assert!(diff.stdout.contains("prod-limits"), "{}", diff.stdout);
    let run = agent(&s, "sync", &["-o", "json", "--path", "overlays/prod"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let pruned: Vec<String> = run
        .synced()
        .report
        .pruned
        .iter()
        .map(|o| o.name.clone())
        .collect();
    assert_eq!(pruned, ["prod-limits"]);
    assert!(!s.kubectl(&["get", "configmap", "prod-limits"]).success);
    s.kubectl(&["get", "configmap", "prod-settings"])
        .expect_success();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_of_the_same_commit_reuses_the_render_and_a_new_commit_renders_again() {
    use std::os::unix::fs::PermissionsExt as _;
    let s = AgentSetup::new("kustomize-cache").await;
    // A kustomize that counts its runs, then runs the real one.
    let scratch = tempfile::tempdir().unwrap();
    let runs = scratch.path().join("runs");
    let wrapper = scratch.path().join("kustomize");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho run >> {}\nexec {} \"$@\"\n",
            runs.display(),
            tools::tool("kustomize").unwrap().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sync = || {
        let run = s.agent(
            "sync",
            &[
                "--kustomize",
                wrapper.to_str().unwrap(),
                "--path",
                "overlays/prod",
            ],
        );
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    };
    let count = || {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .count()
    };

    commit(&s, &overlay_files(), "base and overlay");
    sync();
    sync();
    assert_eq!(
        count(),
        1,
        "the second sync of the commit ran kustomize again"
    );
    let mut files = overlay_files();
    files.push((
        "overlays/prod/replicas.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 4\n"
            .to_string(),
    ));
    commit(&s, &files, "four replicas");
    sync();
    assert_eq!(count(), 2);
    let replicas = s
        .kubectl(&[
            "get",
            "deployment",
            "prod-web",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .expect_success()
        .to_string();
    assert_eq!(replicas, "4");
}
