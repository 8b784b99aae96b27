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
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use gitwarden_shared::audit::{AuditDecision, AuditEvent};
use gitwarden_shared::decision::{Decision, decide, mutation_patch};
use gitwarden_shared::policy::Policy;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse};
use tracing::Instrument;

use crate::audit::AuditLog;
use crate::decode::{self, DecodeError};
use crate::metrics::{DecisionLabels, EndpointLabels, WebhookMetrics};
use crate::policy_store::PolicyStore;
use crate::sources::SourceIndex;

/// What the admission handlers share.
#[derive(Clone)]
pub struct ReviewState {
    /// The policy in force.
    pub policy: Arc<PolicyStore>,
    /// Where denials and break-glass changes are recorded.
    pub audit: AuditLog,
    /// Counters and histograms.
    pub metrics: Arc<WebhookMetrics>,
    /// Where objects are written in git (the agent's inventory), when the
    /// webhook can read the cluster.
    pub sources: Option<SourceIndex>,
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
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        }
    }
}

/// Decodes a request body (see [`crate::decode`]: only what the decision
/// reads is kept).
pub fn parse(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, DecodeError> {
    decode::admission_request(body)
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
            tracing::warn!(
                endpoint = endpoint.label(),
                bytes = body.len(),
                error = gitwarden_runtime::errors::chain(&why),
                "rejected a malformed admission request"
            );
            state.metrics.bad_requests.get_or_create(&labels).inc();
            return (
                StatusCode::BAD_REQUEST,
                gitwarden_runtime::errors::chain(&why),
            )
                .into_response();
        }
    };
    let policy = state.policy.get();
    let mut decision = decide(&policy, &request, jiff::Timestamp::now());
    // Only a refusal of (or break-glass on) an object from git looks up
    // where it is written: never the allow path.
    if endpoint == Endpoint::Validate
        && decision.wants_source()
        && let Some(sources) = &state.sources
        && let Some(source) = sources.source_of(&request).await
    {
        decision = decision.locate(&policy, &request, source);
    }
    let response = if decision.audit {
        // Denials and break-glass: rare, audited, logged with every field.
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
        answer(&state, endpoint, &request, &decision)
            .instrument(span)
            .await
    } else {
        // The allow path, thousands a second: a span only when debugging,
        // so that an info-level subscriber formats nothing per request.
        let span = tracing::debug_span!(
            "admission",
            endpoint = endpoint.label(),
            uid = %request.uid,
            reason = decision.reason.code(),
        );
        answer(&state, endpoint, &request, &decision)
            .instrument(span)
            .await
    };
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
    decision: &Decision,
) -> Response {
    let audit_id = if endpoint == Endpoint::Validate && decision.audit {
        match state.audit.append(audit_event(request, decision)).await {
            Ok(record) => Some(record.id),
            Err(e) => {
                let e = gitwarden_runtime::errors::chain(&e);
                tracing::error!(error = %e, "audit record could not be made durable; refusing the request");
                let message = format!(
                    "gitwarden could not record this request in its audit log ({e}); it is refused until the audit log works again"
                );
                let response = deny(AdmissionResponse::from(request), message);
                count(state, endpoint, "deny", "audit_unavailable");
                return json_response(encode_review(response, None));
            }
        }
    } else {
        None
    };
    if endpoint == Endpoint::Validate {
        let audit_id = audit_id.as_deref().unwrap_or_default();
        if !decision.is_allowed() {
            // The audit writer already logs every record at info.
            tracing::debug!(reason = decision.reason.code(), audit_id, "denied");
        } else if decision.break_glass.is_some() {
            tracing::warn!(
                reason = decision.reason.code(),
                audit_id,
                "break-glass change allowed"
            );
        }
    }
    let answer = respond(endpoint, request, decision, audit_id.as_deref());
    count(state, endpoint, answer.verdict, decision.reason.code());
    json_response(answer.body)
}

/// A decided answer, ready to send.
#[derive(Debug)]
pub struct Answer {
    /// `allow` or `deny`, for metrics.
    pub verdict: &'static str,
    /// The AdmissionReview response body (JSON), or why it could not be
    /// encoded.
    pub body: Result<Vec<u8>, serde_json::Error>,
}

/// Builds the response to `request` for `decision`: the pure part of both
/// endpoints, with no I/O, so that tests and the fuzzer run exactly what
/// the server runs.
///
/// `/mutate` never refuses and returns the break-glass stamping patch, if
/// any; `/validate` refuses denials with the decision's message, naming
/// `audit_id` when the denial was recorded, and passes warnings on.
pub fn respond(
    endpoint: Endpoint,
    request: &AdmissionRequest<DynamicObject>,
    decision: &Decision,
    audit_id: Option<&str>,
) -> Answer {
    let mut response = AdmissionResponse::from(request);
    match endpoint {
        Endpoint::Mutate => {
            // Never refuse here: /validate refuses and audits, exactly once.
            let patch = request.object.as_ref().and_then(|object| {
                let creates = request.operation == kube::core::admission::Operation::Create;
                mutation_patch(decision, object, creates)
            });
            Answer {
                verdict: "allow",
                body: encode_review(response, patch),
            }
        }
        Endpoint::Validate if decision.is_allowed() => {
            if !decision.warnings.is_empty() {
                response.warnings = Some(decision.warnings.clone());
            }
            Answer {
                verdict: "allow",
                body: encode_review(response, None),
            }
        }
        Endpoint::Validate => {
            let message = match audit_id {
                Some(id) => decision.message_with_audit_id(id),
                None => decision.message.clone(),
            };
            Answer {
                verdict: "deny",
                body: encode_review(deny(response, message), None),
            }
        }
    }
}

/// Decode, decide and respond without an audit log: what `endpoint` would
/// answer to `body` under `policy` at `now`, with `audit_id` standing in for
/// the id of the record `/validate` would write. Used by the fuzzer.
pub fn answer_offline(
    policy: &Policy,
    endpoint: Endpoint,
    body: &[u8],
    now: jiff::Timestamp,
    audit_id: Option<&str>,
) -> Result<(Decision, Vec<u8>), String> {
    let request = parse(body).map_err(|e| gitwarden_runtime::errors::chain(&e))?;
    let decision = decide(policy, &request, now);
    let answer = respond(endpoint, &request, &decision, audit_id);
    let body = answer
        .body
        .map_err(|e| format!("encoding the response: {e}"))?;
    Ok((decision, body))
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
fn encode_review(
    response: AdmissionResponse,
    patch: Option<json_patch::Patch>,
) -> Result<Vec<u8>, serde_json::Error> {
    let review = response.into_review();
    let Some(patch) = patch.filter(|p| !p.0.is_empty()) else {
        // The common path: serialise once, straight to bytes.
        return serde_json::to_vec(&review);
    };
    let mut value = serde_json::to_value(&review)?;
    let bytes = serde_json::to_vec(&patch)?;
    value["response"]["patch"] =
        serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    value["response"]["patchType"] = serde_json::Value::String("JSONPatch".into());
    serde_json::to_vec(&value)
}

/// The HTTP response for an encoded review.
fn json_response(body: Result<Vec<u8>, serde_json::Error>) -> Response {
    match body {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("serialising AdmissionReview: {e}"),
        )
            .into_response(),
    }
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
        event.break_glass_window = Some(grant.window);
    }
    event.with_source(decision.source.clone())
}
