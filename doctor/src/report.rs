//! Findings and how they are shown: a readable text report for people and
//! JSON for scripts, and the exit code that makes `doctor` usable in CI.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// How bad a finding is. Ordered: `Critical` is the greatest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A check that passed, or a fact worth knowing (e.g. expected identities).
    Info,
    /// A weakness to review; git stays the write path while everything else holds.
    Warning,
    /// Someone can bypass git now, or the webhook cannot enforce: `doctor` exits 1.
    Critical,
}

impl Severity {
    /// The label printed in the text report.
    fn label(self) -> &'static str {
        match self {
            Severity::Info => "ok",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// One observation of `doctor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// A stable identifier of the check, `section/name` (e.g. `rbac/impersonate`),
    /// so that scripts can filter without parsing messages.
    pub check: String,
    /// What was found, in one sentence.
    pub message: String,
    /// The RBAC subject the finding is about (`User alice`, `Group ops`,
    /// `ServiceAccount ns/name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// How the subject got the right: binding → role, one entry per path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<String>,
    /// The subject is an identity gitwarden expects to hold this right (the
    /// agent, control-plane components, identities the policy exempts).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expected: bool,
}

impl Finding {
    /// A finding that is not about an RBAC subject.
    pub fn new(severity: Severity, check: &str, message: impl Into<String>) -> Self {
        Finding {
            severity,
            check: check.to_string(),
            message: message.into(),
            subject: None,
            via: Vec::new(),
            expected: false,
        }
    }

    /// A passed check.
    pub fn ok(check: &str, message: impl Into<String>) -> Self {
        Self::new(Severity::Info, check, message)
    }

    /// A weakness to review.
    pub fn warning(check: &str, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, check, message)
    }

    /// A way around git, or a webhook that cannot enforce.
    pub fn critical(check: &str, message: impl Into<String>) -> Self {
        Self::new(Severity::Critical, check, message)
    }

    /// The section of the report the finding belongs to (`rbac`, `webhook`, ...).
    pub fn section(&self) -> &str {
        self.check.split('/').next().unwrap_or(&self.check)
    }
}

/// Everything `doctor` found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Counts by severity, for a quick look at the JSON.
    pub summary: Summary,
    /// All findings, in the order the checks ran.
    pub findings: Vec<Finding>,
}

/// Counts of findings by severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Findings of severity critical.
    pub critical: usize,
    /// Findings of severity warning.
    pub warning: usize,
    /// Passed checks and facts.
    pub info: usize,
}

impl Report {
    /// A report of these findings.
    pub fn new(findings: Vec<Finding>) -> Self {
        let mut summary = Summary::default();
        for f in &findings {
            match f.severity {
                Severity::Critical => summary.critical += 1,
                Severity::Warning => summary.warning += 1,
                Severity::Info => summary.info += 1,
            }
        }
        Report { summary, findings }
    }

    /// Whether anything critical was found: `doctor` then exits non-zero.
    pub fn has_critical(&self) -> bool {
        self.summary.critical > 0
    }

    /// The process exit code: 1 on critical findings, else 0.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.has_critical())
    }

    /// The report for people: sections in a fixed order, the worst first
    /// within each, and expected identities folded into one line per check
    /// unless `show_expected`.
    pub fn to_text(&self, show_expected: bool) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "gitwarden doctor: {} critical, {} warning(s), {} ok",
            self.summary.critical, self.summary.warning, self.summary.info
        );
        for (section, title) in SECTIONS {
            let mut in_section: Vec<&Finding> = self
                .findings
                .iter()
                .filter(|f| f.section() == *section)
                .collect();
            if in_section.is_empty() {
                continue;
            }
            in_section.sort_by_key(|f| std::cmp::Reverse(f.severity));
            let _ = writeln!(out, "\n{title}");
            let mut folded: Vec<(&str, usize)> = Vec::new();
            for f in in_section {
                if f.expected && !show_expected {
                    match folded.iter_mut().find(|(c, _)| *c == f.check) {
                        Some((_, n)) => *n += 1,
                        None => folded.push((&f.check, 1)),
                    }
                    continue;
                }
                write_finding(&mut out, f);
            }
            for (check, n) in folded {
                let _ = writeln!(
                    out,
                    "  {:<9} {check}: {n} expected identit{} (--show-expected lists them)",
                    "expected",
                    if n == 1 { "y" } else { "ies" }
                );
            }
        }
        out
    }
}

/// Report sections in print order: (check prefix, title).
const SECTIONS: &[(&str, &str)] = &[
    ("rbac", "Who can still bypass git (RBAC)"),
    ("webhook", "Webhook configurations"),
    ("certificate", "Webhook certificates"),
    ("policy", "Admission policy"),
    ("leader", "Leader election"),
    ("agent", "Agent"),
    ("doctor", "Doctor"),
];

fn write_finding(out: &mut String, f: &Finding) {
    let label = if f.expected {
        "expected"
    } else {
        f.severity.label()
    };
    let _ = writeln!(out, "  {label:<9} {}", f.message);
    for via in &f.via {
        let _ = writeln!(out, "  {:<9}   via {via}", "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rbac(subject: &str, expected: bool) -> Finding {
        Finding {
            subject: Some(subject.into()),
            via: vec!["ClusterRoleBinding b → ClusterRole r".into()],
            expected,
            ..Finding::new(
                if expected {
                    Severity::Info
                } else {
                    Severity::Critical
                },
                "rbac/impersonate",
                format!("{subject} can impersonate"),
            )
        }
    }

    #[test]
    fn a_critical_finding_makes_the_exit_code_one() {
        let report = Report::new(vec![
            Finding::ok("webhook/exists", "fine"),
            Finding::critical("webhook/failure-policy", "bad"),
        ]);
        assert_eq!(report.summary.critical, 1);
        assert_eq!(report.exit_code(), 1);
    }

    #[test]
    fn warnings_alone_exit_zero() {
        let report = Report::new(vec![Finding::warning("certificate/expiry", "soon")]);
        assert_eq!(report.exit_code(), 0);
    }

    #[test]
    fn text_folds_expected_identities_unless_asked() {
        let report = Report::new(vec![
            rbac("User alice", false),
            rbac("ServiceAccount kube-system/a", true),
            rbac("ServiceAccount kube-system/b", true),
        ]);
        let text = report.to_text(false);
        assert!(
            text.contains("CRITICAL  User alice can impersonate"),
            "{text}"
        );
        assert!(
            text.contains("via ClusterRoleBinding b → ClusterRole r"),
            "{text}"
        );
        assert!(
            text.contains("rbac/impersonate: 2 expected identities"),
            "{text}"
        );
        assert!(!text.contains("kube-system/a"), "{text}");
        let all = report.to_text(true);
        assert!(
            all.contains("ServiceAccount kube-system/a can impersonate"),
            "{all}"
        );
    }

    #[test]
    fn text_puts_the_worst_finding_of_a_section_first() {
        let report = Report::new(vec![
            Finding::ok("webhook/exists", "exists"),
            Finding::critical("webhook/failure-policy", "ignores failures"),
        ]);
        let text = report.to_text(false);
        let critical = text.find("ignores failures").unwrap_or(usize::MAX);
        let ok = text.find("exists").unwrap_or(0);
        assert!(critical < ok, "{text}");
    }

    #[test]
    fn json_names_severity_in_lowercase_and_omits_empty_fields() {
        let report = Report::new(vec![Finding::critical("webhook/missing", "gone")]);
        let json = serde_json::to_value(&report).unwrap_or_default();
        assert_eq!(json["findings"][0]["severity"], "critical");
        assert_eq!(json["summary"]["critical"], 1);
        assert!(json["findings"][0].get("subject").is_none());
        assert!(json["findings"][0].get("expected").is_none());
    }
}
