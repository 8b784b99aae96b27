//! Who may read the audit log over `GET /audit`, and who reports to it.
//!
//! Either of two credentials lets a caller read:
//!
//! - its own Kubernetes bearer token, authenticated by a TokenReview and
//!   authorized by a SubjectAccessReview for `get` on the non-resource URL
//!   `/audit` (ClusterRole `gitwarden-audit-reader` in `deploy/base`), as
//!   kube-rbac-proxy does: RBAC decides who reads the audit log, and
//!   `kubectl gitwarden audit` works with the user's own kubeconfig;
//! - the static token of `--audit-token-file`, for scripts.
//!
//! With neither configured (no Kubernetes client because the policy is a
//! file, and no token file) nobody reads it: the log names people and their
//! reasons, so it is never open by default. `POST /audit/events` uses the same
//! cached TokenReview to authenticate the agent.

use std::sync::Arc;

use axum::http::HeaderMap;
use gitwarden_runtime::access::{Refusal, Reviewer};
use gitwarden_shared::identity::Requester;

/// The non-resource URL (and path) readers must be allowed to `get`.
pub const AUDIT_PATH: &str = "/audit";

/// The two ways in, as configured.
#[derive(Clone, Debug, Default)]
pub struct Access {
    token: Option<Arc<str>>,
    reviewer: Option<Reviewer>,
}

impl Access {
    /// Static token (`--audit-token-file`) and/or Kubernetes reviews through
    /// `kube` (the webhook's own client).
    pub fn new(kube: Option<kube::Client>, token: Option<Arc<str>>) -> Self {
        Access {
            token: token.filter(|t| !t.is_empty()),
            reviewer: kube.map(Reviewer::new),
        }
    }

    /// Whether GET /audit may be answered; who asked when it may.
    pub async fn may_read_audit(&self, headers: &HeaderMap) -> Result<String, Refusal> {
        if let Some(expected) = &self.token
            && gitwarden_runtime::bearer::authorized(headers, expected)
        {
            return Ok("holder of the audit token".to_owned());
        }
        match &self.reviewer {
            Some(reviewer) => reviewer.check(headers, "get", AUDIT_PATH, "audit").await,
            None if self.token.is_some() => Err(Refusal::Unauthenticated(
                "GET /audit needs the audit bearer token (--audit-token-file)".to_owned(),
            )),
            None => Err(Refusal::Unauthenticated(
                "GET /audit is not served: the webhook has no Kubernetes client to review tokens (its policy is a file) and no --audit-token-file".to_owned(),
            )),
        }
    }

    /// Who holds `token` (a cached TokenReview); `None` when the webhook has
    /// no Kubernetes client.
    pub async fn authenticate(&self, token: &str) -> Option<Result<Requester, Refusal>> {
        let reviewer = self.reviewer.as_ref()?;
        Some(
            reviewer
                .authenticate(token)
                .await
                .map(|user| Requester::from_user_info(&user)),
        )
    }
}
