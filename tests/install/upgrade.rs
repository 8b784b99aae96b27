//! gitwarden upgraded the way everything else changes: a commit to its own
//! install in git, applied by the agent. The certificates' bootstrap Job,
//! whose pod template the API server will not change in place, is marked
//! `gitwarden.io/force: enabled`: the agent deletes it and creates it again,
//! and its `rotate`, finding the certificates valid, writes nothing.

use std::time::Duration;

use gitwarden_tests::install::{GITWARDEN_IN_GIT, SYSTEM_NAMESPACE, jsonpath};
use gitwarden_tests::wait::wait_blocking;

use crate::installed::{installed, steady};

const JOB: &str = "gitwarden-certs-bootstrap";

/// `rendered` (the install as kustomize renders it) with the bootstrap Job's
/// renewal argument changed: a change to its pod template, as a new image
/// would be.
fn with_changed_job(rendered: &str) -> String {
    let mut changed = 0;
    let documents: Vec<String> = rendered
        .split("\n---\n")
        .map(|document| {
            if document.contains("kind: Job\n") && document.contains(&format!("name: {JOB}\n")) {
                changed += 1;
                document.replace("--renew-before=30d", "--renew-before=31d")
            } else {
                document.to_owned()
            }
        })
        .collect();
    assert_eq!(changed, 1, "the rendered install holds one {JOB} Job");
    documents.join("\n---\n")
}

#[test]
fn an_upgrade_through_git_recreates_the_certificates_bootstrap_job() {
    let installed = installed();
    let _steady = steady();
    let node = installed.node;
    let job = || {
        jsonpath(
            node,
            &["job", JOB, "-n", SYSTEM_NAMESPACE],
            "{.metadata.uid} {.status.succeeded} {.spec.template.spec.containers[0].args}",
        )
    };
    let first = wait_blocking(Duration::from_secs(120), || {
        let now = job();
        (now.split(' ').nth(1) == Some("1")).then_some(now)
    })
    .unwrap_or_else(|| panic!("the install's bootstrap Job never succeeded: {}", job()));
    let uid = first.split(' ').next().unwrap().to_owned();
    let bundle = || {
        jsonpath(
            node,
            &["validatingwebhookconfiguration", "gitwarden"],
            "{.webhooks[0].clientConfig.caBundle}",
        )
    };
    let secrets = || {
        jsonpath(
            node,
            &[
                "secrets",
                "gitwarden-webhook-ca",
                "gitwarden-webhook-tls",
                "-n",
                SYSTEM_NAMESPACE,
            ],
            "{.items[*].metadata.resourceVersion}",
        )
    };
    let (bundle_before, secrets_before) = (bundle(), secrets());

    let upgraded = with_changed_job(&installed.target.read(GITWARDEN_IN_GIT).unwrap());
    let pushed = std::time::Instant::now();
    let commit = installed
        .target
        .change(
            &[(GITWARDEN_IN_GIT, Some(&upgraded))],
            "Upgrade gitwarden: the bootstrap Job renews 31 days ahead",
        )
        .unwrap();
    let recreated = wait_blocking(Duration::from_secs(180), || {
        let now = job();
        let mut fields = now.split(' ');
        let (Some(new_uid), Some(succeeded)) = (fields.next(), fields.next()) else {
            return None;
        };
        (installed.target.applied(&commit)
            && new_uid != uid
            && succeeded == "1"
            && now.contains("--renew-before=31d"))
        .then_some(now)
    });
    eprintln!(
        "bootstrap Job recreated and run {:?} after the push",
        pushed.elapsed()
    );
    assert!(
        recreated.is_some(),
        "the upgraded Job was not recreated and run: {} (applied: {})\n{}",
        job(),
        installed.target.applied(&commit),
        node.kubectl(
            gitwarden_tests::Identity::Admin,
            &["get", "events", "-n", SYSTEM_NAMESPACE]
        )
        .stdout
    );
    assert_eq!(bundle(), bundle_before, "the CA bundle changed");
    assert_eq!(
        secrets(),
        secrets_before,
        "the re-run rotate wrote the certificates"
    );
}
