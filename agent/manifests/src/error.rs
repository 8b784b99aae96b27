//! The errors a revision's manifests can have, all of them at once.
//!
//! A human fixing a broken revision should see every problem in one status
//! report, not one per commit, so loading and scope resolution collect errors
//! instead of stopping at the first.

use crate::location::Location;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One problem in one place: what is wrong and at which `file:line`.
///
/// Serialisable so the agent can put it in its status and events as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{location}: {message}")]
pub struct LoadError {
    /// Where the problem is (the document or list item, or the syntax error's
    /// own line when the parser reports one).
    pub location: Location,
    /// What is wrong, for a human; never repeats the location.
    pub message: String,
}

impl LoadError {
    /// A problem at `location`.
    pub fn new(location: Location, message: impl Into<String>) -> Self {
        Self {
            location,
            message: message.into(),
        }
    }
}

/// Every problem found in a revision, sorted by file and line.
///
/// A revision with any of them is not applied at all (a broken revision
/// applies nothing), so the agent reports the whole list. Displays one error
/// per line, `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, thiserror::Error)]
pub struct LoadErrors {
    /// The problems, sorted by location (stable, so problems in one document
    /// keep the order they were found in).
    pub errors: Vec<LoadError>,
}

impl LoadErrors {
    /// Sorts `errors` by location and wraps them; `None` when there are none,
    /// so callers can write `if let Some(e) = LoadErrors::from_vec(v)`.
    pub(crate) fn from_vec(mut errors: Vec<LoadError>) -> Option<Self> {
        if errors.is_empty() {
            return None;
        }
        errors.sort_by(|a, b| a.location.cmp(&b.location));
        Some(Self { errors })
    }

    /// How many problems there are.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Whether there are none (never true for a value returned as an error).
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a LoadErrors {
    type Item = &'a LoadError;
    type IntoIter = std::slice::Iter<'a, LoadError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}
