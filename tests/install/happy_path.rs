//! The documented install on a cluster with no gitwarden gives a working,
//! enforcing gitwarden: certificates bootstrapped in the cluster, the CA
//! bundle injected, the webhook reached through its Service, two agents
//! electing a leader and syncing a repository served to the pods.

use std::time::Duration;

use gitwarden_tests::Identity;
use gitwarden_tests::install::{SYSTEM_NAMESPACE, jsonpath, synced_revision, wait_ready_replicas};
use gitwarden_tests::wait::wait_blocking;

use crate::installed::{installed, leader_pod};

/// How long a replica count may take to settle here.
const TWO_MINUTES: Duration = Duration::from_secs(120);

#[test]
fn one_apply_gives_an_enforcing_gitwarden_that_runs_the_repository() {
    let installed = installed();
    let node = installed.node;
    eprintln!(
        "install: enforcing and synced {:.1}s after kubectl apply -k",
        installed.ready_seconds
    );
    // Only the one command was run, and it created gitwarden's objects.
    assert!(
        installed
            .apply_output
            .contains("statefulset.apps/gitwarden-webhook created"),
        "{}",
        installed.apply_output
    );

    // The certificates were issued in the cluster, by the bootstrap Job.
    assert_eq!(
        jsonpath(
            node,
            &["job", "gitwarden-certs-bootstrap", "-n", SYSTEM_NAMESPACE],
            "{.status.succeeded}"
        ),
        "1"
    );
    // The registered configuration trusts exactly the CA the Job issued.
    let ca = jsonpath(
        node,
        &["secret", "gitwarden-webhook-tls", "-n", SYSTEM_NAMESPACE],
        "{.data.ca\\.crt}",
    );
    assert!(!ca.is_empty());
    for kind in [
        "validatingwebhookconfiguration",
        "mutatingwebhookconfiguration",
    ] {
        let bundles = jsonpath(
            node,
            &[kind, "gitwarden"],
            "{range .webhooks[*]}{.clientConfig.caBundle}{\"\\n\"}{end}",
        );
        assert!(!bundles.is_empty(), "{kind} gitwarden is not registered");
        for bundle in bundles.lines() {
            assert_eq!(bundle, ca, "{kind} gitwarden's caBundle");
        }
        // Called through the Service, not a URL.
        assert_eq!(
            jsonpath(
                node,
                &[kind, "gitwarden"],
                "{.webhooks[0].clientConfig.service.name}"
            ),
            "gitwarden-webhook"
        );
    }

    // The agent keeps the webhook's registration although this repository
    // holds only the applications: the same objects after two more syncs
    // (GITWARDEN_INTERVAL is 10s), not deleted and registered again.
    let uids = || {
        jsonpath(
            node,
            &[
                "validatingwebhookconfiguration,mutatingwebhookconfiguration",
                "gitwarden",
            ],
            "{range .items[*]}{.metadata.uid}{\" \"}{end}",
        )
    };
    let before = uids();
    assert_eq!(before.split_whitespace().count(), 2, "{before:?}");
    std::thread::sleep(Duration::from_secs(25));
    assert_eq!(uids(), before, "the webhook configurations were replaced");

    // Both webhook replicas run, each with its audit volume bound.
    assert_eq!(
        wait_ready_replicas(
            node,
            SYSTEM_NAMESPACE,
            "statefulset",
            "gitwarden-webhook",
            2,
            TWO_MINUTES
        ),
        Some(2)
    );
    for claim in ["audit-gitwarden-webhook-0", "audit-gitwarden-webhook-1"] {
        assert_eq!(
            jsonpath(
                node,
                &["pvc", claim, "-n", SYSTEM_NAMESPACE],
                "{.status.phase}"
            ),
            "Bound",
            "{claim}"
        );
    }
    // Two agents, one leader, which is one of them.
    assert_eq!(
        wait_ready_replicas(
            node,
            SYSTEM_NAMESPACE,
            "deployment",
            "gitwarden-agent",
            2,
            TWO_MINUTES
        ),
        Some(2)
    );
    // The holder identity is `<pod>_<random>`, so a restarted pod is a new holder.
    let leader = leader_pod(node);
    let agents = jsonpath(
        node,
        &[
            "pods",
            "-n",
            SYSTEM_NAMESPACE,
            "-l",
            "app.kubernetes.io/component=agent",
        ],
        "{.items[*].metadata.name}",
    );
    assert!(
        agents.split_whitespace().any(|pod| pod == leader),
        "leader {leader:?} is not one of the agent pods {agents:?}"
    );

    // The repository's application runs: its pods really become Ready.
    assert_eq!(
        jsonpath(
            node,
            &["configmap", "web-settings", "-n", "shop"],
            "{.data.greeting}"
        ),
        "hello from git"
    );
    assert_eq!(
        wait_ready_replicas(node, "shop", "deployment", "web", 2, TWO_MINUTES),
        Some(2)
    );
    assert!(!synced_revision(node).is_empty());

    // And nobody else writes: cluster-admin is refused, pointed at the file.
    let refused = node.kubectl(
        Identity::Admin,
        &[
            "-n",
            "shop",
            "patch",
            "configmap",
            "web-settings",
            "--type=merge",
            "-p",
            r#"{"data":{"greeting":"by hand"}}"#,
        ],
    );
    let message = refused.expect_failure();
    assert!(message.contains("denied"), "{message}");
    assert!(message.contains("apps/shop/web.yaml"), "{message}");
    assert_eq!(
        jsonpath(
            node,
            &["configmap", "web-settings", "-n", "shop"],
            "{.data.greeting}"
        ),
        "hello from git"
    );
}

#[test]
fn a_pushed_commit_reaches_the_cluster() {
    let installed = installed();
    let node = installed.node;
    let commit = installed
        .target
        .change(
            &[(
                "apps/release/release.yaml",
                Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: release\n  namespace: shop\ndata:\n  version: \"2\"\n"),
            )],
            "Release 2 of the shop",
        )
        .unwrap();
    let version = wait_blocking(Duration::from_secs(120), || {
        let v = jsonpath(
            node,
            &["configmap", "release", "-n", "shop"],
            "{.data.version}",
        );
        (!v.is_empty()).then_some(v)
    });
    assert_eq!(version.as_deref(), Some("2"));
    assert!(
        wait_blocking(Duration::from_secs(60), || installed
            .target
            .applied(&commit)
            .then_some(()))
        .is_some(),
        "the agent never applied {commit} or a later commit"
    );
}
