//! What the parsers hand to validation: documents and the objects in them,
//! as JSON values with where they start.

use crate::error::LoadError;
use crate::location::Location;
use serde_json::Value;

/// A parsed document before validation: where it starts, its value, and where
/// the entries of its `items` start (when it is a List and they could be found).
pub(crate) struct ParsedDocument {
    pub location: Location,
    pub value: Value,
    /// File lines of the `items` entries; only trusted when it counts as many
    /// entries as the value has.
    pub item_lines: Vec<usize>,
    /// The document was SOPS-encrypted in git (and decrypted in memory).
    pub encrypted: bool,
}

/// One object to validate: a document, or an item of a List.
pub(crate) struct RawObject {
    pub location: Location,
    /// `items[3]` (or `items[1].items[0]`) for a List item, empty otherwise;
    /// prefixed to messages so an item in a List without per-item lines can
    /// still be found.
    pub context: String,
    pub value: Value,
    /// From a SOPS-encrypted file: its Secrets' values were not plain text in git.
    pub encrypted: bool,
}

impl RawObject {
    /// An error about this object, with its context.
    pub(crate) fn error(&self, message: impl std::fmt::Display) -> LoadError {
        let message = if self.context.is_empty() {
            message.to_string()
        } else {
            format!("{}: {message}", self.context)
        };
        LoadError::new(self.location.clone(), message)
    }
}
