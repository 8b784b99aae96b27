//! A receiver's cursor: the sequence number of the last audit record it has
//! been told about (or that it did not want), persisted so a restart —
//! even `kill -9` — resumes there: at most the last batch is sent again.
//!
//! The file holds the number as text. It is written to a temporary file,
//! fsynced, renamed over the old one and the directory fsynced, so a crash
//! leaves either the old or the new value, never a torn one.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The persisted position of one receiver.
#[derive(Debug, Clone)]
pub struct Cursor {
    path: PathBuf,
}

impl Cursor {
    /// The cursor of receiver `name` in `dir` (created if needed).
    pub fn new(dir: &Path, name: &str) -> std::io::Result<Cursor> {
        std::fs::create_dir_all(dir)?;
        Ok(Cursor {
            path: dir.join(format!("{name}.cursor")),
        })
    }

    /// The stored value; `None` when the receiver has none yet.
    pub fn load(&self) -> std::io::Result<Option<u64>> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => text.trim().parse().map(Some).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", self.path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stores `seq` durably (atomic replace).
    pub fn store(&self, seq: u64) -> std::io::Result<()> {
        let tmp = self.path.with_extension("cursor.tmp");
        {
            let mut file = File::create(&tmp)?;
            writeln!(file, "{seq}")?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cursor = Cursor::new(&dir.path().join("c"), "oncall").expect("cursor");
        assert_eq!(cursor.load().expect("load"), None);
        cursor.store(41).expect("store");
        cursor.store(42).expect("store");
        assert_eq!(cursor.load().expect("load"), Some(42));
        let again = Cursor::new(&dir.path().join("c"), "oncall").expect("cursor");
        assert_eq!(again.load().expect("load"), Some(42));
        assert!(!dir.path().join("c/oncall.cursor.tmp").exists());
    }

    #[test]
    fn a_garbled_cursor_is_an_error_not_a_restart_from_zero() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("x.cursor"), "garbage").expect("write");
        let cursor = Cursor::new(dir.path(), "x").expect("cursor");
        assert!(cursor.load().is_err());
    }
}
