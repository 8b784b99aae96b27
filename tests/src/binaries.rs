//! gitwarden's own binaries, built on demand for the end-to-end tests.
//!
//! A test of the webhook or the agent runs the real binary as a separate
//! process (it is killed with SIGKILL in some tests). Cargo does not build
//! another package's binaries for an integration test, so the harness asks the
//! same cargo that runs the tests to build them, once per test binary.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);

/// The path of a workspace binary (`gitwarden-webhook`, `gitwarden-agent`),
/// building it first if this test binary has not yet done so.
pub fn binary(package: &str) -> Result<PathBuf> {
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let map = built.get_or_insert_with(HashMap::new);
    if let Some(path) = map.get(package) {
        return Ok(path.clone());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let out = Command::new(&cargo)
        .args([
            "build",
            "--locked",
            "-p",
            package,
            "--bin",
            package,
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(crate::cluster::repo_root())
        .output()
        .with_context(|| format!("running {cargo} build -p {package}"))?;
    if !out.status.success() {
        bail!(
            "cargo build -p {package} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["target"]["name"] == package)
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo build -p {package} reported no executable"))?;
    map.insert(package.to_string(), path.clone());
    Ok(path)
}
