//! README's first command, run as a user runs it: `scripts/demo --dir DIR
//! --detach` builds the images, starts a cluster with a real node, installs
//! gitwarden with `kubectl apply -k examples/gitwarden` and walks through what
//! gitwarden does. The test reads the walk-through as the user would, then
//! uses what the demo leaves running (DIR's kubeconfigs, the `repo/` clone,
//! `DIR/down`) and asserts the cluster's state. Needs root, like the node.

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;
use std::time::Duration;

use gitwarden_tests::cluster::repo_root;
use gitwarden_tests::git::try_git;
use gitwarden_tests::kubectl::{KubectlOutput, run_kubectl};
use gitwarden_tests::node::run_host;
use gitwarden_tests::wait::wait_blocking;

/// The demo left running in a directory of its own; stopped with `DIR/down`
/// when the test ends, passed or not.
struct Demo {
    dir: tempfile::TempDir,
    transcript: String,
}

impl Demo {
    fn start() -> Demo {
        let dir = tempfile::Builder::new()
            .prefix("gitwarden-demo-test-")
            .tempdir()
            .unwrap();
        let run = run_host(
            Command::new(repo_root().join("scripts/demo"))
                .arg("--dir")
                .arg(dir.path())
                .arg("--detach"),
        );
        let demo = Demo {
            dir,
            transcript: run.stdout.clone(),
        };
        assert!(
            run.success,
            "scripts/demo failed:\n--- stdout\n{}\n--- stderr\n{}",
            run.stdout, run.stderr
        );
        demo
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn kubectl(&self, who: &str, args: &[&str]) -> KubectlOutput {
        run_kubectl(&self.path(&format!("{who}.kubeconfig")), args)
    }

    /// The transcript's section under `== HEADING`, up to the next one.
    fn section(&self, heading: &str) -> &str {
        let marker = format!("== {heading}");
        let start = self
            .transcript
            .find(&marker)
            .unwrap_or_else(|| panic!("no step {heading:?} in:\n{}", self.transcript));
        let rest = &self.transcript[start + marker.len()..];
        &rest[..rest.find("\n== ").unwrap_or(rest.len())]
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let down = self.path("down");
        if down.exists() {
            let _ = Command::new(down).output();
        } else {
            let _ = Command::new(repo_root().join("tests/cluster/down"))
                .arg(self.dir.path())
                .output();
        }
    }
}

fn assert_contains(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

#[test]
fn the_demo_installs_gitwarden_on_the_node_and_leaves_a_cluster_that_follows_its_repo() {
    assert!(
        running_as_root(),
        "the demo runs a real node: run the tests as root"
    );
    let demo = Demo::start();

    // What the user was shown: the one install command and its result.
    let install = demo.section("Installing gitwarden: one command");
    assert_contains(
        install,
        &[
            "$ kubectl apply -k examples/gitwarden",
            "job.batch/gitwarden-certs-bootstrap created",
            "enforcing after",
            "synced after",
            "gitwarden-webhook-0",
            "gitwarden-webhook-1",
            "hello from git (from web-",
        ],
    );
    // The app's pods really run on the node: two Running, Ready.
    let ready_pods = install
        .lines()
        .filter(|l| {
            l.trim_start().starts_with("web-") && l.contains("1/1") && l.contains("Running")
        })
        .count();
    assert_eq!(ready_pods, 2, "{install}");

    // Everything the demo showed before it ran on a node is still shown.
    assert_contains(
        demo.section("alice, a cluster-admin, tries to change production by hand"),
        &["denied", "edit app/web.yaml line"],
    );
    assert_contains(
        demo.section("Even system:masters is refused"),
        &["delete of configmaps \"web-settings\"", "denied"],
    );
    assert_contains(
        demo.section("Nor can anyone reach into gitwarden's own pods"),
        &["nobody but gitwarden may exec"],
    );
    assert!(!demo.transcript.contains("eyJ"), "a token leaked");
    assert_contains(
        demo.section("Looking is fine, and so are dry runs"),
        &["+  replicas: 3"],
    );
    assert_contains(
        demo.section("carol, on call and in gitwarden:break-glass"),
        &[
            "WINDOW     open",
            "break-glass change to Deployment demo/web by carol allowed",
            "gitwarden.io/break-glass-by: carol",
        ],
    );
    assert_contains(
        demo.section("The agent leaves a break-glass change alone"),
        &["4/4"],
    );
    assert_contains(
        demo.section("Outside the break-glass group"),
        &["only members of \"gitwarden:break-glass\""],
    );
    let audit = demo.section("Every refusal and every break-glass change is in the audit log");
    assert_contains(
        audit,
        &[
            "not_from_git",
            "break_glass_not_allowed_group",
            "break-glass",
        ],
    );
    assert_eq!(
        audit.matches(": OK").count(),
        2,
        "both replicas' chains verified:\n{audit}"
    );
    assert_contains(
        demo.section("The only way in: a commit"),
        &[
            "~ change v1 ConfigMap demo/web-settings (app/web.yaml:5)",
            "hello from a reviewed commit",
        ],
    );
    assert_contains(
        demo.section("Deleting the webhook configuration does not open the door"),
        &["It was back", "gitwarden   3"],
    );
    assert_contains(
        demo.section("Nor can anyone add to the admission chain"),
        &["No resources found", "removed", "freeze-configmaps"],
    );

    // The contract of --detach: kubeconfigs, a clone whose push the agent
    // picks up, and down.
    for who in ["admin", "alice", "carol"] {
        assert!(demo.path(&format!("{who}.kubeconfig")).is_file(), "{who}");
    }
    let repo = demo.path("repo");
    let web = repo.join("app/web.yaml");
    let text = std::fs::read_to_string(&web).unwrap();
    std::fs::write(&web, text.replace("log-level: info", "log-level: debug")).unwrap();
    try_git(&repo, &["commit", "-q", "-am", "More logging"]).unwrap();
    try_git(&repo, &["push", "-q"]).unwrap();
    let applied = wait_blocking(Duration::from_secs(120), || {
        let out = demo.kubectl(
            "alice",
            &[
                "-n",
                "demo",
                "get",
                "configmap",
                "web-settings",
                "-o",
                "jsonpath={.data.log-level}",
            ],
        );
        (out.stdout == "debug").then_some(())
    });
    assert!(
        applied.is_some(),
        "the pushed commit was not applied within 120s"
    );

    // alice is still refused after all of it.
    let refused = demo.kubectl("alice", &["-n", "demo", "delete", "service", "web"]);
    assert!(
        !refused.success && refused.stderr.contains("gitwarden"),
        "{refused:?}"
    );

    let down = run_host(&mut Command::new(demo.path("down")));
    assert!(down.success, "DIR/down failed: {}", down.stderr);
    assert!(!demo.path("admin.kubeconfig").exists());
    assert!(
        !demo.path("node").exists(),
        "the node's state is left behind"
    );
    assert!(!demo.path("images").exists());
}

/// Whether this process runs as root (effective uid 0, from /proc).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
