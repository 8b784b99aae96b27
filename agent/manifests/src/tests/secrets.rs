//! Secrets from git: plain text refused by default, with the file, line and
//! keys; deliberate exceptions and the agent-wide switch; SOPS files need a key.

use super::{load_err, load_files, load_ok};
use crate::{LoadOptions, ManifestFile, PlaintextSecrets};

const PLAIN: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n---\n\
apiVersion: v1\nkind: Secret\nmetadata:\n  name: database\nstringData:\n  password: hunter2\ndata:\n  token: dG9rZW4=\n";

#[test]
fn a_plain_text_secret_is_refused_naming_its_line_and_keys_but_not_its_values() {
    let errors = load_err(&[("app/db.yaml", PLAIN)]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let error = &errors[0];
    assert!(error.starts_with("app/db.yaml:6: Secret \"database\" has plain-text values in git (data.token, stringData.password)"), "{error}");
    assert!(error.contains("sops --encrypt"), "{error}");
    assert!(
        !error.contains("hunter2") && !error.contains("dG9rZW4="),
        "{error}"
    );
}

#[test]
fn a_secret_annotated_as_a_deliberate_exception_loads() {
    let text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: placeholder\n  annotations:\n    gitwarden.io/plaintext-secret: allowed\ndata:\n  ca.crt: \"\"\n";
    assert_eq!(load_ok(&[("ca.yaml", text)]).len(), 1);
}

#[test]
fn a_secret_without_values_is_not_a_plain_text_secret() {
    let text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: filled-by-a-controller\ntype: kubernetes.io/service-account-token\n";
    assert_eq!(load_ok(&[("sa.yaml", text)]).len(), 1);
}

#[test]
fn plain_text_secrets_load_when_the_agent_allows_them() {
    let files = [ManifestFile {
        path: "app/db.yaml",
        content: PLAIN.as_bytes(),
    }];
    let options = LoadOptions {
        plaintext_secrets: PlaintextSecrets::Allow,
        ..LoadOptions::default()
    };
    assert_eq!(
        crate::load_with(&files, Vec::new(), &options)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_sops_file_without_an_age_key_fails_naming_the_file_and_the_flag() {
    let text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: ENC[AES256_GCM,data:AAAA,iv:AAAA,tag:AAAA,type:str]\nsops:\n  mac: x\n";
    let errors = load_files(&[("secrets/db.yaml", text)]).unwrap_err();
    let errors: Vec<String> = errors.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        [
            "secrets/db.yaml:1: the file is SOPS-encrypted, but the agent has no age key to decrypt it (--sops-age-key-file)"
        ]
    );
}
