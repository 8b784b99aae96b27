//! The handle the webhook holds: open the log, append durably, query.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use gitwarden_shared::audit::{AuditEvent, AuditRecord};
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use super::AuditError;
use super::files::{FIRST_INDEX, LOCK_FILE};
use super::metrics::{AuditMetrics, AuditStats, DurableSeq, Stats};
use super::query::{AuditQuery, query_dir};
use super::recover::recover;
use super::segment::Segment;
use super::writer::{Pending, Writer, fsync_counter};

/// Tuning of the audit log. `AuditOptions::default()` suits production.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Start a new file once the current one reaches this size (default
    /// 64 MiB), so files stay easy to copy, archive and read. A file can
    /// exceed it by at most one batch.
    pub max_file_bytes: u64,
    /// Most records per fsync (default 1024): bounds the latency one batch
    /// adds to the requests in it.
    pub max_batch: usize,
    /// Events that may wait for the writer (default 4096); beyond that,
    /// `append` waits for room, which slows admission instead of growing
    /// memory without bound.
    pub queue_capacity: usize,
    /// Prometheus metrics to update, if the webhook exports them.
    pub metrics: Option<Arc<AuditMetrics>>,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            max_file_bytes: 64 * 1024 * 1024,
            max_batch: 1024,
            queue_capacity: 4096,
            metrics: None,
        }
    }
}

/// The durable, hash-chained audit log.
///
/// Cheap to clone (put it in the axum state); all clones feed one writer
/// thread. The writer stops when the last clone is dropped or
/// [`closed`](AuditLog::close).
#[derive(Debug, Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    queue: mpsc::Sender<Pending>,
    stats: Arc<Stats>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl AuditLog {
    /// Opens (or creates) the log in `dir` and starts its writer thread.
    ///
    /// Takes an exclusive lock on `dir/audit.lock`, so two writers can never
    /// fork the chain. Recovers `seq` and the last hash from the newest file,
    /// truncating a record torn by a crash (never acknowledged, see
    /// `recover`). Blocking (it reads and may fsync); call it at startup.
    pub fn open(dir: &Path, options: AuditOptions) -> Result<AuditLog, AuditError> {
        std::fs::create_dir_all(dir).map_err(|source| AuditError::CreateDir {
            dir: dir.to_owned(),
            source,
        })?;
        let lock = lock_dir(dir)?;
        let recovered = recover(dir)?;
        let stats = Arc::new(Stats::new(recovered.next_seq.saturating_sub(1)));
        let on_sync = fsync_counter(&stats, options.metrics.as_deref());
        let segment = match &recovered.newest {
            Some(newest) => Segment::open(&newest.path, newest.index),
            None => Segment::create(dir, FIRST_INDEX, &on_sync),
        }
        .map_err(|failure| failure.to_error())?;
        drop(on_sync);

        let writer = Writer {
            dir: dir.to_owned(),
            segment,
            next_seq: recovered.next_seq,
            last_hash: recovered.last_hash,
            max_file_bytes: options.max_file_bytes,
            max_batch: options.max_batch.max(1),
            stats: Arc::clone(&stats),
            metrics: options.metrics,
            poisoned: None,
        };
        let (queue, receiver) = mpsc::channel(options.queue_capacity.max(1));
        let handle = std::thread::Builder::new()
            .name("audit-writer".to_owned())
            .spawn(move || writer.run(receiver, lock))
            .map_err(AuditError::SpawnWriter)?;
        Ok(AuditLog {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                queue,
                stats,
                writer: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Where the log is durable up to, for followers of its files.
    pub fn durable(&self) -> DurableSeq {
        self.inner.stats.durable.clone()
    }

    /// Records `event` and returns its sealed record once it is durable
    /// (written and fdatasynced, possibly together with other requests'
    /// records: group commit).
    ///
    /// An `Err` means the record is not in the log: the caller must not let
    /// the request through as if it had been audited. Cancelling the future
    /// after it was queued does not withdraw the record.
    pub async fn append(&self, event: AuditEvent) -> Result<AuditRecord, AuditError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            event,
            reply,
            queued_at: Instant::now(),
        };
        self.inner
            .queue
            .send(pending)
            .await
            .map_err(|_| AuditError::WriterGone)?;
        answer.await.map_err(|_| AuditError::WriterGone)?
    }

    /// Records matching `query`, newest first (see [`query_dir`]). Reads the
    /// files on a blocking thread, without involving the writer.
    pub async fn query(&self, query: AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
        let dir = self.inner.dir.clone();
        tokio::task::spawn_blocking(move || query_dir(&dir, &query))
            .await
            .map_err(|err| AuditError::Task(err.to_string()))?
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The writer's counters since open.
    pub fn stats(&self) -> AuditStats {
        self.inner.stats.snapshot()
    }

    /// Whether appends can succeed: false once the writer has stopped or a
    /// failed batch could not be rolled back. Wire it into `/readyz`, so a
    /// webhook that cannot audit stops receiving requests.
    pub fn is_healthy(&self) -> bool {
        !self.inner.queue.is_closed() && !self.inner.stats.is_poisoned()
    }

    /// Stops the writer and waits for it, if this is the last handle; other
    /// clones keep the writer running and this returns at once.
    ///
    /// Every append that returned `Ok` is durable already; closing only
    /// releases the file and the directory lock (e.g. before reopening).
    pub async fn close(self) -> Result<(), AuditError> {
        let Ok(inner) = Arc::try_unwrap(self.inner) else {
            return Ok(());
        };
        let Inner {
            dir, queue, writer, ..
        } = inner;
        drop(queue);
        let handle = writer
            .into_inner()
            .map_err(|_| AuditError::Task("writer handle lock poisoned".to_owned()))?;
        if let Some(handle) = handle {
            tokio::task::spawn_blocking(move || handle.join())
                .await
                .map_err(|err| AuditError::Task(err.to_string()))?
                .map_err(|_| AuditError::Task("the audit writer thread panicked".to_owned()))?;
        }
        info!(dir = %dir.display(), "audit log closed");
        Ok(())
    }
}

/// Takes the directory's writer lock, held by the writer thread until it
/// stops (the OS releases it if the process dies).
fn lock_dir(dir: &Path) -> Result<File, AuditError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| AuditError::LockFile {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(AuditError::Locked { path }),
        Err(TryLockError::Error(source)) => Err(AuditError::LockFile { path, source }),
    }
}
