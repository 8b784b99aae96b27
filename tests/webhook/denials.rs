//! Humans — cluster-admins and system:masters included — cannot change
//! protected objects; the agent and the control plane can.

use std::time::Duration;

use gitwarden_shared::audit::AuditDecision;
use gitwarden_tests::Identity;
use gitwarden_tests::kubectl::wait_condition;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{Api, ListParams};

use crate::common::{Setup, audit_id, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_cannot_create_a_configmap_and_is_told_why_and_where_to_go() {
    let s = Setup::new("deny-create").await;
    let err = s
        .kubectl(
            Identity::Alice,
            &["create", "configmap", "settings", "--from-literal=a=b"],
        )
        .expect_failure()
        .to_string();
    assert!(err.contains("denied the request"), "{err}");
    assert!(
        err.contains(&format!(
            "configmaps \"settings\" in namespace \"{}\"",
            s.ns()
        )),
        "{err}"
    );
    assert!(err.contains("must be made in git"), "{err}");
    assert!(err.contains("gitwarden.io/break-glass"), "{err}");
    let id = audit_id(&err).expect("the denial names its audit record");

    let records = s.audit("&user=alice").await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].id, id);
    assert_eq!(records[0].decision, AuditDecision::Denied);
    assert_eq!(records[0].reason, "not_from_git");
    assert_eq!(records[0].operation, "CREATE");
    assert_eq!(records[0].resource, "configmaps");
    assert_eq!(records[0].name.as_deref(), Some("settings"));
    assert!(records[0].groups.iter().any(|g| g == "developers"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_masters_cannot_create_a_deployment() {
    let s = Setup::new("deny-masters").await;
    let err = s
        .kubectl(
            Identity::Admin,
            &[
                "create",
                "deployment",
                "web",
                "--image=registry.invalid/web:1",
            ],
        )
        .expect_failure()
        .to_string();
    assert!(err.contains("deployments \"web\""), "{err}");
    assert!(err.contains("must be made in git"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_patch_replace_and_edit_of_a_managed_object_are_refused() {
    let s = Setup::new("deny-update").await;
    s.managed_configmap("settings");
    let changed = s.configmap("settings", "by-hand");
    let kubeconfig = s.cluster.kubeconfig(Identity::Alice);
    let apply = s
        .cluster
        .kubectl_full(&kubeconfig, &["apply", "-f", "-"], &changed, &[]);
    assert!(
        apply.expect_failure().contains("must be made in git"),
        "apply: {}",
        apply.stderr
    );
    let ssa = s.cluster.kubectl_full(
        &kubeconfig,
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        &changed,
        &[],
    );
    assert!(
        ssa.expect_failure().contains("must be made in git"),
        "server-side apply: {}",
        ssa.stderr
    );
    let replace = s
        .cluster
        .kubectl_full(&kubeconfig, &["replace", "-f", "-"], &changed, &[]);
    assert!(
        replace.expect_failure().contains("must be made in git"),
        "replace: {}",
        replace.stderr
    );
    let patch = s.kubectl(
        Identity::Alice,
        &[
            "patch",
            "configmap",
            "settings",
            "-p",
            r#"{"data":{"k":"by-hand"}}"#,
        ],
    );
    assert!(
        patch.expect_failure().contains("must be made in git"),
        "patch: {}",
        patch.stderr
    );
    let edit = s.cluster.kubectl_full(
        &kubeconfig,
        &["-n", s.ns(), "edit", "configmap", "settings"],
        "",
        &[("KUBE_EDITOR", "sed -i s/from-git/by-hand/")],
    );
    assert!(
        edit.expect_failure().contains("must be made in git"),
        "edit: {}",
        edit.stderr
    );
    assert_eq!(s.configmap_field("settings", "{.data.k}"), "from-git");
    assert_eq!(s.audit("&user=alice").await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_delete_all_are_refused_one_object_at_a_time() {
    let s = Setup::new("deny-delete").await;
    s.managed_configmap("one");
    s.managed_configmap("two");
    let err = s
        .kubectl(Identity::Alice, &["delete", "configmap", "one"])
        .expect_failure()
        .to_string();
    assert!(err.contains("annotate the live object first"), "{err}");
    s.kubectl(Identity::Admin, &["delete", "configmaps", "--all"])
        .expect_failure();
    s.kubectl(Identity::Admin, &["get", "configmap", "one", "two"])
        .expect_success();
    // deletecollection reaches admission as one DELETE per object.
    let deletes = s.audit("&user=admin").await;
    assert!(
        deletes.iter().filter(|r| r.operation == "DELETE").count() >= 2,
        "{deletes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_a_deployment_is_refused() {
    let s = Setup::new("deny-scale").await;
    s.managed_deployment("web");
    let err = s
        .kubectl(
            Identity::Alice,
            &["scale", "deployment", "web", "--replicas=5"],
        )
        .expect_failure()
        .to_string();
    assert!(err.contains("deployments/scale"), "{err}");
    let replicas = s.kubectl(
        Identity::Admin,
        &[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
    );
    assert_eq!(replicas.expect_success(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelling_and_annotating_are_refused() {
    let s = Setup::new("deny-meta").await;
    s.managed_configmap("settings");
    s.kubectl(
        Identity::Alice,
        &["label", "configmap", "settings", "team=mine"],
    )
    .expect_failure();
    s.kubectl(
        Identity::Alice,
        &[
            "label",
            "configmap",
            "settings",
            "app.kubernetes.io/managed-by-",
        ],
    )
    .expect_failure();
    s.kubectl(
        Identity::Alice,
        &["annotate", "configmap", "settings", "note=hand-made"],
    )
    .expect_failure();
    assert_eq!(
        s.configmap_field(
            "settings",
            "{.metadata.labels.app\\.kubernetes\\.io/managed-by}"
        ),
        "gitwarden"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_roles_and_custom_resources_are_protected() {
    let s = Setup::new("deny-cluster").await;
    let err = s
        .cluster
        .kubectl(
            Identity::Admin,
            &[
                "create",
                "clusterrole",
                &format!("{}-reader", s.ns()),
                "--verb=get",
                "--resource=pods",
            ],
        )
        .expect_failure()
        .to_string();
    assert!(err.contains("(cluster-scoped)"), "{err}");

    let group = format!("{}.gitwarden.test", s.ns());
    s.agent_apply(&s.fixture("webhook/widget-crd.yaml", &[("GROUP", &group)]));
    wait_condition(
        s.gitwarden.agent_kubeconfig(),
        None,
        &format!("crd/widgets.{group}"),
        "Established",
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let widget = s.fixture("webhook/widget.yaml", &[("GROUP", &group)]);
    let err = s
        .cluster
        .kubectl_full(
            &s.cluster.kubeconfig(Identity::Alice),
            &["apply", "-f", "-"],
            &widget,
            &[],
        )
        .expect_failure()
        .to_string();
    assert!(err.contains("widgets \"gadget\""), "{err}");
    s.agent_apply(&widget);
    s.cluster
        .kubectl_with(
            s.gitwarden.agent_kubeconfig(),
            &["delete", "crd", &format!("widgets.{group}")],
        )
        .expect_success();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_and_diff_work_and_leave_no_audit_record() {
    let s = Setup::new("dry-run").await;
    s.managed_configmap("settings");
    let changed = s.fixture("webhook/proposed-configmap.yaml", &[]);
    let kubeconfig = s.cluster.kubeconfig(Identity::Alice);
    s.cluster
        .kubectl_full(
            &kubeconfig,
            &["apply", "--dry-run=server", "-f", "-"],
            &changed,
            &[],
        )
        .expect_success();
    let diff = s
        .cluster
        .kubectl_full(&kubeconfig, &["diff", "-f", "-"], &changed, &[]);
    // kubectl diff exits 1 when there are differences, >1 on errors.
    assert!(
        diff.stdout.contains("proposed"),
        "diff: {} {}",
        diff.stdout,
        diff.stderr
    );
    assert!(!diff.stderr.contains("denied"), "{}", diff.stderr);
    s.kubectl(
        Identity::Alice,
        &["create", "configmap", "new-one", "--dry-run=server"],
    )
    .expect_success();
    assert!(s.audit("").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_with_a_real_service_account_token_may_write() {
    let s = Setup::new("agent-writes").await;
    s.agent(&["create", "configmap", "settings", "--from-literal=k=v1"])
        .expect_success();
    s.agent(&[
        "patch",
        "configmap",
        "settings",
        "-p",
        r#"{"data":{"k":"v2"}}"#,
    ])
    .expect_success();
    s.agent(&["delete", "configmap", "settings"])
        .expect_success();
    assert!(s.audit("").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_manager_still_creates_replicasets() {
    let s = Setup::new("controllers").await;
    s.managed_deployment("web");
    let client = s.gitwarden.agent_client().await.unwrap();
    let replicasets: Api<ReplicaSet> = Api::namespaced(client, s.ns());
    let found = wait_for(Duration::from_secs(30), || async {
        replicasets
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await;
    assert!(
        found.is_some(),
        "the deployment controller could not create a ReplicaSet under gitwarden"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_a_token_for_the_agent_is_refused() {
    let s = Setup::new("token-mint").await;
    let err = s
        .cluster
        .kubectl(
            Identity::Admin,
            &[
                "-n",
                "gitwarden-system",
                "create",
                "token",
                "gitwarden-agent",
            ],
        )
        .expect_failure()
        .to_string();
    assert!(err.contains("token for the agent"), "{err}");
    // A token for any other service account in a protected namespace is a
    // subresource create like any other: refused for humans too.
    s.agent(&["create", "serviceaccount", "robot"])
        .expect_success();
    s.kubectl(Identity::Admin, &["create", "token", "robot"])
        .expect_failure();
}
