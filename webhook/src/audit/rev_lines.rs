//! Reads a file's complete lines from last to first, without loading it whole.
//!
//! Both "newest first" queries and recovering the chain on open only need the
//! end of a segment that may be 64 MiB long.
//!
//! Why not the `rev_lines` crate (0.3): it returns the bytes after the last
//! newline as a line (recovery must skip them and cut the file where they
//! start), gives no byte offsets (the cut point, the query's warnings), reads
//! to the file's current end rather than a length fixed at open, drops a `\r`
//! before each `\n`, and buffers a newline-less run of any length where this
//! reader stops at `MAX_LINE`.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// How much is read per step.
const CHUNK: u64 = 64 * 1024;
/// A "line" longer than this is garbage, not a record: stop rather than
/// buffer a whole damaged file.
const MAX_LINE: usize = 4 * 1024 * 1024;

/// An iterator-like reader over the complete (newline-terminated) lines of a
/// file, last line first.
///
/// Bytes after the last newline (a torn write, or a write in progress) are
/// not a line: they are skipped, and [`RevLines::complete_len`] says where
/// they start.
pub(crate) struct RevLines<'f> {
    file: &'f File,
    /// Start of `buf` in the file; everything before it is not loaded yet.
    pos: u64,
    /// Loaded bytes not yet returned; empty, or ending with `\n`.
    buf: Vec<u8>,
    /// Length of the file up to and including its last newline.
    complete_len: u64,
}

impl<'f> RevLines<'f> {
    /// Prepares to read the first `len` bytes of `file` backwards.
    pub(crate) fn new(file: &'f File, len: u64) -> io::Result<Self> {
        let mut pos = len;
        while pos > 0 {
            let start = pos.saturating_sub(CHUNK);
            let chunk = read_range(file, start, pos)?;
            if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
                let mut buf = chunk;
                buf.truncate(i + 1);
                return Ok(RevLines {
                    file,
                    pos: start,
                    buf,
                    complete_len: start + i as u64 + 1,
                });
            }
            // No newline: the whole chunk belongs to the incomplete tail.
            pos = start;
        }
        Ok(RevLines {
            file,
            pos: 0,
            buf: Vec::new(),
            complete_len: 0,
        })
    }

    /// Where the incomplete tail starts (the file length if there is none).
    pub(crate) fn complete_len(&self) -> u64 {
        self.complete_len
    }

    /// The previous complete line (without its newline) and its byte offset,
    /// or `None` at the start of the file.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<(u64, Vec<u8>)>> {
        loop {
            if self.buf.is_empty() {
                if self.pos == 0 {
                    return Ok(None);
                }
                self.load_before()?;
                continue;
            }
            let body_end = self.buf.len() - 1; // the trailing '\n'
            if let Some(i) = self.buf[..body_end].iter().rposition(|&b| b == b'\n') {
                let line = self.buf[i + 1..body_end].to_vec();
                self.buf.truncate(i + 1);
                return Ok(Some((self.pos + i as u64 + 1, line)));
            }
            if self.pos == 0 {
                let mut line = std::mem::take(&mut self.buf);
                line.truncate(body_end);
                return Ok(Some((0, line)));
            }
            if self.buf.len() > MAX_LINE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "line ending at byte {} is longer than {MAX_LINE} bytes",
                        self.pos + self.buf.len() as u64
                    ),
                ));
            }
            self.load_before()?;
        }
    }

    /// Prepends the chunk before `pos` to `buf`.
    fn load_before(&mut self) -> io::Result<()> {
        let start = self.pos.saturating_sub(CHUNK);
        let mut chunk = read_range(self.file, start, self.pos)?;
        chunk.append(&mut self.buf);
        self.buf = chunk;
        self.pos = start;
        Ok(())
    }
}

/// Reads bytes `[start, end)` of `file`.
fn read_range(mut file: &File, start: u64, end: u64) -> io::Result<Vec<u8>> {
    let len = usize::try_from(end - start)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "range too large"))?;
    let mut buf = vec![0; len];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(content: &[u8]) -> File {
        let mut file = tempfile::tempfile().expect("tempfile");
        file.write_all(content).expect("write");
        file
    }

    fn all_lines(content: &[u8]) -> (u64, Vec<(u64, String)>) {
        let file = file_with(content);
        let mut lines = RevLines::new(&file, content.len() as u64).expect("new");
        let complete = lines.complete_len();
        let mut out = Vec::new();
        while let Some((offset, line)) = lines.next_line().expect("line") {
            out.push((offset, String::from_utf8(line).expect("utf8")));
        }
        (complete, out)
    }

    #[test]
    fn yields_lines_last_first_with_offsets() {
        let (complete, lines) = all_lines(b"a\nbb\nccc\n");
        assert_eq!(complete, 9);
        assert_eq!(
            lines,
            vec![
                (5, "ccc".to_owned()),
                (2, "bb".to_owned()),
                (0, "a".to_owned())
            ]
        );
    }

    #[test]
    fn skips_an_incomplete_tail() {
        let (complete, lines) = all_lines(b"a\nbb\ncc");
        assert_eq!(complete, 5);
        assert_eq!(lines, vec![(2, "bb".to_owned()), (0, "a".to_owned())]);
    }

    #[test]
    fn a_file_without_newline_has_no_lines() {
        assert_eq!(all_lines(b"torn"), (0, vec![]));
        assert_eq!(all_lines(b""), (0, vec![]));
    }

    #[test]
    fn keeps_empty_lines() {
        let (_, lines) = all_lines(b"a\n\nb\n");
        assert_eq!(
            lines,
            vec![(3, "b".to_owned()), (2, String::new()), (0, "a".to_owned())]
        );
    }

    #[test]
    fn reads_lines_that_span_chunks() {
        let long = "x".repeat(CHUNK as usize * 2 + 17);
        let content = format!("first\n{long}\nlast\n{}", "y".repeat(CHUNK as usize + 3));
        let (complete, lines) = all_lines(content.as_bytes());
        assert_eq!(complete as usize, 6 + long.len() + 1 + 5);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].1, "last");
        assert_eq!(lines[1], (6, long));
        assert_eq!(lines[2], (0, "first".to_owned()));
    }
}
