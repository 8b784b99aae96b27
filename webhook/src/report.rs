//! `POST /audit/events`: the agent's own actions that no webhook could see.
//!
//! No webhook is called for admission-configuration objects, so when the agent
//! deletes one that is not in git, the audit log would not know. The agent
//! reports it here instead, and the record joins the same durable, hash-chained
//! log as every denial. The caller proves who it is with its Kubernetes bearer
//! token, checked by a TokenReview (the same cached one as `GET /audit`,
//! see [`crate::access`]), and must be the agent under the policy in
//! force; the record names that identity, never one the body claims.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gitwarden_runtime::access::Refusal;
use gitwarden_shared::audit::{AgentReport, AuditEvent};
use tracing::Instrument;

use crate::server::AppState;

/// Why a report was not recorded; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
enum ReportRefusal {
    #[error("POST /audit/events needs an Authorization: Bearer token")]
    NoToken,
    #[error(
        "the webhook has no Kubernetes client to authenticate reporters (it reads its policy from a file)"
    )]
    NoClient,
    #[error("authenticating the reporter: {0}")]
    TokenReview(String),
    #[error("the token is not valid: {0}")]
    Unauthenticated(String),
    #[error("{0:?} is not the gitwarden agent under the policy in force")]
    NotTheAgent(String),
    #[error("recording the report")]
    Audit(#[source] crate::audit::AuditError),
}

impl ReportRefusal {
    fn status(&self) -> StatusCode {
        match self {
            ReportRefusal::NoToken | ReportRefusal::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ReportRefusal::NotTheAgent(_) => StatusCode::FORBIDDEN,
            ReportRefusal::NoClient | ReportRefusal::TokenReview(_) | ReportRefusal::Audit(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

/// POST /audit/events
pub async fn record(
    State(state): State<AppState>,
    headers: HeaderMap,
    report: Result<Json<AgentReport>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let report = match report {
        Ok(Json(report)) => report,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("bad audit report: {e}")).into_response();
        }
    };
    let span =
        tracing::info_span!("audit_report", reason = report.reason.code(), name = %report.name);
    match accept(&state, &headers, report).instrument(span).await {
        Ok(id) => (StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response(),
        Err(refusal) => {
            tracing::warn!(
                error = gitwarden_runtime::errors::chain(&refusal),
                "audit report refused"
            );
            (refusal.status(), gitwarden_runtime::errors::chain(&refusal)).into_response()
        }
    }
}

async fn accept(
    state: &AppState,
    headers: &HeaderMap,
    report: AgentReport,
) -> Result<String, ReportRefusal> {
    let token = gitwarden_runtime::bearer::from_headers(headers).ok_or(ReportRefusal::NoToken)?;
    let requester = match state.access.authenticate(token).await {
        None => return Err(ReportRefusal::NoClient),
        Some(Ok(requester)) => requester,
        Some(Err(Refusal::Unauthenticated(why))) => {
            return Err(ReportRefusal::Unauthenticated(why));
        }
        Some(Err(other)) => return Err(ReportRefusal::TokenReview(other.to_string())),
    };
    let policy = state.review.policy.get();
    if policy.agent.matches(&requester).is_none() {
        return Err(ReportRefusal::NotTheAgent(requester.username));
    }
    let event = AuditEvent::new(report.reason.decision(), report.reason.code())
        .with_message(report.message)
        .with_user(requester.username, requester.uid, requester.groups)
        .with_operation(report.operation)
        .with_resource(report.group, report.version, report.resource, None)
        .with_object(report.namespace, Some(report.name));
    let record = state
        .review
        .audit
        .append(event)
        .await
        .map_err(ReportRefusal::Audit)?;
    tracing::info!(id = %record.id, "recorded the agent's report");
    Ok(record.id)
}
