//! The audit log: every denied and every break-glass request, durable before
//! the response leaves, in append-only, hash-chained JSONL files.
//!
//! - [`AuditLog`] owns the directory: [`AuditLog::open`] recovers the chain,
//!   [`AuditLog::append`] returns only once the record is fsynced (concurrent
//!   appends share one fsync: group commit), files rotate by size without
//!   breaking the chain.
//! - [`query_dir`] / [`AuditLog::query`] answer operators, newest first;
//!   [`merge_newest_first`] makes one answer of several replicas' answers.
//! - [`verify_dir`] / [`run_verify_cli`] check the whole chain end to end.
//! - [`AuditMetrics`] exports what the writer does to Prometheus.
//!
//! The record format and the hash rule live in
//! [`gitwarden_shared::audit`], so anyone can verify a log without the webhook.
//!
//! On disk, `dir` holds `audit-000001.jsonl`, `audit-000002.jsonl`, … (one
//! record per line, oldest file first) and `audit.lock`.

mod error;
mod files;
mod log;
mod metrics;
mod query;
mod recover;
mod rev_lines;
mod segment;
mod verify;
mod writer;

#[cfg(test)]
mod tests;

pub use error::AuditError;
pub use gitwarden_shared::audit::{AuditDecision, AuditEvent, AuditRecord};
pub use log::{AuditLog, AuditOptions};
pub use metrics::{AuditMetrics, AuditStats, DurableSeq};
pub use query::{AuditQuery, DEFAULT_LIMIT, MAX_LIMIT, SINCE_SLACK, merge_newest_first, query_dir};
pub use verify::{BrokenRecord, VerifyReport, render_report, run_verify_cli, verify_dir};
