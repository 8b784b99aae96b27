//! `gitwarden-doctor` with gitwarden's webhook installed: the shipped
//! configuration passes the failure-policy and CA-bundle checks against the
//! certificate the running webhook really serves, and weakening either is a
//! critical finding that names what is wrong.

use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use gitwarden_tests::Identity;
use gitwarden_tests::binaries::binary;
use serde_json::Value;

use crate::common::Setup;

/// Runs `gitwarden-doctor -o json` as admin; (exit code, report).
fn doctor(s: &Setup) -> (i32, Value) {
    let out = Command::new(binary("gitwarden-doctor").unwrap())
        .arg("--kubeconfig")
        .arg(s.cluster.kubeconfig(Identity::Admin))
        .args(["-o", "json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

/// Findings whose check starts with `prefix`.
fn findings<'a>(report: &'a Value, prefix: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"].as_str().unwrap().starts_with(prefix))
        .collect()
}

fn critical<'a>(report: &'a Value, prefix: &str) -> Vec<&'a Value> {
    findings(report, prefix)
        .into_iter()
        .filter(|f| f["severity"] == "critical")
        .collect()
}

fn patch_configuration(s: &Setup, patch: &str) {
    s.cluster
        .kubectl(
            Identity::Admin,
            &[
                "patch",
                "validatingwebhookconfiguration",
                "gitwarden",
                "--type=json",
                "-p",
                patch,
            ],
        )
        .expect_success();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installed_webhook_passes_and_failure_policy_ignore_is_critical_by_name() {
    let s = Setup::new("doctor-policy").await;
    let (_, report) = doctor(&s);
    assert!(critical(&report, "webhook/").is_empty(), "{report:#}");
    assert!(critical(&report, "certificate/").is_empty(), "{report:#}");
    let fails_closed: Vec<&Value> = findings(&report, "webhook/failure-policy");
    assert_eq!(fails_closed.len(), 1, "{report:#}");
    assert!(
        fails_closed[0]["message"]
            .as_str()
            .unwrap()
            .contains("validate.gitwarden.io fails closed"),
        "{:#}",
        fails_closed[0]
    );
    let issuer: Vec<&Value> = findings(&report, "certificate/ca-bundle");
    assert!(!issuer.is_empty(), "{report:#}");
    for f in &issuer {
        assert_eq!(f["severity"], "info", "{f:#}");
        let message = f["message"].as_str().unwrap();
        assert!(
            message.contains("is the issuer of the serving certificate"),
            "{message}"
        );
        assert!(
            message.contains("a TLS handshake with https://127.0.0.1:"),
            "{message}"
        );
    }
    // The agent's service account is bound to cluster-admin by the fixture:
    // expected, so never critical.
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["subject"] == "ServiceAccount gitwarden-system/gitwarden-agent")
            .all(|f| f["expected"] == true && f["severity"] == "info"),
        "{report:#}"
    );

    let text = Command::new(binary("gitwarden-doctor").unwrap())
        .arg("--kubeconfig")
        .arg(s.cluster.kubeconfig(Identity::Admin))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    eprintln!("{text}");
    assert!(
        text.contains("ok        ValidatingWebhookConfiguration gitwarden, entry validate.gitwarden.io fails closed"),
        "{text}"
    );

    patch_configuration(
        &s,
        r#"[{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Ignore"}]"#,
    );
    let (code, report) = doctor(&s);
    assert_eq!(code, 1);
    let bad = critical(&report, "webhook/failure-policy");
    assert_eq!(bad.len(), 1, "{report:#}");
    let message = bad[0]["message"].as_str().unwrap();
    assert!(
        message.contains("ValidatingWebhookConfiguration gitwarden, entry validate.gitwarden.io"),
        "{message}"
    );
    assert!(message.contains("failurePolicy Ignore"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_bundle_that_did_not_issue_the_serving_certificate_is_critical() {
    let s = Setup::new("doctor-ca").await;
    let stranger = gitwarden_certs::CertificateAuthority::generate(
        "not-the-webhooks-ca",
        Duration::from_secs(3600),
    )
    .unwrap();
    let bundle = base64::engine::general_purpose::STANDARD.encode(stranger.cert_pem());
    // From here on the API server cannot call the webhook either: it fails
    // closed until the fixture removes the configuration.
    patch_configuration(
        &s,
        &format!(
            r#"[{{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":"{bundle}"}}]"#
        ),
    );
    let (code, report) = doctor(&s);
    assert_eq!(code, 1);
    let bad = critical(&report, "certificate/ca-bundle");
    assert_eq!(bad.len(), 1, "{report:#}");
    let message = bad[0]["message"].as_str().unwrap();
    assert!(message.contains("validate.gitwarden.io"), "{message}");
    assert!(
        message.contains("does not verify against the caBundle"),
        "{message}"
    );
    // The other entries still carry the right CA and say so.
    assert!(
        findings(&report, "certificate/ca-bundle")
            .iter()
            .any(|f| f["severity"] == "info"
                && f["message"]
                    .as_str()
                    .unwrap()
                    .contains("validate-system.gitwarden.io")),
        "{report:#}"
    );
}
