//! The vocabulary gitwarden's agent and webhook share.
//!
//! Everything here is pure (no I/O), so that both services, the tests and the
//! fuzzers agree on one meaning of every name, identity, policy rule and audit
//! record.

pub mod admission_object;
pub mod audit;
pub mod decision;
pub mod identity;
pub mod names;
pub mod policy;
pub mod source;
pub mod stamps;
