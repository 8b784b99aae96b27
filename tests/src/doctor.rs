//! `gitwarden-doctor` as an operator runs it, with its JSON report read into
//! doctor's own types, so a test asks "which findings of this check about
//! this subject" instead of indexing untyped JSON.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
pub use gitwarden_doctor::{Finding, Report, Severity};

use crate::binaries::binary;

/// One run of `gitwarden-doctor -o json`.
#[derive(Debug)]
pub struct DoctorRun {
    /// The exit code: 0 clean, 1 critical findings, 2 could not run.
    pub code: i32,
    /// What it found.
    pub report: Report,
}

impl DoctorRun {
    /// Findings whose check is `check` or lies under it (`rbac` or `rbac/read`).
    pub fn checks(&self, check: &str) -> Vec<&Finding> {
        self.report
            .findings
            .iter()
            .filter(|f| {
                f.check == check
                    || f.check
                        .strip_prefix(check)
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .collect()
    }

    /// The critical findings of `check` (or under it).
    pub fn critical(&self, check: &str) -> Vec<&Finding> {
        self.checks(check)
            .into_iter()
            .filter(|f| f.severity == Severity::Critical)
            .collect()
    }

    /// The findings of `check` about `subject` (`User alice`, `ServiceAccount ns/name`).
    pub fn about(&self, check: &str, subject: &str) -> Vec<&Finding> {
        self.checks(check)
            .into_iter()
            .filter(|f| f.subject.as_deref() == Some(subject))
            .collect()
    }

    /// Every check that names `subject`.
    pub fn checks_naming(&self, subject: &str) -> Vec<&str> {
        self.report
            .findings
            .iter()
            .filter(|f| f.subject.as_deref() == Some(subject))
            .map(|f| f.check.as_str())
            .collect()
    }
}

/// Runs `gitwarden-doctor --kubeconfig KUBECONFIG -o json EXTRA…`.
pub fn doctor(kubeconfig: &Path, extra: &[&str]) -> Result<DoctorRun> {
    let out = Command::new(binary("gitwarden-doctor")?)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["-o", "json"])
        .args(extra)
        .output()
        .context("running gitwarden-doctor")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Report = match serde_json::from_str(&stdout) {
        Ok(report) => report,
        Err(e) => bail!(
            "doctor printed no JSON report ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    };
    Ok(DoctorRun {
        code: out.status.code().unwrap_or(-1),
        report,
    })
}

/// One run of `gitwarden-doctor` for its text report.
#[derive(Debug)]
pub struct TextRun {
    /// The exit code.
    pub code: i32,
    /// The report.
    pub stdout: String,
    /// Why it could not run, when it could not.
    pub stderr: String,
}

/// Runs `gitwarden-doctor --kubeconfig KUBECONFIG EXTRA…` for its text report.
pub fn doctor_text(kubeconfig: &Path, extra: &[&str]) -> Result<TextRun> {
    let out = Command::new(binary("gitwarden-doctor")?)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(extra)
        .output()
        .context("running gitwarden-doctor")?;
    Ok(TextRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
