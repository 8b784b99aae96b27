//! Per-sync state shared by the phases: settings and request counts.

use std::sync::atomic::{AtomicU64, Ordering};

/// What one sync (or diff) needs everywhere: the field manager, the
/// concurrency bound, and the count of requests it sent, so the report can
/// say how many writes a sync made without a counting client.
#[derive(Debug)]
pub(crate) struct SyncContext {
    /// Server-side-apply field manager.
    pub field_manager: String,
    /// How many requests may run at once within a phase.
    pub concurrency: usize,
    writes: AtomicU64,
    dry_runs: AtomicU64,
}

impl SyncContext {
    pub(crate) fn new(field_manager: &str, concurrency: usize) -> Self {
        Self {
            field_manager: field_manager.to_owned(),
            concurrency: concurrency.max(1),
            writes: AtomicU64::new(0),
            dry_runs: AtomicU64::new(0),
        }
    }

    /// Records `n` write requests (applies, deletes, inventory writes).
    pub(crate) fn count_writes(&self, n: u64) {
        self.writes.fetch_add(n, Ordering::Relaxed);
    }

    /// Records one dry-run request.
    pub(crate) fn count_dry_run(&self) {
        self.dry_runs.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    pub(crate) fn dry_runs(&self) -> u64 {
        self.dry_runs.load(Ordering::Relaxed)
    }
}
