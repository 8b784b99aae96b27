//! gitwarden's sync agent: fetches a verified git revision and makes the cluster
//! match it (server-side apply, prune, drift healing, status).
//!
//! The library holds the parts with no dependency on the command line:
//! [`leader`] election through a Lease, so replicas never apply at once;
//! [`standby`], telling a healthy standby from one whose leader never comes;
//! [`health`], kstatus-style readiness of what was applied;
//! [`admission_chain`], which admission objects may exist outside git;
//! [`audit`], delivering the agent's own records to the webhook's audit log;
//! [`status`], the document the agent reports, typed for its readers; and
//! [`leader_status`], a standby answering `/status` with the leader's.
//! Fetching, loading and applying live in the `gitwarden-source`,
//! `gitwarden-manifests` and `gitwarden-apply` crates; the binary wires them
//! into `run`, `sync`, `diff` and `status`.

pub mod admission_chain;
pub mod audit;
pub mod health;
pub mod leader;
pub mod leader_status;
pub mod standby;
pub mod status;
