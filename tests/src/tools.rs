//! The real tools tests drive (`sops`, `age-keygen`), built from their Go
//! modules by `tests/tools/build` into the cache on first use, never
//! committed; and the few things tests do with them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cluster::repo_root;

static BUILT: std::sync::Mutex<Option<std::collections::HashMap<String, PathBuf>>> =
    std::sync::Mutex::new(None);

/// The path of `name`, built first if the cache does not have it (once per
/// test binary; the script itself serialises builds across processes).
pub fn tool(name: &str) -> Result<PathBuf> {
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(Default::default);
    if let Some(path) = built.get(name) {
        return Ok(path.clone());
    }
    let path = build(name)?;
    built.insert(name.to_owned(), path.clone());
    Ok(path)
}

fn build(name: &str) -> Result<PathBuf> {
    let script = repo_root().join("tests/tools/build");
    let out = Command::new(&script)
        .arg(name)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("building {name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// A real age key pair made by `age-keygen` in `dir`: (key file, recipient).
pub fn age_key(dir: &Path, name: &str) -> Result<(PathBuf, String)> {
    let file = dir.join(format!("{name}.agekey"));
    let keygen = tool("age-keygen")?;
    let made = Command::new(&keygen).arg("-o").arg(&file).output()?;
    if !made.status.success() {
        bail!("age-keygen: {}", String::from_utf8_lossy(&made.stderr));
    }
    let public = Command::new(&keygen).arg("-y").arg(&file).output()?;
    Ok((
        file,
        String::from_utf8_lossy(&public.stdout).trim().to_string(),
    ))
}

/// `sops --encrypt ARGS FILE` (the file's extension says YAML or JSON), run
/// in `FILE`'s directory with no `.sops.yaml` of the machine in effect; the
/// encrypted text.
pub fn sops_encrypt(file: &Path, args: &[&str]) -> Result<String> {
    let dir = file.parent().context("the file has no directory")?;
    let out = Command::new(tool("sops")?)
        .current_dir(dir)
        .arg("--encrypt")
        .args(args)
        .arg(file)
        .output()?;
    if !out.status.success() {
        bail!("sops --encrypt: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `sops --decrypt FILE` with the age key file `key`: the reference decryption.
pub fn sops_decrypt(file: &Path, key: &Path) -> Result<String> {
    let dir = file.parent().context("the file has no directory")?;
    let out = Command::new(tool("sops")?)
        .current_dir(dir)
        .env("SOPS_AGE_KEY_FILE", key)
        .arg("--decrypt")
        .arg(file)
        .output()?;
    if !out.status.success() {
        bail!("sops --decrypt: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
