//! A pod's bound service-account token is worth nothing once the pod is
//! gone: copied out of a running pod, it works from outside; after git
//! removes the workload (the agent prunes it, its pod goes with it), the API
//! server refuses it.

use std::time::Duration;

use gitwarden_tests::Identity;
use gitwarden_tests::install::jsonpath;
use gitwarden_tests::wait::wait_blocking;

use crate::installed::{installed, steady};

const WORKER: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: tokens
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: worker
  namespace: tokens
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: worker
  namespace: tokens
spec:
  replicas: 1
  selector: {matchLabels: {app: worker}}
  template:
    metadata: {labels: {app: worker}}
    spec:
      serviceAccountName: worker
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: gitwarden.local/toolbox:dev
          imagePullPolicy: Never
          command: ["sleep", "3600"]
"#;

#[test]
fn a_pods_token_used_from_outside_is_refused_once_the_pod_is_gone() {
    let installed = installed();
    let _steady = steady();
    let node = installed.node;
    installed
        .target
        .change(&[("apps/tokens/worker.yaml", Some(WORKER))], "A worker pod")
        .unwrap();
    let pod = wait_blocking(Duration::from_secs(120), || {
        let running = jsonpath(
            node,
            &[
                "pods",
                "-n",
                "tokens",
                "-l",
                "app=worker",
                "--field-selector=status.phase=Running",
            ],
            "{.items[*].metadata.name}",
        );
        (!running.is_empty()).then_some(running)
    })
    .expect("the worker pod never ran");
    let uid = jsonpath(node, &["pod", &pod, "-n", "tokens"], "{.metadata.uid}");

    // Someone with exec rights outside gitwarden-system copies the token.
    let token = node
        .exec(
            "tokens",
            &pod,
            &["cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"],
        )
        .expect_success()
        .trim()
        .to_string();
    let whoami = |token: &str| {
        node.kubectl(
            Identity::Admin,
            &[
                "--token",
                token,
                "--user=",
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
        )
    };
    let while_running = whoami(&token);
    assert_eq!(
        while_running.expect_success(),
        "system:serviceaccount:tokens:worker"
    );

    // git removes the pod; the agent prunes it.
    installed
        .target
        .change(
            &[(
                "apps/tokens/worker.yaml",
                Some(WORKER.split("---\napiVersion: apps/v1").next().unwrap()),
            )],
            "The worker is no longer needed",
        )
        .unwrap();
    let gone = wait_blocking(Duration::from_secs(120), || {
        jsonpath(node, &["pod", &pod, "-n", "tokens"], "{.metadata.uid}")
            .is_empty()
            .then_some(())
    });
    assert!(gone.is_some(), "the agent did not prune pod {uid}");

    // The API server checks the bound pod in its cache: refused once the
    // deletion reached it, within moments.
    let after = wait_blocking(Duration::from_secs(30), || {
        let out = whoami(&token);
        (!out.success).then_some(out)
    })
    .expect("the dead pod's token still works 30s after the pod is gone");
    assert!(after.stderr.contains("Unauthorized"), "{}", after.stderr);
}
