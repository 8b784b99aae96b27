//! Answering "who was refused, where, since when": newest records first.
//!
//! Queries open the segment files themselves, read-only and backwards, so
//! they never wait for (or hold up) the writer. They see what has been
//! written, which may include the batch whose fsync is still running.

use std::fs::File;
use std::path::Path;

use gitwarden_shared::audit::{AuditDecision, AuditRecord};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::AuditError;
use super::files::list_segments;
use super::rev_lines::RevLines;

/// The number of records a query returns when it does not say.
pub const DEFAULT_LIMIT: usize = 100;
/// The most records one query returns, whatever it asks for: a bound on the
/// memory and time one HTTP request can cost.
pub const MAX_LIMIT: usize = 10_000;
/// How far a record's time may lag behind the records written after it.
///
/// `time` is stamped when the webhook decides, a little before the writer
/// assigns `seq`, so times are only nearly ordered. A `since` query stops
/// once it meets a record older than `since` by more than this, instead of
/// reading the whole log. A wall clock stepped back by more than this can
/// hide older matches; that is the price of not scanning everything.
pub const SINCE_SLACK: SignedDuration = SignedDuration::from_mins(5);

/// A filter over the log. Every set field must match.
///
/// Deserializable from a query string (`?since=2026-11-03T10:00:00Z&user=alice
/// &namespace=team-a&decision=break-glass&group=apps&resource=deployments&name=web
/// &limit=50`), so the HTTP handler can
/// take it as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AuditQuery {
    /// Only records at or after this time.
    pub since: Option<Timestamp>,
    /// Only this user (exact match).
    pub user: Option<String>,
    /// Only this namespace (exact match; cluster-scoped records never match).
    pub namespace: Option<String>,
    /// Only this decision.
    pub decision: Option<AuditDecision>,
    /// Only this API group (`""` is the core group).
    pub group: Option<String>,
    /// Only this plural resource (`deployments`).
    pub resource: Option<String>,
    /// Only this object name: with `resource`, `group` and `namespace`, one
    /// object's history (`kubectl gitwarden why`), answered from the whole
    /// log rather than from the newest page.
    pub name: Option<String>,
    /// At most this many records ([`DEFAULT_LIMIT`] by default, capped at
    /// [`MAX_LIMIT`]).
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        AuditQuery {
            since: None,
            user: None,
            namespace: None,
            decision: None,
            group: None,
            resource: None,
            name: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

impl AuditQuery {
    /// The limit actually applied: the requested one, capped at [`MAX_LIMIT`].
    pub fn effective_limit(&self) -> usize {
        self.limit.min(MAX_LIMIT)
    }

    /// Whether `record` passes every set filter.
    pub fn matches(&self, record: &AuditRecord) -> bool {
        self.since.is_none_or(|since| record.time >= since)
            && self.user.as_ref().is_none_or(|user| &record.user == user)
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| record.namespace.as_ref() == Some(ns))
            && self
                .decision
                .is_none_or(|decision| record.decision == decision)
            && self
                .group
                .as_ref()
                .is_none_or(|group| &record.group == group)
            && self
                .resource
                .as_ref()
                .is_none_or(|resource| &record.resource == resource)
            && self
                .name
                .as_ref()
                .is_none_or(|name| record.name.as_ref() == Some(name))
    }

    /// Whether `record` is so far before `since` that nothing older can match.
    fn is_past_since(&self, record: &AuditRecord) -> bool {
        self.since
            .and_then(|since| since.checked_sub(SINCE_SLACK).ok())
            .is_some_and(|horizon| record.time < horizon)
    }
}

/// The records of `dir` that match `query`, newest first, at most
/// [`AuditQuery::effective_limit`] of them.
///
/// Blocking: call it from `spawn_blocking`, as
/// [`AuditLog::query`](super::AuditLog::query) does. Unreadable lines are
/// skipped with a warning: a query answers what it can, `verify` judges
/// integrity.
pub fn query_dir(dir: &Path, query: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
    let limit = query.effective_limit();
    let mut found = Vec::new();
    if limit == 0 {
        return Ok(found);
    }
    for segment in list_segments(dir)?.iter().rev() {
        let read_err = |source| AuditError::Read {
            file: segment.path.clone(),
            source,
        };
        let file = match File::open(&segment.path) {
            Ok(file) => file,
            // Removed between listing and opening: nothing to read.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(read_err(err)),
        };
        let len = file.metadata().map_err(read_err)?.len();
        let mut lines = RevLines::new(&file, len).map_err(read_err)?;
        while let Some((offset, line)) = lines.next_line().map_err(read_err)? {
            let record: AuditRecord = match serde_json::from_slice(&line) {
                Ok(record) => record,
                Err(err) => {
                    warn!(
                        file = %segment.path.display(),
                        offset,
                        error = %err,
                        "skipping an unreadable audit line"
                    );
                    continue;
                }
            };
            if query.is_past_since(&record) {
                return Ok(found);
            }
            if query.matches(&record) {
                found.push(record);
                if found.len() == limit {
                    return Ok(found);
                }
            }
        }
    }
    Ok(found)
}

/// One answer to a query out of several replicas' answers: the records of
/// all of them, newest first by `time`, at most `limit`.
///
/// Why here: each webhook replica keeps its own log (a directory allows one
/// writer), so a query answered for the whole cluster is the union of every
/// replica's answer to the same query, each already filtered and at most
/// `limit` long. Records of equal time keep the order of `answers` (this
/// replica's first) and, within an answer, their own order. A record found
/// in two answers (the same `hash`: a replica that answered twice) appears
/// once. Pure, so that the one rule is tested on its own.
pub fn merge_newest_first(answers: Vec<Vec<AuditRecord>>, limit: usize) -> Vec<AuditRecord> {
    let mut all: Vec<AuditRecord> = answers.into_iter().flatten().collect();
    // Stable: equal times keep the order above.
    all.sort_by_key(|record| std::cmp::Reverse(record.time));
    let mut seen = std::collections::HashSet::new();
    all.retain(|record| seen.insert(record.hash.clone()));
    all.truncate(limit);
    all
}
