//! The decision table, one behaviour per test. Requests are built as the API
//! server sends them (AdmissionReview JSON) by [`Req`].

#![allow(clippy::unwrap_used)]

mod break_glass;
mod order;
mod patch;
mod side_doors;

use jiff::Timestamp;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use serde_json::{Value, json};

use super::{Decision, decide};
use crate::policy::Policy;

/// The fixed "now" of every test.
const NOW: &str = "2026-11-23T06:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

/// `now` plus `seconds` (negative for the past), as an RFC 3339 string.
fn at(seconds: i64) -> String {
    now()
        .checked_add(jiff::SignedDuration::from_secs(seconds))
        .unwrap()
        .to_string()
}

const HOUR: i64 = 3600;

/// A plain authenticated user.
const ALICE: (&str, &[&str]) = ("alice", &["system:authenticated"]);
/// A cluster-admin.
const ADMIN: (&str, &[&str]) = ("admin", &["system:masters", "system:authenticated"]);
/// A member of the default break-glass group.
const ONCALL: (&str, &[&str]) = ("oncall", &["gitwarden:break-glass", "system:authenticated"]);
/// A kubelet.
const NODE: (&str, &[&str]) = ("system:node:n1", &["system:nodes", "system:authenticated"]);
/// A workload's own service account (an operator in a protected namespace).
const WORKLOAD: (&str, &[&str]) = (
    "system:serviceaccount:shop:operator",
    &["system:serviceaccounts", "system:serviceaccounts:shop"],
);
const AGENT: (&str, &[&str]) = (
    "system:serviceaccount:gitwarden-system:gitwarden-agent",
    &[
        "system:serviceaccounts",
        "system:serviceaccounts:gitwarden-system",
    ],
);

/// An admission request under construction. Defaults: `apps/v1
/// deployments` "web" in namespace "shop" by [`ALICE`], with an object for
/// CREATE/UPDATE and an old object for UPDATE/DELETE.
struct Req {
    request: Value,
}

impl Req {
    fn new(operation: &str) -> Self {
        let mut req = Self {
            request: json!({
                "uid": "req-1",
                "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "name": "web",
                "namespace": "shop",
                "operation": operation,
                "userInfo": {},
                "object": null,
                "oldObject": null,
                "dryRun": false
            }),
        };
        if operation == "CREATE" || operation == "UPDATE" {
            req = req.object(object());
        }
        if operation == "UPDATE" || operation == "DELETE" {
            req = req.old(object());
        }
        req.user(ALICE)
    }

    fn create() -> Self {
        Self::new("CREATE")
    }

    fn update() -> Self {
        Self::new("UPDATE")
    }

    fn delete() -> Self {
        Self::new("DELETE")
    }

    fn set(mut self, key: &str, value: Value) -> Self {
        self.request[key] = value;
        self
    }

    /// The resource (and kind) the request is for.
    fn resource(self, group: &str, resource: &str, kind: &str) -> Self {
        self.set(
            "resource",
            json!({"group": group, "version": "v1", "resource": resource}),
        )
        .set(
            "kind",
            json!({"group": group, "version": "v1", "kind": kind}),
        )
    }

    fn sub(self, subresource: &str) -> Self {
        self.set("subResource", json!(subresource))
    }

    fn ns(self, namespace: &str) -> Self {
        self.set("namespace", json!(namespace))
    }

    fn cluster_scoped(mut self) -> Self {
        if let Some(map) = self.request.as_object_mut() {
            map.remove("namespace");
        }
        self
    }

    fn name(self, name: &str) -> Self {
        self.set("name", json!(name))
    }

    fn user(self, (username, groups): (&str, &[&str])) -> Self {
        self.set(
            "userInfo",
            json!({"username": username, "uid": "u-1", "groups": groups}),
        )
    }

    fn dry_run(self) -> Self {
        self.set("dryRun", json!(true))
    }

    fn object(self, object: Value) -> Self {
        self.set("object", object)
    }

    fn old(self, object: Value) -> Self {
        self.set("oldObject", object)
    }

    fn no_old(self) -> Self {
        self.set("oldObject", Value::Null)
    }

    fn build(self) -> AdmissionRequest<DynamicObject> {
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": self.request,
        }))
        .unwrap();
        review.try_into().unwrap()
    }

    fn decide_with(self, policy: &Policy) -> Decision {
        decide(policy, &self.build(), now())
    }

    fn decide(self) -> Decision {
        self.decide_with(&Policy::default())
    }
}

/// A Deployment "web" in "shop" with no labels or annotations.
fn object() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"replicas": 1}
    })
}

/// [`object`] with these annotations.
fn annotated(annotations: &[(&str, &str)]) -> Value {
    let mut o = object();
    o["metadata"]["annotations"] = annotations
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    o
}

/// [`object`] with these labels.
fn labelled(labels: &[(&str, &str)]) -> Value {
    let mut o = object();
    o["metadata"]["labels"] = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    o
}

fn policy(yaml: &str) -> Policy {
    Policy::from_yaml(yaml).unwrap()
}
