//! One object of a revision.

use crate::crd::CrdInfo;
use crate::kind::{self, Scope};
use crate::location::Location;
use crate::object_ref::ObjectRef;

use kube::core::{GroupVersionKind, ObjectMeta};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// One object from git, validated, with where it came from.
///
/// The parsed fields (`gvk`, `name`, `namespace`) duplicate the object's so
/// that ordering, scope resolution and inventory never have to re-parse or
/// handle a missing field: load guarantees them.
///
/// Everything but `metadata` is kept as the compact JSON text it parsed
/// from rather than as a `serde_json::Value` tree: a tree's maps cost about
/// 600 bytes each however few keys they hold, and an agent holding a
/// revision of 5,000 objects would spend most of its memory on them. Only
/// preparing the apply body and reading a CRD look inside.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Where the object is written (its document, or its List item).
    pub location: Location,
    /// The object's metadata as written in git. Its `namespace` follows
    /// `namespace` after scope resolution.
    pub metadata: ObjectMeta,
    /// The object's other fields (`spec`, `data`, `rules`, ...), without
    /// `apiVersion`, `kind` and `metadata`, as a JSON object.
    content: Box<RawValue>,
    /// The object's group, version and kind, from its `apiVersion` and `kind`.
    pub gvk: GroupVersionKind,
    /// `metadata.name` (always present: gitwarden refuses `generateName`).
    pub name: String,
    /// `metadata.namespace`: as written in a loaded `ManifestSet` (an empty
    /// string counts as absent), the resolved one in a `ResolvedSet` (`None`
    /// then means cluster-scoped).
    pub namespace: Option<String>,
    /// The kind's scope: `None` in a loaded `ManifestSet`, always `Some` in a
    /// `ResolvedSet`.
    pub scope: Option<Scope>,
}

impl PartialEq for Manifest {
    fn eq(&self, other: &Self) -> bool {
        self.location == other.location
            && self.metadata == other.metadata
            && self.content.get() == other.content.get()
            && self.gvk == other.gvk
            && self.name == other.name
            && self.namespace == other.namespace
            && self.scope == other.scope
    }
}

impl Manifest {
    /// A manifest whose fields load has checked; `content` holds the
    /// object's fields other than `apiVersion`, `kind` and `metadata`.
    pub(crate) fn new(
        location: Location,
        gvk: GroupVersionKind,
        name: String,
        namespace: Option<String>,
        metadata: ObjectMeta,
        content: &Map<String, Value>,
    ) -> Self {
        let content = serde_json::value::to_raw_value(content)
            // A map with string keys always serialises.
            .unwrap_or_else(|_| RawValue::from_string("{}".to_owned()).unwrap_or_default());
        Self {
            location,
            metadata,
            content,
            gvk,
            name,
            namespace,
            scope: None,
        }
    }

    /// The object's fields other than `apiVersion`, `kind` and `metadata`
    /// (parsed on each call: callers read it once per sync).
    pub fn content(&self) -> Map<String, Value> {
        serde_json::from_str(self.content.get()).unwrap_or_default()
    }

    /// One top-level field of the object (`spec`, `data`, ...).
    pub fn field(&self, name: &str) -> Option<Value> {
        self.content().remove(name)
    }

    /// The object's identity, as the agent records it in its inventory.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::new(&self.gvk, self.namespace.as_deref(), &self.name)
    }

    /// Whether git asks never to prune this object
    /// (`gitwarden.io/prune: disabled`), for example a namespace holding data.
    pub fn prune_disabled(&self) -> bool {
        gitwarden_shared::names::prune_disabled(self.metadata.annotations.as_ref())
    }

    /// Whether git lets the agent delete and create this object again when
    /// a field the API server will not change in place changes
    /// (`gitwarden.io/force: enabled`).
    pub fn force_enabled(&self) -> bool {
        gitwarden_shared::names::force_enabled(self.metadata.annotations.as_ref())
    }

    /// Whether this is a CustomResourceDefinition: the agent must wait for it
    /// to be Established before applying its custom resources.
    pub fn is_crd(&self) -> bool {
        kind::is_crd(&self.gvk.group, &self.gvk.kind)
    }

    /// What this CustomResourceDefinition defines, or what is missing or
    /// malformed in it (meaningful only when [`Manifest::is_crd`]).
    pub(crate) fn crd_info(&self) -> Result<CrdInfo, Vec<String>> {
        CrdInfo::parse(&self.name, &self.location, self.field("spec").as_ref())
    }

    /// Whether this is a Namespace.
    pub fn is_namespace(&self) -> bool {
        self.gvk.group.is_empty() && self.gvk.kind == "Namespace"
    }
}
