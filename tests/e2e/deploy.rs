//! The install manifests are accepted by a real API server.

use gitwarden_tests::cluster::repo_root;
use gitwarden_tests::{Identity, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_base_is_accepted_by_a_server_side_dry_run() {
    let cluster = TestCluster::shared();
    // A server-side dry run cannot create the namespace the rest lives in.
    let created = cluster.kubectl(
        Identity::Admin,
        &["create", "namespace", "gitwarden-system"],
    );
    assert!(
        created.success || created.stderr.contains("AlreadyExists"),
        "{}",
        created.stderr
    );
    let base = repo_root().join("deploy/base");
    let out = cluster.kubectl(
        Identity::Admin,
        &["apply", "--dry-run=server", "-k", base.to_str().unwrap()],
    );
    let stdout = out.expect_success();
    for object in [
        "statefulset.apps/gitwarden-webhook",
        "deployment.apps/gitwarden-agent",
        "clusterrole.rbac.authorization.k8s.io/gitwarden-agent-writer",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/gitwarden",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/gitwarden",
        "poddisruptionbudget.policy/gitwarden-webhook",
        "networkpolicy.networking.k8s.io/gitwarden",
    ] {
        assert!(stdout.contains(object), "{object} missing from:\n{stdout}");
    }
}
