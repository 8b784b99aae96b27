//! The shipped manifests agree with this crate: the CronJob's RBAC names the
//! Secrets and webhook configurations `gitwarden-certs` writes, grants no
//! `create`, and the shipped policy exempts exactly its service account.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

use gitwarden_certs::cluster::{CA_SECRET, TLS_SECRET};
use gitwarden_shared::identity::Requester;
use gitwarden_shared::policy::Policy;
use serde_yaml_ng::Value;

fn deploy_file(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/base")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .collect()
}

fn object<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} in certs.yaml"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_cronjob_role_names_both_secrets_and_cannot_create_secrets() {
    let docs = deploy_file("certs.yaml");
    let rules = object(&docs, "Role")["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1);
    let mut names = strings(&rules[0]["resourceNames"]);
    names.sort();
    let mut expected = vec![CA_SECRET.to_string(), TLS_SECRET.to_string()];
    expected.sort();
    assert_eq!(names, expected);
    let verbs = strings(&rules[0]["verbs"]);
    assert!(
        !verbs.iter().any(|v| v == "create" || v == "*"),
        "{verbs:?}"
    );
    assert!(verbs.contains(&"update".to_string()) && verbs.contains(&"get".to_string()));
}

#[test]
fn the_cronjob_cluster_role_only_patches_the_gitwarden_webhook_configurations() {
    let docs = deploy_file("certs.yaml");
    let rules = object(&docs, "ClusterRole")["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(strings(&rules[0]["resourceNames"]), ["gitwarden"]);
    assert_eq!(strings(&rules[0]["verbs"]), ["get", "patch"]);
    let mut resources = strings(&rules[0]["resources"]);
    resources.sort();
    assert_eq!(
        resources,
        [
            "mutatingwebhookconfigurations",
            "validatingwebhookconfigurations"
        ]
    );
}

#[test]
fn the_cronjob_runs_rotate_as_the_certs_service_account() {
    let docs = deploy_file("certs.yaml");
    let cronjob = object(&docs, "CronJob");
    let pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"].as_str(), Some("gitwarden-certs"));
    let container = &pod["containers"][0];
    assert_eq!(
        strings(&container["command"]),
        ["/usr/local/bin/gitwarden-certs"]
    );
    assert_eq!(strings(&container["args"])[0], "rotate");
}

fn requester(user: &str) -> Requester {
    Requester {
        username: user.into(),
        groups: vec![
            "system:serviceaccounts".into(),
            "system:authenticated".into(),
        ],
        ..Requester::default()
    }
}

#[test]
fn the_shipped_policy_exempts_the_certs_service_account_and_no_other_in_gitwarden_system() {
    let docs = deploy_file("policy.yaml");
    let text = docs[0]["data"]["policy.yaml"].as_str().unwrap();
    let policy = Policy::from_yaml(text).unwrap();
    assert!(
        policy
            .exempt
            .matches(&requester(
                "system:serviceaccount:gitwarden-system:gitwarden-certs"
            ))
            .is_some()
    );
    for other in [
        "system:serviceaccount:gitwarden-system:gitwarden-webhook",
        "system:serviceaccount:gitwarden-system:default",
        "system:serviceaccount:gitwarden-system:gitwarden-certs2",
        "system:serviceaccount:other:gitwarden-certs",
    ] {
        assert!(
            policy.exempt.matches(&requester(other)).is_none(),
            "{other} must not be exempt"
        );
    }
}
