//! Loads, validates and orders the Kubernetes manifests of a git revision.
//!
//! The agent hands over the revision's files ([`ManifestFile`]); [`load`]
//! returns every object ([`ManifestSet`]) or every problem with a `file:line`
//! ([`LoadErrors`]), never part of a revision. Then
//! [`ManifestSet::resolve_namespaces`] fixes each object's namespace from the
//! kind's scope, [`ManifestSet::apply_order`] says in which phases to apply,
//! [`prepare_for_apply`] gives the server-side-apply body, and
//! [`prune_order`] orders what left git for deletion. No cluster access
//! happens here: discovery comes in through [`ScopeLookup`].

mod crd;
mod documents;
mod error;
mod json;
mod load;
mod location;
mod manifest;
mod object_ref;
mod order;
mod prepare;
mod scope;
mod validate;
mod yaml;

pub use crd::CrdInfo;
pub use error::{LoadError, LoadErrors};
pub use load::{ManifestFile, load};
pub use location::Location;
pub use manifest::{Manifest, ManifestSet};
pub use object_ref::{ObjectRef, ParseObjectRefError};
pub use order::{Phase, phase_of, prune_order};
pub use prepare::prepare_for_apply;
pub use scope::{Scope, ScopeLookup};

#[cfg(test)]
mod tests;
