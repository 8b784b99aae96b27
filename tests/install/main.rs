//! gitwarden installed on a real node the way a user installs it, end to end:
//! images built from their Containerfiles, one `kubectl apply -k` of an
//! overlay of `deploy/base`, the repository served by a git server inside the
//! cluster. The certificates, the webhook's registration, the agents' leader
//! election and the first sync all happen in the cluster; the tests assert
//! the cluster's state. Needs root and `scripts/node-prereqs` (tests/cluster).

#![allow(clippy::unwrap_used, missing_docs)]

mod audit_replicas;
mod bound_token;
mod broken_image;
mod disaster_recovery;
mod failover;
mod happy_path;
mod installed;
mod registration_gate;
mod side_doors;
mod status_leader;
mod upgrade;
mod workload_health;
