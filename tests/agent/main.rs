//! The sync agent against the real API server and real git repositories: the
//! `gitwarden-agent` binary, authenticated with the agent's real
//! service-account token.

#![allow(clippy::unwrap_used, missing_docs)]

mod admission_chain;
mod break_glass;
mod common;
mod drift;
mod kustomize;
mod leader_stuck;
mod recreate;
mod restart;
mod run;
mod secrets;
mod self_protection;
mod sync;
