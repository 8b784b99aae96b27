//! AdmissionReview requests as the API server sends them, built in one place
//! for the tests and benchmarks that talk to the webhook's HTTPS port
//! directly (hostile clients, certificate rotation, load).

use serde_json::{Value, json};

/// What the request does, as the API server spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A new object.
    Create,
    /// A change to an existing object.
    Update,
    /// A deletion.
    Delete,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// An `admission.k8s.io/v1` AdmissionReview about one object. The kind,
/// namespace and name come from the object; the resource is its kind in
/// lower case plus `s` unless set.
#[derive(Debug, Clone)]
pub struct AdmissionReview {
    operation: Operation,
    object: Value,
    old_object: Option<Value>,
    resource: Option<String>,
    uid: String,
    user: String,
    groups: Vec<String>,
    dry_run: bool,
}

impl AdmissionReview {
    /// `operation` of `object` by `alice` (an authenticated human), not a dry run.
    pub fn new(operation: Operation, object: Value) -> Self {
        AdmissionReview {
            operation,
            old_object: (operation == Operation::Update).then(|| object.clone()),
            object,
            resource: None,
            uid: "review".to_string(),
            user: "alice".to_string(),
            groups: vec!["system:authenticated".to_string()],
            dry_run: false,
        }
    }

    /// An UPDATE that leaves `object` as it was (old = new).
    pub fn update(object: Value) -> Self {
        Self::new(Operation::Update, object)
    }

    /// A CREATE of `object`.
    pub fn create(object: Value) -> Self {
        Self::new(Operation::Create, object)
    }

    /// Sent by `user` with `groups`.
    pub fn by(mut self, user: &str, groups: &[&str]) -> Self {
        self.user = user.to_string();
        self.groups = groups.iter().map(|g| g.to_string()).collect();
        self
    }

    /// The request's uid (echoed in the response).
    pub fn uid(mut self, uid: impl Into<String>) -> Self {
        self.uid = uid.into();
        self
    }

    /// The object before the change.
    pub fn old(mut self, old: Value) -> Self {
        self.old_object = Some(old);
        self
    }

    /// A dry run (`kubectl --dry-run=server`, `kubectl diff`).
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// The plural resource name, where lower case plus `s` is wrong.
    pub fn resource(mut self, resource: &str) -> Self {
        self.resource = Some(resource.to_string());
        self
    }

    /// The review as JSON.
    pub fn to_json(&self) -> Value {
        let (group, version) = match self.object["apiVersion"].as_str().unwrap_or("v1") {
            api if api.contains('/') => api.split_once('/').unwrap_or(("", api)),
            version => ("", version),
        };
        let kind = self.object["kind"].as_str().unwrap_or_default();
        let resource = self
            .resource
            .clone()
            .unwrap_or_else(|| format!("{}s", kind.to_lowercase()));
        let mut request = json!({
            "uid": self.uid,
            "kind": { "group": group, "version": version, "kind": kind },
            "resource": { "group": group, "version": version, "resource": resource },
            "name": self.object["metadata"]["name"],
            "operation": self.operation.as_str(),
            "userInfo": { "username": self.user, "groups": self.groups },
            "object": self.object,
            "dryRun": self.dry_run,
        });
        if let Some(namespace) = self.object["metadata"]["namespace"].as_str() {
            request["namespace"] = json!(namespace);
        }
        if let Some(old) = &self.old_object {
            request["oldObject"] = old.clone();
        }
        json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request })
    }

    /// The review as the body of a POST.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_json()).unwrap_or_default()
    }
}

/// A Deployment gitwarden manages (labelled so), with `replicas`: a human's
/// UPDATE of it is denied and audited, a controller's is allowed.
pub fn managed_deployment(namespace: &str, name: &str, replicas: u32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name, "namespace": namespace,
            "labels": { "app.kubernetes.io/managed-by": "gitwarden" } },
        "spec": { "replicas": replicas }
    })
}

/// The answer a webhook gives to the request `uid`: allowed, or refused
/// with 403 and `denial` as the message the user sees.
pub fn response(uid: &str, denial: Option<&str>) -> Value {
    let mut response = json!({ "uid": uid, "allowed": denial.is_none() });
    if let Some(message) = denial {
        response["status"] = json!({ "code": 403, "message": message });
    }
    json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_names_the_object_its_kind_and_resource_and_keeps_the_old_object() {
        let review = AdmissionReview::update(managed_deployment("shop", "web", 2))
            .by("bob", &["developers"])
            .uid("u1")
            .to_json();
        let request = &review["request"];
        assert_eq!(
            request["kind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        assert_eq!(request["resource"]["resource"], "deployments");
        assert_eq!(request["namespace"], "shop");
        assert_eq!(request["name"], "web");
        assert_eq!(request["operation"], "UPDATE");
        assert_eq!(request["userInfo"]["username"], "bob");
        assert_eq!(request["oldObject"], request["object"]);
    }

    #[test]
    fn a_create_of_a_core_object_has_the_empty_group_and_no_old_object() {
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let review = AdmissionReview::create(object).to_json();
        assert_eq!(review["request"]["kind"]["group"], "");
        assert_eq!(review["request"]["resource"]["resource"], "configmaps");
        assert!(review["request"].get("oldObject").is_none());
        assert!(review["request"].get("namespace").is_none());
    }
}
