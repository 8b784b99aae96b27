//! The identity of an object gitwarden owns, as stored in its inventory.
//!
//! The inventory must hold every object applied (10,000 of them within the
//! 1 MiB object limit) and survive restarts, so an identity serialises to one
//! short string: `apps/v1 Deployment team-a/web`.

use kube::core::GroupVersionKind;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// Which object: group, version, kind, namespace and name.
///
/// Equality, ordering and hashing ignore `version`: one stored object is
/// served under several versions, and an object whose manifest moves from
/// `v2beta2` to `v2` must not look like one object leaving git (to prune)
/// and another arriving. `version` is kept to address the object.
///
/// Serialises as its display form, `apps/v1 Deployment team-a/web` (or
/// `v1 Namespace team-a` when cluster-scoped), which [`FromStr`] parses back.
#[derive(Debug, Clone)]
pub struct ObjectRef {
    /// The API group (empty for the core group).
    pub group: String,
    /// The API version to address the object with.
    pub version: String,
    /// The kind.
    pub kind: String,
    /// The namespace, `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
}

impl ObjectRef {
    /// The identity of the object `name` (in `namespace`) of kind `gvk`.
    pub fn new(gvk: &GroupVersionKind, namespace: Option<&str>, name: &str) -> Self {
        Self {
            group: gvk.group.clone(),
            version: gvk.version.clone(),
            kind: gvk.kind.clone(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    /// The group, version and kind, to find the API resource.
    pub fn gvk(&self) -> GroupVersionKind {
        GroupVersionKind::gvk(&self.group, &self.version, &self.kind)
    }

    /// The `apiVersion` (`apps/v1`, or `v1` for the core group).
    pub fn api_version(&self) -> String {
        Self::api_version_of(&self.group, &self.version)
    }

    /// `apiVersion` from a group and a version.
    pub(crate) fn api_version_of(group: &str, version: &str) -> String {
        if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        }
    }

    fn key(&self) -> (&str, &str, Option<&str>, &str) {
        (
            &self.group,
            &self.kind,
            self.namespace.as_deref(),
            &self.name,
        )
    }
}

impl PartialEq for ObjectRef {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for ObjectRef {}

impl Hash for ObjectRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialOrd for ObjectRef {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ObjectRef {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.group.is_empty() {
            write!(f, "{}/", self.group)?;
        }
        write!(f, "{} {} ", self.version, self.kind)?;
        if let Some(namespace) = &self.namespace {
            write!(f, "{namespace}/")?;
        }
        f.write_str(&self.name)
    }
}

/// Why a string is not an [`ObjectRef`] display form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an object reference (expected `[group/]version Kind [namespace/]name`): {0:?}")]
pub struct ParseObjectRefError(String);

impl FromStr for ObjectRef {
    type Err = ParseObjectRefError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ParseObjectRefError(text.to_owned());
        let mut parts = text.splitn(3, ' ');
        let (Some(api_version), Some(kind), Some(rest)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(error());
        };
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        // Namespaces and names never contain '/', so one means "namespaced".
        let (namespace, name) = match rest.split_once('/') {
            Some((namespace, name)) => (Some(namespace), name),
            None => (None, rest),
        };
        if version.is_empty()
            || kind.is_empty()
            || name.is_empty()
            || namespace.is_some_and(str::is_empty)
        {
            return Err(error());
        }
        Ok(Self {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        })
    }
}

impl Serialize for ObjectRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ObjectRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
