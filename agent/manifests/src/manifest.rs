//! The loaded objects of one revision.

use crate::crd::{self, CrdInfo};
use crate::location::Location;
use crate::object_ref::ObjectRef;
use crate::scope::Scope;
use gitwarden_shared::names::{PRUNE, PRUNE_DISABLED};
use kube::core::{DynamicObject, GroupVersionKind};

/// One object from git, validated, with where it came from.
///
/// The parsed fields (`gvk`, `name`, `namespace`) duplicate the object's so
/// that ordering, scope resolution and inventory never have to re-parse or
/// handle a missing field: load guarantees them.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Where the object is written (its document, or its List item).
    pub location: Location,
    /// The object as written in git, with `types` always set. Its
    /// `metadata.namespace` follows `namespace` after scope resolution.
    pub object: DynamicObject,
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

impl Manifest {
    /// The object's identity, as the agent records it in its inventory.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef::new(&self.gvk, self.namespace.as_deref(), &self.name)
    }

    /// Whether git asks never to prune this object
    /// (`gitwarden.io/prune: disabled`), for example a namespace holding data.
    pub fn prune_disabled(&self) -> bool {
        self.object
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(PRUNE))
            .is_some_and(|value| value == PRUNE_DISABLED)
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
