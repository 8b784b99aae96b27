//! What every gitwarden binary needs from Kubernetes and the process, in one
//! place: a client from a kubeconfig or the in-cluster service account, log
//! set-up, the shutdown signal, the `/metrics` handler, constant-time
//! bearer-token comparison and the caller's own token from its kubeconfig.
//! The agent, the webhook, the operator's tools and the tests use these, so
//! each rule (which kubeconfig wins, what a log line looks like, how a token
//! is compared or found) is written once.

pub mod access;
pub mod bearer;
pub mod client;
pub mod credential;
pub mod errors;
pub mod logging;
pub mod metrics;
pub mod signals;
