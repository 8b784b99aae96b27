//! Exempt identities stay with the components they belong to.
//!
//! The agent and the controllers are exempt identities: whatever they write is
//! allowed. Their tokens must therefore never reach a person, by any of the
//! routes Kubernetes offers to obtain one:
//!
//! - a Pod, or a workload whose pod template, runs as such a service account
//!   (its token is mounted in the Pod; exec, logs or the node hand it over);
//! - a legacy token Secret (`kubernetes.io/service-account-token`) naming
//!   one, which the token controller fills in;
//! - a Pod that reaches its node (privileged, host namespaces, hostPath,
//!   node-level capabilities, host ports): every token on that node is
//!   readable from there, the agent's included.
//!
//! Requests by the agent and by exempt identities never get here (the
//! controllers create Pods from templates all day). Everything else is
//! judged in every namespace, `kube-system` included, because these routes
//! do not care whether the namespace is protected. TokenRequests are judged
//! before dry-run in the decision table itself, since a dry-run TokenRequest
//! still returns a signed token.
//!
//! An UPDATE that leaves the pod spec as it was starts nothing new and is not
//! judged here (so a label on a running DaemonSet is not refused for what the
//! DaemonSet already was).

use kube::core::DynamicObject;
use kube::core::admission::Operation;
use serde_json::Value;

use super::request::RequestView;
use crate::policy::Policy;

/// The Secret type the token controller fills with a service-account token.
const LEGACY_TOKEN_SECRET_TYPE: &str = "kubernetes.io/service-account-token";
/// The annotation naming the service account of a legacy token Secret.
const LEGACY_TOKEN_SERVICE_ACCOUNT: &str = "kubernetes.io/service-account.name";

/// Capabilities Pod Security's baseline level lets a container add; any
/// other reaches beyond the container.
const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// What a request would hand to its requester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Breach {
    /// It would run as, or hand out a token of, an exempt identity or the
    /// agent: the service account `namespace`/`name`, by `route`.
    BorrowedIdentity {
        /// The service account's namespace.
        namespace: String,
        /// The service account's name.
        name: String,
        /// How: a Pod, a pod template, a legacy token Secret.
        route: Route,
    },
    /// It would run a Pod that reaches its node; the text says how
    /// (`hostPath volume "root"`).
    NodeAccess(String),
}

/// How a request would obtain an exempt identity's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// A Pod (or the template of a workload that makes Pods) running as it.
    PodServiceAccount,
    /// A legacy token Secret the token controller would fill.
    LegacyTokenSecret,
    /// A TokenRequest (`kubectl create token`).
    TokenRequest,
}

/// The breach a request would open, if any (see the module docs).
pub(super) fn breach(policy: &Policy, view: &RequestView<'_>) -> Option<Breach> {
    if !matches!(view.req.operation, Operation::Create | Operation::Update) {
        return None;
    }
    let object = view.req.object.as_ref()?;
    let namespace = view.req.namespace.as_deref().unwrap_or_default();
    if view.group.is_empty() && view.resource == "secrets" && view.subresource().is_none() {
        return legacy_token_secret(policy, namespace, object);
    }
    let ephemeral = view.subresource() == Some("ephemeralcontainers");
    if view.subresource().is_some()
        && !(ephemeral && view.group.is_empty() && view.resource == "pods")
    {
        return None;
    }
    let path = policy
        .workloads
        .pod_spec_path(&view.group, &view.resource)?;
    let spec = pod_spec(object, path)?;
    if !ephemeral {
        let old_spec = view
            .req
            .old_object
            .as_ref()
            .and_then(|old| pod_spec(old, path));
        if old_spec == Some(spec) {
            return None;
        }
    }
    let service_account = service_account_of(spec);
    if runs_as_trusted_identity(policy, namespace, service_account) {
        return Some(Breach::BorrowedIdentity {
            namespace: namespace.to_owned(),
            name: service_account.to_owned(),
            route: Route::PodServiceAccount,
        });
    }
    let finding = node_access(spec, ephemeral)?;
    if policy
        .workloads
        .node_access_exception(namespace, view.name())
        .is_some()
    {
        return None;
    }
    Some(Breach::NodeAccess(finding))
}

/// The pod spec at `path` (a JSON pointer into the whole object).
fn pod_spec<'a>(object: &'a DynamicObject, path: &str) -> Option<&'a Value> {
    object.data.pointer(path)
}

/// A legacy token Secret naming an exempt service account or the agent's.
fn legacy_token_secret(policy: &Policy, namespace: &str, secret: &DynamicObject) -> Option<Breach> {
    if secret.data.get("type").and_then(Value::as_str) != Some(LEGACY_TOKEN_SECRET_TYPE) {
        return None;
    }
    let name = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEGACY_TOKEN_SERVICE_ACCOUNT))?;
    runs_as_trusted_identity(policy, namespace, name).then(|| Breach::BorrowedIdentity {
        namespace: namespace.to_owned(),
        name: name.clone(),
        route: Route::LegacyTokenSecret,
    })
}

/// Whether the service account `namespace`/`name` is the agent or exempt.
pub(super) fn runs_as_trusted_identity(policy: &Policy, namespace: &str, name: &str) -> bool {
    !namespace.is_empty()
        && (policy.agent.covers_service_account(namespace, name)
            || policy.exempt.covers_service_account(namespace, name))
}

/// The service account a pod spec runs as: `serviceAccountName`, the
/// deprecated `serviceAccount`, or the namespace's `default`.
fn service_account_of(spec: &Value) -> &str {
    ["serviceAccountName", "serviceAccount"]
        .into_iter()
        .filter_map(|field| spec.get(field).and_then(Value::as_str))
        .find(|name| !name.is_empty())
        .unwrap_or("default")
}

/// How a pod spec reaches its node, if it does: what Pod Security's
/// baseline level forbids for that reason. For an ephemeral-container update
/// only the ephemeral containers are judged among the containers (the
/// others were judged when the Pod was made), but the Pod's own host
/// namespaces and volumes always are: a new container joins them.
fn node_access(spec: &Value, ephemeral_only: bool) -> Option<String> {
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec.get(field).and_then(Value::as_bool) == Some(true) {
            return Some(field.to_owned());
        }
    }
    if windows_host_process(spec.get("securityContext")) {
        return Some("a Windows HostProcess pod".to_owned());
    }
    for volume in array(spec, "volumes") {
        if volume.get("hostPath").is_some() {
            return Some(format!("hostPath volume {:?}", str_field(volume, "name")));
        }
    }
    let lists: &[&str] = if ephemeral_only {
        &["ephemeralContainers"]
    } else {
        &["containers", "initContainers", "ephemeralContainers"]
    };
    lists
        .iter()
        .flat_map(|list| array(spec, list))
        .find_map(container_node_access)
}

fn container_node_access(container: &Value) -> Option<String> {
    let name = str_field(container, "name");
    let security = container.get("securityContext");
    if security
        .and_then(|s| s.get("privileged"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Some(format!("privileged container {name:?}"));
    }
    if windows_host_process(security) {
        return Some(format!("HostProcess container {name:?}"));
    }
    if security
        .and_then(|s| s.get("procMount"))
        .and_then(Value::as_str)
        == Some("Unmasked")
    {
        return Some(format!("unmasked /proc in container {name:?}"));
    }
    let added = security
        .and_then(|s| s.pointer("/capabilities/add"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    for capability in added {
        let bare = capability.trim_start_matches("CAP_");
        if !BASELINE_CAPABILITIES.contains(&bare) {
            return Some(format!("capability {capability} in container {name:?}"));
        }
    }
    for port in array(container, "ports") {
        if port
            .get("hostPort")
            .and_then(Value::as_i64)
            .is_some_and(|p| p != 0)
        {
            return Some(format!("host port in container {name:?}"));
        }
    }
    None
}

fn windows_host_process(security: Option<&Value>) -> bool {
    security
        .and_then(|s| s.pointer("/windowsOptions/hostProcess"))
        .and_then(Value::as_bool)
        == Some(true)
}

fn array<'a>(value: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    value
        .get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn str_field<'a>(value: &'a Value, field: &str) -> &'a str {
    value.get(field).and_then(Value::as_str).unwrap_or_default()
}
