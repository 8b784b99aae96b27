//! CustomResourceDefinitions in the revision: the kinds they define.
//!
//! A revision may add a CRD and custom resources of it together; discovery
//! cannot know the new kind yet, so the revision's own CRDs say its scope and
//! place its objects after the CRD in the apply order.

use crate::kind::{Scope, is_crd};
use crate::location::Location;
use kube::core::GroupVersionKind;
use serde_json::Value;
use std::collections::HashSet;

/// What a CustomResourceDefinition of the revision defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrdInfo {
    /// The CRD's name (`<plural>.<group>`), to wait for its Established
    /// condition.
    pub name: String,
    /// Where the CRD is written.
    pub location: Location,
    /// `spec.group`: the API group of the custom resources.
    pub group: String,
    /// `spec.names.kind`: the kind of the custom resources.
    pub kind: String,
    /// `spec.names.plural`: the resource name in API paths.
    pub plural: String,
    /// `spec.scope`: whether the custom resources are namespaced.
    pub scope: Scope,
    /// `spec.versions[].name`: the versions the CRD serves.
    pub versions: Vec<String>,
}

impl CrdInfo {
    /// Reads a CRD from its parts: its `metadata.name`, where it is written
    /// and its `spec`. The messages say what is missing or malformed.
    pub(crate) fn parse(
        name: &str,
        location: &Location,
        spec: Option<&Value>,
    ) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut text = |path: &[&str], field: &str| -> String {
            match lookup(spec, path).and_then(Value::as_str) {
                Some(value) if !value.is_empty() => value.to_owned(),
                _ => {
                    problems.push(format!("{field} is missing or not a string"));
                    String::new()
                }
            }
        };
        let group = text(&["group"], "spec.group");
        let kind = text(&["names", "kind"], "spec.names.kind");
        let plural = text(&["names", "plural"], "spec.names.plural");
        let scope_text = text(&["scope"], "spec.scope");
        let scope = match scope_text.as_str() {
            "Namespaced" => Scope::Namespaced,
            "Cluster" => Scope::Cluster,
            "" => Scope::Namespaced,
            other => {
                problems.push(format!(
                    "spec.scope must be Namespaced or Cluster, not {other:?}"
                ));
                Scope::Namespaced
            }
        };
        let versions: Vec<String> = lookup(spec, &["versions"])
            .and_then(Value::as_array)
            .map(|versions| {
                versions
                    .iter()
                    .filter_map(|v| v.get("name").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if versions.is_empty() {
            problems.push("spec.versions must list at least one version with a name".to_owned());
        }
        if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
            problems.push(format!(
                "a CustomResourceDefinition must be named <spec.names.plural>.<spec.group> \
                 ({plural}.{group}), not {name:?}"
            ));
        }
        if problems.is_empty() {
            Ok(Self {
                name: name.to_owned(),
                location: location.clone(),
                group,
                kind,
                plural,
                scope,
                versions,
            })
        } else {
            Err(problems)
        }
    }

    /// Whether this CRD defines the group and kind of `gvk` (any version).
    pub fn defines(&self, gvk: &GroupVersionKind) -> bool {
        self.group == gvk.group && self.kind == gvk.kind
    }

    /// Whether this CRD serves exactly `gvk` (group, kind and version).
    pub fn serves(&self, gvk: &GroupVersionKind) -> bool {
        self.defines(gvk) && self.versions.contains(&gvk.version)
    }
}

fn lookup<'a>(value: Option<&'a Value>, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value?, |value, key| value.get(key))
}

/// The (group, kind) pairs defined by the CRDs among unvalidated values, so
/// validation can hold custom resources of the revision to the API server's
/// naming rules before the CRDs themselves are validated.
pub(crate) fn defined_kinds<'a>(
    values: impl Iterator<Item = &'a Value>,
) -> HashSet<(String, String)> {
    values
        .filter(|value| {
            let group = value
                .get("apiVersion")
                .and_then(Value::as_str)
                .and_then(|v| v.split_once('/'))
                .map(|(group, _)| group);
            let kind = value.get("kind").and_then(Value::as_str);
            matches!((group, kind), (Some(g), Some(k)) if is_crd(g, k))
        })
        .filter_map(|value| {
            let spec = value.get("spec");
            let group = lookup(spec, &["group"])?.as_str()?;
            let kind = lookup(spec, &["names", "kind"])?.as_str()?;
            Some((group.to_owned(), kind.to_owned()))
        })
        .collect()
}
