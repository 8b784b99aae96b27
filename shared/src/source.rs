//! Where in git an object comes from, as the agent records it for every
//! object it applies and the webhook quotes it when it refuses a change:
//! "edit apps/web.yaml line 12".
//!
//! The agent keeps it in its inventory (the ConfigMaps labelled
//! [`INVENTORY_LABEL`], one line per object), not on the objects: the
//! inventory is rewritten when the revision changes anyway, while an
//! annotation would rewrite every object below a line added to its file.
//! The value is the location as people read it, `PATH:LINE`, with
//! ` (kustomization DIR)` for an object kustomize rendered; `PATH` is
//! relative to the repository root.

use serde::{Deserialize, Serialize};

/// The label of the agent's inventory shards.
pub const INVENTORY_LABEL: &str = "gitwarden.io/inventory";

/// The data key of a shard's revision: the commit its sources are exact at.
pub const INVENTORY_REVISION: &str = "revision";

/// The data key of a shard's entries: `<hash> <fields> <resourceVersion>
/// @<source> <apiVersion> <kind> [<namespace>/]<name>`, one per line.
pub const INVENTORY_ENTRIES: &str = "entries";

/// An object as the inventory names it, without the API version (an object
/// is the same across versions).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// API group (`""` for the core group).
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Namespace (`""` for cluster-scoped objects).
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// A source as one whitespace-free field of an inventory line.
pub fn encode_field(source: &str) -> String {
    source
        .replace('%', "%25")
        .replace(' ', "%20")
        .replace('\n', "%0A")
}

/// The source an inventory field holds.
pub fn decode_field(field: &str) -> String {
    field
        .replace("%0A", "\n")
        .replace("%20", " ")
        .replace("%25", "%")
}

/// The objects with a recorded source in one inventory shard's data
/// (its entries, and the revision they were written at).
pub fn shard_sources(
    data: &std::collections::BTreeMap<String, String>,
) -> impl Iterator<Item = (ObjectKey, SourceRef)> + '_ {
    let commit = data.get(INVENTORY_REVISION).filter(|r| !r.is_empty());
    data.get(INVENTORY_ENTRIES)
        .into_iter()
        .flat_map(|entries| inventory_sources(entries))
        .map(move |(key, source)| {
            (
                key,
                SourceRef {
                    commit: commit.cloned(),
                    ..source
                },
            )
        })
}

/// The objects with a recorded source in a shard's entries.
pub fn inventory_sources(entries: &str) -> impl Iterator<Item = (ObjectKey, SourceRef)> + '_ {
    entries.lines().filter_map(|line| {
        let mut parts = line.splitn(5, ' ');
        let (_, _, _, source, object) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        let source = SourceRef::parse(&decode_field(source.strip_prefix('@')?))?;
        let mut object = object.split(' ');
        let (api_version, kind, name) = (object.next()?, object.next()?, object.next()?);
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let (namespace, name) = name.split_once('/').unwrap_or(("", name));
        let key = ObjectKey {
            group: group.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        Some((key, source))
    })
}

/// A file and line in the repository, and the kustomization that rendered
/// the object, when one did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRef {
    /// The file, relative to the repository root.
    pub path: String,
    /// The 1-based line where the object starts.
    pub line: usize,
    /// The kustomization directory that rendered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kustomization: Option<String>,
    /// The commit the agent last applied the object from (the inventory
    /// shard's revision), when known: the line is exact at that commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

const KUSTOMIZATION_SUFFIX: &str = " (kustomization ";

impl SourceRef {
    /// Reads the annotation's value; `None` when it is not one the agent wrote.
    pub fn parse(value: &str) -> Option<SourceRef> {
        let (location, kustomization) = match value.split_once(KUSTOMIZATION_SUFFIX) {
            Some((location, rest)) => (location, Some(rest.strip_suffix(')')?.to_owned())),
            None => (value, None),
        };
        let (path, line) = location.rsplit_once(':')?;
        let line = line.parse().ok().filter(|l| *l > 0)?;
        if path.is_empty() {
            return None;
        }
        Some(SourceRef {
            path: path.to_owned(),
            line,
            kustomization,
            commit: None,
        })
    }
}

impl std::fmt::Display for SourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.path, self.line)?;
        if let Some(kustomization) = &self.kustomization {
            write!(f, "{KUSTOMIZATION_SUFFIX}{kustomization})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_reads_back_as_written() {
        for value in [
            "apps/web.yaml:12",
            "base/cm.yaml:8 (kustomization overlays/prod)",
        ] {
            let parsed = SourceRef::parse(value).expect(value);
            assert_eq!(parsed.to_string(), value);
        }
        let parsed = SourceRef::parse("base/cm.yaml:8 (kustomization overlays/prod)");
        assert_eq!(
            parsed,
            Some(SourceRef {
                path: "base/cm.yaml".into(),
                line: 8,
                kustomization: Some("overlays/prod".into()),
                commit: None,
            })
        );
    }

    #[test]
    fn inventory_lines_with_sources_name_their_objects() {
        let found: Vec<(ObjectKey, String)> = inventory_sources(
            "h f 1 @apps/web.yaml:12 apps/v1 Deployment shop/web\n\
             h f 2 @base/ns.yaml:1%20(kustomization%20overlays/prod) v1 Namespace shop\n\
             h f 3 @ v1 ConfigMap shop/unknown\n\
             h f 4 v1 ConfigMap shop/old-format\n",
        )
        .map(|(key, source)| (key, source.to_string()))
        .collect();
        let key = |g: &str, k: &str, ns: &str, n: &str| ObjectKey {
            group: g.into(),
            kind: k.into(),
            namespace: ns.into(),
            name: n.into(),
        };
        assert_eq!(
            found,
            [
                (
                    key("apps", "Deployment", "shop", "web"),
                    "apps/web.yaml:12".to_owned()
                ),
                (
                    key("", "Namespace", "", "shop"),
                    "base/ns.yaml:1 (kustomization overlays/prod)".to_owned()
                ),
            ]
        );
        assert_eq!(decode_field(&encode_field("a b%c\nd")), "a b%c\nd");
    }

    #[test]
    fn values_the_agent_cannot_have_written_are_ignored() {
        for value in [
            "",
            "apps/web.yaml",
            "apps/web.yaml:0",
            ":3",
            "a.yaml:x",
            "a.yaml:1 (kustomization x",
        ] {
            assert_eq!(SourceRef::parse(value), None, "{value}");
        }
    }
}
