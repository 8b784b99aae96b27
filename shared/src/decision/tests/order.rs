//! Steps 0–5 and 7 of the decision table, and the shape of decisions.

use serde_json::json;

use super::*;
use crate::decision::{Reason, Verdict};

fn token_for(namespace: &str, service_account: &str) -> Req {
    Req::create()
        .resource("", "serviceaccounts", "TokenRequest")
        .sub("token")
        .ns(namespace)
        .name(service_account)
        .object(json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"name": service_account, "namespace": namespace},
            "spec": {"audiences": ["https://kubernetes.default.svc"]}
        }))
}

fn agent_token() -> Req {
    token_for("gitwarden-system", "gitwarden-agent")
}

// --- Step 0: minting the agent's token -------------------------------------

#[test]
fn admin_may_not_mint_the_agents_token() {
    let d = agent_token().user(ADMIN).decide();
    assert_eq!(d.reason, Reason::AgentTokenMint);
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(d.audit);
}

#[test]
fn node_may_mint_the_agents_token() {
    let d = agent_token().user(NODE).decide();
    assert!(d.is_allowed());
    assert_eq!(d.reason, Reason::ExemptIdentity);
}

#[test]
fn dry_run_token_mint_is_still_denied() {
    let d = agent_token().user(ADMIN).dry_run().decide();
    assert_eq!(d.reason, Reason::AgentTokenMint);
}

#[test]
fn exempt_kube_system_service_account_may_not_mint_the_agents_token() {
    let d = agent_token()
        .user((
            "system:serviceaccount:kube-system:generic-garbage-collector",
            &[],
        ))
        .decide();
    assert_eq!(d.reason, Reason::AgentTokenMint);
}

#[test]
fn the_agent_may_not_mint_its_own_token() {
    assert_eq!(
        agent_token().user(AGENT).decide().reason,
        Reason::AgentTokenMint
    );
}

#[test]
fn token_mint_message_explains_the_bypass() {
    let d = agent_token().user(ADMIN).decide();
    assert!(d.message.contains("\"gitwarden-agent\""), "{}", d.message);
    assert!(d.message.contains("bypassing git"), "{}", d.message);
}

#[test]
fn agent_named_by_namespace_group_protects_every_token_in_that_namespace() {
    let p = policy("agent:\n  users: []\n  groups: [system:serviceaccounts:gitwarden-system]\n");
    let d = token_for("gitwarden-system", "other")
        .user(ADMIN)
        .decide_with(&p);
    assert_eq!(d.reason, Reason::AgentTokenMint);
}

#[test]
fn token_for_another_service_account_is_an_ordinary_protected_change() {
    let d = token_for("shop", "web").user(ADMIN).decide();
    assert_eq!(d.reason, Reason::NotFromGit);
    let d = token_for("shop", "web").user(ADMIN).dry_run().decide();
    assert_eq!(d.reason, Reason::DryRun);
}

// --- Step 1: dry-run -------------------------------------------------------

#[test]
fn dry_run_is_allowed_without_audit() {
    let d = Req::update().user(ADMIN).dry_run().decide();
    assert_eq!(d.reason, Reason::DryRun);
    assert!(d.is_allowed());
    assert!(!d.audit);
}

// --- Step 2: the agent -----------------------------------------------------

#[test]
fn agent_is_allowed_without_audit() {
    let d = Req::update().user(AGENT).decide();
    assert_eq!(d.reason, Reason::Agent);
    assert!(d.is_allowed());
    assert!(!d.audit);
    assert!(d.warnings.is_empty());
}

#[test]
fn agent_may_delete_cluster_scoped_objects() {
    let d = Req::delete()
        .resource("rbac.authorization.k8s.io", "clusterroles", "ClusterRole")
        .cluster_scoped()
        .user(AGENT)
        .decide();
    assert_eq!(d.reason, Reason::Agent);
}

#[test]
fn agent_message_names_the_matching_rule() {
    let d = Req::update().user(AGENT).decide();
    assert!(
        d.message
            .contains("user \"system:serviceaccount:gitwarden-system:gitwarden-agent\""),
        "{}",
        d.message
    );
}

#[test]
fn a_user_merely_named_like_the_agent_prefix_is_not_the_agent() {
    let d = Req::update()
        .user((
            "system:serviceaccount:gitwarden-system:gitwarden-agent-2",
            &[],
        ))
        .decide();
    assert_eq!(d.reason, Reason::NotFromGit);
}

// --- Step 3: exempt identities ---------------------------------------------

#[test]
fn controller_manager_is_exempt() {
    let d = Req::update()
        .user(("system:kube-controller-manager", &[]))
        .decide();
    assert_eq!(d.reason, Reason::ExemptIdentity);
    assert!(!d.audit);
}

#[test]
fn scheduler_and_apiserver_are_exempt() {
    for user in ["system:kube-scheduler", "system:apiserver"] {
        assert_eq!(
            Req::update().user((user, &[])).decide().reason,
            Reason::ExemptIdentity,
            "{user}"
        );
    }
}

#[test]
fn kube_system_controllers_are_exempt_by_name() {
    let d = Req::update()
        .user((
            "system:serviceaccount:kube-system:deployment-controller",
            &[],
        ))
        .decide();
    assert_eq!(d.reason, Reason::ExemptIdentity);
    assert!(
        d.message
            .contains("user \"system:serviceaccount:kube-system:deployment-controller\""),
        "{}",
        d.message
    );
}

#[test]
fn nodes_are_exempt_by_group() {
    let d = Req::update()
        .resource("", "pods", "Pod")
        .sub("status")
        .user(NODE)
        .decide();
    assert_eq!(d.reason, Reason::ExemptIdentity);
    assert!(
        d.message.contains("group \"system:nodes\""),
        "{}",
        d.message
    );
}

#[test]
fn system_masters_is_not_exempt() {
    let d = Req::update().user(ADMIN).decide();
    assert_eq!(d.reason, Reason::NotFromGit);
    assert!(d.audit);
}

#[test]
fn other_service_accounts_are_not_exempt_by_default() {
    let d = Req::update()
        .user((
            "system:serviceaccount:cert-manager:cert-manager",
            &["system:serviceaccounts"],
        ))
        .decide();
    assert_eq!(d.reason, Reason::NotFromGit);
}

#[test]
fn policy_may_exempt_an_operators_service_accounts() {
    let p = policy("exempt:\n  users: [\"system:serviceaccount:cert-manager:*\"]\n");
    let d = Req::update()
        .user(("system:serviceaccount:cert-manager:cert-manager", &[]))
        .decide_with(&p);
    assert_eq!(d.reason, Reason::ExemptIdentity);
}

// --- Step 4: exempt resources ----------------------------------------------

#[test]
fn core_events_written_by_a_workload_are_exempt() {
    let d = Req::create()
        .resource("", "events", "Event")
        .user(WORKLOAD)
        .decide();
    assert_eq!(d.reason, Reason::ExemptResource);
    assert!(!d.audit);
}

#[test]
fn events_k8s_io_events_written_by_a_workload_are_exempt() {
    let d = Req::create()
        .resource("events.k8s.io", "events", "Event")
        .user(WORKLOAD)
        .decide();
    assert_eq!(d.reason, Reason::ExemptResource);
}

#[test]
fn events_written_by_a_person_are_judged_like_any_write() {
    let d = Req::create()
        .resource("", "events", "Event")
        .user(ADMIN)
        .decide();
    assert_eq!(d.reason, Reason::NotFromGit);
    assert!(d.audit);
}

#[test]
fn leases_written_by_a_workload_are_exempt() {
    let d = Req::update()
        .resource("coordination.k8s.io", "leases", "Lease")
        .user(WORKLOAD)
        .decide();
    assert_eq!(d.reason, Reason::ExemptResource);
    assert!(
        d.message.contains("leases.coordination.k8s.io"),
        "{}",
        d.message
    );
}

#[test]
fn configmaps_are_not_exempt() {
    let d = Req::update()
        .resource("", "configmaps", "ConfigMap")
        .decide();
    assert_eq!(d.reason, Reason::NotFromGit);
}

// --- Step 5: scope ---------------------------------------------------------

#[test]
fn kube_system_is_unprotected_by_default() {
    let d = Req::update().ns("kube-system").user(ADMIN).decide();
    assert_eq!(d.reason, Reason::UnprotectedNamespace);
    assert!(!d.audit);
}

#[test]
fn namespace_outside_the_protected_globs_is_unprotected() {
    let p = policy("namespaces:\n  protected: [\"team-*\"]\n");
    assert_eq!(
        Req::update().ns("sandbox").decide_with(&p).reason,
        Reason::UnprotectedNamespace
    );
    assert_eq!(
        Req::update().ns("team-a").decide_with(&p).reason,
        Reason::NotFromGit
    );
}

#[test]
fn managed_object_in_an_unprotected_namespace_is_protected() {
    let managed = labelled(&[("app.kubernetes.io/managed-by", "gitwarden")]);
    let d = Req::update()
        .ns("kube-system")
        .object(managed.clone())
        .old(managed)
        .decide();
    assert_eq!(d.reason, Reason::NotFromGit);
}

#[test]
fn removing_the_managed_by_label_does_not_escape_protection() {
    let d = Req::update()
        .ns("kube-system")
        .old(labelled(&[("app.kubernetes.io/managed-by", "gitwarden")]))
        .object(object())
        .decide();
    assert_eq!(d.reason, Reason::NotFromGit);
}

#[test]
fn deleting_a_managed_object_in_an_unprotected_namespace_is_denied() {
    let d = Req::delete()
        .ns("kube-system")
        .old(labelled(&[("app.kubernetes.io/managed-by", "gitwarden")]))
        .decide();
    assert_eq!(d.reason, Reason::NotFromGit);
}

#[test]
fn managed_by_someone_else_does_not_pull_an_object_into_scope() {
    let helm = labelled(&[("app.kubernetes.io/managed-by", "Helm")]);
    let d = Req::update()
        .ns("kube-system")
        .object(helm.clone())
        .old(helm)
        .decide();
    assert_eq!(d.reason, Reason::UnprotectedNamespace);
}

#[test]
fn cluster_scoped_objects_are_protected() {
    let d = Req::update()
        .resource("rbac.authorization.k8s.io", "clusterroles", "ClusterRole")
        .cluster_scoped()
        .name("admin")
        .user(ADMIN)
        .decide();
    assert_eq!(d.reason, Reason::NotFromGit);
    assert!(
        d.message
            .contains("clusterroles \"admin\" (cluster-scoped)"),
        "{}",
        d.message
    );
}

#[test]
fn a_namespace_object_is_protected_even_when_named_like_an_exempt_namespace() {
    let d = Req::update()
        .resource("", "namespaces", "Namespace")
        .ns("kube-system")
        .name("kube-system")
        .user(ADMIN)
        .decide();
    assert_eq!(d.reason, Reason::NotFromGit);
    assert!(
        d.message
            .contains("namespaces \"kube-system\" (cluster-scoped)"),
        "{}",
        d.message
    );
}

#[test]
fn scale_subresource_is_protected_for_humans() {
    let d = Req::update().sub("scale").user(ADMIN).decide();
    assert_eq!(d.reason, Reason::NotFromGit);
    assert!(
        d.message
            .contains("deployments/scale \"web\" in namespace \"shop\""),
        "{}",
        d.message
    );
}

#[test]
fn status_subresource_is_protected_for_humans() {
    assert_eq!(
        Req::update().sub("status").user(ADMIN).decide().reason,
        Reason::NotFromGit
    );
}

#[test]
fn pod_eviction_is_protected_for_humans() {
    let d = Req::create()
        .resource("", "pods", "Eviction")
        .sub("eviction")
        .user(ADMIN)
        .decide();
    assert_eq!(d.reason, Reason::NotFromGit);
}

#[test]
fn pod_eviction_by_a_kube_system_controller_is_exempt() {
    let d = Req::create()
        .resource("", "pods", "Eviction")
        .sub("eviction")
        .user((
            "system:serviceaccount:kube-system:disruption-controller",
            &[],
        ))
        .decide();
    assert_eq!(d.reason, Reason::ExemptIdentity);
}

#[test]
fn a_kube_system_add_on_is_exempt_only_when_the_policy_names_it() {
    let eviction = || {
        Req::create()
            .resource("", "pods", "Eviction")
            .sub("eviction")
            .user(("system:serviceaccount:kube-system:cluster-autoscaler", &[]))
    };
    assert_eq!(eviction().decide().reason, Reason::NotFromGit);
    let policy = Policy::from_yaml(
        "exempt:\n  users: [\"system:serviceaccount:kube-system:cluster-autoscaler\"]\n",
    )
    .unwrap();
    assert_eq!(
        eviction().decide_with(&policy).reason,
        Reason::ExemptIdentity
    );
}

#[test]
fn ephemeral_containers_are_protected_for_humans() {
    let d = Req::update()
        .resource("", "pods", "Pod")
        .sub("ephemeralcontainers")
        .user(ADMIN)
        .decide();
    assert_eq!(d.reason, Reason::NotFromGit);
}

// --- Step 7: not from git --------------------------------------------------

#[test]
fn denial_is_audited_and_names_the_object() {
    let d = Req::update().user(ADMIN).decide();
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(d.audit);
    assert!(d.break_glass.is_none());
    assert!(
        d.message
            .contains("update of deployments \"web\" in namespace \"shop\""),
        "{}",
        d.message
    );
}

#[test]
fn denial_names_the_generic_git_source_when_the_policy_has_none() {
    let d = Req::update().decide();
    assert!(
        d.message
            .contains("the git repository gitwarden syncs from"),
        "{}",
        d.message
    );
}

#[test]
fn denial_names_the_policys_git_source() {
    let p = policy("gitSource: https://git.example.com/platform/cluster.git\n");
    let d = Req::update().decide_with(&p);
    assert!(
        d.message
            .contains("https://git.example.com/platform/cluster.git"),
        "{}",
        d.message
    );
}

#[test]
fn denial_explains_break_glass() {
    let d = Req::update().decide();
    assert!(
        d.message.contains(
            "Members of \"gitwarden:break-glass\" may annotate gitwarden.io/break-glass=<reason> \
             (optionally gitwarden.io/break-glass-ttl, at most 4h) for a time-limited emergency change."
        ),
        "{}",
        d.message
    );
}

#[test]
fn denial_lists_several_break_glass_groups() {
    let p = policy("breakGlass:\n  groups: [sre, oncall, platform]\n");
    let d = Req::update().decide_with(&p);
    assert!(
        d.message
            .contains("Members of \"sre\", \"oncall\" or \"platform\" may"),
        "{}",
        d.message
    );
}

#[test]
fn denial_says_when_break_glass_is_disabled() {
    let d = Req::update().decide_with(&policy("breakGlass:\n  groups: []\n"));
    assert!(
        d.message.contains("Break-glass is disabled by the policy."),
        "{}",
        d.message
    );
}

#[test]
fn delete_denial_says_to_annotate_first() {
    let d = Req::delete().decide();
    assert_eq!(d.reason, Reason::NotFromGit);
    assert!(
        d.message
            .contains("annotate the live object first, then delete"),
        "{}",
        d.message
    );
}

#[test]
fn create_without_a_name_is_described_by_generate_name() {
    let mut o = object();
    o["metadata"] = json!({"generateName": "web-", "namespace": "shop"});
    let d = Req::create().name("").object(o).decide();
    assert!(
        d.message
            .contains("deployments \"web-\" in namespace \"shop\""),
        "{}",
        d.message
    );
}

#[test]
fn create_without_a_request_name_is_described_by_the_objects_name() {
    let d = Req::create().name("").decide();
    assert!(d.message.contains("deployments \"web\""), "{}", d.message);
}

#[test]
fn message_with_audit_id_appends_the_record_id() {
    let d = Req::update().decide();
    let shown = d.message_with_audit_id("a1b2c3");
    assert!(shown.starts_with(&d.message));
    assert!(
        shown.ends_with("(gitwarden audit record a1b2c3)"),
        "{shown}"
    );
}

#[test]
fn connect_requests_to_protected_objects_are_denied() {
    let d = Req::new("CONNECT")
        .resource("", "pods", "PodExecOptions")
        .sub("exec")
        .user(ADMIN)
        .decide();
    assert_eq!(d.reason, Reason::NotFromGit);
}

// --- Reasons ----------------------------------------------------------------

#[test]
fn reason_codes_are_their_serde_form() {
    for reason in Reason::ALL {
        assert_eq!(serde_json::to_value(reason).unwrap(), json!(reason.code()));
        assert_eq!(reason.to_string(), reason.code());
    }
}

#[test]
fn reason_codes_are_unique() {
    let mut codes: Vec<_> = Reason::ALL.iter().map(|r| r.code()).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), Reason::ALL.len());
}

#[test]
fn only_allow_reasons_allow() {
    let allows: Vec<_> = Reason::ALL
        .into_iter()
        .filter(|r| r.verdict() == Verdict::Allow)
        .map(Reason::code)
        .collect();
    assert_eq!(
        allows,
        [
            "dry_run",
            "agent",
            "exempt_identity",
            "exempt_resource",
            "unprotected_namespace",
            "break_glass"
        ]
    );
}

#[test]
fn a_located_denial_says_which_file_and_line_to_edit_with_a_link() {
    let p = policy(
        "gitSource: https://github.com/example/cluster\ngitBranch: main\n\
         sourceLink: https://github.com/example/cluster/blob/{branch}/{path}#L{line}\n",
    );
    let req = Req::update().build();
    let source = crate::source::SourceRef::parse("apps/web.yaml:12").unwrap();
    let d = crate::decision::decide(&p, &req, now()).locate(&p, &req, source);
    assert!(
        d.message.contains(
            "must be made in git: edit apps/web.yaml line 12 \
             <https://github.com/example/cluster/blob/main/apps/web.yaml#L12>, branch main \
             in https://github.com/example/cluster, and the gitwarden agent applies it"
        ),
        "{}",
        d.message
    );
    assert_eq!(
        d.source.map(|s| s.to_string()).as_deref(),
        Some("apps/web.yaml:12")
    );
}

#[test]
fn a_rendered_objects_denial_names_the_kustomization_too() {
    let p = Policy::default();
    let req = Req::delete().build();
    let source =
        crate::source::SourceRef::parse("base/cm.yaml:8 (kustomization overlays/prod)").unwrap();
    let d = crate::decision::decide(&p, &req, now()).locate(&p, &req, source);
    assert!(
        d.message
            .contains("edit base/cm.yaml line 8 (rendered by the kustomization in overlays/prod)"),
        "{}",
        d.message
    );
}

#[test]
fn an_allowed_or_other_denial_is_not_changed_by_a_source() {
    let p = Policy::default();
    let req = Req::update().dry_run().build();
    let source = crate::source::SourceRef::parse("a.yaml:1").unwrap();
    let d = crate::decision::decide(&p, &req, now());
    assert!(!d.wants_source());
    assert_eq!(d.clone().locate(&p, &req, source), d);
}
