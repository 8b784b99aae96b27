//! gitwarden's sync agent: fetches a verified git revision and makes the cluster
//! match it (server-side apply, prune, drift healing, status).
//!
//! Not built yet: the binary refuses to run rather than pretend to sync.
