//! `gitwarden-doctor` with gitwarden's webhook installed: the shipped
//! configuration passes the failure-policy and CA-bundle checks against the
//! certificate the running webhook really serves, and weakening either is a
//! critical finding that names what is wrong.

use std::time::Duration;

use base64::Engine as _;
use gitwarden_tests::Identity;
use gitwarden_tests::doctor::{Severity, doctor, doctor_text};

use crate::common::Setup;

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
    let run = doctor(&s.cluster.kubeconfig(Identity::Admin), &[]).unwrap();
    assert!(run.critical("webhook").is_empty(), "{:#?}", run.report);
    assert!(run.critical("certificate").is_empty(), "{:#?}", run.report);
    let fails_closed = run.checks("webhook/failure-policy");
    assert_eq!(fails_closed.len(), 1, "{:#?}", run.report);
    assert!(
        fails_closed[0]
            .message
            .contains("validate.gitwarden.io fails closed"),
        "{:#?}",
        fails_closed[0]
    );
    let issuer = run.checks("certificate/ca-bundle");
    assert!(!issuer.is_empty(), "{:#?}", run.report);
    for f in &issuer {
        assert_eq!(f.severity, Severity::Info, "{f:#?}");
        let message = &f.message;
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
        run.report
            .findings
            .iter()
            .filter(
                |f| f.subject.as_deref() == Some("ServiceAccount gitwarden-system/gitwarden-agent")
            )
            .all(|f| f.expected && f.severity == Severity::Info),
        "{:#?}",
        run.report
    );

    let text = doctor_text(&s.cluster.kubeconfig(Identity::Admin), &[])
        .unwrap()
        .stdout;
    eprintln!("{text}");
    assert!(
        text.contains("ok        ValidatingWebhookConfiguration gitwarden, entry validate.gitwarden.io fails closed"),
        "{text}"
    );

    patch_configuration(
        &s,
        r#"[{"op":"replace","path":"/webhooks/0/failurePolicy","value":"Ignore"}]"#,
    );
    let run = doctor(&s.cluster.kubeconfig(Identity::Admin), &[]).unwrap();
    assert_eq!(run.code, 1);
    let bad = run.critical("webhook/failure-policy");
    assert_eq!(bad.len(), 1, "{:#?}", run.report);
    let message = &bad[0].message;
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
    let run = doctor(&s.cluster.kubeconfig(Identity::Admin), &[]).unwrap();
    assert_eq!(run.code, 1);
    let bad = run.critical("certificate/ca-bundle");
    assert_eq!(bad.len(), 1, "{:#?}", run.report);
    let message = &bad[0].message;
    assert!(message.contains("validate.gitwarden.io"), "{message}");
    assert!(
        message.contains("does not verify against the caBundle"),
        "{message}"
    );
    // The other entries still carry the right CA and say so.
    assert!(
        run.checks("certificate/ca-bundle")
            .iter()
            .any(|f| f.severity == Severity::Info
                && f.message.contains("validate-system.gitwarden.io")),
        "{:#?}",
        run.report
    );
}
