//! Commit signature verification on real commits signed by `git commit -S` with ssh-keygen keys.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use common::{Remote, SshKey, allowed_signers};
use gitwarden_source::{GitRef, Source, SourceError, SourceSpec, Verification};

/// A spec following `main` with verification against `signers`.
fn verified_spec(remote: &Remote, signers: PathBuf) -> SourceSpec {
    let mut spec = SourceSpec::new(remote.url(), GitRef::Branch("main".into()));
    spec.verify = Some(Verification::SshSignatures {
        allowed_signers_file: signers,
    });
    spec
}

fn fetch(spec: SourceSpec) -> Result<gitwarden_source::FetchedRevision, SourceError> {
    let cache = tempfile::tempdir().unwrap();
    Source::open(spec, cache.path())?.fetch()
}

fn unverified_why(err: SourceError, expected_commit: &str) -> String {
    match err {
        SourceError::Unverified { commit, why } => {
            assert_eq!(commit, expected_commit);
            why
        }
        other => panic!("expected Unverified, got {other}"),
    }
}

#[test]
fn signed_commit_by_allowed_key_is_verified_with_principal_and_fingerprint() {
    let key = SshKey::new();
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    let head = remote.commit_signed("signed", &key.private);
    let meta = tempfile::tempdir().unwrap();
    let signers = allowed_signers(
        meta.path(),
        &[
            "# the team".into(),
            format!("alice@example.com namespaces=\"git\" {}", key.public_line),
        ],
    );

    let revision = fetch(verified_spec(&remote, signers)).unwrap();

    assert_eq!(revision.commit, head);
    let signer = revision.signer.unwrap();
    assert_eq!(signer.principal, "alice@example.com");
    assert_eq!(signer.key_fingerprint, key.fingerprint());
}

#[test]
fn ecdsa_p256_and_rsa_signatures_are_verified() {
    for kind in ["ecdsa", "rsa"] {
        let key = SshKey::of_type(kind);
        let remote = Remote::new();
        remote.write("a.yaml", "a\n");
        let head = remote.commit_signed("signed", &key.private);
        let meta = tempfile::tempdir().unwrap();
        let signers = allowed_signers(
            meta.path(),
            &[format!("alice@example.com {}", key.public_line)],
        );

        let revision = fetch(verified_spec(&remote, signers)).unwrap();

        assert_eq!(revision.commit, head, "{kind}");
        assert_eq!(
            revision.signer.unwrap().key_fingerprint,
            key.fingerprint(),
            "{kind}"
        );
    }
}

#[test]
fn wildcard_principal_reports_the_committer_email() {
    let key = SshKey::new();
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    remote.commit_signed("signed", &key.private);
    let meta = tempfile::tempdir().unwrap();
    let signers = allowed_signers(meta.path(), &[format!("* {}", key.public_line)]);

    let revision = fetch(verified_spec(&remote, signers)).unwrap();

    assert_eq!(revision.signer.unwrap().principal, "alice@example.com");
}

#[test]
fn unsigned_head_is_unverified() {
    let key = SshKey::new();
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    remote.commit_signed("signed", &key.private);
    remote.write("a.yaml", "b\n");
    let unsigned = remote.commit("unsigned on top");
    let meta = tempfile::tempdir().unwrap();
    let signers = allowed_signers(
        meta.path(),
        &[format!("alice@example.com {}", key.public_line)],
    );

    let err = fetch(verified_spec(&remote, signers)).unwrap_err();

    assert!(!err.is_transient());
    let why = unverified_why(err, &unsigned);
    assert!(why.contains("not signed"), "{why}");
}

#[test]
fn commit_signed_by_a_key_not_in_allowed_signers_is_unverified() {
    let allowed = SshKey::new();
    let stranger = SshKey::new();
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    let head = remote.commit_signed("signed by a stranger", &stranger.private);
    let meta = tempfile::tempdir().unwrap();
    let signers = allowed_signers(
        meta.path(),
        &[format!("alice@example.com {}", allowed.public_line)],
    );

    let why = unverified_why(fetch(verified_spec(&remote, signers)).unwrap_err(), &head);

    assert!(why.contains("not in allowed signers"), "{why}");
    assert!(why.contains(&stranger.fingerprint()), "{why}");
}

#[test]
fn tampered_commit_with_copied_signature_is_unverified() {
    let key = SshKey::new();
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    remote.commit_signed("deploy v1", &key.private);
    let tampered = remote.raw_head().replace("deploy v1", "deploy v2") + "\n";
    let head = remote.replace_head_with_raw_commit(tampered.as_bytes());
    let meta = tempfile::tempdir().unwrap();
    let signers = allowed_signers(
        meta.path(),
        &[format!("alice@example.com {}", key.public_line)],
    );

    let why = unverified_why(fetch(verified_spec(&remote, signers)).unwrap_err(), &head);

    assert!(why.contains("bad signature"), "{why}");
}

#[test]
fn key_allowed_only_for_another_namespace_is_unverified() {
    let key = SshKey::new();
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    let head = remote.commit_signed("signed", &key.private);
    let meta = tempfile::tempdir().unwrap();
    let signers = allowed_signers(
        meta.path(),
        &[format!(
            "alice@example.com namespaces=\"file\" {}",
            key.public_line
        )],
    );

    let why = unverified_why(fetch(verified_spec(&remote, signers)).unwrap_err(), &head);

    assert!(why.contains("namespace"), "{why}");
}

#[test]
fn openpgp_signature_without_a_configured_keyring_names_the_flag() {
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    remote.commit("unsigned");
    let raw = remote.raw_head();
    let (headers, message) = raw.split_once("\n\n").unwrap();
    let pgp =
        "gpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n -----END PGP SIGNATURE-----";
    let head =
        remote.replace_head_with_raw_commit(format!("{headers}\n{pgp}\n\n{message}\n").as_bytes());
    let meta = tempfile::tempdir().unwrap();
    let key = SshKey::new();
    let signers = allowed_signers(
        meta.path(),
        &[format!("alice@example.com {}", key.public_line)],
    );

    let why = unverified_why(fetch(verified_spec(&remote, signers)).unwrap_err(), &head);

    assert!(
        why.contains("no OpenPGP keyring is configured (set --openpgp-keyring)"),
        "{why}"
    );
}

#[test]
fn unreadable_allowed_signers_file_fails_without_returning_the_revision() {
    let key = SshKey::new();
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    remote.commit_signed("signed", &key.private);

    let err = fetch(verified_spec(
        &remote,
        "/nonexistent/allowed_signers".into(),
    ))
    .unwrap_err();

    assert!(matches!(err, SourceError::AllowedSigners { .. }), "{err}");
}

#[test]
fn previously_verified_source_refuses_a_later_unsigned_head() {
    let key = SshKey::new();
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    let signed = remote.commit_signed("signed", &key.private);
    let meta = tempfile::tempdir().unwrap();
    let signers = allowed_signers(
        meta.path(),
        &[format!("alice@example.com {}", key.public_line)],
    );
    let cache = tempfile::tempdir().unwrap();
    let mut source = Source::open(verified_spec(&remote, signers), cache.path()).unwrap();
    assert_eq!(source.fetch().unwrap().commit, signed);

    remote.write("a.yaml", "evil\n");
    remote.commit("unsigned push");

    assert!(source.fetch().unwrap_err().is_unverified());
}
