//! Where a manifest (or an error) comes from: a file and a line.
//!
//! Every error gitwarden reports about a revision has to send a human to the
//! exact spot in git, so locations are carried from the first byte read to the
//! last error printed. This module also holds the small text scans that find
//! lines the parsers do not report (list items).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A position in the repository: a file path and a 1-based line.
///
/// It is what the agent prints next to every load error and stores next to
/// every manifest, so that status, events and logs can all say `file:line`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Location {
    /// The file's path as the source crate gave it (relative to the repository).
    pub file: String,
    /// The 1-based line: where the document (or list item) starts, or where
    /// the parser found a syntax error.
    pub line: usize,
    /// For an object kustomize rendered: the directory of the kustomization
    /// that built it (`file` is then the resource file, or the kustomization
    /// whose generator made it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

impl Location {
    /// A location in `file` at `line` (1-based).
    pub fn new(file: &str, line: usize) -> Self {
        Self {
            file: file.to_owned(),
            line,
            via: None,
        }
    }

    /// A location in `file` at `line` of an object the kustomization in
    /// `kustomization` (a directory) rendered.
    pub fn rendered(file: &str, line: usize, kustomization: &str) -> Self {
        Self {
            via: Some(kustomization.to_owned()),
            ..Self::new(file, line)
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if let Some(kustomization) = &self.via {
            let shown = if kustomization.is_empty() {
                "."
            } else {
                kustomization
            };
            write!(f, " (kustomization {shown})")?;
        }
        Ok(())
    }
}

/// The 1-based line of byte `offset` in `text` (offsets past the end give the
/// last line).
pub(crate) fn line_of_offset(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    1 + text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

/// The lines (1-based, absolute: `first_line` is the line of `doc`'s first
/// byte) where the entries of the top-level `items:` block sequence of a YAML
/// document start.
///
/// serde_yaml_ng reports no positions for values, so this recognises the
/// common block layout (`items:` at column 0 followed by `- ` entries at one
/// indentation). The caller only trusts the result when it counts as many
/// entries as the parsed list has; otherwise it falls back to the document's
/// line, which is still correct, just less precise.
pub(crate) fn yaml_item_lines(doc: &str, first_line: usize) -> Vec<usize> {
    let mut lines = doc.lines().enumerate();
    let mut found = false;
    for (_, line) in lines.by_ref() {
        let line = strip_comment_and_cr(line);
        if line.trim_end() == "items:" {
            found = true;
            break;
        }
    }
    if !found {
        return Vec::new();
    }
    let mut items = Vec::new();
    let mut indent: Option<usize> = None;
    for (index, line) in lines {
        let body = line.trim_end_matches('\r');
        let trimmed = body.trim_start_matches(' ');
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let this_indent = body.len() - trimmed.len();
        let is_entry = trimmed == "-" || trimmed.starts_with("- ") || trimmed.starts_with("-\t");
        match indent {
            None if is_entry => indent = Some(this_indent),
            None => return Vec::new(),
            Some(i) if this_indent < i => break,
            Some(i) if this_indent == i && is_entry => {}
            Some(i) if this_indent == i => break,
            Some(_) => continue,
        }
        items.push(first_line + index);
    }
    items
}

fn strip_comment_and_cr(line: &str) -> &str {
    let line = line.trim_end_matches('\r');
    match line.find(" #") {
        Some(at) => &line[..at],
        None => line,
    }
}

/// The byte offsets (in `text`) where the elements of the top-level object's
/// `"items"` array start, for the JSON value starting at byte `start`.
///
/// serde_json reports no positions for values either; JSON is simple enough to
/// scan exactly (strings, escapes, nesting), so this is not a heuristic. `None`
/// when the value has no such array.
pub(crate) fn json_item_offsets(text: &str, start: usize) -> Option<Vec<usize>> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = start;
    // Depth-1 key tracking: the last string seen at depth 1 where a key is
    // expected, and whether we are right after `"items":`.
    let mut expect_key = false;
    let mut last_key: Option<(usize, usize)> = None;
    let mut in_items = false;
    let mut expect_element = false;
    let mut offsets = Vec::new();
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b'"' => {
                let begin = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if depth == 1 && expect_key {
                    last_key = Some((begin, i.min(bytes.len())));
                    expect_key = false;
                }
                if in_items && depth == 2 && expect_element {
                    offsets.push(begin - 1);
                    expect_element = false;
                }
            }
            b'{' | b'[' => {
                if in_items && depth == 2 && expect_element {
                    offsets.push(i);
                    expect_element = false;
                }
                depth += 1;
                if depth == 1 && b == b'{' {
                    expect_key = true;
                }
                if depth == 2 && b == b'[' && last_key.is_some_and(|(s, e)| &text[s..e] == "items")
                {
                    in_items = true;
                    expect_element = true;
                }
            }
            b'}' | b']' => {
                if depth == 2 && in_items {
                    return Some(offsets);
                }
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return None;
                }
            }
            b',' => {
                if depth == 1 {
                    expect_key = true;
                    last_key = None;
                }
                if depth == 2 && in_items {
                    expect_element = true;
                }
            }
            _ => {
                if in_items && depth == 2 && expect_element {
                    offsets.push(i);
                    expect_element = false;
                }
            }
        }
        i += 1;
    }
    None
}
