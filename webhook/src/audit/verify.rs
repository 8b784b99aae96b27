//! Checking the whole log, end to end: every line parses, `seq` has no gaps,
//! every `prev` names the record before it (across files), every hash and id
//! matches its record. The first broken record is reported precisely, because
//! everything after it can no longer be trusted to be in place.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use gitwarden_shared::audit::{AuditRecord, FIRST_SEQ, GENESIS_HASH};
use serde::Serialize;

use super::AuditError;
use super::files::list_segments;

/// The outcome of [`verify_dir`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// Segment files found.
    pub files: usize,
    /// Records checked and found intact (all of them, if there is no break).
    pub records: u64,
    /// `seq` of the last intact record.
    pub last_seq: Option<u64>,
    /// Hash of the last intact record ([`GENESIS_HASH`] if none): write it
    /// down to later prove that nothing before it changed.
    pub last_hash: String,
    /// The newest file ends in an incomplete line: a write in progress, or a
    /// crash (reopening the log removes it). Never acknowledged, so not a break.
    pub incomplete_tail: Option<PathBuf>,
    /// The first record that breaks the chain, if any.
    pub first_break: Option<BrokenRecord>,
}

impl VerifyReport {
    /// Whether the whole chain verified.
    pub fn is_intact(&self) -> bool {
        self.first_break.is_none()
    }
}

/// Where the chain breaks, precisely enough to open the file at that line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokenRecord {
    /// The segment file.
    pub file: PathBuf,
    /// 1-based line number in that file.
    pub line: u64,
    /// The record's `seq`, when the line says one.
    pub seq: Option<u64>,
    /// What is wrong.
    pub why: String,
}

/// Where a walk through the chain stands.
struct Chain {
    expected_seq: u64,
    prev: String,
    records: u64,
}

/// Verifies every segment in `dir`, oldest to newest.
///
/// Returns `Err` only when files cannot be read; a damaged chain is a
/// successful verification with [`VerifyReport::first_break`] set. Blocking.
pub fn verify_dir(dir: &Path) -> Result<VerifyReport, AuditError> {
    let segments = list_segments(dir)?;
    let mut chain = Chain {
        expected_seq: FIRST_SEQ,
        prev: GENESIS_HASH.to_owned(),
        records: 0,
    };
    let mut report = VerifyReport {
        files: segments.len(),
        records: 0,
        last_seq: None,
        last_hash: String::new(),
        incomplete_tail: None,
        first_break: None,
    };
    let newest = segments.len().saturating_sub(1);
    for (position, segment) in segments.iter().enumerate() {
        let outcome = verify_file(&segment.path, &mut chain)?;
        match outcome {
            FileOutcome::Intact => {}
            FileOutcome::IncompleteTail { .. } if position == newest => {
                report.incomplete_tail = Some(segment.path.clone());
            }
            FileOutcome::IncompleteTail { line } => {
                report.first_break = Some(BrokenRecord {
                    file: segment.path.clone(),
                    line,
                    seq: None,
                    why: "incomplete last line in a file that is not the newest".to_owned(),
                });
                break;
            }
            FileOutcome::Broken(broken) => {
                report.first_break = Some(broken);
                break;
            }
        }
    }
    report.records = chain.records;
    report.last_seq = chain
        .expected_seq
        .checked_sub(1)
        .filter(|&seq| seq >= FIRST_SEQ);
    report.last_hash = chain.prev;
    Ok(report)
}

/// How one file ended.
enum FileOutcome {
    Intact,
    IncompleteTail { line: u64 },
    Broken(BrokenRecord),
}

/// Walks one file, advancing `chain` over every intact record.
fn verify_file(path: &Path, chain: &mut Chain) -> Result<FileOutcome, AuditError> {
    let read_err = |source| AuditError::Read {
        file: path.to_owned(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(read_err)?);
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(read_err)? == 0 {
            return Ok(FileOutcome::Intact);
        }
        number += 1;
        if line.pop() != Some(b'\n') {
            return Ok(FileOutcome::IncompleteTail { line: number });
        }
        let broken = |seq, why: String| {
            Ok(FileOutcome::Broken(BrokenRecord {
                file: path.to_owned(),
                line: number,
                seq,
                why,
            }))
        };
        let record: AuditRecord = match serde_json::from_slice(&line) {
            Ok(record) => record,
            Err(err) => return broken(seq_hint(&line), format!("not a valid audit record: {err}")),
        };
        if record.seq != chain.expected_seq {
            let why = if chain.expected_seq == FIRST_SEQ {
                format!(
                    "the log starts at seq {} instead of {FIRST_SEQ}: earlier records are missing",
                    record.seq
                )
            } else {
                format!(
                    "sequence gap: expected seq {}, found {}",
                    chain.expected_seq, record.seq
                )
            };
            return broken(Some(record.seq), why);
        }
        if let Err(err) = record.verify_link(&chain.prev) {
            return broken(Some(record.seq), err.to_string());
        }
        chain.expected_seq += 1;
        chain.prev = record.hash;
        chain.records += 1;
    }
}

/// The `seq` of a line that is JSON but not a valid record, to help locate it.
fn seq_hint(line: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(line)
        .ok()?
        .get("seq")?
        .as_u64()
}

/// The `verify` subcommand: prints a human report and returns the process
/// exit code (0 intact, 1 broken, 2 could not read the log), so scripts and
/// cron jobs can alert on it.
pub fn run_verify_cli(dir: &Path) -> ExitCode {
    match verify_dir(dir) {
        Ok(report) => {
            print!("{}", render_report(dir, &report));
            if report.is_intact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(err) => {
            eprintln!("audit verify: {err}");
            ExitCode::from(2)
        }
    }
}

/// The human report printed by [`run_verify_cli`].
pub fn render_report(dir: &Path, report: &VerifyReport) -> String {
    let mut out = String::new();
    let status = if report.is_intact() { "OK" } else { "BROKEN" };
    out.push_str(&format!("audit log {}: {status}\n", dir.display()));
    out.push_str(&format!("  files:     {}\n", report.files));
    out.push_str(&format!("  records:   {} intact\n", report.records));
    if let Some(seq) = report.last_seq {
        out.push_str(&format!("  last seq:  {seq}\n"));
    }
    out.push_str(&format!("  last hash: {}\n", report.last_hash));
    if let Some(file) = &report.incomplete_tail {
        out.push_str(&format!(
            "  note: {} ends in an incomplete line (write in progress or crash; never acknowledged)\n",
            file.display()
        ));
    }
    if let Some(broken) = &report.first_break {
        let seq = broken
            .seq
            .map_or_else(|| "unknown".to_owned(), |seq| seq.to_string());
        out.push_str(&format!(
            "  first break: {}:{} (seq {seq}): {}\n",
            broken.file.display(),
            broken.line,
            broken.why
        ));
        out.push_str("  records from this one on cannot be trusted to be complete or in place\n");
    }
    out
}
