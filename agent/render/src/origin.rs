//! Where a rendered object came from: kustomize's origin annotation names
//! its resource file (or the kustomization whose generator made it); the
//! line is found in that file. The build annotations are removed, so what
//! is applied is the object as the user wrote it, transformed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gitwarden_manifests::{Location, Rendered, documents_with_lines};
use serde_json::Value;

use crate::error::RenderError;
use crate::paths::{normalize, relative};

/// The annotation kustomize writes with `buildMetadata: [originAnnotations]`.
pub const ORIGIN: &str = "config.kubernetes.io/origin";

/// Annotations kustomize may leave that must not reach the cluster.
const BUILD_ANNOTATIONS: [&str; 2] = [ORIGIN, "alpha.config.kubernetes.io/transformations"];
const INTERNAL_PREFIX: &str = "internal.config.kubernetes.io/";

/// The objects of kustomize's `output` for the kustomization in `dir` (named
/// `name`), with locations relative to `base` (the repository root) and
/// build annotations removed.
pub fn objects(
    output: &str,
    dir: &Path,
    base: &Path,
    name: &str,
) -> Result<Vec<Rendered>, RenderError> {
    let mut out = Vec::new();
    let mut files = SourceFiles::default();
    for document in serde_yaml_ng::Deserializer::from_str(output) {
        let value: Value =
            serde::Deserialize::deserialize(document).map_err(|e| RenderError::Output {
                kustomization: name.to_string(),
                reason: e.to_string(),
            })?;
        if value.is_null() {
            continue;
        }
        out.push(object(value, dir, base, name, &mut files));
    }
    Ok(out)
}

/// The resource files objects came from, each read and parsed once per
/// build (a file of thousands of objects would otherwise be parsed once per
/// object).
#[derive(Default)]
struct SourceFiles {
    files: HashMap<PathBuf, Option<SourceFile>>,
}

/// One resource file: its text, and the kind, name and line of each document.
struct SourceFile {
    text: String,
    documents: Vec<(Option<String>, Option<String>, usize)>,
}

impl SourceFiles {
    fn get(&mut self, path: &Path, shown: &str) -> Option<&SourceFile> {
        self.files
            .entry(path.to_path_buf())
            .or_insert_with(|| {
                let text = std::fs::read_to_string(path).ok()?;
                let documents = documents_with_lines(shown, &text)
                    .into_iter()
                    .map(|(line, doc)| {
                        let field =
                            |pointer: &str| doc.pointer(pointer)?.as_str().map(str::to_owned);
                        (field("/kind"), field("/metadata/name"), line)
                    })
                    .collect();
                Some(SourceFile { text, documents })
            })
            .as_ref()
    }
}

fn object(
    mut value: Value,
    dir: &Path,
    base: &Path,
    name: &str,
    files: &mut SourceFiles,
) -> Rendered {
    let origin = take_build_annotations(&mut value);
    let source_path = origin.as_deref().and_then(|text| {
        let origin: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).ok()?;
        let path = origin
            .get("path")
            .or_else(|| origin.get("configuredIn"))?
            .as_str()?;
        Some(normalize(&dir.join(path)))
    });
    let Some(source_path) = source_path else {
        return Rendered {
            location: Location::rendered(&format!("{}/kustomization", display(name)), 1, name),
            value,
            source: None,
        };
    };
    let file = relative(base, &source_path);
    let found = files.get(&source_path, &file);
    let line = found.map_or(1, |found| line_of(&found.documents, &value));
    let source = found
        .filter(|_| value.get("sops").is_some())
        .map(|found| found.text.clone());
    Rendered {
        location: Location::rendered(&file, line, name),
        value,
        source,
    }
}

fn display(name: &str) -> &str {
    if name.is_empty() { "." } else { name }
}

/// Removes kustomize's build annotations; returns the origin's text.
fn take_build_annotations(value: &mut Value) -> Option<String> {
    let metadata = value.get_mut("metadata")?.as_object_mut()?;
    let annotations = metadata.get_mut("annotations")?.as_object_mut()?;
    let origin = annotations
        .get(ORIGIN)
        .and_then(Value::as_str)
        .map(str::to_string);
    annotations.retain(|key, _| {
        !BUILD_ANNOTATIONS.contains(&key.as_str()) && !key.starts_with(INTERNAL_PREFIX)
    });
    if annotations.is_empty() {
        metadata.remove("annotations");
    }
    origin
}

/// The line in `text` of the document that became `rendered`: same kind,
/// and the longest name the rendered name contains (kustomize adds prefixes,
/// suffixes and hashes); the file's first line when none matches.
fn line_of(documents: &[(Option<String>, Option<String>, usize)], rendered: &Value) -> usize {
    let kind = rendered.get("kind").and_then(Value::as_str);
    let name = rendered
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    documents
        .iter()
        .filter(|(doc_kind, _, _)| doc_kind.as_deref() == kind)
        .filter_map(|(_, original, line)| {
            let original = original.as_deref()?;
            name.contains(original).then_some((original.len(), *line))
        })
        .max()
        .map_or(1, |(_, line)| line)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_object_from_a_base_names_its_file_and_line_and_loses_the_build_annotations() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("base")).unwrap();
        std::fs::write(
            root.join("base/cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n",
        )
        .unwrap();
        let output = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  annotations:\n    config.kubernetes.io/origin: |\n      path: ../../base/cm.yaml\n  name: prod-b\n  namespace: shop\n";
        let objects = objects(output, &root.join("overlays/prod"), &root, "overlays/prod").unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!(
            objects[0].location.to_string(),
            "base/cm.yaml:6 (kustomization overlays/prod)"
        );
        assert!(objects[0].value["metadata"].get("annotations").is_none());
        assert!(objects[0].source.is_none());
    }

    #[test]
    fn a_generated_object_names_the_kustomization_that_configured_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let output = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  annotations:\n    config.kubernetes.io/origin: |\n      configuredIn: kustomization.yaml\n      configuredBy:\n        apiVersion: builtin\n        kind: ConfigMapGenerator\n    team: web\n  name: gen-5f\n";
        let objects = objects(output, &root.join("app"), &root, "app").unwrap();
        assert_eq!(objects[0].location.file, "app/kustomization.yaml");
        assert_eq!(
            objects[0].value["metadata"]["annotations"],
            serde_json::json!({"team": "web"})
        );
    }
}
