//! The admission chain belongs to git.
//!
//! kube-apiserver never sends Validating/MutatingWebhookConfigurations,
//! admission policies or their bindings to an API-registered webhook, so
//! gitwarden's webhook cannot refuse a cluster-admin who adds one that
//! rewrites or blocks what the agent applies. The agent closes that door
//! itself: while it leads, it watches every admission-configuration kind the
//! API server serves and deletes, within seconds, each object that is neither
//! in git (the revision it loaded, or its inventory) nor allowed by name in
//! the policy's `admissionChain.allow`.
//!
//! This module holds the pure parts: which kinds there are ([`AdmissionKind`]),
//! what git contains ([`GitObjects`]), the verdict on one object
//! ([`judge`]), how the policy ConfigMap is followed ([`PolicyTracker`]),
//! when removing may start ([`arming`]), and when an admission object from
//! git was changed beyond what server-side apply heals ([`tamper`]).
//! The watching and deleting is the binary's `admission_guard`.

mod arming;
mod kind;
mod policy;
pub mod tamper;
mod verdict;

pub use arming::{Arming, arming};
pub use kind::{ADMISSION_GROUP, AdmissionKind};
pub use policy::{PolicyInForce, PolicySource, PolicyTracker, PolicyUpdate};
pub use verdict::{GitObjects, Verdict, judge, key};
