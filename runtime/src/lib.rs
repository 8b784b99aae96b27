//! What every gitwarden binary needs from Kubernetes and the process, in one
//! place: a client from a kubeconfig or the in-cluster service account, log
//! set-up, the shutdown signal, the `/metrics` handler and constant-time
//! bearer-token comparison. The agent, the webhook, `gitwarden-certs` and the
//! tests use these, so each rule (which kubeconfig wins, what a log line looks
//! like, how a token is compared) is written once.

pub mod access;
pub mod bearer;
pub mod client;
pub mod errors;
pub mod logging;
pub mod metrics;
pub mod signals;
