//! What the audit writer counts: prometheus metrics for dashboards and
//! alerts, and plain counters for health checks and tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Prometheus metrics of the audit writer.
///
/// Create one, [`register`](AuditMetrics::register) it with the webhook's
/// registry, and pass it in [`AuditOptions::metrics`](super::AuditOptions):
/// the writer updates it after every batch. Cloning the metrics inside
/// `register` shares them (prometheus-client metrics are reference-counted).
#[derive(Debug)]
pub struct AuditMetrics {
    /// Records made durable (`gitwarden_audit_records_total`).
    pub records: Counter,
    /// fsync calls, file and directory (`gitwarden_audit_fsyncs_total`): with
    /// group commit, far fewer than records.
    pub fsyncs: Counter,
    /// Batches that failed to become durable
    /// (`gitwarden_audit_write_errors_total`): each one failed its requests.
    pub write_errors: Counter,
    /// Records per batch (`gitwarden_audit_batch_size`).
    pub batch_size: Histogram,
    /// Time to write and fsync one batch (`gitwarden_audit_commit_seconds`).
    pub commit_seconds: Histogram,
    /// Time from `append` to acknowledgement, as a request sees it
    /// (`gitwarden_audit_append_seconds`).
    pub append_seconds: Histogram,
}

impl Default for AuditMetrics {
    fn default() -> Self {
        AuditMetrics {
            records: Counter::default(),
            fsyncs: Counter::default(),
            write_errors: Counter::default(),
            // 1, 2, 4 … 1024 records.
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            // 100 µs … ~3.3 s.
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            append_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        }
    }
}

impl AuditMetrics {
    /// Fresh, zeroed metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers every metric under `gitwarden_audit_*`.
    pub fn register(&self, registry: &mut Registry) {
        let audit = registry.sub_registry_with_prefix("gitwarden_audit");
        audit.register(
            "records",
            "Audit records made durable",
            self.records.clone(),
        );
        audit.register(
            "fsyncs",
            "fsync calls made by the audit writer",
            self.fsyncs.clone(),
        );
        audit.register(
            "write_errors",
            "Audit batches that failed to become durable",
            self.write_errors.clone(),
        );
        audit.register(
            "batch_size",
            "Audit records committed per fsync",
            self.batch_size.clone(),
        );
        audit.register_with_unit(
            "commit",
            "Time to write and fsync one audit batch",
            Unit::Seconds,
            self.commit_seconds.clone(),
        );
        audit.register_with_unit(
            "append",
            "Time from append to durable acknowledgement",
            Unit::Seconds,
            self.append_seconds.clone(),
        );
    }
}

/// A snapshot of the writer's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditStats {
    /// Records made durable since open.
    pub records: u64,
    /// Batches committed since open.
    pub batches: u64,
    /// fsync calls (file and directory) since open.
    pub fsyncs: u64,
    /// Batches that failed since open.
    pub failed_batches: u64,
}

/// The sequence number of the newest record known to be on disk (written
/// and fsynced, or found there at open), shared by the writer with whoever
/// follows the log.
///
/// Why: a follower reads the files, and a line can be in them (the page
/// cache) before its fsync. Handed on before it is durable, a record lost to
/// a power failure would have been notified (a break-glass that was in fact
/// refused, since its request failed), and its sequence number, reused by
/// the next record, would be skipped by a cursor already past it.
#[derive(Debug, Clone)]
pub struct DurableSeq(Arc<AtomicU64>);

impl DurableSeq {
    /// No bound: for a log read with no writer in this process (offline
    /// tools, tests of the follower).
    pub fn unbounded() -> DurableSeq {
        DurableSeq(Arc::new(AtomicU64::new(u64::MAX)))
    }

    /// A mark at `seq`.
    pub(crate) fn at(seq: u64) -> DurableSeq {
        DurableSeq(Arc::new(AtomicU64::new(seq)))
    }

    /// The newest durable sequence number.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Moves the mark to `seq` (after its fsync).
    pub(crate) fn advance(&self, seq: u64) {
        self.0.fetch_max(seq, Ordering::AcqRel);
    }
}

/// Counters shared by the writer thread and the [`AuditLog`](super::AuditLog)
/// handles; always on, unlike the optional prometheus metrics.
#[derive(Debug)]
pub(crate) struct Stats {
    /// Where records are durable up to.
    pub(crate) durable: DurableSeq,
    records: AtomicU64,
    batches: AtomicU64,
    fsyncs: AtomicU64,
    failed_batches: AtomicU64,
    poisoned: AtomicBool,
}

impl Stats {
    /// Counters at zero, with records durable up to `durable`.
    pub(crate) fn new(durable: u64) -> Stats {
        Stats {
            durable: DurableSeq::at(durable),
            records: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            failed_batches: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
        }
    }

    /// Counts a committed batch of `records`.
    pub(crate) fn batch_committed(&self, records: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed batch.
    pub(crate) fn batch_failed(&self) {
        self.failed_batches.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one fsync call.
    pub(crate) fn fsynced(&self) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
    }

    /// Marks the log unusable until restart.
    pub(crate) fn poison(&self) {
        self.poisoned.store(true, Ordering::Relaxed);
    }

    /// Whether the log is unusable until restart.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Relaxed)
    }

    /// The current values.
    pub(crate) fn snapshot(&self) -> AuditStats {
        AuditStats {
            records: self.records.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_exposes_the_audit_metrics() {
        let metrics = AuditMetrics::new();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.records.inc_by(3);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(text.contains("gitwarden_audit_records_total 3"), "{text}");
        assert!(
            text.contains("gitwarden_audit_commit_seconds_bucket"),
            "{text}"
        );
        assert!(text.contains("gitwarden_audit_fsyncs_total"), "{text}");
    }
}
