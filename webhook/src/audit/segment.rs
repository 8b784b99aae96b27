//! The segment file the writer appends to: durable appends, rollback of a
//! failed batch, and creation of the next file on rotation.
//!
//! Every method that syncs calls its `on_sync` just before, so the writer can
//! count fsync attempts (the proof that group commit batches).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::IoFailure;
use super::files::{segment_path, sync_dir};

/// The open, newest segment. Only the writer thread holds one.
#[derive(Debug)]
pub(crate) struct Segment {
    index: u64,
    path: PathBuf,
    file: File,
    len: u64,
}

impl Segment {
    /// Creates segment `index` in `dir` and fsyncs the directory, so the new
    /// name is as durable as the records that will go into it.
    ///
    /// An existing *empty* file is reused (a previous attempt created it but
    /// failed to sync the directory); a non-empty one is refused, because
    /// rotation must never append into another chain's records.
    pub(crate) fn create(dir: &Path, index: u64, on_sync: &dyn Fn()) -> Result<Segment, IoFailure> {
        let path = segment_path(dir, index);
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|err| IoFailure::new("create", &path, err))?;
        let len = file
            .metadata()
            .map_err(|err| IoFailure::new("stat", &path, err))?
            .len();
        if len != 0 {
            let err = std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("the next segment already holds {len} bytes"),
            );
            return Err(IoFailure::new("create", &path, err));
        }
        on_sync();
        sync_dir(dir).map_err(|err| IoFailure::new("sync dir", dir, err))?;
        Ok(Segment {
            index,
            path,
            file,
            len: 0,
        })
    }

    /// Opens an existing segment to append to (after recovery repaired it).
    pub(crate) fn open(path: &Path, index: u64) -> Result<Segment, IoFailure> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|err| IoFailure::new("open", path, err))?;
        let len = file
            .metadata()
            .map_err(|err| IoFailure::new("stat", path, err))?
            .len();
        Ok(Segment {
            index,
            path: path.to_owned(),
            file,
            len,
        })
    }

    /// The segment's position in the chain of files.
    pub(crate) fn index(&self) -> u64 {
        self.index
    }

    /// The segment's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the segment (as written by this writer).
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Writes `bytes` and fdatasyncs: when this returns `Ok`, the bytes
    /// survive a crash. On error nothing is promised; call
    /// [`Segment::roll_back`].
    pub(crate) fn append_durably(
        &mut self,
        bytes: &[u8],
        on_sync: &dyn Fn(),
    ) -> Result<(), IoFailure> {
        self.file
            .write_all(bytes)
            .map_err(|err| IoFailure::new("write", &self.path, err))?;
        on_sync();
        self.file
            .sync_data()
            .map_err(|err| IoFailure::new("fsync", &self.path, err))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Cuts the file back to `len` bytes (the length before a failed batch)
    /// and syncs, so that unacknowledged records never stay in the chain.
    pub(crate) fn roll_back(&mut self, len: u64, on_sync: &dyn Fn()) -> Result<(), IoFailure> {
        self.file
            .set_len(len)
            .map_err(|err| IoFailure::new("truncate", &self.path, err))?;
        on_sync();
        self.file
            .sync_data()
            .map_err(|err| IoFailure::new("fsync", &self.path, err))?;
        self.len = len;
        Ok(())
    }
}
