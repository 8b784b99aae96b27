//! Brings a Kubernetes cluster to a git revision: validate, apply, record,
//! prune — and nothing when nothing changed.
//!
//! The agent loads a revision with `gitwarden-manifests`, resolves
//! namespaces with this crate's [`Discovery`], and calls [`Applier::sync`].
//! Every decision is made from the cluster itself (the inventory ConfigMaps
//! and the live objects), never from memory, so a restarted agent carries on
//! where the last one stopped. [`diff`] shows what a sync would do, and
//! [`RequestCounter`] proves how many writes it did.

mod apply;
mod apply_one;
mod body;
mod break_glass;
mod counter;
mod decide;
mod diff;
mod discovery;
mod dry_run;
mod error;
mod establish;
mod execute;
mod fingerprint;
mod inventory;
mod plan;
mod prune;
mod recreate;
mod redact;
mod refusal;
mod report;
mod sync_context;

pub use apply::{Applier, ApplyConfig};
pub use counter::{CountingLayer, CountingService, RequestCounter};
pub use diff::{Change, Creation, Diff, HeldChange, diff};
pub use discovery::{Discovery, Resolved};
pub use error::{InventoryError, ObjectError, SyncError, ValidationErrors};
pub use fingerprint::{fields_fingerprint, manifest_hash};
pub use inventory::{Inventory, InventoryEntry, InventoryStore, MAX_SHARD_BYTES, StoredShards};
pub use prune::PrunePolicy;
pub use refusal::AdmissionRefusal;
pub use report::{Action, BreakGlassReport, Held, KeepCause, Kept, ObjectResult, SyncReport};
