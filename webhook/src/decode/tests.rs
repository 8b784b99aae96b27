//! The lean decoder against kube's full decoder: the same request, as far as
//! the decision can tell, and the same decision.

#![allow(clippy::unwrap_used)]

use gitwarden_shared::decision::decide;
use gitwarden_shared::policy::Policy;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use serde_json::{Value, json};

use super::{DecodeError, admission_request};

fn full(body: &[u8]) -> AdmissionRequest<DynamicObject> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).unwrap();
    review.try_into().unwrap()
}

fn deployment(labels: Value, annotations: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "shop", "uid": "6b1c", "resourceVersion": "42",
            "labels": labels, "annotations": annotations,
            "managedFields": [{ "manager": "kubectl", "operation": "Update",
                "fieldsType": "FieldsV1", "fieldsV1": { "f:spec": { "f:replicas": {} } } }]
        },
        "spec": { "replicas": 3, "template": { "spec": { "containers": [{ "name": "main", "image": "x:1" }] } } },
        "status": { "readyReplicas": 3 }
    })
}

fn review(operation: &str, user: &str, groups: &[&str], object: Value, old: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": { "group": "apps", "version": "v1", "kind": "Deployment" },
            "resource": { "group": "apps", "version": "v1", "resource": "deployments" },
            "subResource": "",
            "requestKind": { "group": "apps", "version": "v1", "kind": "Deployment" },
            "requestResource": { "group": "apps", "version": "v1", "resource": "deployments" },
            "name": "web", "namespace": "shop", "operation": operation,
            "userInfo": { "username": user, "uid": "77", "groups": groups,
                "extra": { "authentication.kubernetes.io/pod-name": ["p"] } },
            "object": object, "oldObject": old, "dryRun": false,
            "options": { "apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions", "fieldManager": "kubectl" }
        }
    }))
    .unwrap()
}

/// Everything of a request that the decision, the audit record or the
/// response reads.
fn decision_view(r: &AdmissionRequest<DynamicObject>) -> Value {
    let meta = |o: &Option<DynamicObject>| {
        o.as_ref().map(|o| {
            json!({
                "name": o.metadata.name, "generateName": o.metadata.generate_name,
                "namespace": o.metadata.namespace,
                "labels": o.metadata.labels, "annotations": o.metadata.annotations,
            })
        })
    };
    json!({
        "types": [&r.types.api_version, &r.types.kind],
        "uid": r.uid, "kind": r.kind, "resource": r.resource, "sub": r.sub_resource,
        "requestKind": r.request_kind, "requestResource": r.request_resource,
        "requestSub": r.request_sub_resource,
        "name": r.name, "namespace": r.namespace, "operation": r.operation,
        "user": r.user_info, "dryRun": r.dry_run,
        "object": meta(&r.object), "oldObject": meta(&r.old_object),
    })
}

fn samples() -> Vec<Vec<u8>> {
    let managed = json!({ "app.kubernetes.io/managed-by": "gitwarden", "app": "web" });
    let glass = json!({ "gitwarden.io/break-glass": "INC-7 outage", "gitwarden.io/break-glass-ttl": "30m" });
    vec![
        review(
            "UPDATE",
            "alice",
            &["developers"],
            deployment(managed.clone(), json!({})),
            deployment(managed.clone(), json!({})),
        ),
        review(
            "UPDATE",
            "oncall",
            &["gitwarden:break-glass"],
            deployment(managed.clone(), glass.clone()),
            deployment(managed.clone(), json!({})),
        ),
        review(
            "DELETE",
            "oncall",
            &["gitwarden:break-glass"],
            Value::Null,
            deployment(managed.clone(), glass),
        ),
        review(
            "CREATE",
            "system:serviceaccount:kube-system:deployment-controller",
            &["system:serviceaccounts"],
            deployment(Value::Null, Value::Null),
            Value::Null,
        ),
        review(
            "CREATE",
            "alice",
            &[],
            json!({ "metadata": { "generateName": "web-" } }),
            Value::Null,
        ),
        // The side-door rules read the pod template, a Secret's type and a
        // binding's subjects: the lean decoder must keep them.
        review(
            "CREATE",
            "alice",
            &[],
            deployment(Value::Null, Value::Null).pipe_spec(json!({
                "template": {"spec": {"serviceAccountName": "gitwarden-agent", "hostPID": true}}
            })),
            Value::Null,
        ),
    ]
}

trait PipeSpec {
    fn pipe_spec(self, spec: Value) -> Value;
}

impl PipeSpec for Value {
    fn pipe_spec(mut self, spec: Value) -> Value {
        self["spec"] = spec;
        self
    }
}

#[test]
fn the_lean_decoder_keeps_every_field_the_decision_reads() {
    for body in samples() {
        let lean = admission_request(&body).unwrap();
        assert_eq!(decision_view(&lean), decision_view(&full(&body)));
    }
}

#[test]
fn the_lean_decoder_leads_to_the_same_decision_as_the_full_one() {
    let policy = Policy::default();
    let now = "2026-11-23T06:00:00Z".parse().unwrap();
    for body in samples() {
        let lean = decide(&policy, &admission_request(&body).unwrap(), now);
        assert_eq!(lean, decide(&policy, &full(&body), now));
    }
}

#[test]
fn status_and_managed_fields_are_dropped_but_the_spec_is_kept() {
    let body = &samples()[0];
    let request = admission_request(body).unwrap();
    let object = request.object.unwrap();
    let full_object = full(body).object.unwrap();
    assert_eq!(object.data.get("spec"), full_object.data.get("spec"));
    assert!(object.data.get("status").is_none());
    assert!(object.metadata.managed_fields.is_none());
    assert!(request.options.is_none());
}

#[test]
fn a_token_secrets_type_and_a_bindings_subjects_are_kept() {
    for (field, value) in [
        ("type", json!("kubernetes.io/service-account-token")),
        (
            "subjects",
            json!([{"kind": "ServiceAccount", "name": "a", "namespace": "b"}]),
        ),
    ] {
        let mut object = json!({ "metadata": { "name": "x" } });
        object[field] = value.clone();
        let body = review("CREATE", "alice", &[], object, Value::Null);
        let request = admission_request(&body).unwrap();
        assert_eq!(
            request.object.unwrap().data.get(field),
            Some(&value),
            "{field}"
        );
    }
}

#[test]
fn a_review_without_a_request_is_refused() {
    let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#;
    assert!(matches!(
        admission_request(body),
        Err(DecodeError::NoRequest)
    ));
}

#[test]
fn malformed_bodies_are_refused_not_panicked_on() {
    let bodies: [&[u8]; 6] = [
        b"",
        b"not json",
        b"{\"request\": {\"uid\": 7}}",
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x""#,
        // Skipped parts must still be well-formed JSON.
        br#"{"apiVersion":"v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"group":"","version":"v1","kind":"ConfigMap"},"resource":{"group":"","version":"v1","resource":"configmaps"},"operation":"CREATE","userInfo":{},"object":{"spec":[1,}}}"#,
        &[0xff; 64],
    ];
    for body in bodies {
        assert!(
            matches!(admission_request(body), Err(DecodeError::Malformed(_))),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn deeply_nested_skipped_content_is_refused_without_overflowing_the_stack() {
    let mut body = String::from(
        r#"{"apiVersion":"v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"group":"","version":"v1","kind":"ConfigMap"},"resource":{"group":"","version":"v1","resource":"configmaps"},"operation":"CREATE","userInfo":{},"object":{"spec":"#,
    );
    body.push_str(&"[".repeat(100_000));
    assert!(admission_request(body.as_bytes()).is_err());
}

#[test]
fn a_field_given_twice_is_refused_rather_than_resolved() {
    // Found by fuzzing: kube's decoder keeps the last `annotations`; a
    // webhook that kept the first would decide on different metadata than
    // the API server stores.
    let body = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"group":"apps","version":"v1","kind":"Deployment"},"resource":{"group":"apps","version":"v1","resource":"deployments"},"operation":"UPDATE","userInfo":{"username":"carol"},"object":{"metadata":{"name":"web","annotations":{"gitwarden.io/break-glass":"x"},"annotations":{}}}}}"#;
    let error = gitwarden_runtime::errors::chain(&admission_request(body).unwrap_err());
    assert!(error.contains("duplicate field `annotations`"), "{error}");
}
