//! Secrets from git, end to end: a SOPS-encrypted Secret (encrypted by the
//! real `sops` for a real age key) is applied decrypted while its value
//! reaches no output; a tampered file or a missing key fails the whole
//! revision naming the file; a plain-text Secret is refused with its
//! file:line and keys unless it is a deliberate exception.

use base64::Engine as _;
use gitwarden_tests::tools;

use crate::common::AgentSetup;

const PASSWORD: &str = "correct-horse-battery-staple";

/// The Secret, in the test's namespace, with `password`.
fn secret(ns: &str, password: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: database\n  namespace: {ns}\ntype: Opaque\nstringData:\n  password: {password}\n"
    )
}

/// `plain` encrypted by the real sops as Flux users do, written nowhere but
/// a scratch directory outside the repository.
fn encrypted(scratch: &std::path::Path, recipient: &str, plain: &str) -> String {
    let file = scratch.join("secret.yaml");
    std::fs::write(&file, plain).unwrap();
    let text = tools::sops_encrypt(
        &file,
        &[
            "--age",
            recipient,
            "--encrypted-regex",
            "^(data|stringData)$",
        ],
    )
    .unwrap();
    std::fs::remove_file(&file).unwrap();
    text
}

fn configmap(ns: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: beside-the-secret\n  namespace: {ns}\ndata:\n  a: b\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sops_encrypted_secret_is_applied_decrypted_and_its_value_reaches_no_output() {
    let s = AgentSetup::new("sops").await;
    let scratch = tempfile::tempdir().unwrap();
    let (key, recipient) = tools::age_key(scratch.path(), "cluster").unwrap();
    let key_flag = key.to_str().unwrap();
    let text = encrypted(scratch.path(), &recipient, &secret(s.ns(), PASSWORD));
    assert!(!text.contains(PASSWORD));
    s.commit(&[("app/secret.yaml", &text)], "an encrypted secret");

    let run = s.agent("sync", &["-o", "json", "--sops-age-key-file", key_flag]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let stored = s
        .kubectl(&[
            "get",
            "secret",
            "database",
            "-o",
            "jsonpath={.data.password}",
        ])
        .expect_success()
        .to_string();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(stored.trim())
        .unwrap();
    assert_eq!(decoded, PASSWORD.as_bytes());
    let encoded = base64::engine::general_purpose::STANDARD.encode(PASSWORD);
    for output in [&run.stdout, &run.stderr] {
        assert!(
            !output.contains(PASSWORD) && !output.contains(&encoded),
            "{output}"
        );
    }

    // A new value, diffed: the change shows, neither value does.
    let next = "tr0ub4dor-and-3";
    let text = encrypted(scratch.path(), &recipient, &secret(s.ns(), next));
    s.commit(&[("app/secret.yaml", &text)], "rotate the password");
    let diff = s.agent("diff", &["--sops-age-key-file", key_flag]);
    let shown = format!("{}{}", diff.stdout, diff.stderr);
    assert!(shown.contains("*** (after)"), "{shown}");
    let next_encoded = base64::engine::general_purpose::STANDARD.encode(next);
    for value in [PASSWORD, encoded.as_str(), next, next_encoded.as_str()] {
        assert!(!shown.contains(value), "{value} shown in:\n{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_sops_file_fails_the_whole_revision_naming_the_file() {
    let s = AgentSetup::new("sops-tampered").await;
    let scratch = tempfile::tempdir().unwrap();
    let (key, recipient) = tools::age_key(scratch.path(), "cluster").unwrap();
    let text = encrypted(scratch.path(), &recipient, &secret(s.ns(), PASSWORD));
    // Retargeted without re-encrypting: the MAC covers the plain fields.
    let tampered = text.replace("name: database", "name: stolen");
    s.commit(
        &[
            ("app/secret.yaml", &tampered),
            ("app/settings.yaml", &configmap(s.ns())),
        ],
        "tampered",
    );
    let run = s.agent("sync", &["--sops-age-key-file", key.to_str().unwrap()]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr.contains("app/secret.yaml:1: SOPS: MAC mismatch"),
        "{}",
        run.stderr
    );
    // Nothing of the revision was applied.
    assert!(
        !s.kubectl(&["get", "configmap", "beside-the-secret"])
            .success
    );
    assert!(!s.kubectl(&["get", "secret", "stolen"]).success);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sops_file_without_an_age_key_names_the_flag() {
    let s = AgentSetup::new("sops-nokey").await;
    let scratch = tempfile::tempdir().unwrap();
    let (_, recipient) = tools::age_key(scratch.path(), "cluster").unwrap();
    let text = encrypted(scratch.path(), &recipient, &secret(s.ns(), PASSWORD));
    s.commit(&[("app/secret.yaml", &text)], "encrypted");
    let run = s.agent("sync", &[]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("app/secret.yaml:1"), "{}", run.stderr);
    assert!(run.stderr.contains("--sops-age-key-file"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_text_secret_is_refused_with_its_line_and_keys_unless_excepted() {
    let s = AgentSetup::new("plain-secret").await;
    let plain = format!("{}---\n{}", configmap(s.ns()), secret(s.ns(), PASSWORD));
    s.commit(&[("app/db.yaml", &plain)], "a plain secret");
    let run = s.agent("sync", &[]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains(
            "app/db.yaml:9: Secret \"database\" has plain-text values in git (stringData.password)"
        ),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(PASSWORD), "{}", run.stderr);
    assert!(
        !s.kubectl(&["get", "configmap", "beside-the-secret"])
            .success
    );

    // A deliberate exception, annotated in git, is applied.
    let excepted = plain.replace(
        "  name: database\n",
        "  name: database\n  annotations:\n    gitwarden.io/plaintext-secret: allowed\n",
    );
    s.commit(&[("app/db.yaml", &excepted)], "a deliberate exception");
    s.sync();
    s.kubectl(&["get", "secret", "database"]).expect_success();
}
