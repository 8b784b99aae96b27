//! Bytes → the webhook's AdmissionReview decoding → the decision → the
//! response and patch, for both endpoints, exactly as the server runs them
//! (`gitwarden_webhook::review::answer_offline`), minus the audit log.
//!
//! Beyond "no panic", it checks what must hold for every input:
//! - whatever kube's full decoder accepts, the webhook's lean decoder accepts
//!   too (except a duplicated field, which it refuses on purpose), and the
//!   decision is the same (skipping spec and status must never change a
//!   verdict);
//! - the answer is a JSON AdmissionReview for the request's uid; `/mutate`
//!   always allows; `/validate` allows exactly what the decision allows and
//!   names the audit record when it refuses;
//! - a `/mutate` patch is base64 JSON Patch that applies to the object.

#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use gitwarden_shared::decision::decide;
use gitwarden_shared::policy::Policy;
use gitwarden_webhook::review::{Endpoint, answer_offline, parse};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const AUDIT_ID: &str = "fuzz-audit-id";

static POLICY: LazyLock<Policy> = LazyLock::new(Policy::default);
static NOW: LazyLock<jiff::Timestamp> = LazyLock::new(|| {
    "2026-11-23T06:00:00Z"
        .parse()
        .expect("a valid fixed timestamp")
});

fn full_decode(data: &[u8]) -> Option<AdmissionRequest<DynamicObject>> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(data).ok()?;
    review.try_into().ok()
}

fuzz_target!(|data: &[u8]| {
    let lean = parse(data);
    if let Some(full) = full_decode(data) {
        let lean = match &lean {
            Ok(lean) => lean,
            // Refusing a duplicated field is deliberate (see
            // gitwarden_webhook::decode): two parsers that pick different
            // copies are a classic way around an admission check.
            Err(e) if gitwarden_runtime::errors::chain(e).contains("duplicate field") => return,
            Err(e) => panic!("kube decodes this review but the webhook refuses it: {e}"),
        };
        assert_eq!(
            decide(&POLICY, lean, *NOW),
            decide(&POLICY, &full, *NOW),
            "the lean decoder changed the decision"
        );
    }
    let Ok(request) = lean else { return };
    for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
        let (decision, body) = answer_offline(&POLICY, endpoint, data, *NOW, Some(AUDIT_ID))
            .expect("a decoded request always gets an encoded answer");
        let review: Value = serde_json::from_slice(&body).expect("the answer is JSON");
        let response = &review["response"];
        assert_eq!(response["uid"].as_str(), Some(request.uid.as_str()));
        let allowed = response["allowed"].as_bool().expect("allowed is a bool");
        match endpoint {
            Endpoint::Mutate => assert!(allowed, "/mutate refused"),
            Endpoint::Validate => {
                assert_eq!(allowed, decision.is_allowed());
                if !allowed {
                    let message = response["status"]["message"].as_str().unwrap_or_default();
                    assert!(message.contains(AUDIT_ID), "denial without audit id: {message}");
                    assert!(decision.audit, "an unaudited denial");
                }
            }
        }
        if let Some(patch) = response.get("patch") {
            assert_eq!(endpoint, Endpoint::Mutate, "/validate returned a patch");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(patch.as_str().expect("patch is a string"))
                .expect("patch is base64");
            let patch: json_patch::Patch =
                serde_json::from_slice(&bytes).expect("patch is a JSON Patch");
            let object = request.object.as_ref().expect("a patch needs an object");
            let mut target = serde_json::json!({ "metadata": {
                "labels": object.metadata.labels,
                "annotations": object.metadata.annotations,
            }});
            if object.metadata.labels.is_none() {
                target["metadata"].as_object_mut().map(|m| m.remove("labels"));
            }
            if object.metadata.annotations.is_none() {
                target["metadata"].as_object_mut().map(|m| m.remove("annotations"));
            }
            json_patch::patch(&mut target, &patch).expect("the patch applies to the object");
        }
    }
});
