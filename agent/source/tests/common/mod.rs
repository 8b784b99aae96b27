//! Test fixtures: real repositories built with the `git` CLI and keys made with `ssh-keygen`.
#![allow(clippy::unwrap_used, dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use tempfile::TempDir;

/// `git` in a directory, isolated from the user's configuration: the test kit's.
pub use gitwarden_tests::git::git;

pub mod gpg;

/// A work-tree repository acting as the remote.
pub struct Remote {
    pub dir: TempDir,
}

impl Remote {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q"]);
        Remote { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The plain local path, as a URL string.
    pub fn url(&self) -> String {
        self.path().to_str().unwrap().to_string()
    }

    pub fn write(&self, path: &str, content: &str) -> &Self {
        let full = self.path().join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
        self
    }

    pub fn remove(&self, path: &str) -> &Self {
        std::fs::remove_file(self.path().join(path)).unwrap();
        self
    }

    pub fn symlink(&self, link: &str, target: &str) -> &Self {
        let full = self.path().join(link);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, full).unwrap();
        self
    }

    /// Commit everything; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        git(self.path(), &["add", "-A"]);
        git(
            self.path(),
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        self.head()
    }

    /// Commit everything signed with the SSH private key at `key`.
    pub fn commit_signed(&self, message: &str, key: &Path) -> String {
        git(self.path(), &["add", "-A"]);
        git(
            self.path(),
            &[
                "-c",
                "gpg.format=ssh",
                "-c",
                &format!("user.signingkey={}", key.display()),
                "commit",
                "-q",
                "--allow-empty",
                "-S",
                "-m",
                message,
            ],
        );
        self.head()
    }

    pub fn head(&self) -> String {
        git(self.path(), &["rev-parse", "HEAD"])
    }

    /// Write a raw commit object (e.g. a tampered copy) and point `main` at it.
    pub fn replace_head_with_raw_commit(&self, raw: &[u8]) -> String {
        let raw_file = self.path().join(".git/raw-commit");
        std::fs::write(&raw_file, raw).unwrap();
        let id = git(
            self.path(),
            &[
                "hash-object",
                "-t",
                "commit",
                "-w",
                raw_file.to_str().unwrap(),
            ],
        );
        git(self.path(), &["update-ref", "refs/heads/main", &id]);
        id
    }

    pub fn raw_head(&self) -> String {
        git(self.path(), &["cat-file", "commit", "HEAD"])
    }
}

/// A key pair made by `ssh-keygen`.
pub struct SshKey {
    _dir: TempDir,
    pub private: PathBuf,
    pub public_line: String,
}

impl SshKey {
    pub fn new() -> Self {
        Self::of_type("ed25519")
    }

    /// A key of `kind` (`ed25519`, `ecdsa`, `rsa`, as `ssh-keygen -t` names them).
    pub fn of_type(kind: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join(format!("id_{kind}"));
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-C", "test", "-f"])
            .arg(&private)
            .status()
            .unwrap();
        assert!(status.success());
        let public_line = std::fs::read_to_string(private.with_extension("pub"))
            .unwrap()
            .trim()
            .to_string();
        SshKey {
            _dir: dir,
            private,
            public_line,
        }
    }

    /// `ssh-keygen -lf` fingerprint, e.g. `SHA256:…`.
    pub fn fingerprint(&self) -> String {
        let output = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.private.with_extension("pub"))
            .output()
            .unwrap();
        String::from_utf8(output.stdout)
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    }
}

/// Write an allowed_signers file with `lines` into `dir`.
pub fn allowed_signers(dir: &Path, lines: &[String]) -> PathBuf {
    let path = dir.join("allowed_signers");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}
