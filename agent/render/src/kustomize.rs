//! Running the pinned `kustomize build`, shut off from everything but the
//! exported commit: no PATH (no git, helm or container runtime to call), a
//! fresh home (no plugins, no config), every proxy pointed at a closed
//! loopback port, a time limit and an output limit.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::RenderError;

/// How to run kustomize.
#[derive(Debug, Clone)]
pub struct Kustomize {
    /// The `kustomize` binary (the agent image pins one; tests build the same
    /// version with `tests/tools/build kustomize`).
    pub binary: PathBuf,
    /// A build taking longer is killed and fails the revision.
    pub timeout: Duration,
    /// A build printing more fails the revision (a bound on memory).
    pub max_output_bytes: usize,
}

impl Default for Kustomize {
    fn default() -> Self {
        Kustomize {
            binary: PathBuf::from("kustomize"),
            timeout: Duration::from_secs(180),
            max_output_bytes: 64 << 20,
        }
    }
}

/// `binary` as a path to run: itself when it names a directory
/// (`/usr/local/bin/kustomize`, `./kustomize`), else the first executable file
/// of that name in the directories of `path` (a `PATH` value).
fn on_path(binary: &Path, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    if binary.components().count() > 1 {
        return Some(binary.to_path_buf());
    }
    std::env::split_paths(path?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(binary))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// An address nothing listens on: a proxy there makes every HTTP fetch fail at once.
const DEAD_PROXY: &str = "http://127.0.0.1:9";

impl Kustomize {
    /// `kustomize build DIR` in `scratch` (an empty private directory used as
    /// home and PATH); its output. `name` is the kustomization's name for errors.
    pub fn build(&self, dir: &Path, scratch: &Path, name: &str) -> Result<String, RenderError> {
        let failed = |reason: String| RenderError::Build {
            kustomization: name.to_string(),
            reason,
        };
        let empty_path = scratch.join("bin");
        std::fs::create_dir_all(&empty_path).map_err(|e| failed(e.to_string()))?;
        // The child's PATH is empty, and a program named without a directory
        // is looked up on the child's PATH: find it on the agent's own first.
        let program =
            on_path(&self.binary, std::env::var_os("PATH").as_deref()).ok_or_else(|| {
                failed(format!(
                    "{} not found on the agent's PATH (set --kustomize to its path)",
                    self.binary.display()
                ))
            })?;
        let mut command = Command::new(&program);
        command
            .arg("build")
            .arg(dir)
            // Flux's parity: overlays may read ../common files; the guard has
            // already proved every path stays in the commit.
            .args(["--load-restrictor", "LoadRestrictionsNone"])
            .current_dir(dir)
            .env_clear()
            .env("PATH", &empty_path)
            .env("HOME", scratch)
            .env("XDG_CONFIG_HOME", scratch)
            .env("TMPDIR", scratch);
        for proxy in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            command.env(proxy, DEAD_PROXY);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("cannot run {}: {e}", self.binary.display())))?;
        let limit = self.max_output_bytes;
        let stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(stdout) = stdout {
                let _ = stdout.take(limit as u64 + 1).read_to_end(&mut out);
            }
            out
        });
        let stderr = child.stderr.take();
        let err_reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(stderr) = stderr {
                let _ = stderr.take(64 << 10).read_to_end(&mut out);
            }
            out
        });
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() > self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(failed(format!("took longer than {:?}", self.timeout)));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(failed(e.to_string())),
            }
        };
        let out = reader.join().unwrap_or_default();
        let err = err_reader.join().unwrap_or_default();
        if out.len() > limit {
            return Err(failed(format!("printed more than {limit} bytes")));
        }
        if !status.success() {
            let message = String::from_utf8_lossy(&err);
            let message = message
                .trim()
                .strip_prefix("Error: ")
                .unwrap_or(message.trim());
            return Err(failed(message.to_string()));
        }
        String::from_utf8(out).map_err(|_| failed("printed text that is not UTF-8".into()))
    }
}

/// Makes the kustomization in `dir` (a private copy) annotate every object
/// with its origin: kustomize has no flag for it, only the root
/// kustomization's `buildMetadata` counts.
pub fn enable_origin_annotations(dir: &Path, name: &str) -> Result<(), RenderError> {
    let invalid = |reason: String| RenderError::Invalid {
        kustomization: name.to_string(),
        reason,
    };
    let file = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| invalid("no kustomization file".into()))?;
    let text = std::fs::read_to_string(&file).map_err(|e| invalid(e.to_string()))?;
    let mut document: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    if document.is_null() {
        document = serde_yaml_ng::Value::Mapping(Default::default());
    }
    let map = document
        .as_mapping_mut()
        .ok_or_else(|| invalid("not a mapping".into()))?;
    let key = map
        .keys()
        .find(|k| {
            k.as_str()
                .is_some_and(|k| k.eq_ignore_ascii_case("buildMetadata"))
        })
        .cloned()
        .unwrap_or_else(|| "buildMetadata".into());
    let entry = map
        .entry(key)
        .or_insert_with(|| serde_yaml_ng::Value::Sequence(Vec::new()));
    let list = entry
        .as_sequence_mut()
        .ok_or_else(|| invalid("buildMetadata is not a list".into()))?;
    if !list.iter().any(|v| v.as_str() == Some("originAnnotations")) {
        list.push("originAnnotations".into());
    }
    let text = serde_yaml_ng::to_string(&document).map_err(|e| invalid(e.to_string()))?;
    std::fs::write(&file, text).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// A stand-in kustomize: a shell script (absolute paths only: the build
    /// runs with an empty PATH).
    fn script(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("kustomize");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn a_bare_program_name_is_found_on_the_agents_path_not_the_emptied_one() {
        // As the agent image runs it: `kustomize` (the default) in
        // /usr/local/bin, while the build itself gets an empty PATH.
        let bin = tempfile::tempdir().unwrap();
        let found = script(bin.path(), "exit 0");
        let elsewhere = tempfile::tempdir().unwrap();
        let path = std::env::join_paths([elsewhere.path(), bin.path()]).unwrap();
        assert_eq!(
            on_path(Path::new("kustomize"), Some(&path)),
            Some(found.clone())
        );
        assert_eq!(on_path(&found, None), Some(found));
        assert_eq!(
            on_path(Path::new("kustomize"), Some(elsewhere.path().as_os_str())),
            None
        );
    }

    #[test]
    fn a_kustomize_missing_from_path_is_named_in_the_error() {
        let repo = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let err = kustomize(PathBuf::from("kustomize-that-is-not-installed"))
            .build(repo.path(), scratch.path(), "apps")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("kustomize-that-is-not-installed not found on the agent's PATH"),
            "{err}"
        );
    }

    fn kustomize(binary: PathBuf) -> Kustomize {
        Kustomize {
            binary,
            timeout: Duration::from_millis(300),
            max_output_bytes: 1000,
        }
    }

    #[test]
    fn a_build_that_runs_too_long_is_killed_and_fails() {
        let dir = tempfile::tempdir().unwrap();
        let k = kustomize(script(dir.path(), "exec /bin/sleep 30"));
        let started = Instant::now();
        let error = k.build(dir.path(), dir.path(), "app").unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(error.to_string().contains("took longer than"), "{error}");
    }

    #[test]
    fn a_build_printing_more_than_the_limit_fails() {
        let dir = tempfile::tempdir().unwrap();
        let k = kustomize(script(dir.path(), "/usr/bin/head -c 5000 /dev/zero"));
        let error = k.build(dir.path(), dir.path(), "app").unwrap_err();
        assert!(
            error.to_string().contains("printed more than 1000 bytes"),
            "{error}"
        );
    }

    #[test]
    fn the_build_sees_no_path_no_home_of_the_agent_and_a_dead_proxy() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        let k = kustomize(script(
            dir.path(),
            "echo \"$PATH|$HOME|$HTTPS_PROXY|$KUBECONFIG\"",
        ));
        let out = k.build(dir.path(), &scratch, "app").unwrap();
        let expected = format!(
            "{}|{}|{DEAD_PROXY}|\n",
            scratch.join("bin").display(),
            scratch.display()
        );
        assert_eq!(out, expected);
    }

    #[test]
    fn kustomizes_own_error_is_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let k = kustomize(script(
            dir.path(),
            "echo 'Error: accumulating resources: boom' >&2; exit 1",
        ));
        let error = k.build(dir.path(), dir.path(), "apps/web").unwrap_err();
        assert_eq!(
            error.to_string(),
            "kustomization apps/web: kustomize build failed: accumulating resources: boom"
        );
    }
}
