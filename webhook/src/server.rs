//! The HTTP surface: admission endpoints, health, metrics and audit queries,
//! with the limits that keep a misbehaving client from hurting the webhook.
//!
//! `GET /audit` answers with every replica's records when the webhook knows
//! its peers ([`crate::audit_peers`]): each replica keeps its own log and the
//! Service picks one at random. `x-gitwarden-audit-scope: replica` asks one
//! replica for its own records only.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::audit::{AuditQuery, merge_newest_first};
use crate::audit_peers::{self, AuditPeers};
use crate::review::{self, ReviewState};

/// Everything the routes need.
#[derive(Clone)]
pub struct AppState {
    /// State of the admission handlers.
    pub review: ReviewState,
    /// The Prometheus registry rendered at /metrics.
    pub registry: Arc<Registry>,
    /// What /readyz reports.
    pub readiness: crate::readiness::Readiness,
    /// Who may read `GET /audit` (TokenReview + SubjectAccessReview, or the
    /// static token) and who reports to `POST /audit/events` (TokenReview).
    pub access: crate::access::Access,
    /// The other replicas `GET /audit` also asks, so that any replica
    /// answers with the whole log (`None`: this replica's records only, as
    /// for a webhook outside a cluster).
    pub audit_peers: Option<Arc<AuditPeers>>,
}

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted body. An AdmissionReview carries the object and the old
    /// object, each up to etcd's 1.5 MiB, plus envelope.
    pub max_body_bytes: usize,
    /// A request not answered within this time gets 408 (the API server's own
    /// webhook timeout is at most 30 s).
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 6 * 1024 * 1024,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Builds the router.
pub fn router(state: AppState, limits: Limits) -> Router {
    let admission = Router::new()
        .route("/validate", post(review::validate))
        .route("/mutate", post(review::mutate))
        .with_state(state.review.clone());
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/audit", get(audit_query))
        .route("/audit/events", post(crate::report::record))
        .with_state(state)
        .merge(admission)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        // Refuses a declared Content-Length over the limit at once with 413,
        // instead of waiting for a body that will be refused anyway.
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let (ready, body) = state.readiness.check();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    gitwarden_runtime::metrics::render(&state.registry)
}

async fn audit_query(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw_query): RawQuery,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match state.access.may_read_audit(&headers).await {
        Ok(who) => tracing::debug!(%who, "audit query"),
        Err(refusal) => {
            tracing::info!(
                status = refusal.status().as_u16(),
                error = %refusal,
                "audit query refused"
            );
            return refusal.into_response();
        }
    }
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("bad audit query: {e}")).into_response();
        }
    };
    let limit = query.effective_limit();
    let peers = match &state.audit_peers {
        Some(peers) if !audit_peers::replica_scope(&headers) => peers,
        _ => {
            return match state.review.audit.query(query).await {
                Ok(records) => axum::Json(records).into_response(),
                Err(e) => log_unreadable(&e),
            };
        }
    };
    // The peers are asked with the caller's credentials and the same query
    // while this replica reads its own log.
    let (own, gathered) = tokio::join!(
        state.review.audit.query(query),
        peers.gather(&headers, raw_query.as_deref())
    );
    let own = match own {
        Ok(records) => records,
        Err(e) => return log_unreadable(&e),
    };
    let mut answers = vec![own];
    answers.extend(gathered.answers);
    let mut response = axum::Json(merge_newest_first(answers, limit)).into_response();
    if let Some(missing) = audit_peers::missing_header(&gathered.missing) {
        response
            .headers_mut()
            .insert(gitwarden_shared::names::AUDIT_MISSING_HEADER, missing);
    }
    response
}

/// 500 for an audit log this replica cannot read.
fn log_unreadable(e: &crate::audit::AuditError) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!(
            "reading the audit log: {}",
            gitwarden_runtime::errors::chain(e)
        ),
    )
        .into_response()
}
