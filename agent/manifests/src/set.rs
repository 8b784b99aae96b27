//! The objects of one revision: as loaded ([`ManifestSet`]), and with every
//! namespace and scope resolved ([`ResolvedSet`]), the only form the agent
//! applies.
//!
//! A manifest's namespace means something else before and after resolution
//! (as written, or final), so the two are distinct types: an apply engine
//! that takes a `ResolvedSet` cannot be handed a set nobody resolved.

use crate::crd::CrdInfo;
use crate::manifest::Manifest;
use crate::object_ref::ObjectRef;
use crate::order::{self, Phase};

/// Every object of one revision, in file and document order, as loaded.
///
/// Produced by `load`, so every manifest in it is valid and no two address
/// the same object. Namespaces are as written and scopes unknown until
/// `ManifestSet::resolve_namespaces` turns it into a [`ResolvedSet`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManifestSet {
    /// The objects, in the order the files and documents were given.
    pub manifests: Vec<Manifest>,
}

/// Every object of one revision, in file and document order, each with its
/// final namespace (`None` for cluster-scoped objects) and its scope.
///
/// Produced only by `ManifestSet::resolve_namespaces` (or empty, by
/// `Default`: a revision without objects), so no manifest in it is
/// unresolved and no two address the same object once defaulted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResolvedSet {
    manifests: Vec<Manifest>,
}

impl ResolvedSet {
    /// Wraps manifests whose namespace and scope resolution has just set.
    pub(crate) fn new(manifests: Vec<Manifest>) -> Self {
        Self { manifests }
    }

    /// The objects, in the order the files and documents were given.
    pub fn manifests(&self) -> &[Manifest] {
        &self.manifests
    }
}

/// The read-only views both sets offer; on a [`ManifestSet`] they see the
/// namespaces as written.
macro_rules! views {
    ($set:ty) => {
        impl $set {
            /// The CustomResourceDefinitions of the revision and the kinds
            /// they define, so the agent knows which CRDs to wait for
            /// (Established) and scope resolution knows kinds discovery has
            /// not seen yet.
            pub fn crds(&self) -> Vec<CrdInfo> {
                self.manifests
                    .iter()
                    .filter(|manifest| manifest.is_crd())
                    .filter_map(|manifest| manifest.crd_info().ok())
                    .collect()
            }

            /// The Namespaces the revision declares, so the agent can tell
            /// which namespaces git creates (and must apply first).
            pub fn namespaces(&self) -> Vec<&Manifest> {
                self.manifests
                    .iter()
                    .filter(|manifest| manifest.is_namespace())
                    .collect()
            }

            /// The identities of every object, for the agent's inventory and
            /// prune.
            pub fn object_refs(&self) -> Vec<ObjectRef> {
                self.manifests.iter().map(Manifest::object_ref).collect()
            }

            /// How many objects the revision has.
            pub fn len(&self) -> usize {
                self.manifests.len()
            }

            /// Whether the revision has no objects (the agent may want to
            /// refuse that, as it would prune everything).
            pub fn is_empty(&self) -> bool {
                self.manifests.is_empty()
            }

            /// The objects grouped by [`Phase`], in apply order, empty phases
            /// left out; each phase sorted deterministically (kind rank,
            /// group, kind, namespace, name).
            pub fn apply_phases(&self) -> Vec<(Phase, Vec<&Manifest>)> {
                order::apply_phases(&self.manifests, self.crds())
            }

            /// The objects in apply order: a list of phases (see [`Phase`]),
            /// each to finish before the next starts; CRDs first, custom
            /// resources last.
            pub fn apply_order(&self) -> Vec<Vec<&Manifest>> {
                self.apply_phases()
                    .into_iter()
                    .map(|(_, manifests)| manifests)
                    .collect()
            }
        }
    };
}

views!(ManifestSet);
views!(ResolvedSet);
