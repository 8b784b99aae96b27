//! Where the log lives on disk: `audit-<NNNNNN>.jsonl` segment files, listed
//! in chain order, plus a lock file.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::AuditError;

/// File name prefix of a segment.
const PREFIX: &str = "audit-";
/// File name suffix of a segment.
const SUFFIX: &str = ".jsonl";
/// The lock file that keeps a second writer out of the directory.
pub(crate) const LOCK_FILE: &str = "audit.lock";
/// The index of the first segment.
pub(crate) const FIRST_INDEX: u64 = 1;

/// One segment file of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentFile {
    /// Position in the chain of files (1, 2, ...).
    pub(crate) index: u64,
    /// Full path.
    pub(crate) path: PathBuf,
}

/// The path of segment `index`: zero-padded to six digits so a plain `ls`
/// shows the files in chain order.
pub(crate) fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{index:06}{SUFFIX}"))
}

/// Parses a segment index out of a file name; `None` for anything else in
/// the directory (the lock file, an operator's notes, a moved-aside file).
fn parse_index(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment files of `dir`, oldest first (the order of the chain).
///
/// Sorting by the parsed index, not by name, keeps the order right after
/// index 999999 grows a seventh digit.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, AuditError> {
    let list_err = |source| AuditError::ListDir {
        dir: dir.to_owned(),
        source,
    };
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(list_err)? {
        let entry = entry.map_err(list_err)?;
        let name = entry.file_name();
        let Some(index) = name.to_str().and_then(parse_index) else {
            continue;
        };
        segments.push(SegmentFile {
            index,
            path: entry.path(),
        });
    }
    segments.sort_by_key(|segment| segment.index);
    Ok(segments)
}

/// Fsyncs a directory, so that a file created in it survives a crash: without
/// it the file's data may be durable while its name is not.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_are_zero_padded() {
        let path = segment_path(Path::new("/var/audit"), 7);
        assert_eq!(path, Path::new("/var/audit/audit-000007.jsonl"));
    }

    #[test]
    fn parse_index_accepts_only_segment_names() {
        assert_eq!(parse_index("audit-000042.jsonl"), Some(42));
        assert_eq!(parse_index("audit-1234567.jsonl"), Some(1_234_567));
        assert_eq!(parse_index("audit.lock"), None);
        assert_eq!(parse_index("audit-000042.jsonl.bak"), None);
        assert_eq!(parse_index("audit-.jsonl"), None);
        assert_eq!(parse_index("audit-+1.jsonl"), None);
    }

    #[test]
    fn list_segments_sorts_by_index_and_skips_other_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "audit-1000000.jsonl",
            "audit-000002.jsonl",
            "audit.lock",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), b"").expect("write");
        }
        let indexes: Vec<u64> = list_segments(dir.path())
            .expect("list")
            .into_iter()
            .map(|segment| segment.index)
            .collect();
        assert_eq!(indexes, vec![2, 1_000_000]);
    }
}
