//! gitwarden's admission webhook: refuses every Kubernetes change that does not
//! come from the git sync agent, and records every refusal and every
//! break-glass change in a durable, hash-chained audit log.
//!
//! Modules, one job each: [`decode`] reads an AdmissionReview body (only what
//! the decision needs), [`review`] answers AdmissionReviews with the shared
//! decision function, [`audit`] makes records durable before an answer leaves,
//! [`policy_store`] follows the policy, [`tls`] follows the certificate,
//! [`server`] wires HTTP, [`listener`] accepts connections within limits,
//! [`metrics`] counts, [`cli`] reads settings, [`sources`] finds the file
//! and line in git a refused object comes from, [`notify`] tells people
//! (webhooks, Slack, Teams, Alertmanager) by following the audit log,
//! [`readiness`] says whether this replica can decide, [`registration`]
//! registers the webhook configurations once it can, and [`audit_peers`]
//! asks the other replicas for their audit records, so that `GET /audit`
//! answers with the whole log from any replica.

pub mod access;
pub mod audit;
pub mod audit_peers;
pub mod cli;
pub mod decode;
pub mod listener;
pub mod metrics;
pub mod notify;
pub mod policy_store;
pub mod readiness;
pub mod registration;
pub mod report;
pub mod review;
pub mod server;
pub mod service_endpoints;
pub mod sources;
pub mod tls;
