//! The shipped manifests agree with this crate: the CronJob's RBAC names the
//! Secrets and webhook configurations `gitwarden-certs` writes, grants no
//! `create`, the Secrets ship empty for the bootstrap Job to fill, the Job
//! runs the CronJob's command, and the shipped policy exempts exactly its
//! service account.

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

fn objects<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

#[test]
fn both_secrets_ship_without_data_or_type_so_no_apply_touches_what_rotate_wrote() {
    let docs = deploy_file("certs.yaml");
    let secrets = objects(&docs, "Secret");
    let mut names: Vec<&str> = secrets
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    let mut expected = [CA_SECRET, TLS_SECRET];
    expected.sort_unstable();
    assert_eq!(names, expected);
    for secret in secrets {
        let name = &secret["metadata"]["name"];
        assert_eq!(
            secret["metadata"]["namespace"].as_str(),
            Some("gitwarden-system")
        );
        // A key in the manifest, even "", is reset by every apply; a type
        // other than the live one fails every apply (it is immutable).
        for field in ["data", "stringData", "type", "immutable"] {
            assert!(secret.get(field).is_none(), "{name:?} must not set {field}");
        }
    }
}

#[test]
fn the_bootstrap_job_runs_the_cronjobs_rotate_and_stays_after_finishing() {
    let docs = deploy_file("certs.yaml");
    let cronjob = object(&docs, "CronJob");
    let job = object(&docs, "Job");
    assert_eq!(
        job["metadata"]["name"].as_str(),
        Some("gitwarden-certs-bootstrap")
    );
    let job_spec = &job["spec"];
    // Gone after finishing, it would be created and run again by every apply.
    assert!(job_spec.get("ttlSecondsAfterFinished").is_none());
    assert!(job_spec["backoffLimit"].as_u64().unwrap() >= 3);
    let pod = &job_spec["template"]["spec"];
    let cron_pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod, cron_pod, "the Job runs what the CronJob runs");
    assert_eq!(pod["serviceAccountName"].as_str(), Some("gitwarden-certs"));
    let args = strings(&pod["containers"][0]["args"]);
    assert_eq!(args[0], "rotate");
    // The webhook registers its configurations only once it has a certificate.
    assert!(
        args.contains(&"--configurations-optional".to_string()),
        "{args:?}"
    );
}

#[test]
fn the_webhook_mounts_the_tls_secret_the_job_fills() {
    let docs = deploy_file("webhook.yaml");
    let statefulset = object(&docs, "StatefulSet");
    let volumes = statefulset["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap();
    let tls = volumes
        .iter()
        .find(|v| v["name"].as_str() == Some("tls"))
        .unwrap();
    assert_eq!(tls["secret"]["secretName"].as_str(), Some(TLS_SECRET));
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
