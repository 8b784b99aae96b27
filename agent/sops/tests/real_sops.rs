//! Files encrypted by the real `sops` (built from its Go module by
//! `tests/tools/build`, through the test kit) with real age keys (`age-keygen`): gitwarden's
//! decryption gives what `sops --decrypt` gives, and refuses a tampered file,
//! a moved value and a file for someone else's key.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use gitwarden_sops::{AgeKeys, Format, SopsError, decrypt, is_encrypted};
use gitwarden_tests::tools;

fn age_key(dir: &Path, name: &str) -> (PathBuf, String) {
    tools::age_key(dir, name).unwrap()
}

/// `sops --encrypt` of the fixture `name` with `args`, in a directory of its own.
fn encrypt(dir: &Path, name: &str, args: &[&str]) -> String {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    let input = dir.join(name);
    std::fs::copy(&fixture, &input).unwrap();
    tools::sops_encrypt(&input, args).unwrap()
}

/// What the real `sops --decrypt` makes of `text`, as JSON documents.
fn sops_decrypt(dir: &Path, key: &Path, text: &str, format: Format) -> Vec<serde_json::Value> {
    let file = dir.join(match format {
        Format::Yaml => "check.yaml",
        Format::Json => "check.json",
    });
    std::fs::write(&file, text).unwrap();
    let text = tools::sops_decrypt(&file, key).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &serde_json::Value| !v.is_null())
        .collect()
}

fn keys(file: &Path) -> AgeKeys {
    AgeKeys::read(file).unwrap()
}

#[test]
fn a_secret_encrypted_like_flux_users_do_decrypts_to_what_sops_decrypts() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = age_key(dir.path(), "cluster");
    let text = encrypt(
        dir.path(),
        "secret.yaml",
        &[
            "--age",
            &recipient,
            "--encrypted-regex",
            "^(data|stringData)$",
        ],
    );
    assert!(is_encrypted(&text));
    assert!(!text.contains("s3cr3t-from-git"));
    let ours = decrypt(&text, Format::Yaml, &keys(&key)).unwrap();
    assert_eq!(ours, sops_decrypt(dir.path(), &key, &text, Format::Yaml));
    assert_eq!(ours[0]["stringData"]["password"], "s3cr3t-from-git");
    assert_eq!(ours[0]["metadata"]["name"], "database");
}

#[test]
fn every_document_of_a_stream_is_decrypted_and_unencrypted_suffixes_stay_plain() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = age_key(dir.path(), "cluster");
    let text = encrypt(dir.path(), "two-documents.yaml", &["--age", &recipient]);
    assert!(text.contains("list_unencrypted: visible"));
    let ours = decrypt(&text, Format::Yaml, &keys(&key)).unwrap();
    assert_eq!(ours.len(), 2);
    assert_eq!(ours, sops_decrypt(dir.path(), &key, &text, Format::Yaml));
    assert_eq!(ours[1]["stringData"]["key"], "abc123");
}

#[test]
fn json_with_typed_values_for_two_recipients_decrypts_with_either_key() {
    let dir = tempfile::tempdir().unwrap();
    let (first, first_recipient) = age_key(dir.path(), "first");
    let (second, second_recipient) = age_key(dir.path(), "second");
    let text = encrypt(
        dir.path(),
        "secret.json",
        &[
            "--age",
            &format!("{first_recipient},{second_recipient}"),
            "--encrypted-regex",
            "^stringData$",
            "--mac-only-encrypted",
        ],
    );
    let expected = sops_decrypt(dir.path(), &first, &text, Format::Json);
    assert_eq!(
        decrypt(&text, Format::Json, &keys(&first)).unwrap(),
        expected
    );
    assert_eq!(
        decrypt(&text, Format::Json, &keys(&second)).unwrap(),
        expected
    );
    assert_eq!(expected[0]["stringData"]["attempts"], 3);
    assert_eq!(expected[0]["stringData"]["on"], true);
}

#[test]
fn a_changed_plain_value_fails_the_mac() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = age_key(dir.path(), "cluster");
    let text = encrypt(
        dir.path(),
        "secret.yaml",
        &[
            "--age",
            &recipient,
            "--encrypted-regex",
            "^(data|stringData)$",
        ],
    );
    // Someone retargets the Secret without re-encrypting: the MAC covers
    // plain values too.
    let tampered = text.replace("namespace: shop", "namespace: kube-system");
    assert_ne!(tampered, text);
    assert_eq!(
        decrypt(&tampered, Format::Yaml, &keys(&key)).unwrap_err(),
        SopsError::MacMismatch
    );
}

#[test]
fn a_ciphertext_moved_to_another_key_does_not_decrypt_and_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let (key, recipient) = age_key(dir.path(), "cluster");
    let text = encrypt(
        dir.path(),
        "secret.yaml",
        &[
            "--age",
            &recipient,
            "--encrypted-regex",
            "^(data|stringData)$",
        ],
    );
    let line = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap()
            .split_once(": ")
            .unwrap()
            .1
            .to_string()
    };
    // The password's ciphertext copied over the port's: authenticated with
    // its own path, it does not decrypt anywhere else.
    let moved = text.replace(&line("port:"), &line("password:"));
    let error = decrypt(&moved, Format::Yaml, &keys(&key)).unwrap_err();
    assert!(
        matches!(&error, SopsError::Value { path, .. } if path == "stringData:port"),
        "{error}"
    );
    assert!(!error.to_string().contains("s3cr3t"), "{error}");
}

#[test]
fn a_file_for_another_key_names_its_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let (_, recipient) = age_key(dir.path(), "theirs");
    let (mine, _) = age_key(dir.path(), "mine");
    let text = encrypt(dir.path(), "secret.yaml", &["--age", &recipient]);
    let error = decrypt(&text, Format::Yaml, &keys(&mine)).unwrap_err();
    assert_eq!(
        error,
        SopsError::NoMatchingKey {
            recipients: recipient
        }
    );
}
