//! Fetching real repositories over local paths, file:// and a stand-in ssh program.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{Remote, git};
use gitwarden_source::{Auth, GitRef, Source, SourceError, SourceOptions, SourceSpec};

fn branch(remote: &Remote, name: &str) -> SourceSpec {
    SourceSpec::new(remote.url(), GitRef::Branch(name.into()))
}

fn paths(revision: &gitwarden_source::FetchedRevision) -> Vec<&str> {
    revision.files.iter().map(|f| f.path.as_str()).collect()
}

fn fetch(spec: SourceSpec, cache: &Path) -> Result<gitwarden_source::FetchedRevision, SourceError> {
    Source::open(spec, cache)?.fetch()
}

#[test]
fn first_fetch_of_branch_returns_files_under_path_at_head_commit() {
    let remote = Remote::new();
    remote
        .write("deploy/app.yaml", "kind: ConfigMap\n")
        .write("other/ignored.yaml", "kind: Secret\n");
    let head = remote.commit("first");
    let cache = tempfile::tempdir().unwrap();
    let mut spec = branch(&remote, "main");
    spec.path = "deploy".into();

    let revision = fetch(spec, cache.path()).unwrap();

    assert_eq!(revision.commit, head);
    assert_eq!(revision.branch_or_tag, "main");
    assert_eq!(paths(&revision), vec!["app.yaml"]);
    assert_eq!(revision.files[0].content, b"kind: ConfigMap\n");
    assert!(revision.signer.is_none());
}

#[test]
fn next_fetch_picks_up_a_new_commit() {
    let remote = Remote::new();
    remote.write("a.yaml", "a: 1\n");
    remote.commit("first");
    let cache = tempfile::tempdir().unwrap();
    let mut source = Source::open(branch(&remote, "main"), cache.path()).unwrap();
    source.fetch().unwrap();

    remote.write("b.yaml", "b: 1\n").remove("a.yaml");
    let second = remote.commit("second");
    let revision = source.fetch().unwrap();

    assert_eq!(revision.commit, second);
    assert_eq!(paths(&revision), vec!["b.yaml"]);
}

#[test]
fn unchanged_remote_yields_the_same_commit_again() {
    let remote = Remote::new();
    remote.write("a.yaml", "a: 1\n");
    let head = remote.commit("first");
    let cache = tempfile::tempdir().unwrap();
    let mut source = Source::open(branch(&remote, "main"), cache.path()).unwrap();

    let first = source.fetch().unwrap();
    let second = source.fetch().unwrap();

    assert_eq!(first.commit, head);
    assert_eq!(second.commit, head);
    assert_eq!(first.files, second.files);
}

#[test]
fn force_pushed_branch_is_followed() {
    let remote = Remote::new();
    remote.write("a.yaml", "a: 1\n");
    let base = remote.commit("base");
    remote.write("a.yaml", "a: 2\n");
    remote.commit("to be rewritten");
    let cache = tempfile::tempdir().unwrap();
    let mut source = Source::open(branch(&remote, "main"), cache.path()).unwrap();
    source.fetch().unwrap();

    git(remote.path(), &["reset", "-q", "--hard", &base]);
    remote.write("a.yaml", "a: 3\n");
    let rewritten = remote.commit("rewritten");
    let revision = source.fetch().unwrap();

    assert_eq!(revision.commit, rewritten);
    assert_eq!(revision.files[0].content, b"a: 3\n");
}

#[test]
fn fetch_is_shallow() {
    let remote = Remote::new();
    for n in 0..3 {
        remote.write("a.yaml", &format!("a: {n}\n"));
        remote.commit(&format!("commit {n}"));
    }
    let cache = tempfile::tempdir().unwrap();
    let mut source = Source::open(branch(&remote, "main"), cache.path()).unwrap();
    source.fetch().unwrap();

    let count = git(
        source.cache_path(),
        &["rev-list", "--count", "refs/remotes/origin/main"],
    );
    assert_eq!(count, "1");
}

#[test]
fn annotated_tag_resolves_to_the_tagged_commit() {
    let remote = Remote::new();
    remote.write("a.yaml", "v: 1\n");
    let tagged = remote.commit("release");
    git(remote.path(), &["tag", "-a", "v1.0.0", "-m", "release 1"]);
    remote.write("a.yaml", "v: 2\n");
    remote.commit("after the tag");
    let cache = tempfile::tempdir().unwrap();

    let revision = fetch(
        SourceSpec::new(remote.url(), GitRef::Tag("v1.0.0".into())),
        cache.path(),
    )
    .unwrap();

    assert_eq!(revision.commit, tagged);
    assert_eq!(revision.branch_or_tag, "v1.0.0");
    assert_eq!(revision.files[0].content, b"v: 1\n");
}

#[test]
fn moved_tag_is_picked_up_by_the_next_fetch() {
    let remote = Remote::new();
    remote.write("a.yaml", "v: 1\n");
    remote.commit("one");
    git(remote.path(), &["tag", "stable"]);
    let cache = tempfile::tempdir().unwrap();
    let mut source = Source::open(
        SourceSpec::new(remote.url(), GitRef::Tag("stable".into())),
        cache.path(),
    )
    .unwrap();
    source.fetch().unwrap();

    remote.write("a.yaml", "v: 2\n");
    let two = remote.commit("two");
    git(remote.path(), &["tag", "-f", "stable"]);

    assert_eq!(source.fetch().unwrap().commit, two);
}

#[test]
fn pinned_commit_is_fetched_even_after_the_branch_moved_on() {
    let remote = Remote::new();
    remote.write("a.yaml", "v: 1\n");
    let pinned = remote.commit("pinned");
    remote.write("a.yaml", "v: 2\n");
    remote.commit("later");
    let cache = tempfile::tempdir().unwrap();

    let revision = fetch(
        SourceSpec::new(remote.url(), GitRef::Commit(pinned.clone())),
        cache.path(),
    )
    .unwrap();

    assert_eq!(revision.commit, pinned);
    assert_eq!(revision.branch_or_tag, pinned);
    assert_eq!(revision.files[0].content, b"v: 1\n");
}

#[test]
fn pinned_commit_is_found_in_a_shallow_cache_of_the_same_remote() {
    // The cache already holds a shallow clone of `main` (from another source with this URL),
    // whose boundary hides the pinned commit.
    let remote = Remote::new();
    remote.write("a.yaml", "v: 1\n");
    let pinned = remote.commit("pinned");
    remote.write("a.yaml", "v: 2\n");
    remote.commit("later");
    let cache = tempfile::tempdir().unwrap();
    fetch(branch(&remote, "main"), cache.path()).unwrap();

    let revision = fetch(
        SourceSpec::new(remote.url(), GitRef::Commit(pinned.clone())),
        cache.path(),
    )
    .unwrap();

    assert_eq!(revision.commit, pinned);
}

#[test]
fn pinned_commit_is_found_by_a_full_fetch_when_the_server_refuses_unadvertised_commits() {
    // Protocol v0: git upload-pack refuses wants that are not advertised tips.
    let remote = Remote::new();
    remote.write("a.yaml", "v: 1\n");
    let pinned = remote.commit("pinned");
    remote.write("a.yaml", "v: 2\n");
    remote.commit("later");
    let cache = tempfile::tempdir().unwrap();
    let options = SourceOptions {
        git_config: vec!["protocol.version=0".into()],
        ..SourceOptions::default()
    };

    let spec = SourceSpec::new(remote.url(), GitRef::Commit(pinned.clone()));
    let mut source = Source::open_with_options(spec, cache.path(), options).unwrap();

    let revision = source.fetch().unwrap();

    assert_eq!(revision.commit, pinned);
    assert_eq!(revision.files[0].content, b"v: 1\n");
    let full_fetch_refs = git(
        source.cache_path(),
        &["for-each-ref", "refs/gitwarden/all/"],
    );
    assert!(!full_fetch_refs.is_empty(), "the fallback was not used");
}

#[test]
fn unknown_pinned_commit_is_unknown_ref() {
    let remote = Remote::new();
    remote.write("a.yaml", "v: 1\n");
    remote.commit("one");
    let cache = tempfile::tempdir().unwrap();

    let err = fetch(
        SourceSpec::new(remote.url(), GitRef::Commit("1".repeat(40))),
        cache.path(),
    )
    .unwrap_err();

    assert!(matches!(err, SourceError::UnknownRef { .. }), "{err}");
}

#[test]
fn only_yaml_yml_and_json_files_are_returned() {
    let remote = Remote::new();
    remote
        .write("a.yaml", "a\n")
        .write("b.yml", "b\n")
        .write("c.json", "{}\n")
        .write("README.md", "docs\n")
        .write("script.sh", "echo\n")
        .write("values.yaml.bak", "old\n");
    remote.commit("mixed");
    let cache = tempfile::tempdir().unwrap();

    let revision = fetch(branch(&remote, "main"), cache.path()).unwrap();

    assert_eq!(paths(&revision), vec!["a.yaml", "b.yml", "c.json"]);
}

#[test]
fn nested_directories_are_walked_and_sorted_by_path() {
    let remote = Remote::new();
    remote
        .write("base/z.yaml", "z\n")
        .write("base/apps/web/deploy.yaml", "web\n")
        .write("base/apps/api.yaml", "api\n")
        .write("base/a.yaml", "a\n");
    remote.commit("nested");
    let cache = tempfile::tempdir().unwrap();
    let mut spec = branch(&remote, "main");
    spec.path = "./base/".into();

    let revision = fetch(spec, cache.path()).unwrap();

    assert_eq!(
        paths(&revision),
        vec!["a.yaml", "apps/api.yaml", "apps/web/deploy.yaml", "z.yaml"]
    );
}

#[test]
fn missing_path_is_path_not_found() {
    let remote = Remote::new();
    remote.write("deploy/a.yaml", "a\n");
    let head = remote.commit("one");
    let cache = tempfile::tempdir().unwrap();
    let mut spec = branch(&remote, "main");
    spec.path = "clusters/prod".into();

    let err = fetch(spec, cache.path()).unwrap_err();

    match err {
        SourceError::PathNotFound { commit, path } => {
            assert_eq!(commit, head);
            assert_eq!(path, "clusters/prod");
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn path_naming_a_file_is_path_not_found() {
    let remote = Remote::new();
    remote.write("deploy/a.yaml", "a\n");
    remote.commit("one");
    let cache = tempfile::tempdir().unwrap();
    let mut spec = branch(&remote, "main");
    spec.path = "deploy/a.yaml".into();

    assert!(matches!(
        fetch(spec, cache.path()),
        Err(SourceError::PathNotFound { .. })
    ));
}

#[test]
fn unknown_branch_is_unknown_ref_and_not_transient() {
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    remote.commit("one");
    let cache = tempfile::tempdir().unwrap();

    let err = fetch(branch(&remote, "does-not-exist"), cache.path()).unwrap_err();

    assert!(matches!(err, SourceError::UnknownRef { .. }), "{err}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("does-not-exist"), "{err}");
}

#[test]
fn missing_local_repository_is_a_transient_error_naming_the_url() {
    let gone = tempfile::tempdir().unwrap();
    let url = gone
        .path()
        .join("nothing-here")
        .to_str()
        .unwrap()
        .to_string();
    let cache = tempfile::tempdir().unwrap();

    let err = fetch(
        SourceSpec::new(url.clone(), GitRef::Branch("main".into())),
        cache.path(),
    )
    .unwrap_err();

    assert!(matches!(err, SourceError::Unreachable { .. }), "{err}");
    assert!(err.is_transient());
    assert!(err.to_string().contains(&url), "{err}");
}

#[test]
fn refused_http_connection_is_a_transient_error_naming_the_url() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/org/repo.git");
    let cache = tempfile::tempdir().unwrap();

    let err = fetch(
        SourceSpec::new(url.clone(), GitRef::Branch("main".into())),
        cache.path(),
    )
    .unwrap_err();

    assert!(matches!(err, SourceError::Unreachable { .. }), "{err}");
    assert!(err.is_transient());
    assert!(err.to_string().contains(&url), "{err}");
}

#[test]
fn file_url_is_fetched() {
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    let head = remote.commit("one");
    let cache = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote.url());

    let revision = fetch(
        SourceSpec::new(url, GitRef::Branch("main".into())),
        cache.path(),
    )
    .unwrap();

    assert_eq!(revision.commit, head);
}

#[test]
fn oversized_file_is_an_error_naming_the_file() {
    let remote = Remote::new();
    remote
        .write("deploy/small.yaml", "a\n")
        .write("deploy/big.yaml", &"x".repeat(2048));
    remote.commit("big");
    let cache = tempfile::tempdir().unwrap();
    let mut spec = branch(&remote, "main");
    spec.path = "deploy".into();
    let options = SourceOptions {
        max_file_bytes: 1024,
        ..SourceOptions::default()
    };

    let err = Source::open_with_options(spec, cache.path(), options)
        .unwrap()
        .fetch()
        .unwrap_err();

    match &err {
        SourceError::FileTooLarge {
            path, size, limit, ..
        } => {
            assert_eq!(path, "deploy/big.yaml");
            assert_eq!((*size, *limit), (2048, 1024));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("deploy/big.yaml"));
}

#[test]
fn oversized_non_manifest_file_is_ignored() {
    let remote = Remote::new();
    remote
        .write("a.yaml", "a\n")
        .write("image.png", &"x".repeat(4096));
    remote.commit("binary");
    let cache = tempfile::tempdir().unwrap();
    let options = SourceOptions {
        max_file_bytes: 1024,
        ..SourceOptions::default()
    };

    let revision = Source::open_with_options(branch(&remote, "main"), cache.path(), options)
        .unwrap()
        .fetch()
        .unwrap();

    assert_eq!(paths(&revision), vec!["a.yaml"]);
}

#[test]
fn symlink_within_the_repository_is_followed() {
    let remote = Remote::new();
    remote
        .write("shared/common.yaml", "common\n")
        .symlink("deploy/common.yaml", "../shared/common.yaml");
    remote.commit("link");
    let cache = tempfile::tempdir().unwrap();
    let mut spec = branch(&remote, "main");
    spec.path = "deploy".into();

    let revision = fetch(spec, cache.path()).unwrap();

    assert_eq!(paths(&revision), vec!["common.yaml"]);
    assert_eq!(revision.files[0].content, b"common\n");
}

#[test]
fn symlink_leaving_the_repository_is_skipped() {
    let remote = Remote::new();
    remote
        .write("deploy/a.yaml", "a\n")
        .symlink("deploy/passwd.yaml", "/etc/passwd")
        .symlink("deploy/up.yaml", "../../outside.yaml");
    remote.commit("escaping links");
    let cache = tempfile::tempdir().unwrap();
    let mut spec = branch(&remote, "main");
    spec.path = "deploy".into();

    let revision = fetch(spec, cache.path()).unwrap();

    assert_eq!(paths(&revision), vec!["a.yaml"]);
}

#[test]
fn two_sources_with_the_same_url_share_one_cache_directory() {
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    remote.commit("one");
    let cache = tempfile::tempdir().unwrap();

    let a = Source::open(branch(&remote, "main"), cache.path()).unwrap();
    let b = Source::open(
        SourceSpec::new(remote.url(), GitRef::Tag("v1".into())),
        cache.path(),
    )
    .unwrap();

    assert_eq!(a.cache_path(), b.cache_path());
    assert!(a.cache_path().starts_with(cache.path()));
}

#[test]
fn missing_token_file_fails_the_fetch_naming_the_file() {
    let cache = tempfile::tempdir().unwrap();
    let mut spec = SourceSpec::new(
        "https://127.0.0.1:1/org/repo.git",
        GitRef::Branch("main".into()),
    );
    spec.auth = Auth::Token {
        token_file: "/nonexistent/token".into(),
        username: None,
    };

    let err = fetch(spec, cache.path()).unwrap_err();

    assert!(matches!(err, SourceError::Credentials { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/token"));
}

/// The ssh transport runs our ssh program with the deploy key and strict host checking; a
/// stand-in script records its arguments and serves the repository locally.
#[test]
fn ssh_remote_runs_ssh_with_deploy_key_and_strict_known_hosts() {
    let remote = Remote::new();
    remote.write("a.yaml", "a\n");
    let head = remote.commit("one");
    let tools = tempfile::tempdir().unwrap();
    let log = tools.path().join("ssh-args");
    let fake_ssh = tools.path().join("fake-ssh");
    std::fs::write(
        &fake_ssh,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n\
             while [ $# -gt 0 ]; do case \"$1\" in git@*) shift; break;; *) shift;; esac; done\n\
             exec sh -c \"$*\"\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &fake_ssh,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let key = tools.path().join("deploy_key");
    let known_hosts = tools.path().join("known_hosts");
    std::fs::write(&key, "not used by the stand-in\n").unwrap();
    std::fs::write(&known_hosts, "git.example ssh-ed25519 AAAA\n").unwrap();
    let mut spec = SourceSpec::new(
        format!("git@git.example:{}", remote.url()),
        GitRef::Branch("main".into()),
    );
    spec.auth = Auth::Ssh {
        private_key_file: key.clone(),
        known_hosts_file: known_hosts.clone(),
    };
    let cache = tempfile::tempdir().unwrap();
    let options = SourceOptions {
        ssh_program: fake_ssh,
        ..SourceOptions::default()
    };

    let revision = Source::open_with_options(spec, cache.path(), options)
        .unwrap()
        .fetch()
        .unwrap();

    assert_eq!(revision.commit, head);
    let args = std::fs::read_to_string(&log).unwrap();
    let args: Vec<&str> = args.lines().collect();
    for expected in [
        "-i",
        key.to_str().unwrap(),
        "IdentitiesOnly=yes",
        &format!("UserKnownHostsFile={}", known_hosts.display()),
        "StrictHostKeyChecking=yes",
        "BatchMode=yes",
        "git@git.example",
    ] {
        assert!(args.contains(&expected), "{expected} missing from {args:?}");
    }
}

#[test]
fn ssh_remote_with_missing_deploy_key_is_a_credentials_error() {
    let cache = tempfile::tempdir().unwrap();
    let mut spec = SourceSpec::new(
        "ssh://git@git.example/org/repo.git",
        GitRef::Branch("main".into()),
    );
    spec.auth = Auth::Ssh {
        private_key_file: "/nonexistent/key".into(),
        known_hosts_file: "/nonexistent/known_hosts".into(),
    };

    let err = fetch(spec, cache.path()).unwrap_err();

    assert!(matches!(err, SourceError::Credentials { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/key"));
}
