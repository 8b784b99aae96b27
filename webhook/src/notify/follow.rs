//! Tailing the audit log: the records after a sequence number, oldest
//! first, read from the segment files (read-only, never through the writer,
//! so following can never slow an admission answer).
//!
//! Only complete lines of durable records are read: a line the writer is
//! still writing, or one written but not yet fsynced ([`DurableSeq`]), is
//! left for the next poll. The follower remembers where it stopped (file and byte
//! offset), so a poll reads only what is new; after a restart it skips whole
//! segments by their first record's sequence number.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use gitwarden_shared::audit::AuditRecord;

use crate::audit::DurableSeq;

const PREFIX: &str = "audit-";
const SUFFIX: &str = ".jsonl";

/// The segment files of `dir`, oldest first.
fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(index) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX)?.strip_suffix(SUFFIX))
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((index, entry.path()));
    }
    found.sort_by_key(|(index, _)| *index);
    Ok(found)
}

fn first_seq(path: &Path) -> std::io::Result<Option<u64>> {
    let mut line = String::new();
    BufReader::new(File::open(path)?).read_line(&mut line)?;
    Ok(serde_json::from_str::<AuditRecord>(&line)
        .ok()
        .map(|r| r.seq))
}

/// Reads the records after a position, across rotated files.
#[derive(Debug)]
pub struct Follower {
    dir: PathBuf,
    /// (segment index, byte offset of the next unread line).
    position: Option<(u64, u64)>,
    /// The last sequence number handed out (or skipped).
    after: u64,
    /// Records after this mark are not handed out yet.
    durable: DurableSeq,
}

impl Follower {
    /// A follower that will return records with `seq > after`, each once
    /// `durable` has reached it.
    pub fn new(dir: &Path, after: u64, durable: DurableSeq) -> Follower {
        Follower {
            dir: dir.to_owned(),
            position: None,
            after,
            durable,
        }
    }

    /// The sequence number of the last record of the log (0 if empty): where
    /// a new receiver starts, so it is not flooded with history.
    pub fn last_seq(dir: &Path, durable: &DurableSeq) -> std::io::Result<u64> {
        let mut follower = Follower::new(dir, 0, durable.clone());
        let mut last = 0;
        loop {
            let batch = follower.next_batch(10_000)?;
            match batch.last() {
                Some(r) => last = r.seq,
                None => return Ok(last),
            }
        }
    }

    /// Up to `max` records after the last one returned, oldest first; empty
    /// when there is nothing new.
    pub fn next_batch(&mut self, max: usize) -> std::io::Result<Vec<AuditRecord>> {
        let files = match segments(&self.dir) {
            Ok(files) => files,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let start = match self.position {
            Some((index, _)) => files.iter().position(|(i, _)| *i == index).unwrap_or(0),
            None => {
                // Skip every segment whose successor starts at or before
                // the record we need.
                let mut start = 0;
                for (k, (_, path)) in files.iter().enumerate().skip(1) {
                    match first_seq(path)? {
                        Some(seq) if seq <= self.after + 1 => start = k,
                        _ => break,
                    }
                }
                start
            }
        };
        let durable = self.durable.get();
        let mut out = Vec::new();
        for (index, path) in files.iter().skip(start) {
            let offset = match self.position {
                Some((i, offset)) if i == *index => offset,
                _ => 0,
            };
            let mut reader = BufReader::new(File::open(path)?);
            reader.seek(SeekFrom::Start(offset))?;
            let mut offset = offset;
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = reader.read_until(b'\n', &mut line)?;
                if n == 0 || line.last() != Some(&b'\n') {
                    // End of file, or a line still being written.
                    break;
                }
                let parsed = serde_json::from_slice::<AuditRecord>(&line);
                if let Ok(record) = &parsed
                    && record.seq > durable
                {
                    // Written, not yet fsynced: read it again next time.
                    return Ok(out);
                }
                offset += n as u64;
                self.position = Some((*index, offset));
                match parsed {
                    Ok(record) if record.seq > self.after => {
                        self.after = record.seq;
                        out.push(record);
                        if out.len() >= max {
                            return Ok(out);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(
                        file = %path.display(),
                        offset,
                        error = %e,
                        "notifications: skipping an unreadable audit line"
                    ),
                }
            }
            if self.position.is_none() {
                self.position = Some((*index, offset));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitwarden_shared::audit::{AuditDecision, AuditEvent, GENESIS_HASH};
    use std::io::Write as _;

    fn write(dir: &Path, index: u64, seqs: std::ops::RangeInclusive<u64>) {
        let mut file = File::create(dir.join(format!("audit-{index:06}.jsonl"))).expect("create");
        for seq in seqs {
            let r = AuditEvent::new(AuditDecision::Denied, "x")
                .into_record(seq)
                .seal(GENESIS_HASH);
            writeln!(file, "{}", serde_json::to_string(&r).expect("json")).expect("write");
        }
    }

    #[test]
    fn reads_after_the_cursor_across_segments_and_only_new_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), 1, 1..=3);
        write(dir.path(), 2, 4..=6);
        let mut f = Follower::new(dir.path(), 2, DurableSeq::unbounded());
        let seqs: Vec<u64> = f
            .next_batch(100)
            .expect("read")
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, vec![3, 4, 5, 6]);
        assert!(f.next_batch(100).expect("read").is_empty());
        // A torn line is left alone until it is complete.
        let path = dir.path().join("audit-000002.jsonl");
        let r = AuditEvent::new(AuditDecision::Denied, "x")
            .into_record(7)
            .seal(GENESIS_HASH);
        let line = serde_json::to_string(&r).expect("json");
        let mut file = File::options().append(true).open(&path).expect("open");
        file.write_all(&line.as_bytes()[..10]).expect("write");
        assert!(f.next_batch(100).expect("read").is_empty());
        file.write_all(&line.as_bytes()[10..]).expect("write");
        file.write_all(b"\n").expect("write");
        let seqs: Vec<u64> = f
            .next_batch(100)
            .expect("read")
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, vec![7]);
        assert_eq!(
            Follower::last_seq(dir.path(), &DurableSeq::unbounded()).expect("last"),
            7
        );
    }

    #[test]
    fn a_record_is_handed_on_only_once_it_is_durable() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), 1, 1..=5);
        let durable = DurableSeq::at(3);
        let mut f = Follower::new(dir.path(), 0, durable.clone());
        let seqs = |batch: Vec<AuditRecord>| batch.iter().map(|r| r.seq).collect::<Vec<_>>();
        assert_eq!(seqs(f.next_batch(100).expect("read")), vec![1, 2, 3]);
        // Written but not fsynced: not read, however often asked.
        assert!(f.next_batch(100).expect("read").is_empty());
        assert_eq!(Follower::last_seq(dir.path(), &durable).expect("last"), 3);
        durable.advance(5);
        assert_eq!(seqs(f.next_batch(100).expect("read")), vec![4, 5]);
    }

    #[test]
    fn batches_are_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), 1, 1..=10);
        let mut f = Follower::new(dir.path(), 0, DurableSeq::unbounded());
        assert_eq!(f.next_batch(4).expect("read").len(), 4);
        assert_eq!(f.next_batch(4).expect("read")[0].seq, 5);
    }
}
