//! Readiness of applied objects, by the kstatus rules.
//!
//! An apply that the API server accepted is not a rollout that worked: a
//! Deployment may never get its pods available, a Job may fail. After each
//! sync the agent reports, per object, whether it is `Current`, still
//! `InProgress`, `Failed` or gone, following the rules of
//! `sigs.k8s.io/cli-utils/pkg/kstatus` so that the answers match what
//! `kubectl`/Flux users already know. Waiting is always bounded by a timeout:
//! health is reported, it never holds up the next sync (issue 4, item 7).
//!
//! [`status_of`] is a pure function of the object's JSON, so every rule is
//! unit-tested on fixtures; [`wait_for_health`] polls the API server.

use std::fmt;
use std::time::Duration;

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::core::ApiResource;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

/// The kstatus verdict on one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HealthStatus {
    /// The object is fully reconciled: its controller has observed the latest
    /// spec and the actual state matches it.
    Current,
    /// Not there yet; may still become Current without anyone's help.
    InProgress,
    /// The controller reports it will not get there without a change
    /// (progress deadline exceeded, Job failed, `Stalled` condition).
    Failed,
    /// Being deleted (`deletionTimestamp` set).
    Terminating,
    /// The object does not exist.
    NotFound,
    /// Its status could not be read or understood (API error, malformed status).
    Unknown,
}

impl HealthStatus {
    /// Whether waiting longer cannot change the verdict without a new
    /// revision: `Current` and `Failed` end a wait early.
    pub fn is_settled(self) -> bool {
        matches!(self, HealthStatus::Current | HealthStatus::Failed)
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            HealthStatus::Current => "Current",
            HealthStatus::InProgress => "InProgress",
            HealthStatus::Failed => "Failed",
            HealthStatus::Terminating => "Terminating",
            HealthStatus::NotFound => "NotFound",
            HealthStatus::Unknown => "Unknown",
        };
        f.write_str(s)
    }
}

/// A verdict plus the human explanation shown in `/status` and `status`
/// (e.g. "Available: 0/3"), so an operator sees *why* without kubectl.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHealth {
    /// The verdict.
    pub status: HealthStatus,
    /// Why, in the words kstatus uses.
    pub message: String,
}

impl ObjectHealth {
    fn new(status: HealthStatus, message: impl Into<String>) -> Self {
        ObjectHealth {
            status,
            message: message.into(),
        }
    }
    fn current(message: impl Into<String>) -> Self {
        Self::new(HealthStatus::Current, message)
    }
    fn in_progress(message: impl Into<String>) -> Self {
        Self::new(HealthStatus::InProgress, message)
    }
    fn failed(message: impl Into<String>) -> Self {
        Self::new(HealthStatus::Failed, message)
    }
}

/// One object whose health to wait for: its type (from discovery, as the
/// applier already has it), namespace (None for cluster-scoped) and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthRef {
    /// The object's API resource (group, version, kind, plural).
    pub resource: ApiResource,
    /// Its namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
}

impl HealthRef {
    /// A reference to `name` in `namespace` (None: cluster-scoped).
    pub fn new(resource: ApiResource, namespace: Option<&str>, name: &str) -> Self {
        HealthRef {
            resource,
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for HealthRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.resource.kind, ns, self.name),
            None => write!(f, "{} {}", self.resource.kind, self.name),
        }
    }
}

/// The kstatus verdict on a typed or dynamic object, via its JSON form.
pub fn status_of_object(object: &DynamicObject) -> ObjectHealth {
    match serde_json::to_value(object) {
        Ok(value) => status_of(&value),
        Err(e) => ObjectHealth::new(
            HealthStatus::Unknown,
            format!("cannot read the object's status: {e}"),
        ),
    }
}

/// The kstatus verdict on one object as the API server returned it.
///
/// Pure: no I/O, no clock. Rules by kind (group `apps` or `batch`):
/// Deployment, StatefulSet, DaemonSet, Job and CustomResourceDefinition get
/// their specific rules; every other kind is judged by its `status.conditions`
/// (`Stalled=True` → Failed, `Reconciling=True` or `Ready≠True` → InProgress)
/// and is Current otherwise (a ConfigMap has no status and is Current once it exists).
pub fn status_of(object: &Value) -> ObjectHealth {
    let api_version = str_at(object, &["apiVersion"]).unwrap_or_default();
    let group = api_version
        .rsplit_once('/')
        .map_or("", |(group, _version)| group);
    let kind = str_at(object, &["kind"]).unwrap_or_default();

    if value_at(object, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null()) {
        return ObjectHealth::new(HealthStatus::Terminating, "Resource scheduled for deletion");
    }
    if let Some(verdict) = generic_checks(object, kind) {
        return verdict;
    }
    match (group, kind) {
        ("apps", "Deployment") => deployment(object),
        ("apps", "StatefulSet") => stateful_set(object),
        ("apps", "DaemonSet") => daemon_set(object),
        ("batch", "Job") => job(object),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(object),
        _ => generic(object),
    }
}

/// The checks kstatus applies to every kind before its specific rules: a
/// controller that has not yet seen the latest generation cannot vouch for
/// the status, and the standard `Reconciling`/`Stalled` conditions win.
fn generic_checks(object: &Value, kind: &str) -> Option<ObjectHealth> {
    let generation = int_at(object, &["metadata", "generation"]);
    let observed = int_at(object, &["status", "observedGeneration"]);
    // The built-in workload controllers always record observedGeneration: a
    // missing one means the controller has not processed the object yet.
    let workload = matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet");
    match (generation, observed) {
        (Some(g), Some(o)) if o < g => {
            return Some(ObjectHealth::in_progress(format!(
                "{kind} generation is {g}, but latest observed generation is {o}"
            )));
        }
        (Some(g), None) if workload => {
            return Some(ObjectHealth::in_progress(format!(
                "{kind} generation {g} has not been observed by its controller yet"
            )));
        }
        _ => {}
    }
    if let Some(c) = condition(object, "Stalled").filter(|c| c.status == "True") {
        return Some(ObjectHealth::failed(c.describe("Stalled")));
    }
    if let Some(c) = condition(object, "Reconciling").filter(|c| c.status == "True") {
        return Some(ObjectHealth::in_progress(c.describe("Reconciling")));
    }
    None
}

/// kstatus' Deployment rules: every wanted replica exists, runs the latest
/// template, is ready and available, and the rollout has finished
/// (`Progressing` reason `NewReplicaSetAvailable`). A `Progressing` condition
/// with reason `ProgressDeadlineExceeded` is a failed rollout.
fn deployment(object: &Value) -> ObjectHealth {
    let wanted = int_at(object, &["spec", "replicas"]).unwrap_or(1);
    let replicas = status_int(object, "replicas");
    let updated = status_int(object, "updatedReplicas");
    let ready = status_int(object, "readyReplicas");
    let available = status_int(object, "availableReplicas");

    let mut rollout_done = false;
    let mut is_available = false;
    for c in conditions(object) {
        match c.type_.as_str() {
            "Progressing" if c.reason == "ProgressDeadlineExceeded" => {
                return ObjectHealth::failed(format!(
                    "Progress deadline exceeded{}",
                    suffix(&c.message)
                ));
            }
            "Progressing" if c.status == "True" && c.reason == "NewReplicaSetAvailable" => {
                rollout_done = true;
            }
            "Available" if c.status == "True" => is_available = true,
            _ => {}
        }
    }
    if wanted > replicas {
        return ObjectHealth::in_progress(format!("Replicas: {replicas}/{wanted}"));
    }
    if wanted > updated {
        return ObjectHealth::in_progress(format!("Updated: {updated}/{wanted}"));
    }
    if replicas > wanted {
        return ObjectHealth::in_progress(format!("Pending termination: {}", replicas - wanted));
    }
    if updated > available {
        return ObjectHealth::in_progress(format!("Available: {available}/{updated}"));
    }
    if wanted > ready {
        return ObjectHealth::in_progress(format!("Ready: {ready}/{wanted}"));
    }
    if !rollout_done {
        return ObjectHealth::in_progress("ReplicaSet not Available");
    }
    if !is_available {
        return ObjectHealth::in_progress("Deployment not Available");
    }
    ObjectHealth::current(format!("Deployment is available. Replicas: {replicas}"))
}

/// kstatus' StatefulSet rules: all replicas exist and are ready, the rollout
/// reached every pod it should (respecting a partition), and the current
/// revision is the update revision. `OnDelete` sets roll out only when pods
/// are deleted by hand, so kstatus calls them Current once observed.
fn stateful_set(object: &Value) -> ObjectHealth {
    if str_at(object, &["spec", "updateStrategy", "type"]) == Some("OnDelete") {
        return ObjectHealth::current("StatefulSet is using the ondelete update strategy");
    }
    let wanted = int_at(object, &["spec", "replicas"]).unwrap_or(1);
    let replicas = status_int(object, "replicas");
    let ready = status_int(object, "readyReplicas");
    let current = status_int(object, "currentReplicas");
    let updated = status_int(object, "updatedReplicas");
    let partition = int_at(
        object,
        &["spec", "updateStrategy", "rollingUpdate", "partition"],
    );

    if wanted > replicas {
        return ObjectHealth::in_progress(format!("Replicas: {replicas}/{wanted}"));
    }
    if wanted > ready {
        return ObjectHealth::in_progress(format!("Ready: {ready}/{wanted}"));
    }
    if replicas > wanted {
        return ObjectHealth::in_progress(format!("Pending termination: {}", replicas - wanted));
    }
    if let Some(partition) = partition.filter(|p| *p > 0) {
        let expected = (wanted - partition).max(0);
        if updated < expected {
            return ObjectHealth::in_progress(format!("updated: {updated}/{expected}"));
        }
        return ObjectHealth::current(format!("Partition rollout complete. updated: {updated}"));
    }
    if wanted > updated {
        return ObjectHealth::in_progress(format!("updated: {updated}/{wanted}"));
    }
    if wanted > current {
        return ObjectHealth::in_progress(format!("current: {current}/{wanted}"));
    }
    let current_revision = str_at(object, &["status", "currentRevision"]).unwrap_or_default();
    let update_revision = str_at(object, &["status", "updateRevision"]).unwrap_or_default();
    if current_revision != update_revision {
        return ObjectHealth::in_progress(format!(
            "Rolling out: current revision {current_revision}, update revision {update_revision}"
        ));
    }
    ObjectHealth::current(format!(
        "All replicas scheduled as expected. Replicas: {replicas}"
    ))
}

/// kstatus' DaemonSet rules: on every node it should run on, the pod is
/// scheduled, updated, available and ready.
fn daemon_set(object: &Value) -> ObjectHealth {
    let Some(desired) = int_at(object, &["status", "desiredNumberScheduled"]) else {
        return ObjectHealth::in_progress("Missing .status.desiredNumberScheduled");
    };
    let scheduled = status_int(object, "currentNumberScheduled");
    let updated = status_int(object, "updatedNumberScheduled");
    let available = status_int(object, "numberAvailable");
    let ready = status_int(object, "numberReady");
    if desired > scheduled {
        return ObjectHealth::in_progress(format!("Current: {scheduled}/{desired}"));
    }
    if desired > updated {
        return ObjectHealth::in_progress(format!("Updated: {updated}/{desired}"));
    }
    if desired > available {
        return ObjectHealth::in_progress(format!("Available: {available}/{desired}"));
    }
    if desired > ready {
        return ObjectHealth::in_progress(format!("Ready: {ready}/{desired}"));
    }
    ObjectHealth::current(format!(
        "All replicas scheduled as expected. Replicas: {desired}"
    ))
}

/// kstatus' Job rules: the `Complete` condition means Current, `Failed`
/// (or the earlier `FailureTarget`, set once failure is certain) means
/// Failed; anything else is still running, or not started.
fn job(object: &Value) -> ObjectHealth {
    let parallelism = int_at(object, &["spec", "parallelism"]).unwrap_or(1);
    let completions = int_at(object, &["spec", "completions"]).unwrap_or(parallelism);
    let succeeded = status_int(object, "succeeded");
    let active = status_int(object, "active");
    let failed = status_int(object, "failed");
    for c in conditions(object) {
        if c.status != "True" {
            continue;
        }
        match c.type_.as_str() {
            "Complete" => {
                return ObjectHealth::current(format!(
                    "Job Completed. succeeded: {succeeded}/{completions}"
                ));
            }
            "Failed" | "FailureTarget" => {
                return ObjectHealth::failed(format!(
                    "Job Failed. failed: {failed}/{completions}{}",
                    suffix(&c.describe_reason())
                ));
            }
            "Suspended" => return ObjectHealth::in_progress("Job is suspended"),
            _ => {}
        }
    }
    if str_at(object, &["status", "startTime"]).is_none() {
        return ObjectHealth::in_progress("Job not started");
    }
    ObjectHealth::in_progress(format!(
        "Job in progress. succeeded: {succeeded}/{completions}, active: {active}, failed: {failed}"
    ))
}

/// A CRD is usable (custom resources can be applied) once `Established`;
/// `NamesAccepted=False` means its names clash and it never will be.
fn crd(object: &Value) -> ObjectHealth {
    if let Some(c) = condition(object, "NamesAccepted").filter(|c| c.status == "False") {
        return ObjectHealth::failed(c.describe("NamesAccepted=False"));
    }
    match condition(object, "Established") {
        Some(c) if c.status == "True" => ObjectHealth::current("CRD is established"),
        _ => ObjectHealth::in_progress("CRD is not established yet"),
    }
}

/// Any other kind: a `Ready` condition other than True means not there yet
/// (kstatus reserves Failed for `Stalled`, already checked); no conditions at
/// all means the kind has nothing to wait for.
fn generic(object: &Value) -> ObjectHealth {
    match condition(object, "Ready") {
        Some(c) if c.status != "True" => {
            ObjectHealth::in_progress(c.describe(&format!("Ready={}", c.status)))
        }
        Some(_) => ObjectHealth::current("Resource is Ready"),
        None => ObjectHealth::current("Resource is current"),
    }
}

/// One entry of `status.conditions`, with absent fields as empty strings.
struct Condition {
    type_: String,
    status: String,
    reason: String,
    message: String,
}

impl Condition {
    fn describe(&self, what: &str) -> String {
        format!("{what}{}", suffix(&self.describe_reason()))
    }

    fn describe_reason(&self) -> String {
        match (self.reason.is_empty(), self.message.is_empty()) {
            (true, true) => String::new(),
            (false, true) => self.reason.clone(),
            (true, false) => self.message.clone(),
            (false, false) => format!("{}: {}", self.reason, self.message),
        }
    }
}

fn conditions(object: &Value) -> Vec<Condition> {
    let Some(list) = value_at(object, &["status", "conditions"]).and_then(Value::as_array) else {
        return Vec::new();
    };
    let field = |c: &Value, name: &str| {
        c.get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    list.iter()
        .map(|c| Condition {
            type_: field(c, "type"),
            status: field(c, "status"),
            reason: field(c, "reason"),
            message: field(c, "message"),
        })
        .collect()
}

fn condition(object: &Value, type_: &str) -> Option<Condition> {
    conditions(object).into_iter().find(|c| c.type_ == type_)
}

fn suffix(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({text})")
    }
}

fn value_at<'a>(object: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(object, |v, key| v.get(*key))
}

fn str_at<'a>(object: &'a Value, path: &[&str]) -> Option<&'a str> {
    value_at(object, path).and_then(Value::as_str)
}

fn int_at(object: &Value, path: &[&str]) -> Option<i64> {
    value_at(object, path).and_then(Value::as_i64)
}

fn status_int(object: &Value, field: &str) -> i64 {
    int_at(object, &["status", field]).unwrap_or(0)
}

/// How many objects are read at once while waiting: enough to finish a large
/// revision's poll quickly, few enough not to crowd out the applier.
const CONCURRENT_READS: usize = 8;

/// The shortest poll interval accepted, whatever the caller asks for.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Polls until every object is settled ([`HealthStatus::is_settled`]) or
/// `timeout` passes, with a poll interval of one second.
///
/// See [`wait_for_health_every`].
pub async fn wait_for_health(
    client: &Client,
    refs: &[HealthRef],
    timeout: Duration,
) -> Vec<(HealthRef, ObjectHealth)> {
    wait_for_health_every(client, refs, timeout, Duration::from_secs(1)).await
}

/// Polls the objects every `interval` until each is `Current` or `Failed`,
/// or until `timeout` has passed — whichever comes first. Never takes longer
/// than `timeout` (in-flight reads are abandoned at the deadline), and never
/// fails: API errors become `Unknown` entries, and objects still unsettled at
/// the deadline are returned with their last verdict and a message that says
/// the wait timed out. Results are in the order of `refs`. Settled objects
/// are not read again; `interval` is at least 100 ms.
pub async fn wait_for_health_every(
    client: &Client,
    refs: &[HealthRef],
    timeout: Duration,
    interval: Duration,
) -> Vec<(HealthRef, ObjectHealth)> {
    let started = Instant::now();
    let deadline = started + timeout;
    // A zero interval would turn polling into a request storm.
    let interval = interval.max(MIN_POLL_INTERVAL);
    let mut results: Vec<Option<ObjectHealth>> = vec![None; refs.len()];

    loop {
        let pending: Vec<usize> = (0..refs.len())
            .filter(|&i| !results[i].as_ref().is_some_and(|h| h.status.is_settled()))
            .collect();
        if pending.is_empty() {
            break;
        }
        let round = futures::stream::iter(pending)
            .map(|i| async move { (i, read_health(client, &refs[i]).await) })
            .buffer_unordered(CONCURRENT_READS)
            .collect::<Vec<_>>();
        match tokio::time::timeout_at(deadline, round).await {
            Ok(round) => {
                for (i, health) in round {
                    results[i] = Some(health);
                }
            }
            Err(_) => break,
        }
        let next = Instant::now() + interval;
        if next >= deadline {
            tokio::time::sleep_until(deadline).await;
            // One last look exactly at the deadline would overrun it; stop here.
            break;
        }
        tokio::time::sleep_until(next).await;
    }

    let waited = started.elapsed();
    refs.iter()
        .cloned()
        .zip(results)
        .map(|(r, health)| {
            let health = match health {
                Some(h) if h.status.is_settled() => h,
                Some(h) => ObjectHealth::new(
                    h.status,
                    format!(
                        "not ready after {:.1}s (health timeout {:?}): {}",
                        waited.as_secs_f64(),
                        timeout,
                        h.message
                    ),
                ),
                None => ObjectHealth::new(
                    HealthStatus::Unknown,
                    format!("status not read within the health timeout ({timeout:?})"),
                ),
            };
            (r, health)
        })
        .collect()
}

/// Reads one object and judges it; errors become `Unknown` with context.
async fn read_health(client: &Client, target: &HealthRef) -> ObjectHealth {
    let api: Api<DynamicObject> = match &target.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &target.resource),
        None => Api::all_with(client.clone(), &target.resource),
    };
    match api.get_opt(&target.name).await {
        Ok(Some(object)) => status_of_object(&object),
        Ok(None) => ObjectHealth::new(HealthStatus::NotFound, format!("{target} not found")),
        Err(e) => ObjectHealth::new(HealthStatus::Unknown, format!("reading {target}: {e}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "namespace": "default", "generation": 2 },
            "spec": { "replicas": 3 },
            "status": status,
        })
    }

    fn check(object: &Value, status: HealthStatus, message_part: &str) {
        let health = status_of(object);
        assert_eq!(health.status, status, "{health:?}");
        assert!(
            health.message.contains(message_part),
            "message {:?} should contain {message_part:?}",
            health.message
        );
    }

    #[test]
    fn deployment_fully_rolled_out_is_current() {
        let d = deploy(json!({
            "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
            "readyReplicas": 3, "availableReplicas": 3,
            "conditions": [
                { "type": "Available", "status": "True", "reason": "MinimumReplicasAvailable" },
                { "type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable" },
            ],
        }));
        check(&d, HealthStatus::Current, "Replicas: 3");
    }

    #[test]
    fn deployment_with_stale_observed_generation_is_in_progress() {
        let d = deploy(json!({
            "observedGeneration": 1, "replicas": 3, "updatedReplicas": 3,
            "readyReplicas": 3, "availableReplicas": 3,
        }));
        check(
            &d,
            HealthStatus::InProgress,
            "latest observed generation is 1",
        );
    }

    #[test]
    fn deployment_never_observed_is_in_progress() {
        let d = deploy(json!({}));
        check(&d, HealthStatus::InProgress, "has not been observed");
    }

    #[test]
    fn deployment_rolling_out_reports_updated_count() {
        let d = deploy(json!({
            "observedGeneration": 2, "replicas": 3, "updatedReplicas": 1,
            "readyReplicas": 3, "availableReplicas": 3,
        }));
        check(&d, HealthStatus::InProgress, "Updated: 1/3");
    }

    #[test]
    fn deployment_without_available_pods_is_in_progress() {
        // What the test cluster shows: pods exist but no kubelet runs them.
        let d = deploy(json!({
            "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
            "unavailableReplicas": 3,
            "conditions": [
                { "type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable" },
                { "type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated" },
            ],
        }));
        check(&d, HealthStatus::InProgress, "Available: 0/3");
    }

    #[test]
    fn deployment_with_old_pods_terminating_is_in_progress() {
        let d = deploy(json!({
            "observedGeneration": 2, "replicas": 4, "updatedReplicas": 3,
            "readyReplicas": 4, "availableReplicas": 4,
        }));
        check(&d, HealthStatus::InProgress, "Pending termination: 1");
    }

    #[test]
    fn deployment_past_progress_deadline_is_failed() {
        let d = deploy(json!({
            "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
            "conditions": [
                { "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                  "message": "ReplicaSet \"web-1\" has timed out progressing." },
            ],
        }));
        check(&d, HealthStatus::Failed, "Progress deadline exceeded");
    }

    #[test]
    fn deployment_available_but_rollout_not_finished_is_in_progress() {
        let d = deploy(json!({
            "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
            "readyReplicas": 3, "availableReplicas": 3,
            "conditions": [
                { "type": "Available", "status": "True" },
                { "type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated" },
            ],
        }));
        check(&d, HealthStatus::InProgress, "ReplicaSet not Available");
    }

    #[test]
    fn deployment_defaults_to_one_replica() {
        let d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "generation": 1 },
            "spec": {},
            "status": { "observedGeneration": 1 },
        });
        check(&d, HealthStatus::InProgress, "Replicas: 0/1");
    }

    fn sts(spec: Value, status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": { "name": "db", "generation": 1 },
            "spec": spec, "status": status,
        })
    }

    #[test]
    fn statefulset_all_ready_on_update_revision_is_current() {
        let s = sts(
            json!({ "replicas": 2 }),
            json!({ "observedGeneration": 1, "replicas": 2, "readyReplicas": 2,
                    "currentReplicas": 2, "updatedReplicas": 2,
                    "currentRevision": "db-abc", "updateRevision": "db-abc" }),
        );
        check(&s, HealthStatus::Current, "Replicas: 2");
    }

    #[test]
    fn statefulset_not_ready_is_in_progress() {
        let s = sts(
            json!({ "replicas": 2 }),
            json!({ "observedGeneration": 1, "replicas": 2, "readyReplicas": 1 }),
        );
        check(&s, HealthStatus::InProgress, "Ready: 1/2");
    }

    #[test]
    fn statefulset_mid_rollout_is_in_progress() {
        let s = sts(
            json!({ "replicas": 2 }),
            json!({ "observedGeneration": 1, "replicas": 2, "readyReplicas": 2,
                    "currentReplicas": 1, "updatedReplicas": 1,
                    "currentRevision": "db-abc", "updateRevision": "db-def" }),
        );
        check(&s, HealthStatus::InProgress, "updated: 1/2");
    }

    #[test]
    fn statefulset_revisions_differ_is_in_progress() {
        let s = sts(
            json!({ "replicas": 2 }),
            json!({ "observedGeneration": 1, "replicas": 2, "readyReplicas": 2,
                    "currentReplicas": 2, "updatedReplicas": 2,
                    "currentRevision": "db-abc", "updateRevision": "db-def" }),
        );
        check(&s, HealthStatus::InProgress, "update revision db-def");
    }

    #[test]
    fn statefulset_partitioned_rollout_complete_is_current() {
        let s = sts(
            json!({ "replicas": 3, "updateStrategy": { "type": "RollingUpdate",
                    "rollingUpdate": { "partition": 2 } } }),
            json!({ "observedGeneration": 1, "replicas": 3, "readyReplicas": 3,
                    "currentReplicas": 2, "updatedReplicas": 1,
                    "currentRevision": "db-abc", "updateRevision": "db-def" }),
        );
        check(&s, HealthStatus::Current, "Partition rollout complete");
    }

    #[test]
    fn statefulset_stale_generation_is_in_progress() {
        let s = sts(json!({ "replicas": 1 }), json!({ "observedGeneration": 0 }));
        check(&s, HealthStatus::InProgress, "generation is 1");
    }

    fn ds(status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": { "name": "agent", "generation": 3 },
            "status": status,
        })
    }

    #[test]
    fn daemonset_everywhere_is_current() {
        let d = ds(
            json!({ "observedGeneration": 3, "desiredNumberScheduled": 4,
            "currentNumberScheduled": 4, "updatedNumberScheduled": 4,
            "numberAvailable": 4, "numberReady": 4 }),
        );
        check(&d, HealthStatus::Current, "Replicas: 4");
    }

    #[test]
    fn daemonset_partially_updated_is_in_progress() {
        let d = ds(
            json!({ "observedGeneration": 3, "desiredNumberScheduled": 4,
            "currentNumberScheduled": 4, "updatedNumberScheduled": 2,
            "numberAvailable": 4, "numberReady": 4 }),
        );
        check(&d, HealthStatus::InProgress, "Updated: 2/4");
    }

    #[test]
    fn daemonset_not_available_is_in_progress() {
        let d = ds(
            json!({ "observedGeneration": 3, "desiredNumberScheduled": 4,
            "currentNumberScheduled": 4, "updatedNumberScheduled": 4,
            "numberAvailable": 3, "numberReady": 4 }),
        );
        check(&d, HealthStatus::InProgress, "Available: 3/4");
    }

    #[test]
    fn daemonset_without_desired_count_is_in_progress() {
        let d = ds(json!({ "observedGeneration": 3 }));
        check(&d, HealthStatus::InProgress, "desiredNumberScheduled");
    }

    fn job(status: Value) -> Value {
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": { "name": "migrate", "generation": 1 },
            "spec": { "completions": 1 },
            "status": status,
        })
    }

    #[test]
    fn job_complete_is_current() {
        let j = job(json!({ "succeeded": 1, "startTime": "2026-01-01T00:00:00Z",
            "conditions": [
                { "type": "SuccessCriteriaMet", "status": "True" },
                { "type": "Complete", "status": "True" },
            ] }));
        check(&j, HealthStatus::Current, "Job Completed. succeeded: 1/1");
    }

    #[test]
    fn job_failed_is_failed() {
        let j = job(json!({ "failed": 7, "startTime": "2026-01-01T00:00:00Z",
            "conditions": [
                { "type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                  "message": "Job has reached the specified backoff limit" },
            ] }));
        check(&j, HealthStatus::Failed, "BackoffLimitExceeded");
    }

    #[test]
    fn job_running_is_in_progress() {
        let j = job(json!({ "active": 1, "startTime": "2026-01-01T00:00:00Z" }));
        check(&j, HealthStatus::InProgress, "active: 1");
    }

    #[test]
    fn job_not_started_is_in_progress() {
        check(&job(json!({})), HealthStatus::InProgress, "Job not started");
    }

    #[test]
    fn job_false_conditions_are_ignored() {
        let j = job(json!({ "active": 1, "startTime": "2026-01-01T00:00:00Z",
            "conditions": [ { "type": "Failed", "status": "False" } ] }));
        check(&j, HealthStatus::InProgress, "Job in progress");
    }

    fn custom(conditions: Value) -> Value {
        json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": { "name": "w", "generation": 5 },
            "status": { "observedGeneration": 5, "conditions": conditions },
        })
    }

    #[test]
    fn generic_ready_true_is_current() {
        let w = custom(json!([{ "type": "Ready", "status": "True" }]));
        check(&w, HealthStatus::Current, "Ready");
    }

    #[test]
    fn generic_ready_false_is_in_progress_with_reason() {
        let w = custom(json!([{ "type": "Ready", "status": "False",
            "reason": "Waiting", "message": "backend not reachable" }]));
        check(
            &w,
            HealthStatus::InProgress,
            "Waiting: backend not reachable",
        );
    }

    #[test]
    fn generic_stalled_is_failed() {
        let w = custom(json!([
            { "type": "Ready", "status": "False" },
            { "type": "Stalled", "status": "True", "reason": "InvalidSpec" },
        ]));
        check(&w, HealthStatus::Failed, "InvalidSpec");
    }

    #[test]
    fn generic_reconciling_is_in_progress() {
        let w = custom(json!([{ "type": "Reconciling", "status": "True" }]));
        check(&w, HealthStatus::InProgress, "Reconciling");
    }

    #[test]
    fn generic_stale_generation_is_in_progress() {
        let mut w = custom(json!([{ "type": "Ready", "status": "True" }]));
        w["status"]["observedGeneration"] = json!(4);
        check(
            &w,
            HealthStatus::InProgress,
            "latest observed generation is 4",
        );
    }

    #[test]
    fn object_without_status_is_current() {
        let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "c" }, "data": { "a": "b" } });
        check(&cm, HealthStatus::Current, "current");
    }

    #[test]
    fn object_being_deleted_is_terminating() {
        let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "c", "deletionTimestamp": "2026-01-01T00:00:00Z" } });
        check(&cm, HealthStatus::Terminating, "deletion");
    }

    #[test]
    fn crd_established_is_current_and_name_clash_is_failed() {
        let crd = |conditions: Value| {
            json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": { "name": "widgets.example.com", "generation": 1 },
                "status": { "conditions": conditions },
            })
        };
        check(
            &crd(json!([{ "type": "Established", "status": "True" }])),
            HealthStatus::Current,
            "established",
        );
        check(&crd(json!([])), HealthStatus::InProgress, "not established");
        check(
            &crd(
                json!([{ "type": "NamesAccepted", "status": "False", "reason": "ListKindConflict" }]),
            ),
            HealthStatus::Failed,
            "ListKindConflict",
        );
    }

    #[test]
    fn malformed_fields_do_not_panic() {
        let odd = json!({ "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "generation": "two" },
            "spec": { "replicas": "three" },
            "status": { "conditions": "none", "replicas": null } });
        let health = status_of(&odd);
        assert_eq!(health.status, HealthStatus::InProgress);
        let nothing = status_of(&json!(null));
        assert_eq!(nothing.status, HealthStatus::Current);
    }

    #[test]
    fn dynamic_objects_are_judged_like_json() {
        let d = deploy(
            json!({ "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
            "unavailableReplicas": 3 }),
        );
        let object: DynamicObject = serde_json::from_value(d.clone()).unwrap();
        assert_eq!(status_of_object(&object), status_of(&d));
    }

    #[test]
    fn health_serialises_for_the_status_endpoint() {
        let h = ObjectHealth::in_progress("Available: 0/1");
        assert_eq!(
            serde_json::to_value(&h).unwrap(),
            json!({ "status": "InProgress", "message": "Available: 0/1" })
        );
    }
}
