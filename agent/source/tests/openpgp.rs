//! OpenPGP commit signature verification on real commits signed by `git commit -S` with keys
//! made by GnuPG, driven through [`Source::fetch`] as the agent does.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{Remote, SshKey, allowed_signers, gpg::Gpg};
use gitwarden_source::{FetchedRevision, GitRef, Source, SourceError, SourceSpec, Verification};

const DAY: i64 = 86_400;

/// A spec following `main` that accepts SSH and/or OpenPGP signatures.
fn spec(remote: &Remote, ssh: Option<PathBuf>, keyring: Option<PathBuf>) -> SourceSpec {
    let mut spec = SourceSpec::new(remote.url(), GitRef::Branch("main".into()));
    spec.verify = Verification::from_files(ssh, keyring);
    spec
}

fn fetch(spec: SourceSpec) -> Result<FetchedRevision, SourceError> {
    let cache = tempfile::tempdir().unwrap();
    Source::open(spec, cache.path())?.fetch()
}

/// Write `armored` as the keyring file in `dir`.
fn keyring(dir: &Path, armored: &str) -> PathBuf {
    let path = dir.join("keyring.asc");
    std::fs::write(&path, armored).unwrap();
    path
}

/// Fetch `remote` verifying against the keys `exported`; the error's reason, checking it names
/// `head`.
fn refused(remote: &Remote, exported: &str, head: &str) -> String {
    let meta = tempfile::tempdir().unwrap();
    let err = fetch(spec(remote, None, Some(keyring(meta.path(), exported)))).unwrap_err();
    assert!(!err.is_transient(), "{err}");
    match err {
        SourceError::Unverified { commit, why } => {
            assert_eq!(commit, head);
            why
        }
        other => panic!("expected Unverified, got {other}"),
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[test]
fn ed25519_signed_commit_by_a_keyring_key_is_verified_with_email_and_fingerprint() {
    let gpg = Gpg::new();
    let key = gpg.generate("Alice <alice@example.com>", "ed25519");
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    let head = gpg.commit_signed(&remote, "signed", &key, None);
    let meta = tempfile::tempdir().unwrap();
    let exported = keyring(meta.path(), &gpg.export(&[&key]));

    let revision = fetch(spec(&remote, None, Some(exported))).unwrap();

    assert_eq!(revision.commit, head);
    assert_eq!(revision.files.len(), 1);
    let signer = revision.signer.unwrap();
    assert_eq!(signer.principal, "alice@example.com");
    assert_eq!(signer.key_fingerprint, key);
}

#[test]
fn rsa_signed_commit_is_verified() {
    let gpg = Gpg::new();
    let key = gpg.generate("Robert <robert@example.com>", "rsa3072");
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    let head = gpg.commit_signed(&remote, "signed", &key, None);
    let meta = tempfile::tempdir().unwrap();
    let exported = keyring(meta.path(), &gpg.export(&[&key]));

    let revision = fetch(spec(&remote, None, Some(exported))).unwrap();

    assert_eq!(revision.commit, head);
    let signer = revision.signer.unwrap();
    // The committer (Alice) is not among the key's user IDs: the primary user ID is reported.
    assert_eq!(signer.principal, "robert@example.com");
    assert_eq!(signer.key_fingerprint, key);
}

#[test]
fn commit_signed_by_a_signing_subkey_is_verified_as_its_primary_key() {
    let gpg = Gpg::new();
    let primary = gpg.generate_at(None, "Alice <alice@example.com>", "ed25519", "cert");
    let subkey = gpg.add_signing_subkey(&primary);
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    // Naming the primary key, gpg signs with its signing subkey, as for most real users.
    let head = gpg.commit_signed(&remote, "signed", &primary, None);
    let meta = tempfile::tempdir().unwrap();
    let exported = keyring(meta.path(), &gpg.export(&[&primary]));

    let revision = fetch(spec(&remote, None, Some(exported))).unwrap();

    assert_eq!(revision.commit, head);
    assert_eq!(revision.signer.unwrap().key_fingerprint, primary);
    assert_ne!(subkey, primary);
}

#[test]
fn commit_signed_by_a_key_not_in_the_keyring_is_unverified_naming_it() {
    let gpg = Gpg::new();
    let known = gpg.generate("Alice <alice@example.com>", "ed25519");
    let stranger = gpg.generate("Mallory <mallory@example.com>", "ed25519");
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    let head = gpg.commit_signed(&remote, "signed by a stranger", &stranger, None);

    let why = refused(&remote, &gpg.export(&[&known]), &head);

    assert_eq!(
        why,
        format!("signing key {stranger} is not in the OpenPGP keyring")
    );
}

#[test]
fn key_expired_before_the_commit_was_signed_is_unverified() {
    let gpg = Gpg::new();
    let made = now() - 10 * DAY;
    let key = gpg.generate_at(Some(made), "Alice <alice@example.com>", "ed25519", "sign");
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    let head = gpg.commit_signed(&remote, "signed", &key, None);
    // gpg refuses to sign with an expired key: expire it afterwards, by a self-signature dated
    // between the key's creation and the commit (the key then expired 9 days ago).
    gpg.set_expiry_at(Some(made + 3600), &key, "1d");

    let why = refused(&remote, &gpg.export(&[&key]), &head);

    assert!(
        why.starts_with(&format!(
            "key {key} (Alice <alice@example.com>) had expired"
        )),
        "{why}"
    );
    assert!(why.contains("when the commit was signed"), "{why}");
}

#[test]
fn key_expired_before_the_committer_time_is_unverified() {
    let gpg = Gpg::new();
    let key = gpg.generate("Alice <alice@example.com>", "ed25519");
    gpg.set_expiry_at(None, &key, "1d");
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    // Signed now, while the key is valid, but dated after its expiry.
    let head = gpg.commit_signed(
        &remote,
        "signed",
        &key,
        Some(&format!("@{} +0000", now() + 3 * DAY)),
    );

    let why = refused(&remote, &gpg.export(&[&key]), &head);

    assert!(why.contains(&format!("key {key}")), "{why}");
    assert!(why.contains("before the commit's committer time"), "{why}");
}

#[test]
fn revoked_key_is_unverified_naming_it() {
    let gpg = Gpg::new();
    let key = gpg.generate("Alice <alice@example.com>", "ed25519");
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    let head = gpg.commit_signed(&remote, "signed before the revocation", &key, None);
    gpg.revoke(&key);

    let why = refused(&remote, &gpg.export(&[&key]), &head);

    assert!(
        why.starts_with(&format!(
            "key {key} (Alice <alice@example.com>) is revoked ("
        )),
        "{why}"
    );
}

#[test]
fn revoked_signing_subkey_is_unverified_naming_it() {
    let gpg = Gpg::new();
    let primary = gpg.generate_at(None, "Alice <alice@example.com>", "ed25519", "cert");
    let subkey = gpg.add_signing_subkey(&primary);
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    let head = gpg.commit_signed(&remote, "signed", &primary, None);
    gpg.revoke_first_subkey(&primary);

    let why = refused(&remote, &gpg.export(&[&primary]), &head);

    assert!(
        why.starts_with(&format!("subkey {subkey} of key {primary}")),
        "{why}"
    );
    assert!(why.contains("is revoked"), "{why}");
}

#[test]
fn tampered_openpgp_signed_commit_is_unverified() {
    let gpg = Gpg::new();
    let key = gpg.generate("Alice <alice@example.com>", "ed25519");
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    gpg.commit_signed(&remote, "deploy v1", &key, None);
    let tampered = remote.raw_head().replace("deploy v1", "deploy v2") + "\n";
    let head = remote.replace_head_with_raw_commit(tampered.as_bytes());

    let why = refused(&remote, &gpg.export(&[&key]), &head);

    assert!(
        why.starts_with(&format!("bad signature by key {key}")),
        "{why}"
    );
}

#[test]
fn sha1_signed_commit_is_unverified() {
    let gpg = Gpg::new();
    let key = gpg.generate("Alice <alice@example.com>", "rsa2048");
    // A user's old gpg.conf forcing SHA-1; SHA-1 collisions make such signatures movable.
    std::fs::write(gpg.home().join("gpg.conf"), "digest-algo SHA1\n").unwrap();
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    let head = gpg.commit_signed(&remote, "signed", &key, None);

    let why = refused(&remote, &gpg.export(&[&key]), &head);

    assert!(why.contains("hash algorithm SHA1"), "{why}");
}

#[test]
fn keyring_of_two_concatenated_armor_blocks_trusts_the_keys_of_both() {
    let gpg = Gpg::new();
    let alice = gpg.generate("Alice <alice@example.com>", "ed25519");
    let bob = gpg.generate("Bob <bob@example.com>", "ed25519");
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    gpg.commit_signed(&remote, "by alice", &alice, None);
    let meta = tempfile::tempdir().unwrap();
    let both = keyring(meta.path(), &(gpg.export(&[&alice]) + &gpg.export(&[&bob])));
    let cache = tempfile::tempdir().unwrap();
    let mut source = Source::open(spec(&remote, None, Some(both)), cache.path()).unwrap();
    assert_eq!(
        source.fetch().unwrap().signer.unwrap().key_fingerprint,
        alice
    );

    remote.write("a.yaml", "b\n");
    let by_bob = gpg.commit_signed(&remote, "by bob", &bob, None);
    let revision = source.fetch().unwrap();

    assert_eq!(revision.commit, by_bob);
    assert_eq!(revision.signer.unwrap().key_fingerprint, bob);
}

#[test]
fn ssh_and_openpgp_signed_commits_both_verify_when_both_are_configured() {
    let gpg = Gpg::new();
    let pgp_key = gpg.generate("Alice <alice@example.com>", "ed25519");
    let ssh_key = SshKey::new();
    let remote = Remote::new();
    let meta = tempfile::tempdir().unwrap();
    let signers = allowed_signers(
        meta.path(),
        &[format!("alice@example.com {}", ssh_key.public_line)],
    );
    let exported = keyring(meta.path(), &gpg.export(&[&pgp_key]));
    let cache = tempfile::tempdir().unwrap();
    let mut source =
        Source::open(spec(&remote, Some(signers), Some(exported)), cache.path()).unwrap();

    remote.write("a.yaml", "a\n");
    let ssh_signed = remote.commit_signed("ssh", &ssh_key.private);
    let revision = source.fetch().unwrap();
    assert_eq!(revision.commit, ssh_signed);
    assert_eq!(
        revision.signer.unwrap().key_fingerprint,
        ssh_key.fingerprint()
    );

    remote.write("a.yaml", "b\n");
    let pgp_signed = gpg.commit_signed(&remote, "openpgp", &pgp_key, None);
    let revision = source.fetch().unwrap();
    assert_eq!(revision.commit, pgp_signed);
    assert_eq!(revision.signer.unwrap().key_fingerprint, pgp_key);
}

#[test]
fn openpgp_signed_commit_with_only_allowed_signers_is_refused_naming_the_keyring_flag() {
    let gpg = Gpg::new();
    let key = gpg.generate("Alice <alice@example.com>", "ed25519");
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    let head = gpg.commit_signed(&remote, "signed", &key, None);
    let meta = tempfile::tempdir().unwrap();
    let signers = allowed_signers(
        meta.path(),
        &[format!("alice@example.com {}", SshKey::new().public_line)],
    );

    let err = fetch(spec(&remote, Some(signers), None)).unwrap_err();

    assert!(err.is_unverified(), "{err}");
    let text = err.to_string();
    assert!(text.contains(&head), "{text}");
    assert!(
        text.contains(
            "OpenPGP signature but no OpenPGP keyring is configured (set --openpgp-keyring)"
        ),
        "{text}"
    );
}

#[test]
fn ssh_signed_commit_with_only_a_keyring_is_refused_naming_the_allowed_signers_flag() {
    let gpg = Gpg::new();
    let pgp_key = gpg.generate("Alice <alice@example.com>", "ed25519");
    let ssh_key = SshKey::new();
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    let head = remote.commit_signed("ssh", &ssh_key.private);

    let why = refused(&remote, &gpg.export(&[&pgp_key]), &head);

    assert!(why.contains("(set --allowed-signers)"), "{why}");
}

#[test]
fn unreadable_or_empty_keyring_fails_without_returning_the_revision() {
    let gpg = Gpg::new();
    let key = gpg.generate("Alice <alice@example.com>", "ed25519");
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    gpg.commit_signed(&remote, "signed", &key, None);
    let meta = tempfile::tempdir().unwrap();

    for path in [
        PathBuf::from("/nonexistent/keyring.asc"),
        keyring(meta.path(), "not a keyring\n"),
    ] {
        let err = fetch(spec(&remote, None, Some(path.clone()))).unwrap_err();
        assert!(matches!(err, SourceError::OpenPgpKeyring { .. }), "{err}");
        assert!(!err.is_transient());
        assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
    }
}
