//! The one error type of the audit log, with the file and the step that failed.
//! The cause is each variant's `source`, not repeated in its message.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong while opening, writing, querying or verifying
/// the audit log.
///
/// Each variant names the file (or directory) involved, because an operator
/// reading "No space left on device" needs to know which volume to look at.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The audit directory could not be created.
    #[error("cannot create audit directory {}", dir.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The lock file that keeps a second writer out could not be opened.
    #[error("cannot open audit lock file {}", path.display())]
    LockFile {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Another writer (process or handle) already owns this directory: two
    /// writers would fork the chain, so the second one must not start.
    #[error("audit log lock {} is held by another writer", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The audit directory could not be listed.
    #[error("cannot list audit directory {}", dir.display())]
    ListDir {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// An audit file could not be opened or read.
    #[error("cannot read audit file {}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Making the records found at open durable (fsync) failed.
    #[error("cannot fsync audit file {} on open", file.display())]
    SyncOnOpen {
        /// The file.
        file: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Removing a torn last line on open failed.
    #[error("cannot truncate the torn tail of audit file {}", file.display())]
    Repair {
        /// The file.
        file: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The last record, which the chain must continue from, is unreadable
    /// and is not a torn write: refusing to guess keeps the damage visible.
    #[error(
        "audit file {} is damaged at byte {offset}: {why}; run `verify`, then move the damaged file aside",
        file.display()
    )]
    CorruptTail {
        /// The file.
        file: PathBuf,
        /// Byte offset of the unreadable line.
        offset: u64,
        /// What is wrong with it.
        why: String,
    },
    /// Creating a file, writing a batch or fsyncing failed: the records of
    /// that batch are not durable and were not acknowledged.
    #[error("audit {op} failed on {}", file.display())]
    Write {
        /// The step that failed: `create`, `write`, `fsync`, `sync dir`, `encode`.
        op: &'static str,
        /// The file or directory.
        file: PathBuf,
        /// The cause, shared by every waiter of the failed batch.
        source: Arc<io::Error>,
    },
    /// A failed batch could not be rolled back, so the file may hold records
    /// nobody was told about; appending after them would be unsafe.
    #[error("audit log is unusable until the webhook restarts: {reason}")]
    Poisoned {
        /// What failed.
        reason: String,
    },
    /// The writer thread has stopped (shut down or panicked).
    #[error("the audit writer has stopped")]
    WriterGone,
    /// The writer thread could not be started.
    #[error("cannot start the audit writer thread")]
    SpawnWriter(#[source] io::Error),
    /// A blocking task (query, close) panicked or was cancelled.
    #[error("audit background task failed: {0}")]
    Task(String),
}

/// An I/O failure inside the writer, kept cheap to clone because every waiter
/// of a failed batch gets its own [`AuditError`].
#[derive(Debug, Clone)]
pub(crate) struct IoFailure {
    /// The step that failed.
    pub(crate) op: &'static str,
    /// The file or directory.
    pub(crate) file: PathBuf,
    /// The cause.
    pub(crate) source: Arc<io::Error>,
}

impl IoFailure {
    /// Records which step failed on which path.
    pub(crate) fn new(op: &'static str, file: impl Into<PathBuf>, source: io::Error) -> Self {
        IoFailure {
            op,
            file: file.into(),
            source: Arc::new(source),
        }
    }

    /// The error one waiter receives.
    pub(crate) fn to_error(&self) -> AuditError {
        AuditError::Write {
            op: self.op,
            file: self.file.clone(),
            source: Arc::clone(&self.source),
        }
    }
}

impl std::fmt::Display for IoFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.op, self.file.display(), self.source)
    }
}
