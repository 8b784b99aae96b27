//! The real `kubectl`, as a human would run it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

/// What one kubectl invocation printed and how it ended.
#[derive(Debug, Clone)]
pub struct KubectlOutput {
    /// Whether kubectl exited 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error: where kubectl prints denials and admission warnings.
    pub stderr: String,
}

impl From<std::process::Output> for KubectlOutput {
    fn from(out: std::process::Output) -> Self {
        KubectlOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl KubectlOutput {
    /// Panics with both streams unless kubectl succeeded; returns stdout.
    #[track_caller]
    pub fn expect_success(&self) -> &str {
        assert!(
            self.success,
            "kubectl failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Panics with both streams unless kubectl failed; returns stderr.
    #[track_caller]
    pub fn expect_failure(&self) -> &str {
        assert!(
            !self.success,
            "kubectl unexpectedly succeeded:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stderr
    }
}

/// The kubectl binary: `GITWARDEN_KUBECTL`, or `kubectl` on PATH.
pub fn kubectl_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("GITWARDEN_KUBECTL") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("kubectl");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "kubectl is not on PATH: install it, or set GITWARDEN_KUBECTL (tests/cluster/kubectl builds one from the same Go module)"
    )
}

/// `kubectl kustomize DIR`: the manifests an overlay renders to, what a
/// user's `kubectl apply -k DIR` sends.
pub fn kustomize(dir: &Path) -> Result<String> {
    let out = Command::new(kubectl_binary()?)
        .arg("kustomize")
        .arg(dir)
        .output()
        .map_err(|e| anyhow::anyhow!("running kubectl kustomize: {e}"))?;
    if !out.status.success() {
        bail!(
            "kubectl kustomize {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs kubectl with a kubeconfig and arguments; never panics on kubectl's failure.
pub fn run_kubectl(kubeconfig: &Path, args: &[&str]) -> KubectlOutput {
    run_kubectl_stdin(kubeconfig, args, "")
}

/// Runs kubectl with `stdin` as its standard input (for `apply -f -`).
pub fn run_kubectl_stdin(kubeconfig: &Path, args: &[&str], stdin: &str) -> KubectlOutput {
    run_kubectl_full(kubeconfig, args, stdin, &[])
}

/// Runs kubectl with standard input and extra environment (e.g. `KUBE_EDITOR`).
pub fn run_kubectl_full(
    kubeconfig: &Path,
    args: &[&str],
    stdin: &str,
    env: &[(&str, &str)],
) -> KubectlOutput {
    use std::io::Write as _;
    let bin = match kubectl_binary() {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    let child = Command::new(&bin)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let out = child.and_then(|mut child| {
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes())?;
        }
        child.wait_with_output()
    });
    match out {
        Ok(out) => KubectlOutput::from(out),
        Err(e) => panic!("running {}: {e}", bin.display()),
    }
}

/// Waits until `object` (`kind/name`, in `namespace` when given) reports
/// condition `condition` as `True`; on timeout, says what it last saw.
///
/// Why not `kubectl wait --for=condition=…`: kubectl fails at once, instead
/// of waiting, while a just-created object's `status.conditions` is still
/// null (`.status.conditions accessor error: <nil>`), which is how a CRD or a
/// Pod starts out.
pub fn wait_condition(
    kubeconfig: &Path,
    namespace: Option<&str>,
    object: &str,
    condition: &str,
    limit: std::time::Duration,
) -> Result<()> {
    let jsonpath = format!("jsonpath={{.status.conditions[?(@.type==\"{condition}\")].status}}");
    let mut args = vec!["get", object, "-o", jsonpath.as_str()];
    if let Some(namespace) = namespace {
        args.extend(["-n", namespace]);
    }
    let mut last = String::new();
    let met = crate::wait::wait_blocking(limit, || {
        let out = run_kubectl(kubeconfig, &args);
        last = if out.success {
            format!("condition {condition} is {:?}", out.stdout.trim())
        } else {
            out.stderr.trim().to_string()
        };
        (out.success && out.stdout.trim() == "True").then_some(())
    });
    match met {
        Some(()) => Ok(()),
        None => bail!("{object} did not become {condition} within {limit:?}: {last}"),
    }
}

/// `kubectl gitwarden ARGS` as the holder of `kubeconfig` (`KUBECONFIG`),
/// found by kubectl's own plugin lookup on PATH, with the workspace's
/// `kubectl-gitwarden` first on it: how a user runs the plugin.
pub fn run_plugin(kubeconfig: &Path, args: &[&str]) -> KubectlOutput {
    let plugin = match crate::binaries::binary("kubectl-gitwarden") {
        Ok(p) => p,
        Err(e) => panic!("{e:#}"),
    };
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    let dirs = plugin
        .parent()
        .map(Path::to_path_buf)
        .into_iter()
        .chain(std::env::split_paths(&inherited));
    let path = match std::env::join_paths(dirs) {
        Ok(p) => p,
        Err(e) => panic!("PATH with {}: {e}", plugin.display()),
    };
    let bin = match kubectl_binary() {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    };
    let out = Command::new(&bin)
        .arg("gitwarden")
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", kubeconfig)
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(out) => KubectlOutput::from(out),
        Err(e) => panic!("running {} gitwarden: {e}", bin.display()),
    }
}
