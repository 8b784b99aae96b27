//! `/validate` and `/mutate`: one AdmissionReview in, one decision out.
//!
//! Both endpoints run the same pure decision (`gitwarden_shared::decision`), so
//! they can never disagree. `/mutate` only stamps the break-glass annotations and
//! never refuses; `/validate` refuses, and records every refusal and every
//! break-glass change in the audit log *before* it answers. If the record cannot
//! be made durable, the request is refused: nothing is allowed unaudited.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use gitwarden_shared::audit::{AuditDecision, AuditEvent};
use gitwarden_shared::decision::{Decision, decide, mutation_patch};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use tracing::Instrument;

use crate::audit::AuditLog;
use crate::metrics::{DecisionLabels, EndpointLabels, WebhookMetrics};
use crate::policy_store::PolicyStore;

/// What the admission handlers share.
#[derive(Clone)]
pub struct ReviewState {
    /// The policy in force.
    pub policy: Arc<PolicyStore>,
    /// Where denials and break-glass changes are recorded.
    pub audit: AuditLog,
    /// Counters and histograms.
    pub metrics: Arc<WebhookMetrics>,
}

/// Which endpoint is answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The validating webhook: decides and audits.
    Validate,
    /// The mutating webhook: stamps break-glass windows.
    Mutate,
}

impl Endpoint {
    fn label(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        }
    }
}

/// Why a body is not an AdmissionReview we can answer.
fn parse(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, String> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|e| format!("body is not an AdmissionReview: {e}"))?;
    review
        .try_into()
        .map_err(|_| "AdmissionReview has no request".to_string())
}

/// POST /validate
pub async fn validate(State(state): State<ReviewState>, body: Bytes) -> Response {
    handle(state, Endpoint::Validate, body).await
}

/// POST /mutate
pub async fn mutate(State(state): State<ReviewState>, body: Bytes) -> Response {
    handle(state, Endpoint::Mutate, body).await
}

async fn handle(state: ReviewState, endpoint: Endpoint, body: Bytes) -> Response {
    let started = Instant::now();
    let labels = EndpointLabels {
        endpoint: endpoint.label(),
    };
    let request = match parse(&body) {
        Ok(r) => r,
        Err(why) => {
            tracing::warn!(endpoint = endpoint.label(), bytes = body.len(), error = %why, "rejected a malformed admission request");
            state.metrics.bad_requests.get_or_create(&labels).inc();
            return (StatusCode::BAD_REQUEST, why).into_response();
        }
    };
    let span = tracing::info_span!(
        "admission",
        endpoint = endpoint.label(),
        uid = %request.uid,
        user = %request.user_info.username.as_deref().unwrap_or_default(),
        operation = ?request.operation,
        resource = %request.resource.resource,
        subresource = request.sub_resource.as_deref().unwrap_or_default(),
        namespace = request.namespace.as_deref().unwrap_or_default(),
        name = %request.name,
    );
    let response = answer(&state, endpoint, &request).instrument(span).await;
    state
        .metrics
        .latency
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn answer(
    state: &ReviewState,
    endpoint: Endpoint,
    request: &AdmissionRequest<DynamicObject>,
) -> Response {
    let policy = state.policy.get();
    let decision = decide(&policy, request, jiff::Timestamp::now());
    let mut response = AdmissionResponse::from(request);
    let mut patch = None;
    let verdict;
    match endpoint {
        Endpoint::Mutate => {
            // Never refuse here: /validate refuses and audits, exactly once.
            verdict = "allow";
            if let Some(object) = request.object.as_ref() {
                patch = mutation_patch(&decision, object);
            }
        }
        Endpoint::Validate => {
            let audit_id = if decision.audit {
                match state.audit.append(audit_event(request, &decision)).await {
                    Ok(record) => Some(record.id),
                    Err(e) => {
                        tracing::error!(error = %e, "audit record could not be made durable; refusing the request");
                        let message = format!(
                            "gitwarden could not record this request in its audit log ({e}); it is refused until the audit log works again"
                        );
                        let response = deny(response, message);
                        count(state, endpoint, "deny", "audit_unavailable");
                        return review_json(response, None);
                    }
                }
            } else {
                None
            };
            if decision.is_allowed() {
                verdict = "allow";
                if !decision.warnings.is_empty() {
                    response.warnings = Some(decision.warnings.clone());
                }
                if decision.break_glass.is_some() {
                    tracing::warn!(
                        reason = decision.reason.code(),
                        audit_id = audit_id.as_deref().unwrap_or_default(),
                        "break-glass change allowed"
                    );
                }
            } else {
                verdict = "deny";
                let message = match &audit_id {
                    Some(id) => decision.message_with_audit_id(id),
                    None => decision.message.clone(),
                };
                // The audit writer already logs every record at info.
                tracing::debug!(
                    reason = decision.reason.code(),
                    audit_id = audit_id.as_deref().unwrap_or_default(),
                    "denied"
                );
                response = deny(response, message);
            }
        }
    }
    count(state, endpoint, verdict, decision.reason.code());
    review_json(response, patch)
}

fn count(state: &ReviewState, endpoint: Endpoint, decision: &'static str, reason: &'static str) {
    state
        .metrics
        .requests
        .get_or_create(&DecisionLabels {
            endpoint: endpoint.label(),
            decision,
            reason,
        })
        .inc();
}

fn deny(response: AdmissionResponse, message: String) -> AdmissionResponse {
    let mut response = response.deny(message);
    response.result.code = 403;
    response.result.reason = "Forbidden".into();
    response
}

/// Serialises the review. kube-core encodes `patch` as a JSON array of bytes;
/// the API server expects Go's `[]byte` form, a base64 string, so it is set here.
fn review_json(response: AdmissionResponse, patch: Option<json_patch::Patch>) -> Response {
    let review = response.into_review();
    let Some(patch) = patch.filter(|p| !p.0.is_empty()) else {
        // The common path: serialise once, straight to the body.
        return axum::Json(review).into_response();
    };
    let mut value = match serde_json::to_value(&review) {
        Ok(v) => v,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("serialising AdmissionReview: {e}"),
            )
                .into_response();
        }
    };
    let bytes = match serde_json::to_vec(&patch) {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("serialising patch: {e}"),
            )
                .into_response();
        }
    };
    value["response"]["patch"] =
        serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    value["response"]["patchType"] = serde_json::Value::String("JSONPatch".into());
    axum::Json(value).into_response()
}

/// The audit event for a request and its decision.
fn audit_event(request: &AdmissionRequest<DynamicObject>, decision: &Decision) -> AuditEvent {
    let kind = if decision.is_allowed() {
        AuditDecision::BreakGlass
    } else {
        AuditDecision::Denied
    };
    let mut event = AuditEvent::from_request(
        request,
        kind,
        decision.reason.code(),
        decision.message.clone(),
    );
    if event.name.is_none() {
        // A generateName create: record the prefix the user asked for.
        event.name = request
            .object
            .as_ref()
            .and_then(|o| o.metadata.generate_name.clone());
    }
    if let Some(grant) = &decision.break_glass {
        event.break_glass_reason = Some(grant.reason.clone());
        event.break_glass_until = Some(grant.until);
    }
    event
}
