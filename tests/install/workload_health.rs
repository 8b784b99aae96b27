//! Workloads from git that become ready and ones that never do, reported by
//! the kstatus rules within the health timeout (GITWARDEN_HEALTH_TIMEOUT,
//! 30s by default): a Warning Event `HealthCheckFailed` on the workload
//! (`kubectl describe` shows it) and the agent's status.

use std::time::Duration;

use gitwarden_tests::install::jsonpath;
use gitwarden_tests::wait::wait_blocking;

use crate::installed::{agent_status, installed, steady};

const CHECKS: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: checks
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ready
  namespace: checks
spec:
  replicas: 1
  selector: {matchLabels: {app: ready}}
  template:
    metadata: {labels: {app: ready}}
    spec:
      containers:
        - name: web
          image: gitwarden.local/demo-web:dev
          imagePullPolicy: IfNotPresent
          readinessProbe:
            httpGet: {path: /readyz, port: 8080}
            periodSeconds: 1
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: bad-image
  namespace: checks
spec:
  replicas: 1
  progressDeadlineSeconds: 10
  selector: {matchLabels: {app: bad-image}}
  template:
    metadata: {labels: {app: bad-image}}
    spec:
      containers:
        - name: web
          image: gitwarden.local/no-such-image:1
          imagePullPolicy: IfNotPresent
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: crash-loop
  namespace: checks
spec:
  replicas: 1
  progressDeadlineSeconds: 12
  # Ready for a moment after each start; available only after 5s ready.
  minReadySeconds: 5
  selector: {matchLabels: {app: crash-loop}}
  template:
    metadata: {labels: {app: crash-loop}}
    spec:
      containers:
        - name: main
          image: gitwarden.local/toolbox:dev
          imagePullPolicy: Never
          command: ["sh", "-c", "echo starting; exit 3"]
"#;

/// The `HealthCheckFailed` Events on Deployment checks/NAME, one per line.
fn health_events(node: &gitwarden_tests::node::NodeCluster, name: &str) -> String {
    jsonpath(
        node,
        &[
            "events",
            "-n",
            "checks",
            "--field-selector",
            &format!(
                "involvedObject.kind=Deployment,involvedObject.name={name},reason=HealthCheckFailed"
            ),
        ],
        "{range .items[*]}{.message}{\"\\n\"}{end}",
    )
}

#[test]
fn workloads_that_never_become_ready_are_reported_and_ready_ones_are_not() {
    let installed = installed();
    let _steady = steady();
    let node = installed.node;
    let commit = installed
        .target
        .change(
            &[("apps/checks/deployments.yaml", Some(CHECKS))],
            "Three workloads to check",
        )
        .unwrap();

    for name in ["bad-image", "crash-loop"] {
        let events = wait_blocking(Duration::from_secs(150), || {
            let e = health_events(node, name);
            (!e.is_empty()).then_some(e)
        });
        let events = events.unwrap_or_else(|| panic!("no HealthCheckFailed Event on {name}"));
        assert!(events.contains(&commit), "{events}");
        assert!(events.contains("Failed"), "{events}");
    }
    assert_eq!(
        jsonpath(
            node,
            &["deployment", "ready", "-n", "checks"],
            "{.status.readyReplicas}"
        ),
        "1"
    );
    assert_eq!(health_events(node, "ready"), "");

    // The agent's status says the same, for all three.
    let status = agent_status(node);
    assert!(status.success, "{status:?}");
    for (name, verdict) in [
        ("ready", "Current"),
        ("bad-image", "Failed"),
        ("crash-loop", "Failed"),
    ] {
        let line = format!("Deployment checks/{name} {verdict}");
        assert!(
            status.stdout.contains(&line),
            "no {line:?} in\n{}",
            status.stdout
        );
    }
}
