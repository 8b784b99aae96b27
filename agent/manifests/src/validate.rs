//! Checks on each object (and across objects) before it may enter a revision.
//!
//! Everything here is what gitwarden itself relies on: it must be able to
//! address every object it owns (kind, name, namespace) and no two documents
//! may fight over one object. The API server's server-side dry-run checks the
//! rest, so rules are only as strict as is certain: a rule stricter than the
//! API server would block a valid revision with no workaround.

use crate::error::LoadError;
use crate::kind::is_builtin_group;
use crate::location::Location;
use crate::manifest::Manifest;
use crate::object_ref::ObjectRef;
use crate::raw::RawObject;
use kube::core::{GroupVersionKind, ObjectMeta};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// The fields `metadata` may have; anything else is a typo that server-side
/// apply would reject, or that would silently vanish on the way.
const METADATA_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// The naming rule the API server applies to a kind's `metadata.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameRule {
    /// RFC 1123 subdomain: most built-in kinds and all custom resources.
    Subdomain,
    /// RFC 1123 label: Namespaces.
    Label,
    /// RFC 1035 label (starts with a letter): Services.
    Label1035,
    /// Any path segment: RBAC kinds (`system:controller:foo`), and kinds whose
    /// rule gitwarden cannot know (aggregated APIs, CRDs installed elsewhere).
    PathSegment,
}

fn name_rule(gvk: &GroupVersionKind, crd_kinds: &HashSet<(String, String)>) -> NameRule {
    let group = gvk.group.as_str();
    let kind = gvk.kind.as_str();
    match (group, kind) {
        ("", "Namespace") => NameRule::Label,
        ("", "Service") => NameRule::Label1035,
        ("rbac.authorization.k8s.io", _)
        | ("certificates.k8s.io", _)
        | ("flowcontrol.apiserver.k8s.io", _) => NameRule::PathSegment,
        _ if is_builtin_group(group) => NameRule::Subdomain,
        _ if crd_kinds.contains(&(group.to_owned(), kind.to_owned())) => NameRule::Subdomain,
        _ => NameRule::PathSegment,
    }
}

fn is_label(text: &str, max: usize) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Whether `kind` can be a Kubernetes kind: the API server requires a CRD's
/// kind to be a DNS-1035 label once lowercased. Anything else (a space, say)
/// would also break the inventory's `<apiVersion> <kind> <name>` form.
fn is_kind(kind: &str) -> bool {
    let bytes = kind.as_bytes();
    bytes.len() <= 63
        && bytes.first().is_some_and(u8::is_ascii_alphabetic)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

fn is_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(|label| is_label(label, 63))
}

/// Checks `name` against `rule`; `Err` says what a valid name looks like.
fn check_name(name: &str, rule: NameRule) -> Result<(), &'static str> {
    let ok = match rule {
        NameRule::Subdomain => is_subdomain(name),
        NameRule::Label => is_label(name, 63),
        NameRule::Label1035 => {
            is_label(name, 63) && name.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        }
        NameRule::PathSegment => {
            !name.is_empty()
                && name.len() <= 253
                && name != "."
                && name != ".."
                && !name.contains(['/', '%'])
        }
    };
    if ok {
        return Ok(());
    }
    Err(match rule {
        NameRule::Subdomain => {
            "a DNS subdomain: at most 253 characters, lowercase letters, digits, '-' and '.', \
             each dot-separated part starting and ending with a letter or digit"
        }
        NameRule::Label => {
            "a DNS label: at most 63 characters, lowercase letters, digits and '-', \
             starting and ending with a letter or digit"
        }
        NameRule::Label1035 => {
            "a DNS-1035 label: at most 63 characters, lowercase letters, digits and '-', \
             starting with a letter and ending with a letter or digit"
        }
        NameRule::PathSegment => "at most 253 characters, not '.' or '..', without '/' or '%'",
    })
}

/// Splits `apiVersion` into group and version (`v1` is the core group).
fn parse_api_version(api_version: &str) -> Option<(&str, &str)> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let valid = |part: &str| !part.is_empty() && !part.contains(['/', ' ']);
    (valid(version) && ((group.is_empty() && !api_version.contains('/')) || valid(group)))
        .then_some((group, version))
}

/// A required string field: its value, or the message for its absence.
fn required_string<'a>(
    map: &'a Map<String, Value>,
    field: &str,
    path: &str,
) -> Result<&'a str, String> {
    match map.get(field) {
        None | Some(Value::Null) => Err(format!("{path} is missing")),
        Some(Value::String(s)) if s.is_empty() => Err(format!("{path} is empty")),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!(
            "{path} must be a string, found {}",
            json_type(other)
        )),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Checks that `metadata.<field>` (labels or annotations) maps strings to
/// strings, naming the offending key: an unquoted `true` or `8080` is the
/// usual mistake, and the generic decoder error would not say where.
fn check_string_map(metadata: &Map<String, Value>, field: &str, problems: &mut Vec<String>) {
    match metadata.get(field) {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (key, value) in map {
                if !value.is_string() {
                    problems.push(format!(
                        "metadata.{field}.{key} must be a string, found {} (quote it)",
                        json_type(value)
                    ));
                }
            }
        }
        Some(other) => problems.push(format!(
            "metadata.{field} must be a mapping, found {}",
            json_type(other)
        )),
    }
}

/// Validates one object and turns it into a [`Manifest`], or says everything
/// wrong with it (a missing apiVersion does not hide a missing name).
///
/// `crd_kinds` are the (group, kind) pairs the revision's CRDs define, whose
/// objects follow the API server's naming rule for custom resources.
pub(crate) fn object(
    raw: RawObject,
    crd_kinds: &HashSet<(String, String)>,
) -> Result<Manifest, Vec<LoadError>> {
    let Value::Object(map) = &raw.value else {
        return Err(vec![raw.error(format!(
            "expected a Kubernetes object (a mapping), found {}",
            json_type(&raw.value)
        ))]);
    };
    let mut problems = Vec::new();

    let api_version = required_string(map, "apiVersion", "apiVersion")
        .map_err(|problem| problems.push(problem))
        .ok();
    let group_version = api_version.and_then(|api_version| {
        let parsed = parse_api_version(api_version);
        if parsed.is_none() {
            problems.push(format!(
                "apiVersion {api_version:?} is not <version> or <group>/<version>"
            ));
        }
        parsed
    });
    let kind = required_string(map, "kind", "kind")
        .map_err(|problem| problems.push(problem))
        .ok()
        .filter(|kind| {
            let valid = is_kind(kind);
            if !valid {
                problems.push(format!(
                    "kind {kind:?} is not valid: it must be letters, digits and '-', \
                     starting with a letter (at most 63)"
                ));
            }
            valid
        });

    let empty = Map::new();
    let metadata = match map.get("metadata") {
        Some(Value::Object(metadata)) => metadata,
        None | Some(Value::Null) => &empty,
        Some(other) => {
            problems.push(format!(
                "metadata must be a mapping, found {}",
                json_type(other)
            ));
            &empty
        }
    };
    for field in metadata.keys() {
        if !METADATA_FIELDS.contains(&field.as_str()) {
            problems.push(format!("unknown field metadata.{field}"));
        }
    }
    if metadata.contains_key("generateName") {
        problems.push(
            "metadata.generateName is not supported: gitwarden must be able to address every \
             object it owns, so set metadata.name"
                .to_owned(),
        );
    }
    let name = required_string(metadata, "name", "metadata.name")
        .map_err(|problem| problems.push(problem))
        .ok();
    let namespace = match metadata.get("namespace") {
        None | Some(Value::Null) => None,
        Some(Value::String(ns)) if ns.is_empty() => None,
        Some(Value::String(ns)) => {
            if let Err(rule) = check_name(ns, NameRule::Label) {
                problems.push(format!(
                    "metadata.namespace {ns:?} is not valid: it must be {rule}"
                ));
            }
            Some(ns.clone())
        }
        Some(other) => {
            problems.push(format!(
                "metadata.namespace must be a string, found {}",
                json_type(other)
            ));
            None
        }
    };
    check_string_map(metadata, "labels", &mut problems);
    check_string_map(metadata, "annotations", &mut problems);

    let gvk = match (group_version, kind) {
        (Some((group, version)), Some(kind)) => Some(GroupVersionKind::gvk(group, version, kind)),
        _ => None,
    };
    if let (Some(gvk), Some(name)) = (&gvk, name)
        && let Err(rule) = check_name(name, name_rule(gvk, crd_kinds))
    {
        problems.push(format!(
            "metadata.name {name:?} is not a valid name for a {}: it must be {rule}",
            gvk.kind
        ));
    }

    let object_meta = if problems.is_empty() {
        let mut metadata = metadata.clone();
        if namespace.is_none() {
            metadata.remove("namespace");
        }
        match serde_json::from_value::<ObjectMeta>(Value::Object(metadata)) {
            Ok(meta) => Some(meta),
            Err(error) => {
                problems.push(format!("metadata is malformed: {error}"));
                None
            }
        }
    } else {
        None
    };

    match (gvk, name, api_version, object_meta) {
        (Some(gvk), Some(name), Some(_), Some(metadata)) if problems.is_empty() => {
            let mut content = map.clone();
            content.remove("apiVersion");
            content.remove("kind");
            content.remove("metadata");
            Ok(Manifest::new(
                raw.location.clone(),
                gvk,
                name.to_owned(),
                namespace,
                metadata,
                &content,
            ))
        }
        _ => Err(problems
            .into_iter()
            .map(|problem| raw.error(problem))
            .collect()),
    }
}

/// One error per object that an earlier one already addresses (same group,
/// kind, namespace and name; the version does not matter, it is the same
/// stored object), naming both places.
///
/// Takes identities rather than manifests so scope resolution can check the
/// namespaces it is about to set before setting them.
pub(crate) fn duplicates<'a>(
    objects: impl Iterator<Item = (ObjectRef, &'a Location)>,
) -> Vec<LoadError> {
    let mut seen: HashMap<ObjectRef, &Location> = HashMap::new();
    let mut errors = Vec::new();
    for (object, location) in objects {
        match seen.get(&object) {
            Some(first) => errors.push(LoadError::new(
                location.clone(),
                format!("duplicate object {object}: also defined at {first}"),
            )),
            None => {
                seen.insert(object, location);
            }
        }
    }
    errors
}

/// Checks a namespace name (the configured default namespace, for one).
pub(crate) fn check_namespace_name(namespace: &str) -> Result<(), &'static str> {
    check_name(namespace, NameRule::Label)
}

/// Problems with the revision's CRDs: malformed ones, and two CRDs defining
/// the same kind (the API server would accept only one of them).
pub(crate) fn crds(manifests: &[Manifest]) -> Vec<LoadError> {
    let mut errors = Vec::new();
    let mut seen: HashMap<(String, String), Location> = HashMap::new();
    for manifest in manifests.iter().filter(|m| m.is_crd()) {
        match manifest.crd_info() {
            Ok(info) => {
                let key = (info.group.clone(), info.kind.clone());
                if let Some(first) = seen.get(&key) {
                    errors.push(LoadError::new(
                        manifest.location.clone(),
                        format!(
                            "kind {} of group {} is also defined by the CustomResourceDefinition at {first}",
                            info.kind, info.group
                        ),
                    ));
                } else {
                    seen.insert(key, manifest.location.clone());
                }
            }
            Err(problems) => errors.extend(problems.into_iter().map(|problem| {
                LoadError::new(
                    manifest.location.clone(),
                    format!("CustomResourceDefinition {}: {problem}", manifest.name),
                )
            })),
        }
    }
    errors
}
