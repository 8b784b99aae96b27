//! The single writer: group commit of queued events into the hash chain.
//!
//! One dedicated thread owns the newest segment. It blocks for the first
//! queued event, then takes every event already waiting (up to a batch
//! limit), assigns `seq`/`prev`/`hash` in order, writes the batch with one
//! `write`, makes it durable with one `fdatasync`, and only then answers every
//! waiter. While it waits on the disk, new events queue up and form the next
//! batch: the busier the webhook, the bigger the batches, so the fsync rate
//! stays bounded by disk latency rather than by request rate.
//!
//! A thread rather than a tokio task, because fsync blocks for milliseconds
//! and must not stall the runtime that serves admission requests.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use gitwarden_shared::audit::{AuditEvent, AuditRecord};
use tokio::sync::{mpsc, oneshot};
use tracing::{Span, debug, error, field, info, info_span, warn};

use super::AuditError;
use super::error::IoFailure;
use super::metrics::{AuditMetrics, Stats};
use super::segment::Segment;

/// What a caller of `append` gets back.
pub(crate) type Reply = Result<AuditRecord, AuditError>;

/// One queued event and the caller waiting for it.
pub(crate) struct Pending {
    /// The event to record.
    pub(crate) event: AuditEvent,
    /// Where the result goes.
    pub(crate) reply: oneshot::Sender<Reply>,
    /// When `append` queued it, for the latency metric.
    pub(crate) queued_at: Instant,
}

/// The writer's state: the open segment and the end of the chain.
pub(crate) struct Writer {
    pub(crate) dir: PathBuf,
    pub(crate) segment: Segment,
    pub(crate) next_seq: u64,
    pub(crate) last_hash: String,
    pub(crate) max_file_bytes: u64,
    pub(crate) max_batch: usize,
    pub(crate) stats: Arc<Stats>,
    pub(crate) metrics: Option<Arc<AuditMetrics>>,
    /// Set when a failed batch could not be rolled back.
    pub(crate) poisoned: Option<String>,
}

impl Writer {
    /// Runs until every sender is gone, then releases `lock` (by dropping it).
    pub(crate) fn run(mut self, mut queue: mpsc::Receiver<Pending>, lock: File) {
        info!(
            dir = %self.dir.display(),
            file = %self.segment.path().display(),
            next_seq = self.next_seq,
            "audit writer started"
        );
        while let Some(first) = queue.blocking_recv() {
            let mut batch = Vec::with_capacity(self.max_batch.min(64));
            batch.push(first);
            while batch.len() < self.max_batch {
                match queue.try_recv() {
                    Ok(pending) => batch.push(pending),
                    Err(_) => break,
                }
            }
            self.commit(batch);
        }
        info!(dir = %self.dir.display(), "audit writer stopped");
        drop(lock);
    }

    /// Makes one batch durable and answers its waiters.
    fn commit(&mut self, batch: Vec<Pending>) {
        let started = Instant::now();
        let size = batch.len();
        let span = info_span!(
            "audit_batch",
            size,
            first_seq = self.next_seq,
            duration_us = field::Empty
        );
        let _entered = span.enter();
        let (events, waiters): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|pending| (pending.event, (pending.reply, pending.queued_at)))
            .unzip();

        if let Some(reason) = &self.poisoned {
            for (reply, _) in waiters {
                let _ = reply.send(Err(AuditError::Poisoned {
                    reason: reason.clone(),
                }));
            }
            return;
        }

        match self.write_batch(events) {
            Ok(records) => {
                let elapsed = started.elapsed();
                self.stats.batch_committed(records.len() as u64);
                if let Some(last) = records.last() {
                    self.stats.durable.advance(last.seq);
                }
                if let Some(metrics) = &self.metrics {
                    metrics.records.inc_by(records.len() as u64);
                    metrics.batch_size.observe(size as f64);
                    metrics.commit_seconds.observe(elapsed.as_secs_f64());
                }
                for (record, (reply, queued_at)) in records.into_iter().zip(waiters) {
                    log_record(&record);
                    if let Some(metrics) = &self.metrics {
                        metrics
                            .append_seconds
                            .observe(queued_at.elapsed().as_secs_f64());
                    }
                    // A caller that gave up (request cancelled) still has its
                    // record in the log; there is just nobody to tell.
                    let _ = reply.send(Ok(record));
                }
                record_duration(&span, started);
                debug!("audit batch committed");
            }
            Err(failure) => {
                self.stats.batch_failed();
                if let Some(metrics) = &self.metrics {
                    metrics.write_errors.inc();
                }
                record_duration(&span, started);
                error!(error = %failure, "audit batch failed; its requests get an error");
                for (reply, _) in waiters {
                    let _ = reply.send(Err(failure.to_error()));
                }
            }
        }
    }

    /// Seals, writes and fsyncs `events`; on failure the chain state and the
    /// file are as they were before the batch.
    fn write_batch(&mut self, events: Vec<AuditEvent>) -> Result<Vec<AuditRecord>, IoFailure> {
        self.rotate_if_full()?;

        let mut bytes = Vec::with_capacity(events.len() * 768);
        let mut records = Vec::with_capacity(events.len());
        let mut prev = self.last_hash.clone();
        let mut seq = self.next_seq;
        for event in events {
            let record = event.into_record(seq).seal(&prev);
            serde_json::to_writer(&mut bytes, &record)
                .map_err(|err| IoFailure::new("encode", self.segment.path(), err.into()))?;
            bytes.push(b'\n');
            prev.clone_from(&record.hash);
            seq += 1;
            records.push(record);
        }

        let before = self.segment.len();
        let written = {
            let on_sync = fsync_counter(&self.stats, self.metrics.as_deref());
            self.segment.append_durably(&bytes, &on_sync)
        };
        if let Err(failure) = written {
            self.roll_back(before, &failure);
            return Err(failure);
        }
        self.next_seq = seq;
        self.last_hash = prev;
        Ok(records)
    }

    /// Starts the next segment once the current one has reached the size
    /// limit. The chain simply continues: the first record of the new file
    /// links to the last record of the old one.
    fn rotate_if_full(&mut self) -> Result<(), IoFailure> {
        if self.segment.len() == 0 || self.segment.len() < self.max_file_bytes {
            return Ok(());
        }
        let index = self.segment.index() + 1;
        let on_sync = fsync_counter(&self.stats, self.metrics.as_deref());
        let next = Segment::create(&self.dir, index, &on_sync)?;
        info!(
            from = %self.segment.path().display(),
            to = %next.path().display(),
            next_seq = self.next_seq,
            "audit log rotated"
        );
        self.segment = next;
        Ok(())
    }

    /// Cuts a failed batch out of the file; if even that fails, refuses every
    /// later append, since the file may now hold records nobody was told about
    /// and a new batch would chain onto an unknown state.
    fn roll_back(&mut self, len: u64, cause: &IoFailure) {
        let on_sync = fsync_counter(&self.stats, self.metrics.as_deref());
        if let Err(failure) = self.segment.roll_back(len, &on_sync) {
            let reason = format!("{cause}; then the rollback failed: {failure}");
            error!(%reason, "audit log poisoned: every append fails until restart");
            self.stats.poison();
            self.poisoned = Some(reason);
        } else {
            warn!(file = %self.segment.path().display(), len, "rolled back a failed audit batch");
        }
    }
}

/// The `on_sync` hook of [`Segment`]: counts one fsync call everywhere.
pub(crate) fn fsync_counter<'a>(
    stats: &'a Stats,
    metrics: Option<&'a AuditMetrics>,
) -> impl Fn() + 'a {
    move || {
        stats.fsynced();
        if let Some(metrics) = metrics {
            metrics.fsyncs.inc();
        }
    }
}

/// Records how long the batch took on its span.
fn record_duration(span: &Span, started: Instant) {
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    span.record("duration_us", micros);
}

/// The one log line per durable record: the audit trail in the log pipeline.
fn log_record(record: &AuditRecord) {
    info!(
        audit_id = %record.id,
        decision = %record.decision,
        reason = %record.reason,
        user = %record.user,
        operation = %record.operation,
        group = %record.group,
        resource = %record.resource,
        subresource = record.subresource.as_deref(),
        namespace = record.namespace.as_deref(),
        name = record.name.as_deref(),
        "audit record written"
    );
}
