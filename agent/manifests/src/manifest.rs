//! The loaded objects of one revision.

use crate::crd::{self, CrdInfo};
use crate::location::Location;
use crate::object_ref::ObjectRef;
use crate::scope::Scope;

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
    /// `metadata.namespace`: as written after load (an empty string counts as
    /// absent), the resolved one after [`ManifestSet::resolve_namespaces`]
    /// (`None` then means cluster-scoped).
    pub namespace: Option<String>,
    /// The kind's scope, `None` until [`ManifestSet::resolve_namespaces`] ran.
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

    /// Whether this is a CustomResourceDefinition: the agent must wait for it
    /// to be Established before applying its custom resources.
    pub fn is_crd(&self) -> bool {
        crd::is_crd(&self.gvk.group, &self.gvk.kind)
    }

    /// Whether this is a Namespace.
    pub fn is_namespace(&self) -> bool {
        self.gvk.group.is_empty() && self.gvk.kind == "Namespace"
    }
}

/// Every object of one revision, in file and document order.
///
/// Produced only by [`crate::load`], so every manifest in it is valid and no
/// two address the same object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManifestSet {
    /// The objects, in the order the files and documents were given.
    pub manifests: Vec<Manifest>,
}

impl ManifestSet {
    /// The CustomResourceDefinitions of the revision and the kinds they
    /// define, so the agent knows which CRDs to wait for (Established) and
    /// scope resolution knows kinds discovery has not seen yet.
    pub fn crds(&self) -> Vec<CrdInfo> {
        self.manifests
            .iter()
            .filter(|manifest| manifest.is_crd())
            .filter_map(|manifest| CrdInfo::parse(manifest).ok())
            .collect()
    }

    /// The Namespaces the revision declares, so the agent can tell which
    /// namespaces git creates (and must apply first).
    pub fn namespaces(&self) -> Vec<&Manifest> {
        self.manifests
            .iter()
            .filter(|manifest| manifest.is_namespace())
            .collect()
    }

    /// The identities of every object, for the agent's inventory and prune.
    pub fn object_refs(&self) -> Vec<ObjectRef> {
        self.manifests.iter().map(Manifest::object_ref).collect()
    }

    /// How many objects the revision has.
    pub fn len(&self) -> usize {
        self.manifests.len()
    }

    /// Whether the revision has no objects (the agent may want to refuse
    /// that, as it would prune everything).
    pub fn is_empty(&self) -> bool {
        self.manifests.is_empty()
    }
}
