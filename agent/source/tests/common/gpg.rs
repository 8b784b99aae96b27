//! OpenPGP fixtures made with real GnuPG (`gpg`, Debian's `gnupg`) in an isolated home, and
//! commits signed by `git commit -S` through it.

use std::{path::Path, process::Command};

use tempfile::TempDir;

use super::{Remote, git};

/// A throw-away GnuPG home: keys made here never touch the user's keyring, and nothing asks
/// for a passphrase (keys have none; pinentry is loopback).
pub struct Gpg {
    home: TempDir,
}

impl Gpg {
    /// A fresh home. Panics, rather than skipping, when `gpg` is missing: CI must install
    /// gnupg (`.ci/run` does) or these tests would silently stop testing anything.
    pub fn new() -> Self {
        let found = Command::new("gpg").arg("--version").output();
        assert!(
            found.is_ok_and(|out| out.status.success()),
            "the OpenPGP tests need GnuPG: install it (Debian: apt-get install gnupg)"
        );
        // Short path: gpg-agent's socket lives in the home and socket paths are limited.
        let home = tempfile::Builder::new()
            .prefix("gpg")
            .tempdir_in("/tmp")
            .unwrap();
        Gpg { home }
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// `gpg ARGS`, non-interactive, with the clock at `at` (epoch seconds) when given; stdout.
    pub fn run_at(&self, at: Option<i64>, args: &[&str], stdin: Option<&str>) -> String {
        let mut command = Command::new("gpg");
        command.env("GNUPGHOME", self.home()).args([
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        if let Some(at) = at {
            command.args(["--faked-system-time", &at.to_string()]);
        }
        if stdin.is_some() {
            command.args(["--command-fd", "0"]);
        }
        command.args(args);
        let output = match stdin {
            None => command.output().unwrap(),
            Some(input) => {
                use std::io::Write;
                command
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                let mut child = command.spawn().unwrap();
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(input.as_bytes())
                    .unwrap();
                child.wait_with_output().unwrap()
            }
        };
        assert!(
            output.status.success(),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    pub fn run(&self, args: &[&str]) -> String {
        self.run_at(None, args, None)
    }

    /// A new key for `uid` (`Name <email>`) of `algo` (`ed25519`, `rsa3072`) with `usage`
    /// (`sign`, `cert`) and expiry (`never`, `1d`), made at `at` when given; its fingerprint.
    pub fn generate_at(&self, at: Option<i64>, uid: &str, algo: &str, usage: &str) -> String {
        self.run_at(at, &["--quick-gen-key", uid, algo, usage, "never"], None);
        self.fingerprints(&format!("={uid}"))[0].clone()
    }

    /// A new signing key for `uid`, never expiring; its fingerprint.
    pub fn generate(&self, uid: &str, algo: &str) -> String {
        self.generate_at(None, uid, algo, "sign")
    }

    /// Fingerprints of the key `who` names, primary first, then its subkeys.
    pub fn fingerprints(&self, who: &str) -> Vec<String> {
        self.run(&["--with-colons", "--list-keys", who])
            .lines()
            .filter(|line| line.starts_with("fpr:"))
            .map(|line| line.split(':').nth(9).unwrap().to_string())
            .collect()
    }

    /// Add an ed25519 signing subkey to `primary`; the subkey's fingerprint.
    pub fn add_signing_subkey(&self, primary: &str) -> String {
        self.run(&["--quick-add-key", primary, "ed25519", "sign", "never"]);
        self.fingerprints(primary).last().unwrap().clone()
    }

    /// Make `key` expire `period` (`1d`) after a new self-signature dated `at`.
    pub fn set_expiry_at(&self, at: Option<i64>, key: &str, period: &str) {
        self.run_at(at, &["--quick-set-expire", key, period], None);
    }

    /// Revoke `key` (reason 0, hard) with the certificate gpg wrote when it made the key.
    pub fn revoke(&self, key: &str) {
        let path = self.home().join(format!("openpgp-revocs.d/{key}.rev"));
        // gpg prefixes the armor with ':' so it cannot be imported by accident.
        let certificate: String = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| line.strip_prefix(':').unwrap_or(line).to_string() + "\n")
            .collect();
        let file = self.home().join("revocation.asc");
        std::fs::write(&file, certificate).unwrap();
        self.run(&["--import", file.to_str().unwrap()]);
    }

    /// Revoke the first subkey of `primary` (reason 0).
    pub fn revoke_first_subkey(&self, primary: &str) {
        self.run_at(
            None,
            &["--edit-key", primary],
            Some("key 1\nrevkey\ny\n0\n\ny\nsave\n"),
        );
    }

    /// The armored public keys of `keys`, as one block.
    pub fn export(&self, keys: &[&str]) -> String {
        let mut args = vec!["--armor", "--export"];
        args.extend_from_slice(keys);
        self.run(&args)
    }

    /// Commit everything in `remote` signed by `key` through this home, as a user with
    /// `gpg.format=openpgp` does; `committer_date` overrides the committer time (git's date
    /// formats, e.g. `@1700000000 +0000`). Returns the commit id.
    pub fn commit_signed(
        &self,
        remote: &Remote,
        message: &str,
        key: &str,
        committer_date: Option<&str>,
    ) -> String {
        git(remote.path(), &["add", "-A"]);
        let mut command = gitwarden_tests::git::isolated(remote.path());
        command.env("GNUPGHOME", self.home());
        if let Some(date) = committer_date {
            command.env("GIT_COMMITTER_DATE", date);
        }
        let output = command
            .args([
                "-c",
                "gpg.program=gpg",
                "-c",
                "gpg.format=openpgp",
                "-c",
                &format!("user.signingkey={key}"),
                "commit",
                "-q",
                "--allow-empty",
                "-S",
                "-m",
                message,
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "git commit -S failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        remote.head()
    }
}

impl Drop for Gpg {
    /// Stop the gpg-agent gpg started in the home, so the directory can go.
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}
