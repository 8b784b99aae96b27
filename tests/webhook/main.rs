//! The admission webhook against the real API server, with the real kubectl as
//! the humans it refuses. Tests install the webhook one at a time (its
//! configuration is cluster-wide), so each holds `Setup`'s lock.

#![allow(clippy::unwrap_used, missing_docs)]

mod break_glass;
mod common;
mod denials;
mod doctor;
mod hostile;
mod kubectl_plugin;
mod notifications;
mod policy;
mod registration;
mod resilience;
mod side_doors;
