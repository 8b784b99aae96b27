//! The agent's HTTP endpoints: /status (open, or with `--status-auth
//! kubernetes` for callers RBAC allows `get` on the non-resource URL /status),
//! /healthz, /readyz, /metrics and the push notification /hook (HMAC
//! `X-Hub-Signature-256` or a bearer token).
//!
//! A standby answers /status with the leader's status (asked on the caller's
//! behalf, see [`gitwarden_agent::leader_status`]), since the Service picks
//! a replica at random; `x-gitwarden-status-scope: replica` asks a replica
//! about itself.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Notify;

use crate::reporter::Reporter;
use gitwarden_agent::leader_status::{self, LeaderStatus};
use gitwarden_agent::status::Role;
use gitwarden_shared::names;

/// How /hook requests are authenticated.
#[derive(Clone, Default)]
pub struct HookAuth {
    /// HMAC-SHA256 secret of `X-Hub-Signature-256` (GitHub, Gitea, GitLab's compatible mode).
    pub secret: Option<Arc<[u8]>>,
    /// A shared bearer token (`Authorization: Bearer …`).
    pub token: Option<Arc<[u8]>>,
}

/// What the routes share.
#[derive(Clone)]
pub struct ServerState {
    /// Status and metrics.
    pub reporter: Arc<Reporter>,
    /// Wakes the sync loop.
    pub trigger: Arc<Notify>,
    /// Hook authentication.
    pub hook: HookAuth,
    /// Who may read /status: `None` anyone, otherwise callers whose own
    /// Kubernetes token RBAC allows `get` on the non-resource URL /status.
    pub status_auth: Option<gitwarden_runtime::access::Reviewer>,
    /// Asks the leader when this replica is a standby (`None` without
    /// leader election: this replica always leads).
    pub leader: Option<Arc<LeaderStatus>>,
    /// This replica's name (its pod), for `x-gitwarden-answered-by`.
    pub replica: Arc<str>,
}

/// The router.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/hook", post(hook))
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
        .with_state(state)
}

async fn status(State(s): State<ServerState>, headers: HeaderMap) -> Response {
    if let Some(reviewer) = &s.status_auth
        && let Err(refusal) = reviewer.check(&headers, "get", "/status", "status").await
    {
        tracing::info!(status = refusal.status().as_u16(), error = %refusal, "status request refused");
        return refusal.into_response();
    }
    let own = s.reporter.status();
    let replica = header_value(&s.replica);
    let forward = own.role == Role::Standby && !leader_status::replica_scope(&headers);
    let unreachable = match (&s.leader, forward) {
        (Some(leader), true) => match leader.ask(&own.leader_election, &headers).await {
            Ok(answer) => {
                let mut response = (answer.status, answer.body).into_response();
                let out = response.headers_mut();
                out.extend(answer.headers);
                out.insert(names::STATUS_ANSWERED_BY_HEADER, header_value(&answer.pod));
                out.insert(names::STATUS_FORWARDED_BY_HEADER, replica);
                return response;
            }
            Err(why) => {
                tracing::warn!(reason = %why,
                    "a standby answers /status with its own status: the leader could not be reached");
                Some(why.header_value())
            }
        },
        _ => None,
    };
    let mut response = axum::Json(own).into_response();
    let out = response.headers_mut();
    out.insert(names::STATUS_ANSWERED_BY_HEADER, replica);
    if let Some(why) = unreachable {
        out.insert(names::STATUS_LEADER_UNREACHABLE_HEADER, why);
    }
    response
}

/// A name as a header value (`?` when it holds what a header cannot).
fn header_value(name: &str) -> HeaderValue {
    HeaderValue::from_str(name).unwrap_or_else(|_| HeaderValue::from_static("?"))
}

/// Ready once the first sync succeeded, or while standing by for leadership.
async fn readyz(State(s): State<ServerState>) -> Response {
    let status = s.reporter.status();
    let ready = status.role == Role::Standby || status.last_success.is_some();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        axum::Json(
            serde_json::json!({ "ready": ready, "role": status.role, "error": status.error }),
        ),
    )
        .into_response()
}

async fn metrics(State(s): State<ServerState>) -> Response {
    gitwarden_runtime::metrics::render(&s.reporter.registry)
}

async fn hook(State(s): State<ServerState>, headers: HeaderMap, body: Bytes) -> Response {
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    let bearer = gitwarden_runtime::bearer::from_headers(&headers);
    let by_signature = matches!((&s.hook.secret, signature), (Some(secret), Some(sig)) if gitwarden_source::verify_hub_signature(secret, &body, sig));
    let by_token = matches!((&s.hook.token, bearer), (Some(token), Some(given)) if std::str::from_utf8(token).is_ok_and(|token| gitwarden_runtime::bearer::matches(given, token.trim())));
    if s.hook.secret.is_none() && s.hook.token.is_none() {
        return (
            StatusCode::NOT_FOUND,
            "the push hook is disabled (no --hook-secret-file or --hook-token-file)",
        )
            .into_response();
    }
    if !(by_signature || by_token) {
        tracing::warn!("rejected a push notification with a missing or wrong signature");
        return (
            StatusCode::UNAUTHORIZED,
            "bad or missing X-Hub-Signature-256 / bearer token",
        )
            .into_response();
    }
    tracing::info!("push notification: fetching now");
    s.trigger.notify_one();
    (StatusCode::ACCEPTED, "sync triggered").into_response()
}
