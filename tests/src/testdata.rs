//! Fixtures as files: the manifests, policies and repositories the tests
//! apply live under `tests/testdata/`, where they read (and diff) as the YAML
//! a user writes, instead of as string literals inside the tests.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::webhook::render;

/// The directory of the fixtures.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// The text of the fixture `name` (a path under `tests/testdata/`).
pub fn read(name: &str) -> Result<String> {
    let path = dir().join(name);
    std::fs::read_to_string(&path).with_context(|| format!("reading fixture {}", path.display()))
}

/// The fixture `name` with its `${NAME}` variables replaced.
pub fn rendered(name: &str, vars: &[(&str, &str)]) -> Result<String> {
    Ok(render(&read(name)?, vars))
}
