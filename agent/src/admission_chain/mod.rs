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
//! what git contains ([`GitObjects`], with the webhook configurations the
//! webhook registers from git's template: [`registered_configurations`]), the verdict on one object
//! ([`judge`]), how the policy ConfigMap is followed ([`PolicyTracker`]),
//! and when removing may start ([`arming`]). When an admission object from
//! git was changed beyond what server-side apply heals is
//! [`gitwarden_shared::admission_object`], which the webhook's own
//! registration uses too.
//! The watching and deleting is the binary's `admission_guard`.

mod arming;
mod kind;
mod policy;
mod registered;
mod verdict;

pub use arming::{Arming, arming};
pub use kind::{ADMISSION_GROUP, AdmissionKind};
pub use policy::{PolicyInForce, PolicySource, PolicyTracker, PolicyUpdate};
pub use registered::{live_registered_configurations, registered_configurations};
pub use verdict::{GitObjects, Verdict, judge, key};
