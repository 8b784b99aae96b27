//! What can go wrong in a sync, with enough context to act on it.

use crate::refusal::AdmissionRefusal;
use gitwarden_manifests::{Location, ObjectRef};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// One object the API server refused, and where it is written in git.
///
/// Serialisable so the agent can put it in its status as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectError {
    /// The object.
    pub object: ObjectRef,
    /// Its manifest's `file:line`, so a human can go straight to the fix.
    pub location: Location,
    /// The API server's message (or gitwarden's, for an unknown kind).
    pub message: String,
    /// The admission plugin that refused the object, when one did: a
    /// webhook or admission policy gitwarden does not own stands between
    /// git and the cluster.
    #[serde(default, rename = "refusedBy", skip_serializing_if = "Option::is_none")]
    pub refused_by: Option<AdmissionRefusal>,
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.location, self.object, self.message)
    }
}

/// Every object of a revision that failed the server-side dry-run.
///
/// All are collected (not just the first) so one status report shows a human
/// every problem of the revision. Displays one per line, `file:line: object: message`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ValidationErrors {
    /// The refused objects, sorted by location.
    pub errors: Vec<ObjectError>,
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// Why a sync (or a diff) stopped before finishing.
///
/// Per-object apply failures are not errors here: they are reported per
/// object in the [`crate::SyncReport`] and the rest of the revision still
/// applies. These are the failures that make the whole sync meaningless.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// API discovery failed, so no kind can be addressed.
    #[error("API discovery failed")]
    Discovery(#[source] kube::Error),
    /// The revision failed validation; nothing of it was applied (except,
    /// for custom resources validated late, the CRDs before them).
    #[error("the revision failed server-side validation; nothing was applied:\n{0}")]
    Validation(ValidationErrors),
    /// The inventory could not be read or written.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// A CustomResourceDefinition did not become Established in time, so its
    /// custom resources cannot be applied.
    #[error("CustomResourceDefinition {name} was not Established within {timeout:?}: {reason}")]
    CrdNotEstablished {
        /// The CRD's name.
        name: String,
        /// How long gitwarden waited.
        timeout: Duration,
        /// The last condition or error seen.
        reason: String,
    },
    /// Reading the live state of an object failed for a reason other than
    /// its absence (permissions, API server down).
    #[error("reading {object} failed")]
    Read {
        /// The object.
        object: ObjectRef,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// Why the inventory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// Listing or reading the inventory ConfigMaps failed.
    #[error("reading the inventory in namespace {namespace}")]
    Read {
        /// The inventory namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing or deleting an inventory ConfigMap failed.
    #[error("writing inventory ConfigMap {namespace}/{name}")]
    Write {
        /// The inventory namespace.
        namespace: String,
        /// The ConfigMap.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// An inventory ConfigMap holds something gitwarden did not write.
    #[error("inventory ConfigMap {namespace}/{name} is malformed at entry {line}: {message}")]
    Malformed {
        /// The inventory namespace.
        namespace: String,
        /// The ConfigMap.
        name: String,
        /// The 1-based entry line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// One inventory entry is larger than a shard may be (cannot happen
    /// with valid Kubernetes names, but is not silently truncated).
    #[error("inventory entry for {0} does not fit in one shard")]
    EntryTooLarge(ObjectRef),
}
