//! Unit tests, one behaviour each, grouped by module.
#![allow(clippy::unwrap_used)]

mod documents;
mod load;
mod object_ref;
mod order;
mod prepare;
mod scope;
mod secrets;

use crate::{LoadErrors, ManifestFile, ManifestSet};

/// Loads files given as (path, text) pairs.
pub(crate) fn load_files(files: &[(&str, &str)]) -> Result<ManifestSet, LoadErrors> {
    let files: Vec<ManifestFile<'_>> = files
        .iter()
        .map(|(path, content)| ManifestFile {
            path,
            content: content.as_bytes(),
        })
        .collect();
    crate::load(&files)
}

/// Loads files that must be valid.
pub(crate) fn load_ok(files: &[(&str, &str)]) -> ManifestSet {
    match load_files(files) {
        Ok(set) => set,
        Err(errors) => panic!("unexpected load errors:\n{errors}"),
    }
}

/// Loads files that must be invalid, returning each error's display.
pub(crate) fn load_err(files: &[(&str, &str)]) -> Vec<String> {
    match load_files(files) {
        Ok(set) => panic!("expected errors, loaded {} manifests", set.len()),
        Err(errors) => errors.errors.iter().map(ToString::to_string).collect(),
    }
}

/// Names (`kind/name`) of a set's manifests, in order.
pub(crate) fn names(set: &ManifestSet) -> Vec<String> {
    set.manifests
        .iter()
        .map(|m| format!("{}/{}", m.gvk.kind, m.name))
        .collect()
}
