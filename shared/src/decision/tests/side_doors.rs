//! Steps 0, 3a and 3b: the side doors — exempt identities borrowed through
//! Pods, templates, token Secrets and TokenRequests; Pods that reach their
//! node; gitwarden's own objects; people's Leases.

use serde_json::{Value, json};

use super::*;
use crate::decision::Reason;

const KCM: (&str, &[&str]) = ("system:kube-controller-manager", &["system:authenticated"]);
const RS_CONTROLLER: (&str, &[&str]) = (
    "system:serviceaccount:kube-system:replicaset-controller",
    &[
        "system:serviceaccounts",
        "system:serviceaccounts:kube-system",
    ],
);

fn pod(namespace: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": namespace},
        "spec": spec
    })
}

fn create_pod(namespace: &str, spec: Value) -> Req {
    Req::create()
        .resource("", "pods", "Pod")
        .ns(namespace)
        .name("p")
        .object(pod(namespace, spec))
}

fn workload(kind: &str, resource: &str, group: &str, namespace: &str, template_spec: Value) -> Req {
    let api_version = if group.is_empty() {
        "v1".to_owned()
    } else {
        format!("{group}/v1")
    };
    let spec = if resource == "cronjobs" {
        json!({"jobTemplate": {"spec": {"template": {"spec": template_spec}}}})
    } else {
        json!({"template": {"spec": template_spec}})
    };
    Req::create()
        .resource(group, resource, kind)
        .ns(namespace)
        .name("w")
        .object(json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": "w", "namespace": namespace},
            "spec": spec
        }))
}

fn as_controller(service_account: &str) -> Value {
    json!({"serviceAccountName": service_account, "containers": [{"name": "c", "image": "x"}]})
}

fn plain() -> Value {
    json!({"containers": [{"name": "c", "image": "x"}]})
}

// --- Borrowed identities -----------------------------------------------------

#[test]
fn a_person_may_not_run_a_pod_as_a_kube_system_controller() {
    let d = create_pod("kube-system", as_controller("generic-garbage-collector"))
        .user(ADMIN)
        .decide();
    assert_eq!(d.reason, Reason::BorrowedIdentity);
    assert!(d.audit);
    assert!(
        d.message.contains("kube-system/generic-garbage-collector"),
        "{}",
        d.message
    );
}

#[test]
fn a_person_may_not_run_a_pod_as_the_agent() {
    let d = create_pod("gitwarden-system", as_controller("gitwarden-agent"))
        .user(ALICE)
        .decide();
    assert_eq!(d.reason, Reason::BorrowedIdentity);
}

#[test]
fn every_builtin_workload_kind_is_judged_by_its_pod_template() {
    for (kind, resource, group) in [
        ("Deployment", "deployments", "apps"),
        ("ReplicaSet", "replicasets", "apps"),
        ("StatefulSet", "statefulsets", "apps"),
        ("DaemonSet", "daemonsets", "apps"),
        ("Job", "jobs", "batch"),
        ("CronJob", "cronjobs", "batch"),
        ("ReplicationController", "replicationcontrollers", ""),
    ] {
        let d = workload(
            kind,
            resource,
            group,
            "kube-system",
            as_controller("namespace-controller"),
        )
        .user(ADMIN)
        .decide();
        assert_eq!(d.reason, Reason::BorrowedIdentity, "{kind}");
    }
}

#[test]
fn a_policy_kind_with_a_pod_template_is_judged_too() {
    let policy = policy(
        "workloads:\n  extraKinds: [{group: argoproj.io, resource: rollouts, podSpecPath: /spec/template/spec}]\n",
    );
    let d = workload(
        "Rollout",
        "rollouts",
        "argoproj.io",
        "kube-system",
        as_controller("job-controller"),
    )
    .user(ADMIN)
    .decide_with(&policy);
    assert_eq!(d.reason, Reason::BorrowedIdentity);
}

#[test]
fn controllers_keep_creating_pods_from_such_templates() {
    let d = create_pod("kube-system", as_controller("generic-garbage-collector"))
        .user(RS_CONTROLLER)
        .decide();
    assert_eq!(d.reason, Reason::ExemptIdentity);
}

#[test]
fn a_person_may_run_a_kube_system_add_on_as_its_own_service_account() {
    let d = workload(
        "Deployment",
        "deployments",
        "apps",
        "kube-system",
        as_controller("coredns"),
    )
    .user(ADMIN)
    .decide();
    assert_eq!(d.reason, Reason::UnprotectedNamespace);
}

#[test]
fn a_pod_without_a_service_account_runs_as_default_which_is_not_exempt() {
    let d = create_pod("kube-system", plain()).user(ADMIN).decide();
    assert_eq!(d.reason, Reason::UnprotectedNamespace);
}

#[test]
fn an_update_that_keeps_the_pod_spec_is_not_judged_again() {
    let spec = json!({"hostNetwork": true, "containers": [{"name": "c", "image": "x"}]});
    let mut new = pod("kube-system", spec.clone());
    new["metadata"]["labels"] = json!({"tier": "node"});
    let d = Req::update()
        .resource("", "pods", "Pod")
        .ns("kube-system")
        .name("p")
        .object(new)
        .old(pod("kube-system", spec))
        .user(ADMIN)
        .decide();
    assert_eq!(d.reason, Reason::UnprotectedNamespace);
}

#[test]
fn a_legacy_token_secret_for_a_controller_is_refused() {
    let d = Req::create()
        .resource("", "secrets", "Secret")
        .ns("kube-system")
        .name("t")
        .object(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "t", "namespace": "kube-system",
                         "annotations": {"kubernetes.io/service-account.name": "namespace-controller"}},
            "type": "kubernetes.io/service-account-token"
        }))
        .user(ALICE)
        .decide();
    assert_eq!(d.reason, Reason::BorrowedIdentity);
    assert!(d.message.contains("filled with a token"), "{}", d.message);
}

#[test]
fn a_legacy_token_secret_for_an_ordinary_account_is_not_a_side_door() {
    let d = Req::create()
        .resource("", "secrets", "Secret")
        .ns("kube-system")
        .name("t")
        .object(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "t", "namespace": "kube-system",
                         "annotations": {"kubernetes.io/service-account.name": "coredns"}},
            "type": "kubernetes.io/service-account-token"
        }))
        .user(ALICE)
        .decide();
    assert_eq!(d.reason, Reason::UnprotectedNamespace);
}

fn token_request(namespace: &str, service_account: &str) -> Req {
    Req::create()
        .resource("", "serviceaccounts", "TokenRequest")
        .sub("token")
        .ns(namespace)
        .name(service_account)
        .object(json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "metadata": {"name": service_account, "namespace": namespace},
            "spec": {"audiences": []}
        }))
}

#[test]
fn a_person_may_not_mint_a_controllers_token_not_even_as_a_dry_run() {
    let d = token_request("kube-system", "generic-garbage-collector")
        .user(ADMIN)
        .dry_run()
        .decide();
    assert_eq!(d.reason, Reason::BorrowedIdentity);
    assert!(d.message.contains("mint a token"), "{}", d.message);
}

#[test]
fn the_controller_manager_mints_its_controllers_tokens() {
    let d = token_request("kube-system", "generic-garbage-collector")
        .user(KCM)
        .decide();
    assert_eq!(d.reason, Reason::ExemptIdentity);
}

#[test]
fn the_controller_manager_may_not_mint_the_agents_token() {
    let d = token_request("gitwarden-system", "gitwarden-agent")
        .user(KCM)
        .decide();
    assert_eq!(d.reason, Reason::AgentTokenMint);
}

// --- Node access --------------------------------------------------------------

#[test]
fn a_person_may_not_run_a_pod_that_reaches_its_node_in_kube_system() {
    for (spec, says) in [
        (
            json!({"hostPID": true, "containers": [{"name": "c", "image": "x"}]}),
            "hostPID",
        ),
        (
            json!({"hostNetwork": true, "containers": [{"name": "c", "image": "x"}]}),
            "hostNetwork",
        ),
        (
            json!({"volumes": [{"name": "root", "hostPath": {"path": "/"}}], "containers": [{"name": "c", "image": "x"}]}),
            "hostPath volume \"root\"",
        ),
        (
            json!({"containers": [{"name": "c", "image": "x", "securityContext": {"privileged": true}}]}),
            "privileged container \"c\"",
        ),
        (
            json!({"containers": [{"name": "c", "image": "x", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}]}),
            "capability SYS_ADMIN",
        ),
        (
            json!({"initContainers": [{"name": "i", "image": "x", "ports": [{"containerPort": 80, "hostPort": 80}]}], "containers": []}),
            "host port",
        ),
    ] {
        let d = create_pod("kube-system", spec).user(ADMIN).decide();
        assert_eq!(d.reason, Reason::NodeAccess, "{says}");
        assert!(d.message.contains(says), "{says}: {}", d.message);
    }
}

#[test]
fn baseline_capabilities_do_not_reach_the_node() {
    let spec = json!({"containers": [{"name": "c", "image": "x", "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE", "CAP_CHOWN"]}}}]});
    assert_eq!(
        create_pod("kube-system", spec).user(ADMIN).decide().reason,
        Reason::UnprotectedNamespace
    );
}

#[test]
fn kubectl_debug_node_is_refused() {
    // What `kubectl debug node/n1 -it --image=busybox` creates.
    let spec = json!({
        "nodeName": "n1", "hostIPC": true, "hostNetwork": true, "hostPID": true,
        "volumes": [{"name": "host-root", "hostPath": {"path": "/"}}],
        "containers": [{"name": "debugger", "image": "busybox", "volumeMounts": [{"name": "host-root", "mountPath": "/host"}]}]
    });
    let d = create_pod("kube-system", spec).user(ADMIN).decide();
    assert_eq!(d.reason, Reason::NodeAccess);
}

#[test]
fn a_privileged_ephemeral_container_is_refused() {
    let mut live = pod("kube-system", plain());
    let mut with_debugger = live.clone();
    with_debugger["spec"]["ephemeralContainers"] =
        json!([{"name": "debugger", "image": "x", "securityContext": {"privileged": true}}]);
    live["spec"]["ephemeralContainers"] = json!([]);
    let d = Req::update()
        .resource("", "pods", "Pod")
        .sub("ephemeralcontainers")
        .ns("kube-system")
        .name("p")
        .object(with_debugger)
        .old(live)
        .user(ADMIN)
        .decide();
    assert_eq!(d.reason, Reason::NodeAccess);
}

#[test]
fn an_ephemeral_container_in_a_controllers_pod_is_refused() {
    let live = pod("kube-system", as_controller("replicaset-controller"));
    let mut with_debugger = live.clone();
    with_debugger["spec"]["ephemeralContainers"] = json!([{"name": "debugger", "image": "x"}]);
    let d = Req::update()
        .resource("", "pods", "Pod")
        .sub("ephemeralcontainers")
        .ns("kube-system")
        .name("p")
        .object(with_debugger)
        .old(live)
        .user(ADMIN)
        .decide();
    assert_eq!(d.reason, Reason::BorrowedIdentity);
}

#[test]
fn the_policy_may_name_a_workload_that_reaches_its_node() {
    let policy = policy("workloads:\n  nodeAccessAllowed: [{namespace: kube-system, name: 'w'}]\n");
    let spec = json!({"hostNetwork": true, "containers": [{"name": "c", "image": "x"}]});
    let d = workload(
        "DaemonSet",
        "daemonsets",
        "apps",
        "kube-system",
        spec.clone(),
    )
    .user(ADMIN)
    .decide_with(&policy);
    assert_eq!(d.reason, Reason::UnprotectedNamespace);
    let elsewhere = workload("DaemonSet", "daemonsets", "apps", "default", spec)
        .user(ADMIN)
        .decide_with(&policy);
    assert_eq!(elsewhere.reason, Reason::NodeAccess);
}

#[test]
fn the_agent_applies_node_level_workloads_from_git() {
    let spec = json!({"hostNetwork": true, "containers": [{"name": "c", "image": "x"}]});
    let d = workload("DaemonSet", "daemonsets", "apps", "kube-system", spec)
        .user(AGENT)
        .decide();
    assert_eq!(d.reason, Reason::Agent);
}

// --- gitwarden's own objects ---------------------------------------------------

fn lease(namespace: &str, name: &str) -> Req {
    Req::update()
        .resource("coordination.k8s.io", "leases", "Lease")
        .ns(namespace)
        .name(name)
        .object(
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                       "metadata": {"name": name, "namespace": namespace},
                       "spec": {"holderIdentity": "alice"}}),
        )
        .old(
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": namespace}}),
        )
}

#[test]
fn a_person_may_not_take_the_agents_leader_lease() {
    let d = lease("gitwarden-system", "gitwarden-agent")
        .user(ALICE)
        .decide();
    assert_eq!(d.reason, Reason::NotFromGit);
    assert!(d.audit);
}

#[test]
fn another_workload_may_not_write_gitwardens_leases() {
    let d = lease("gitwarden-system", "gitwarden-agent")
        .user(WORKLOAD)
        .decide();
    assert_eq!(d.reason, Reason::NotFromGit);
}

#[test]
fn the_agent_renews_its_own_lease() {
    let d = lease("gitwarden-system", "gitwarden-agent")
        .user(AGENT)
        .decide();
    assert_eq!(d.reason, Reason::Agent);
}

#[test]
fn a_person_writing_a_lease_in_a_protected_namespace_is_judged_like_any_write() {
    assert_eq!(
        lease("shop", "leader").user(ADMIN).decide().reason,
        Reason::NotFromGit
    );
    assert_eq!(
        lease("kube-system", "x").user(ADMIN).decide().reason,
        Reason::UnprotectedNamespace
    );
}

fn in_gitwarden(resource: &str, kind: &str, name: &str, annotations: Value) -> Req {
    let object = json!({"apiVersion": "v1", "kind": kind,
        "metadata": {"name": name, "namespace": "gitwarden-system", "annotations": annotations}});
    Req::update()
        .resource("", resource, kind)
        .ns("gitwarden-system")
        .name(name)
        .object(object.clone())
        .old(object)
}

#[test]
fn break_glass_on_the_policy_is_refused_with_its_own_reason() {
    let d = in_gitwarden(
        "configmaps",
        "ConfigMap",
        "gitwarden-policy",
        json!({"gitwarden.io/break-glass": "INC-1 add me to exempt"}),
    )
    .user(ONCALL)
    .decide();
    assert_eq!(d.reason, Reason::BreakGlassOnGitwarden);
    assert!(d.audit);
    assert!(
        d.message.contains("Changing gitwarden is a commit"),
        "{}",
        d.message
    );
}

#[test]
fn gitwardens_namespace_is_protected_even_when_the_policy_leaves_it_out() {
    let policy = policy("namespaces:\n  exempt: [gitwarden-system]\n");
    let d = in_gitwarden("secrets", "Secret", "gitwarden-webhook-tls", json!({}))
        .user(ADMIN)
        .decide_with(&policy);
    assert_eq!(d.reason, Reason::NotFromGit);
}

fn rbac(resource: &str, kind: &str, name: &str, extra: Value) -> Req {
    let mut object = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
                            "metadata": {"name": name}});
    if let (Some(o), Some(e)) = (object.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    let mut annotated = object.clone();
    annotated["metadata"]["annotations"] = json!({"gitwarden.io/break-glass": "INC-2"});
    Req::update()
        .resource("rbac.authorization.k8s.io", resource, kind)
        .cluster_scoped()
        .name(name)
        .object(annotated)
        .old(object)
        .user(ONCALL)
}

#[test]
fn break_glass_on_the_agents_cluster_role_is_refused() {
    let d = rbac(
        "clusterroles",
        "ClusterRole",
        "gitwarden-agent-writer",
        json!({"rules": []}),
    )
    .decide();
    assert_eq!(d.reason, Reason::BreakGlassOnGitwarden);
}

#[test]
fn break_glass_on_a_binding_that_grants_the_agent_is_refused() {
    let subjects = json!({"subjects": [{"kind": "ServiceAccount", "name": "gitwarden-agent", "namespace": "gitwarden-system"}],
                          "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"}});
    let d = rbac(
        "clusterrolebindings",
        "ClusterRoleBinding",
        "ops-binding",
        subjects,
    )
    .decide();
    assert_eq!(d.reason, Reason::BreakGlassOnGitwarden);
}

#[test]
fn break_glass_on_a_default_role_gitwarden_may_be_bound_to_is_refused() {
    let mut d = rbac("clusterroles", "ClusterRole", "cluster-admin", json!({}));
    d.request["oldObject"]["metadata"]["labels"] =
        json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    assert_eq!(d.decide().reason, Reason::BreakGlassOnGitwarden);
}

#[test]
fn break_glass_on_an_ordinary_cluster_role_still_works() {
    let d = rbac(
        "clusterroles",
        "ClusterRole",
        "oncall-extra",
        json!({"rules": []}),
    )
    .decide();
    assert_eq!(d.reason, Reason::BreakGlass);
}

#[test]
fn break_glass_on_an_admission_object_is_refused_unless_the_policy_allows_it() {
    let request = || {
        let object = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
                            "metadata": {"name": "kyverno-x", "annotations": {"gitwarden.io/break-glass": "INC-3"}}});
        Req::create()
            .resource(
                "admissionregistration.k8s.io",
                "validatingadmissionpolicies",
                "ValidatingAdmissionPolicy",
            )
            .cluster_scoped()
            .name("kyverno-x")
            .object(object)
            .no_old()
            .user(ONCALL)
    };
    assert_eq!(request().decide().reason, Reason::BreakGlassOnGitwarden);
    let policy = policy("admissionChain:\n  allow: [\"kyverno-*\"]\n");
    assert_eq!(request().decide_with(&policy).reason, Reason::BreakGlass);
}

#[test]
fn exec_into_gitwardens_pods_is_refused() {
    let d = Req::new("CONNECT")
        .resource("", "pods", "PodExecOptions")
        .sub("exec")
        .ns("gitwarden-system")
        .name("gitwarden-agent-0")
        .object(json!({"apiVersion": "v1", "kind": "PodExecOptions", "command": ["sh"]}))
        .user(ADMIN)
        .decide();
    assert_eq!(d.reason, Reason::GitwardenPodAccess);
    assert!(d.audit);
}
