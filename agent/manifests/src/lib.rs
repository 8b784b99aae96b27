//! Loads, validates and orders the Kubernetes manifests of a git revision.
//!
//! The agent hands over the revision's files ([`ManifestFile`]); [`load`]
//! returns every object ([`ManifestSet`]) or every problem with a `file:line`
//! ([`LoadErrors`]), never part of a revision; [`load_with`] also decrypts
//! SOPS-encrypted files in memory and refuses plain-text Secrets. Then
//! [`ManifestSet::resolve_namespaces`] fixes each object's namespace from the
//! kind's scope and returns a [`ResolvedSet`], the only set the apply engine
//! takes; [`ResolvedSet::apply_order`] says in which phases to apply,
//! [`prepare_for_apply`] gives the server-side-apply body, and
//! [`prune_order`] orders what left git for deletion. No cluster access
//! happens here: discovery comes in through [`ScopeLookup`].

// The module graph is acyclic. From the leaves up (each layer uses only the
// layers before it): documents, kind, location, object_ref; crd, error;
// manifest, raw; json, yaml, decrypt, rendered, plaintext, order, prepare, set,
// validate; resolve; load.
mod crd;
mod decrypt;
mod documents;
mod error;
mod json;
mod kind;
mod load;
mod location;
mod manifest;
mod object_ref;
mod order;
mod plaintext;
mod prepare;
mod raw;
mod rendered;
mod resolve;
mod set;
mod validate;
mod yaml;

pub use crd::CrdInfo;
pub use error::{LoadError, LoadErrors};
pub use gitwarden_sops::AgeKeys;
pub use kind::{Scope, ScopeLookup};
pub use load::{LoadOptions, ManifestFile, documents_with_lines, load, load_with};
pub use location::Location;
pub use manifest::Manifest;
pub use object_ref::{ObjectRef, ParseObjectRefError};
pub use order::{Phase, phase_of, prune_order};
pub use plaintext::PlaintextSecrets;
pub use prepare::prepare_for_apply;
pub use rendered::Rendered;
pub use set::{ManifestSet, ResolvedSet};

#[cfg(test)]
mod tests;
