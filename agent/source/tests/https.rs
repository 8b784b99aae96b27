//! Fetching over https from a real git smart-HTTP server (`git http-backend` behind TLS and
//! basic authentication, see `support/https_git.rs`), with credentials read from files and the
//! server's private CA trusted through `SourceOptions::ca_file`.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "support/https_git.rs"]
mod https_git;

use std::path::{Path, PathBuf};

use common::{Remote, git};
use gitwarden_source::{
    Auth, DEFAULT_TOKEN_USERNAME, FetchedRevision, GitRef, Source, SourceError, SourceOptions,
    SourceSpec,
};
use https_git::{HttpsGitServer, TestCa};
use tempfile::TempDir;

const TOKEN: &str = "ghp_right-token-0123456789";
const PASSWORD: &str = "correct horse battery staple";

/// A work tree to commit in, a bare copy served over https, and the files the client needs.
struct Fixture {
    work: Remote,
    root: TempDir,
    secrets: TempDir,
    ca_file: PathBuf,
    server: HttpsGitServer,
}

impl Fixture {
    /// One commit on `main`, served by a server with a certificate from a fresh CA that the
    /// client is told to trust.
    fn new() -> Self {
        let ca = TestCa::new("gitwarden test CA");
        Self::serving_cert_from(&ca, &ca)
    }

    /// Server certificate from `server_ca`; the client trusts `trusted_ca`.
    fn serving_cert_from(server_ca: &TestCa, trusted_ca: &TestCa) -> Self {
        let work = Remote::new();
        work.write("deploy/app.yaml", "kind: ConfigMap\n");
        work.commit("first");
        let root = tempfile::tempdir().unwrap();
        git(
            root.path(),
            &["init", "-q", "--bare", "repo.git", "--initial-branch=main"],
        );
        let secrets = tempfile::tempdir().unwrap();
        let ca_file = trusted_ca.write_pem(secrets.path(), "ca.pem");
        let server = HttpsGitServer::start(
            root.path(),
            &server_ca.issue_localhost(),
            &[(DEFAULT_TOKEN_USERNAME, TOKEN), ("alice", PASSWORD)],
        );
        let fixture = Fixture {
            work,
            root,
            secrets,
            ca_file,
            server,
        };
        fixture.push();
        fixture
    }

    /// Push the work tree's `main` to the served bare repository; returns the pushed commit.
    fn push(&self) -> String {
        let bare = self.root.path().join("repo.git");
        git(
            self.work.path(),
            &["push", "-q", "--force", bare.to_str().unwrap(), "main:main"],
        );
        self.work.head()
    }

    fn url(&self) -> String {
        self.server.url("repo.git")
    }

    fn secret_file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.secrets.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    fn token_auth(&self, token: &str) -> Auth {
        Auth::Token {
            token_file: self.secret_file("token", &format!("{token}\n")),
            username: None,
        }
    }

    fn spec(&self, auth: Auth) -> SourceSpec {
        let mut spec = SourceSpec::new(self.url(), GitRef::Branch("main".into()));
        spec.auth = auth;
        spec.path = "deploy".into();
        spec
    }

    /// Options trusting the fixture's CA file.
    fn options(&self) -> SourceOptions {
        SourceOptions {
            ca_file: Some(self.ca_file.clone()),
            ..SourceOptions::default()
        }
    }

    fn source(&self, auth: Auth, cache: &Path) -> Source {
        Source::open_with_options(self.spec(auth), cache, self.options()).unwrap()
    }
}

fn paths(revision: &FetchedRevision) -> Vec<&str> {
    revision.files.iter().map(|f| f.path.as_str()).collect()
}

#[test]
fn fetch_with_the_right_token_returns_the_pushed_commit() {
    let fixture = Fixture::new();
    let pushed = fixture.work.head();
    let cache = tempfile::tempdir().unwrap();

    let revision = fixture
        .source(fixture.token_auth(TOKEN), cache.path())
        .fetch()
        .unwrap();

    assert_eq!(revision.commit, pushed);
    assert_eq!(paths(&revision), vec!["app.yaml"]);
    assert_eq!(revision.files[0].content, b"kind: ConfigMap\n");
    let seen = fixture.server.seen();
    assert!(
        seen.iter()
            .any(|s| s.status == 200 && s.user.as_deref() == Some(DEFAULT_TOKEN_USERNAME)),
        "no authenticated request reached git http-backend: {seen:?}"
    );
}

#[test]
fn wrong_token_is_an_authentication_error_naming_the_url_without_the_secret() {
    let fixture = Fixture::new();
    let wrong = "ghp_wrong-token-9876543210";
    let cache = tempfile::tempdir().unwrap();

    let err = fixture
        .source(fixture.token_auth(wrong), cache.path())
        .fetch()
        .unwrap_err();

    assert!(
        matches!(&err, SourceError::AuthFailed { url, .. } if *url == fixture.url()),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(&fixture.url()), "{message}");
    assert!(!message.contains(wrong), "the token leaked: {message}");
    assert!(
        !format!("{err:?}").contains(wrong),
        "the token leaked: {err:?}"
    );
    assert!(!err.is_transient());
    assert!(
        fixture
            .server
            .seen()
            .iter()
            .all(|s| s.status == 401 && s.user.is_none())
    );
}

#[test]
fn basic_auth_with_user_and_password_file_fetches() {
    let fixture = Fixture::new();
    let pushed = fixture.work.head();
    let cache = tempfile::tempdir().unwrap();
    let auth = Auth::Basic {
        username: "alice".into(),
        password_file: fixture.secret_file("password", PASSWORD),
    };

    let revision = fixture.source(auth, cache.path()).fetch().unwrap();

    assert_eq!(revision.commit, pushed);
    assert!(
        fixture
            .server
            .seen()
            .iter()
            .any(|s| s.status == 200 && s.user.as_deref() == Some("alice"))
    );
}

#[test]
fn next_fetch_over_https_gets_a_newly_pushed_commit() {
    let fixture = Fixture::new();
    let first = fixture.work.head();
    let cache = tempfile::tempdir().unwrap();
    let mut source = fixture.source(fixture.token_auth(TOKEN), cache.path());
    assert_eq!(source.fetch().unwrap().commit, first);

    fixture
        .work
        .write("deploy/second.yaml", "kind: Secret\n")
        .remove("deploy/app.yaml");
    fixture.work.commit("second");
    let second = fixture.push();
    let revision = source.fetch().unwrap();

    assert_ne!(first, second);
    assert_eq!(revision.commit, second);
    assert_eq!(paths(&revision), vec!["second.yaml"]);
}

#[test]
fn shallow_fetch_over_https_takes_only_the_head_commit() {
    let fixture = Fixture::new();
    let parent = fixture.work.head();
    fixture
        .work
        .write("deploy/app.yaml", "kind: ConfigMap\nv: 2\n");
    fixture.work.commit("second");
    let head = fixture.push();
    let cache = tempfile::tempdir().unwrap();
    let options = SourceOptions {
        shallow: true,
        ..fixture.options()
    };
    let mut source = Source::open_with_options(
        fixture.spec(fixture.token_auth(TOKEN)),
        cache.path(),
        options,
    )
    .unwrap();

    let revision = source.fetch().unwrap();

    assert_eq!(revision.commit, head);
    assert_eq!(revision.files[0].content, b"kind: ConfigMap\nv: 2\n");
    let cache_repo = source.cache_path();
    let shallow = std::fs::read_to_string(cache_repo.join("shallow")).unwrap();
    assert_eq!(shallow.trim(), head);
    let parent_present = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(cache_repo)
        .args(["cat-file", "-e", &parent])
        .status()
        .unwrap()
        .success();
    assert!(!parent_present, "the parent commit was fetched too");
}

#[test]
fn server_certificate_from_an_unknown_ca_is_refused() {
    let server_ca = TestCa::new("somebody else's CA");
    let trusted_ca = TestCa::new("the CA we trust");
    let fixture = Fixture::serving_cert_from(&server_ca, &trusted_ca);
    let cache = tempfile::tempdir().unwrap();

    let err = fixture
        .source(fixture.token_auth(TOKEN), cache.path())
        .fetch()
        .unwrap_err();

    let message = format!("{err:#}");
    assert!(
        matches!(&err, SourceError::Unreachable { url, .. } if *url == fixture.url()),
        "{err:?}"
    );
    assert!(message.to_lowercase().contains("certificate"), "{message}");
    assert!(!message.contains(TOKEN), "the token leaked: {message}");
    assert_eq!(fixture.server.handshakes(), 0);
    assert!(fixture.server.seen().is_empty());
}
