//! gitwarden's sync agent: fetches a verified git revision and makes the cluster
//! match it (server-side apply, prune, drift healing, status).
//!
//! The library holds the parts with no dependency on the command line:
//! [`leader`] election through a Lease, so replicas never apply at once, and
//! [`health`], kstatus-style readiness of what was applied. Fetching,
//! loading and applying live in the `gitwarden-source`, `gitwarden-manifests`
//! and `gitwarden-apply` crates; the binary wires them into `run`, `sync`,
//! `diff` and `status`.

pub mod health;
pub mod leader;
