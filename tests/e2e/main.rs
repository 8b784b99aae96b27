//! gitwarden's end-to-end suite: one test binary, one real control plane
//! (tests/cluster), the real kubectl and real git.

#![allow(clippy::unwrap_used, missing_docs)]

mod certs;
mod certs_bootstrap;
mod deploy;
mod deploy_copies;
mod doctor;
mod harness;
mod observability;
mod static_admission;
