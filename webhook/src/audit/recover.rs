//! Finding where the chain stands when the log is opened, and removing a
//! record torn by a crash.
//!
//! A record is acknowledged only after its batch is fsynced, so a crash can
//! leave at most one incomplete batch at the end of the newest file. Its
//! bytes were never acknowledged: dropping them loses nothing anyone was told
//! about. Damage anywhere else is left in place for `verify` to report.

use std::fs::{File, OpenOptions};
use std::path::Path;

use gitwarden_shared::audit::{AuditRecord, FIRST_SEQ, GENESIS_HASH};
use tracing::{info, warn};

use super::AuditError;
use super::files::{SegmentFile, list_segments};
use super::rev_lines::RevLines;

/// How many bytes of a dropped tail are shown in the warning.
const PREVIEW_BYTES: u64 = 160;

/// Where the chain continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// The newest segment, to keep appending to; `None` for a new log.
    pub(crate) newest: Option<SegmentFile>,
    /// The `seq` of the next record.
    pub(crate) next_seq: u64,
    /// The `prev` of the next record.
    pub(crate) last_hash: String,
}

/// Repairs a torn tail of the newest segment, then reads the last record.
pub(crate) fn recover(dir: &Path) -> Result<Recovered, AuditError> {
    let segments = list_segments(dir)?;
    let Some(newest) = segments.last() else {
        return Ok(Recovered {
            newest: None,
            next_seq: FIRST_SEQ,
            last_hash: GENESIS_HASH.to_owned(),
        });
    };
    repair_torn_tail(&newest.path)?;
    // What a crashed process wrote without its fsync may still be only in
    // the page cache: make it durable before anyone is told of it
    // (`DurableSeq`).
    std::fs::File::open(&newest.path)
        .and_then(|f| f.sync_data())
        .map_err(|source| AuditError::SyncOnOpen {
            file: newest.path.clone(),
            source,
        })?;
    // The newest file is empty when a crash came right after a rotation:
    // the chain then ends in the file before it.
    for segment in segments.iter().rev() {
        if let Some(record) = last_record(&segment.path)? {
            if record.compute_hash() != record.hash {
                warn!(
                    file = %segment.path.display(),
                    seq = record.seq,
                    "the last audit record does not match its hash; continuing the chain from \
                     its stored hash, `verify` will report the damage"
                );
            }
            info!(
                file = %newest.path.display(),
                next_seq = record.seq + 1,
                "audit chain recovered"
            );
            return Ok(Recovered {
                newest: Some(newest.clone()),
                next_seq: record.seq + 1,
                last_hash: record.hash,
            });
        }
    }
    Ok(Recovered {
        newest: Some(newest.clone()),
        next_seq: FIRST_SEQ,
        last_hash: GENESIS_HASH.to_owned(),
    })
}

/// Truncates the newest segment's torn tail: bytes after the last newline,
/// or else a last line that is not a valid record. Only one such piece is
/// removed; anything worse is reported by [`last_record`]. Returns how many
/// bytes were dropped.
pub(crate) fn repair_torn_tail(path: &Path) -> Result<u64, AuditError> {
    let read_err = |source| AuditError::Read {
        file: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    let mut lines = RevLines::new(&file, len).map_err(read_err)?;
    let cut = if lines.complete_len() < len {
        Some(lines.complete_len())
    } else {
        match lines.next_line().map_err(read_err)? {
            Some((offset, line)) if parse(&line).is_err() => Some(offset),
            _ => None,
        }
    };
    drop(lines);
    let Some(cut) = cut else {
        return Ok(0);
    };
    let preview = preview(&file, cut, len).map_err(read_err)?;
    let repair_err = |source| AuditError::Repair {
        file: path.to_owned(),
        source,
    };
    file.set_len(cut).map_err(repair_err)?;
    file.sync_all().map_err(repair_err)?;
    let dropped = len - cut;
    warn!(
        file = %path.display(),
        offset = cut,
        dropped_bytes = dropped,
        preview = %preview,
        "truncated a torn audit record left by a crash (it was never acknowledged)"
    );
    Ok(dropped)
}

/// The last complete record of a segment, `None` if it has none.
fn last_record(path: &Path) -> Result<Option<AuditRecord>, AuditError> {
    let read_err = |source| AuditError::Read {
        file: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    let mut lines = RevLines::new(&file, len).map_err(read_err)?;
    let Some((offset, line)) = lines.next_line().map_err(read_err)? else {
        return Ok(None);
    };
    parse(&line)
        .map(Some)
        .map_err(|err| AuditError::CorruptTail {
            file: path.to_owned(),
            offset,
            why: format!("not a valid audit record: {err}"),
        })
}

/// Parses one line as a record.
fn parse(line: &[u8]) -> Result<AuditRecord, serde_json::Error> {
    serde_json::from_slice(line)
}

/// The start of the dropped bytes, printable, for the warning.
fn preview(file: &File, from: u64, len: u64) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut reader = file;
    reader.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    reader
        .take(PREVIEW_BYTES.min(len - from))
        .read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).escape_debug().to_string())
}
