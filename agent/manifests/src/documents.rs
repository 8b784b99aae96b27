//! Splitting a YAML stream into documents, keeping each one's line.
//!
//! serde_yaml_ng can iterate over the documents of a stream, but it does not
//! say where each starts, and after a syntax error it cannot go on to the next
//! document. Splitting the text at the document markers ourselves gives both:
//! the start line of every document, and a parse per document, so an error in
//! the third document does not hide one in the fifth.

/// One YAML document's text and where it is in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawDocument<'a> {
    /// The document's text, including its `---` marker line if it has one.
    pub text: &'a str,
    /// The 1-based file line of `text`'s first byte, to turn the parser's
    /// document-relative lines into file lines.
    pub first_line: usize,
    /// The 1-based file line of the document's first content (not the marker,
    /// comments or blank lines): the line a human looks for.
    pub content_line: usize,
}

/// Whether `line` starts with the three-character `marker` followed by
/// nothing or whitespace (a YAML document marker must be followed by a
/// separator, so `---foo` is a scalar).
fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

/// Whether the rest of a marker line (after `---`) holds document content,
/// as in `--- {a: 1}` or `--- |`.
fn marker_has_content(line: &str) -> bool {
    let rest = line[3..].trim();
    !rest.is_empty() && !rest.starts_with('#')
}

/// Splits `text` into documents with content. Documents that are empty or
/// hold only comments are dropped here: there is nothing to apply in them.
///
/// A document starts at a `---` line at column 0 (YAML forbids that sequence
/// at column 0 inside a document) and ends before the next one or after a
/// `...` line. Comments and `%` directives before a document's marker belong
/// to that document, as YAML says.
pub(crate) fn split_documents<'a>(text: &'a str) -> Vec<RawDocument<'a>> {
    struct Current {
        start: usize,
        first_line: usize,
        content_line: Option<usize>,
        has_marker: bool,
    }
    let mut out = Vec::new();
    let mut current = Current {
        start: 0,
        first_line: 1,
        content_line: None,
        has_marker: false,
    };
    let close = |current: &Current, end: usize, out: &mut Vec<RawDocument<'a>>| {
        if let Some(content_line) = current.content_line {
            out.push(RawDocument {
                text: &text[current.start..end],
                first_line: current.first_line,
                content_line,
            });
        }
    };
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let number = index + 1;
        if is_marker(line, "---") {
            if current.content_line.is_some() || current.has_marker {
                close(&current, offset, &mut out);
                current = Current {
                    start: offset,
                    first_line: number,
                    content_line: None,
                    has_marker: true,
                };
            } else {
                current.has_marker = true;
            }
            if marker_has_content(line) {
                current.content_line = Some(number);
            }
        } else if is_marker(line, "...") {
            let end = offset + line.len();
            close(&current, end, &mut out);
            current = Current {
                start: end,
                first_line: number + 1,
                content_line: None,
                has_marker: false,
            };
        } else if current.content_line.is_none() {
            let trimmed = line.trim();
            let directive = !current.has_marker && line.starts_with('%');
            if !trimmed.is_empty() && !trimmed.starts_with('#') && !directive {
                current.content_line = Some(number);
            }
        }
        offset += line.len();
    }
    close(&current, text.len(), &mut out);
    out
}
