//! Reading a revision's files into a validated [`ManifestSet`].
//!
//! This is the single entry point from git to objects: files in, either every
//! object of the revision or every problem with it out, never a part of it.

use crate::crd;
use crate::error::{LoadError, LoadErrors};
use crate::location::Location;
use crate::plaintext::{self, PlaintextSecrets};
use crate::raw::{ParsedDocument, RawObject};
use crate::rendered::Rendered;
use crate::set::ManifestSet;
use crate::validate;
use serde_json::Value;

/// One file of the revision, as the source crate read it from the commit.
///
/// Borrowed, so the source can hand over blobs without copying them.
#[derive(Debug, Clone, Copy)]
pub struct ManifestFile<'a> {
    /// The path in the repository, used in every location.
    pub path: &'a str,
    /// The file's bytes (UTF-8 YAML or JSON).
    pub content: &'a [u8],
}

/// What loading needs besides the files: how to treat secrets.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions<'a> {
    /// The agent's age keys, for SOPS-encrypted files (none: such a file is
    /// an error naming the flag).
    pub sops_keys: Option<&'a gitwarden_sops::AgeKeys>,
    /// Whether Secrets with plain-text values in git are refused.
    pub plaintext_secrets: PlaintextSecrets,
}

/// How deep Lists may nest; a bound so a hostile file cannot recurse forever.
const MAX_LIST_DEPTH: usize = 8;

/// Loads and validates every manifest of a revision.
///
/// Files are parsed independently and every problem is collected: YAML and
/// JSON syntax errors, documents that are not objects, missing or malformed
/// `apiVersion`/`kind`/`metadata.name`, `generateName`, invalid names,
/// malformed CustomResourceDefinitions and duplicate objects. Only a revision
/// without any problem yields a [`ManifestSet`]; namespaces are as written
/// until [`ManifestSet::resolve_namespaces`] turns it into a
/// [`ResolvedSet`](crate::set::ResolvedSet), the only set the agent applies.
///
/// With the default [`LoadOptions`]: no age keys (a SOPS-encrypted file is an
/// error) and plain-text Secrets refused; see [`load_with`].
pub fn load(files: &[ManifestFile<'_>]) -> Result<ManifestSet, LoadErrors> {
    load_with(files, Vec::new(), &LoadOptions::default())
}

/// [`load`] of plain `files` and of objects a renderer produced
/// (`rendered`), decrypting SOPS-encrypted ones with `options.sops_keys` and
/// refusing plain-text Secrets unless `options.plaintext_secrets` allows them.
pub fn load_with(
    files: &[ManifestFile<'_>],
    rendered: Vec<Rendered>,
    options: &LoadOptions<'_>,
) -> Result<ManifestSet, LoadErrors> {
    let mut errors = Vec::new();
    let mut documents = Vec::new();
    for file in files {
        read_file(file, options, &mut documents, &mut errors);
    }
    crate::rendered::documents(rendered, options.sops_keys, &mut documents, &mut errors);
    let mut raws = Vec::new();
    for document in documents {
        let ParsedDocument {
            location,
            value,
            item_lines,
            encrypted,
        } = document;
        flatten(
            RawObject {
                location,
                context: String::new(),
                value,
                encrypted,
            },
            &item_lines,
            0,
            &mut raws,
            &mut errors,
        );
    }
    let crd_kinds = crd::defined_kinds(raws.iter().map(|raw| &raw.value));
    let mut manifests = Vec::with_capacity(raws.len());
    for raw in raws {
        if let Some(error) = plaintext::check(&raw, options.plaintext_secrets) {
            errors.push(error);
        }
        match validate::object(raw, &crd_kinds) {
            Ok(manifest) => manifests.push(manifest),
            Err(mut found) => errors.append(&mut found),
        }
    }
    errors.extend(validate::crds(&manifests));
    errors.extend(validate::duplicates(
        manifests.iter().map(|m| (m.object_ref(), &m.location)),
    ));
    match LoadErrors::from_vec(errors) {
        Some(errors) => Err(errors),
        None => Ok(ManifestSet { manifests }),
    }
}

/// The documents of one YAML or JSON file with the line each starts on;
/// documents that do not parse are left out. For a renderer that must find
/// where in its resource file a rendered object was written.
pub fn documents_with_lines(path: &str, text: &str) -> Vec<(usize, Value)> {
    let mut out = Vec::new();
    let mut ignored = Vec::new();
    if path.to_ascii_lowercase().ends_with(".json") {
        crate::json::parse(path, text, &mut out, &mut ignored);
    } else {
        crate::yaml::parse(path, text, &mut out, &mut ignored);
    }
    out.into_iter()
        .map(|doc| (doc.location.line, doc.value))
        .collect()
}

/// Whether `path` names a manifest file, and whether it is JSON.
///
/// The source crate already filters; this is the loader's own guard so a
/// stray file is reported rather than parsed as YAML.
fn file_type(path: &str) -> Option<bool> {
    let lower = path.to_ascii_lowercase();
    if lower.ends_with(".json") {
        Some(true)
    } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        Some(false)
    } else {
        None
    }
}

fn read_file(
    file: &ManifestFile<'_>,
    options: &LoadOptions<'_>,
    out: &mut Vec<ParsedDocument>,
    errors: &mut Vec<LoadError>,
) {
    let Some(is_json) = file_type(file.path) else {
        errors.push(LoadError::new(
            Location::new(file.path, 1),
            "not a manifest file (expected .yaml, .yml or .json)",
        ));
        return;
    };
    let text = match std::str::from_utf8(file.content) {
        Ok(text) => text,
        Err(error) => {
            let valid = &file.content[..error.valid_up_to()];
            let line = 1 + valid.iter().filter(|b| **b == b'\n').count();
            errors.push(LoadError::new(
                Location::new(file.path, line),
                "the file is not valid UTF-8",
            ));
            return;
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if gitwarden_sops::is_encrypted(text) {
        crate::decrypt::parse(file.path, text, is_json, options.sops_keys, out, errors);
    } else if is_json {
        crate::json::parse(file.path, text, out, errors);
    } else {
        crate::yaml::parse(file.path, text, out, errors);
    }
}

/// Whether `value` is a list of objects to flatten: `kind: List` or a typed
/// list such as `ConfigMapList`, with an `items` array.
///
/// A custom resource may well have a kind ending in `List` (an `AccessList`);
/// a real list has no `metadata.name`, which tells them apart.
fn is_list(value: &Value) -> bool {
    let kind_is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|kind| kind.ends_with("List"));
    let has_items = value.get("items").is_some_and(Value::is_array);
    let has_name = value
        .get("metadata")
        .and_then(|metadata| metadata.get("name"))
        .is_some();
    kind_is_list && has_items && !has_name
}

/// Pushes `raw` to `out`, or its items when it is a List (recursively).
///
/// Items of a typed list (`ConfigMapList`) may omit `apiVersion` and `kind`,
/// as the API server returns them; they inherit them from the list.
fn flatten(
    mut raw: RawObject,
    item_lines: &[usize],
    depth: usize,
    out: &mut Vec<RawObject>,
    errors: &mut Vec<LoadError>,
) {
    if !is_list(&raw.value) {
        out.push(raw);
        return;
    }
    if depth >= MAX_LIST_DEPTH {
        errors.push(raw.error(format!("Lists nested more than {MAX_LIST_DEPTH} deep")));
        return;
    }
    let api_version = raw.value.get("apiVersion").cloned();
    let item_kind = raw
        .value
        .get("kind")
        .and_then(Value::as_str)
        .and_then(|kind| kind.strip_suffix("List"))
        .filter(|kind| !kind.is_empty())
        .map(str::to_owned);
    let items = match raw.value.get_mut("items").map(Value::take) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    let lines_known = item_lines.len() == items.len();
    for (index, mut item) in items.into_iter().enumerate() {
        if let (Some(kind), Some(object)) = (&item_kind, item.as_object_mut()) {
            if !object.contains_key("kind") {
                object.insert("kind".to_owned(), Value::String(kind.clone()));
            }
            if let Some(api_version) = &api_version
                && !object.contains_key("apiVersion")
            {
                object.insert("apiVersion".to_owned(), api_version.clone());
            }
        }
        let location = match item_lines.get(index) {
            Some(line) if lines_known => Location::new(&raw.location.file, *line),
            _ => raw.location.clone(),
        };
        let context = if raw.context.is_empty() {
            format!("items[{index}]")
        } else {
            format!("{}.items[{index}]", raw.context)
        };
        flatten(
            RawObject {
                location,
                context,
                value: item,
                encrypted: raw.encrypted,
            },
            &[],
            depth + 1,
            out,
            errors,
        );
    }
}
