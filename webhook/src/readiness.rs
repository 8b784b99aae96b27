//! Whether this replica can decide admission requests: its serving
//! certificate is valid, a policy is loaded and the audit log takes records.
//!
//! Two readers need the same answer: `/readyz` (the kubelet keeps an unready
//! pod out of the Service) and the registration of the webhook
//! configurations (enforcement must not start before a replica can answer,
//! or a broken install refuses every write in the cluster).

use std::sync::Arc;

use tokio::sync::watch;

use crate::audit::AuditLog;
use crate::policy_store::PolicyStore;
use crate::tls::TlsStatus;

/// What readiness is judged from.
#[derive(Clone)]
pub struct Readiness {
    /// The policy in force.
    pub policy: Arc<PolicyStore>,
    /// The latest TLS status.
    pub tls: watch::Receiver<TlsStatus>,
    /// The audit log.
    pub audit: AuditLog,
}

impl Readiness {
    /// Ready or not, and the details `/readyz` shows.
    pub fn check(&self) -> (bool, serde_json::Value) {
        let policy = self.policy.status();
        let tls = self.tls.borrow().clone();
        let audit_ok = self.audit.is_healthy();
        let ready = audit_ok && !tls.expired && policy.generation > 0;
        let details = serde_json::json!({
            "ready": ready,
            "policy": policy,
            "tls": tls,
            "audit": { "healthy": audit_ok, "dir": self.audit.dir() },
        });
        (ready, details)
    }

    /// Whether this replica can decide requests now.
    pub fn ready(&self) -> bool {
        self.check().0
    }
}
