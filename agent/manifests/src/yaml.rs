//! Parsing a YAML stream into JSON values, one document at a time.
//!
//! Kubernetes objects are JSON underneath; converting at the edge means the
//! rest of the crate (and the API server) sees exactly one data model.

use crate::documents::split_documents;
use crate::error::LoadError;
use crate::location::{Location, yaml_item_lines};
use crate::raw::ParsedDocument;
use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

/// Parses every document of the YAML file `path` (already valid UTF-8),
/// pushing objects to `out` and problems to `errors`. Empty and comment-only
/// documents produce nothing.
pub(crate) fn parse(
    path: &str,
    text: &str,
    out: &mut Vec<ParsedDocument>,
    errors: &mut Vec<LoadError>,
) {
    for doc in split_documents(text) {
        let location = Location::new(path, doc.content_line);
        // Normally one document per piece; iterating copes with any stream
        // the splitter did not cut. After an error the parser cannot resume,
        // so the piece ends there (the next piece is parsed afresh).
        for document in serde_yaml_ng::Deserializer::from_str(doc.text) {
            let mut value = match Yaml::deserialize(document) {
                Ok(value) => value,
                Err(error) => {
                    errors.push(syntax_error(path, &doc, &error));
                    break;
                }
            };
            if let Err(error) = value.apply_merge() {
                errors.push(syntax_error(path, &doc, &error));
                break;
            }
            match to_json(value) {
                Ok(Json::Null) => {}
                Ok(value) => out.push(ParsedDocument {
                    location: location.clone(),
                    value,
                    item_lines: yaml_item_lines(doc.text, doc.first_line),
                    encrypted: false,
                }),
                Err(message) => errors.push(LoadError::new(location.clone(), message)),
            }
        }
    }
}

/// A parser error located at its own file line (the parser counts from the
/// piece's first line), with the document's start named in the message.
fn syntax_error(
    path: &str,
    doc: &crate::documents::RawDocument<'_>,
    error: &serde_yaml_ng::Error,
) -> LoadError {
    let shift = doc.first_line - 1;
    let line = error
        .location()
        .map_or(doc.content_line, |at| at.line() + shift);
    let message = shift_line_numbers(&error.to_string(), shift);
    LoadError::new(
        Location::new(path, line),
        format!(
            "invalid YAML in the document starting at line {}: {message}",
            doc.content_line
        ),
    )
}

/// Rewrites every `line N` in a parser message to `line N+shift`, since the
/// parser only saw one document and counted from its first line.
fn shift_line_numbers(message: &str, shift: usize) -> String {
    const WORD: &str = "line ";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(WORD) {
        let (before, after) = rest.split_at(at + WORD.len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match after[..digits].parse::<usize>() {
            Ok(n) if digits > 0 => out.push_str(&(n + shift).to_string()),
            _ => out.push_str(&after[..digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// Converts a YAML value to JSON the way Kubernetes' YAML reader does:
/// tags are dropped, scalar mapping keys become strings, and values JSON
/// cannot hold (NaN, infinities, non-scalar keys) are errors.
fn to_json(value: Yaml) -> Result<Json, String> {
    Ok(match value {
        Yaml::Null => Json::Null,
        Yaml::Bool(b) => Json::Bool(b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Json::from(i)
            } else if let Some(u) = n.as_u64() {
                Json::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Json::Number)
                    .ok_or_else(|| format!("the number {n} cannot be represented in JSON"))?
            }
        }
        Yaml::String(s) => Json::String(s),
        Yaml::Sequence(items) => {
            Json::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Yaml::Mapping(mapping) => {
            let mut map = serde_json::Map::with_capacity(mapping.len());
            for (key, value) in mapping {
                let key = match key {
                    Yaml::String(s) => s,
                    Yaml::Bool(b) => b.to_string(),
                    Yaml::Number(n) => n.to_string(),
                    Yaml::Null => "null".to_owned(),
                    other => {
                        return Err(format!(
                            "mapping keys must be scalars, found {}",
                            describe(&other)
                        ));
                    }
                };
                map.insert(key, to_json(value)?);
            }
            Json::Object(map)
        }
        Yaml::Tagged(tagged) => to_json(tagged.value)?,
    })
}

fn describe(value: &Yaml) -> &'static str {
    match value {
        Yaml::Sequence(_) => "a sequence",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
        _ => "a scalar",
    }
}

#[cfg(test)]
mod tests {
    use super::shift_line_numbers;

    #[test]
    fn parser_line_numbers_are_shifted_to_file_lines() {
        assert_eq!(
            shift_line_numbers(
                "did not find expected key at line 3 column 1, while parsing a block mapping at line 1 column 1",
                10
            ),
            "did not find expected key at line 13 column 1, while parsing a block mapping at line 11 column 1"
        );
    }
}
