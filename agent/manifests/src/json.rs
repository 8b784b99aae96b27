//! Parsing a JSON file: one object, a `List`, or a stream of objects.
//!
//! kubectl accepts a stream of JSON objects in one file, so gitwarden does
//! too; each object is located at the line where it starts.

use crate::error::LoadError;
use crate::location::{Location, json_item_offsets, line_of_offset};
use crate::raw::ParsedDocument;
use serde_json::Value;

/// Parses the JSON file `path` (already valid UTF-8), pushing objects to
/// `out` and problems to `errors`. A syntax error ends the file: JSON has no
/// document markers to resynchronise on.
pub(crate) fn parse(
    path: &str,
    text: &str,
    out: &mut Vec<ParsedDocument>,
    errors: &mut Vec<LoadError>,
) {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let before = stream.byte_offset();
        let rest = &text[before.min(text.len())..];
        let start = before + (rest.len() - rest.trim_start().len());
        let line = line_of_offset(text, start);
        match stream.next() {
            None => break,
            Some(Ok(Value::Null)) => {}
            Some(Ok(value)) => {
                let item_lines = json_item_offsets(text, start)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|offset| line_of_offset(text, offset))
                    .collect();
                out.push(ParsedDocument {
                    location: Location::new(path, line),
                    value,
                    item_lines,
                    encrypted: false,
                });
            }
            Some(Err(error)) => {
                let text = error.to_string();
                let message = text
                    .rfind(" at line ")
                    .map_or(text.as_str(), |at| &text[..at]);
                let (line, column) = if error.line() > 0 {
                    (error.line(), format!(" (column {})", error.column()))
                } else {
                    (line, String::new())
                };
                errors.push(LoadError::new(
                    Location::new(path, line),
                    format!("invalid JSON: {message}{column}"),
                ));
                break;
            }
        }
    }
}
