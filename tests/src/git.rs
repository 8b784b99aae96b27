//! Real git repositories for tests, isolated from whoever runs them: no
//! user or system configuration (a developer's `commit.gpgsign`, hooks path
//! or default branch cannot change a test), a fixed author (Alice, whose
//! address the signing tests name in `allowed_signers`), `main` as the
//! first branch.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// `git ARGS` in `dir`, isolated; its trimmed stdout. Panics with git's
/// stderr when git fails (a test's set-up failing is a test failing).
pub fn git(dir: &Path, args: &[&str]) -> String {
    match try_git(dir, args) {
        Ok(stdout) => stdout,
        Err(e) => panic!("{e:#}"),
    }
}

/// `git ARGS` in `dir`, isolated; its trimmed stdout, or git's stderr as the error.
pub fn try_git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = isolated(dir)
        .args(args)
        .output()
        .with_context(|| format!("running git {args:?}"))?;
    if !out.status.success() {
        bail!(
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A `git` command in `dir` with no user or system configuration and a
/// fixed identity, for callers that need to add environment or stdin.
pub fn isolated(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Alice")
        .env("GIT_AUTHOR_EMAIL", "alice@example.com")
        .env("GIT_COMMITTER_NAME", "Alice")
        .env("GIT_COMMITTER_EMAIL", "alice@example.com")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "protocol.file.allow=always",
        ]);
    command
}

/// A work-tree repository in a temporary directory, removed when dropped.
pub struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    /// An empty repository on `main`.
    pub fn new() -> Result<Repo> {
        let dir = tempfile::Builder::new()
            .prefix("gitwarden-repo-")
            .tempdir()?;
        try_git(dir.path(), &["init", "-q"])?;
        Ok(Repo { dir })
    }

    /// Its work tree.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `file://…`, as the agent is pointed at it.
    pub fn url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    /// Writes `content` at `path` (directories created).
    pub fn write(&self, path: &str, content: &str) -> Result<&Self> {
        let full = self.path().join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&full, content).with_context(|| format!("writing {}", full.display()))?;
        Ok(self)
    }

    /// Commits everything in the work tree; the new commit's id.
    pub fn commit_all(&self, message: &str) -> Result<String> {
        try_git(self.path(), &["add", "-A"])?;
        try_git(
            self.path(),
            &["commit", "-q", "--allow-empty", "-m", message],
        )?;
        try_git(self.path(), &["rev-parse", "HEAD"])
    }

    /// `git ARGS` in the repository.
    pub fn git(&self, args: &[&str]) -> String {
        git(self.path(), args)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_ignores_the_users_git_configuration_and_lands_on_main() {
        let repo = Repo::new().unwrap();
        repo.write("a/b.yaml", "x: 1\n").unwrap();
        let id = repo.commit_all("first").unwrap();
        assert_eq!(id.len(), 40);
        assert_eq!(repo.git(&["rev-parse", "--abbrev-ref", "HEAD"]), "main");
        assert_eq!(
            repo.git(&["log", "-1", "--format=%an <%ae>"]),
            "Alice <alice@example.com>"
        );
    }
}
