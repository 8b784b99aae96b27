#![allow(clippy::unwrap_used)]

use super::*;
use crate::identity::IdentityPattern;

fn problems(yaml: &str) -> Vec<PolicyProblem> {
    match Policy::from_yaml(yaml) {
        Err(PolicyError::Invalid(problems)) => problems,
        other => panic!("expected validation problems, got {other:?}"),
    }
}

fn parse_error(yaml: &str) -> String {
    match Policy::from_yaml(yaml) {
        Err(PolicyError::Parse(e)) => {
            // The error names its step; the YAML reader's cause is its source.
            let cause = e.to_string();
            format!("{}: {cause}", PolicyError::Parse(e))
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

fn users(set: &IdentitySet) -> Vec<&str> {
    set.users.iter().map(IdentityPattern::as_str).collect()
}

fn requester(username: &str, groups: &[&str]) -> Requester {
    Requester {
        username: username.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..Requester::default()
    }
}

/// A workload's service account: who events and leases are exempt for.
fn workload() -> Requester {
    requester(
        "system:serviceaccount:shop:operator",
        &["system:serviceaccounts", "system:serviceaccounts:shop"],
    )
}

fn exempt_user(policy: &Policy, username: &str) -> bool {
    policy.exempt.matches(&requester(username, &[])).is_some()
}

fn exempt_node(policy: &Policy) -> bool {
    policy
        .exempt
        .matches(&requester("system:node:n1", &["system:nodes"]))
        .is_some()
}

fn leases_exempt(policy: &Policy) -> bool {
    policy
        .exempt_resource("coordination.k8s.io", "leases", None, &workload())
        .is_some()
}

fn round_trips(policy: &Policy) {
    let yaml = policy.to_yaml().unwrap();
    assert_eq!(&Policy::from_yaml(&yaml).unwrap(), policy, "{yaml}");
}

#[test]
fn empty_document_gives_the_defaults() {
    assert_eq!(Policy::from_yaml("").unwrap(), Policy::default());
}

#[test]
fn comment_only_and_null_documents_give_the_defaults() {
    assert_eq!(
        Policy::from_yaml("# nothing yet\n").unwrap(),
        Policy::default()
    );
    assert_eq!(Policy::from_yaml("~").unwrap(), Policy::default());
    assert_eq!(Policy::from_yaml("{}").unwrap(), Policy::default());
}

#[test]
fn defaults_are_valid() {
    Policy::default().validate().unwrap();
}

#[test]
fn builtin_patterns_pass_validation() {
    let policy = Policy::default();
    for pattern in policy
        .agent
        .users
        .iter()
        .chain(&ExemptIdentities::builtin().users)
    {
        IdentityPattern::new(pattern.as_str()).unwrap();
    }
}

#[test]
fn default_agent_is_the_agent_service_account() {
    assert_eq!(users(&Policy::default().agent), [AGENT_USER]);
    assert!(Policy::default().agent.groups.is_empty());
}

#[test]
fn default_exempt_names_the_system_components_and_nodes() {
    let exempt = Policy::default().exempt.effective();
    assert_eq!(
        users(&exempt),
        [
            "system:kube-controller-manager",
            "system:kube-scheduler",
            "system:apiserver",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain(
            crate::policy::exempt::CONTROLLER_SERVICE_ACCOUNTS
                .iter()
                .map(|name| format!("system:serviceaccount:kube-system:{name}"))
        )
        .collect::<Vec<_>>()
    );
    assert_eq!(exempt.groups, ["system:nodes"]);
    assert_eq!(&exempt, ExemptIdentities::builtin());
}

#[test]
fn default_exempt_is_the_builtins_with_nothing_written() {
    let exempt = Policy::default().exempt;
    assert!(exempt.include_defaults);
    assert!(exempt.users.is_empty() && exempt.groups.is_empty());
    assert!(!exempt.is_empty());
}

#[test]
fn default_exempt_does_not_include_system_masters() {
    let policy = Policy::default();
    assert!(
        !policy
            .exempt
            .effective()
            .groups
            .iter()
            .any(|g| g == "system:masters")
    );
    assert_eq!(
        policy
            .exempt
            .matches(&requester("admin", &["system:masters"])),
        None
    );
}

#[test]
fn default_exempt_resources_are_events_leases_and_reviews() {
    let policy = Policy::default();
    for (group, resource) in [
        ("", "events"),
        ("events.k8s.io", "events"),
        ("coordination.k8s.io", "leases"),
        ("authentication.k8s.io", "tokenreviews"),
        ("authentication.k8s.io", "selfsubjectreviews"),
        ("authorization.k8s.io", "subjectaccessreviews"),
        ("authorization.k8s.io", "selfsubjectaccessreviews"),
        ("authorization.k8s.io", "localsubjectaccessreviews"),
        ("authorization.k8s.io", "selfsubjectrulesreviews"),
    ] {
        assert!(
            policy
                .exempt_resource(group, resource, None, &workload())
                .is_some(),
            "{group}/{resource}"
        );
    }
    assert!(
        policy
            .exempt_resource("", "configmaps", None, &workload())
            .is_none()
    );
    assert!(policy.exempt_resources.is_empty());
    assert!(policy.exempt_resources_include_defaults);
    assert_eq!(
        policy.effective_exempt_resources(),
        ResourceRule::defaults()
    );
}

#[test]
fn default_break_glass_is_one_hour_capped_at_four() {
    let bg = Policy::default().break_glass;
    assert_eq!(bg.groups, [DEFAULT_BREAK_GLASS_GROUP]);
    assert_eq!(bg.default_ttl, HumanDuration::from_hours(1));
    assert_eq!(bg.max_ttl, HumanDuration::from_hours(4));
}

#[test]
fn default_has_no_git_source() {
    assert_eq!(Policy::default().git_source, None);
}

#[test]
fn fields_are_read_in_camel_case() {
    let policy = Policy::from_yaml(
        r#"
gitSource: https://git.example.com/cluster.git
exemptResources:
  - group: cert-manager.io
    resource: "*"
  - resource: pods
    subresource: status
namespaces:
  protected: ["team-*"]
  exempt: []
breakGlass:
  groups: [oncall]
  defaultTtl: 30m
  maxTtl: 2h30m
"#,
    )
    .unwrap();
    assert_eq!(
        policy.git_source.as_deref(),
        Some("https://git.example.com/cluster.git")
    );
    assert!(
        policy
            .exempt_resource("cert-manager.io", "certificates", None, &workload())
            .is_some()
    );
    assert!(
        policy
            .exempt_resource("", "pods", Some("status"), &workload())
            .is_some()
    );
    assert!(policy.namespaces.protects("team-a"));
    assert!(!policy.namespaces.protects("default"));
    assert_eq!(policy.break_glass.groups, ["oncall"]);
    assert_eq!(policy.break_glass.default_ttl, HumanDuration::from_mins(30));
    assert_eq!(policy.break_glass.max_ttl, HumanDuration::from_mins(150));
}

#[test]
fn exempt_users_written_are_added_to_the_builtins() {
    let policy =
        Policy::from_yaml("exempt:\n  users: [\"system:serviceaccount:cert-manager:*\"]\n")
            .unwrap();
    assert!(exempt_user(
        &policy,
        "system:serviceaccount:cert-manager:cert-manager"
    ));
    assert!(exempt_user(&policy, "system:kube-controller-manager"));
    assert!(exempt_user(&policy, "system:kube-scheduler"));
    assert!(exempt_user(&policy, "system:apiserver"));
    assert!(exempt_user(
        &policy,
        "system:serviceaccount:kube-system:replicaset-controller"
    ));
    assert!(exempt_node(&policy));
    assert!(!exempt_user(&policy, "alice"));
    assert_eq!(
        users(&policy.exempt.effective()),
        [
            "system:kube-controller-manager",
            "system:kube-scheduler",
            "system:apiserver",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain(
            crate::policy::exempt::CONTROLLER_SERVICE_ACCOUNTS
                .iter()
                .map(|name| format!("system:serviceaccount:kube-system:{name}"))
        )
        .chain(["system:serviceaccount:cert-manager:*".to_owned()])
        .collect::<Vec<_>>()
    );
}

#[test]
fn exempt_groups_written_are_added_to_the_builtins() {
    let policy = Policy::from_yaml("exempt:\n  groups: [operators]\n").unwrap();
    assert_eq!(
        policy.exempt.effective().groups,
        ["system:nodes", "operators"]
    );
    assert!(exempt_node(&policy));
    assert!(exempt_user(&policy, "system:kube-controller-manager"));
    assert!(
        policy
            .exempt
            .matches(&requester("op", &["operators"]))
            .is_some()
    );
}

#[test]
fn an_empty_exempt_list_still_keeps_the_builtins() {
    let policy = Policy::from_yaml("exempt:\n  users: []\n  groups: []\n").unwrap();
    assert_eq!(policy, Policy::default());
    assert!(exempt_user(&policy, "system:kube-controller-manager"));
    assert!(exempt_node(&policy));
}

#[test]
fn a_builtin_written_again_is_not_repeated() {
    let policy =
        Policy::from_yaml("exempt:\n  users: [system:kube-scheduler]\n  groups: [system:nodes]\n")
            .unwrap();
    assert_eq!(&policy.exempt.effective(), ExemptIdentities::builtin());
}

#[test]
fn exempt_include_defaults_false_leaves_only_what_is_written() {
    let policy = Policy::from_yaml(
        "exempt:\n  includeDefaults: false\n  users: [\"system:serviceaccount:cert-manager:*\"]\n",
    )
    .unwrap();
    assert!(!exempt_user(&policy, "system:kube-controller-manager"));
    assert!(!exempt_user(&policy, "system:kube-scheduler"));
    assert!(!exempt_user(
        &policy,
        "system:serviceaccount:kube-system:replicaset-controller"
    ));
    assert!(!exempt_node(&policy));
    assert!(exempt_user(
        &policy,
        "system:serviceaccount:cert-manager:cert-manager"
    ));
    assert_eq!(
        users(&policy.exempt.effective()),
        ["system:serviceaccount:cert-manager:*"]
    );
    assert!(policy.exempt.effective().groups.is_empty());
}

#[test]
fn exempt_include_defaults_false_alone_exempts_nobody() {
    let policy = Policy::from_yaml("exempt:\n  includeDefaults: false\n").unwrap();
    assert!(policy.exempt.is_empty());
    assert!(!exempt_user(&policy, "system:kube-controller-manager"));
    assert!(!exempt_node(&policy));
}

#[test]
fn exempt_resources_written_are_added_to_the_builtins() {
    let policy = Policy::from_yaml(
        "exemptResources:\n  - group: acme.cert-manager.io\n    resource: challenges\n",
    )
    .unwrap();
    assert!(
        policy
            .exempt_resource("acme.cert-manager.io", "challenges", None, &workload())
            .is_some()
    );
    assert!(leases_exempt(&policy));
    assert!(
        policy
            .exempt_resource("", "events", None, &workload())
            .is_some()
    );
    assert!(
        policy
            .exempt_resource("authentication.k8s.io", "tokenreviews", None, &workload())
            .is_some()
    );
    let effective = policy.effective_exempt_resources();
    assert_eq!(effective.len(), ResourceRule::defaults().len() + 1);
    assert_eq!(
        effective.last(),
        Some(&ResourceRule::new("acme.cert-manager.io", "challenges"))
    );
}

#[test]
fn a_builtin_exempt_resource_written_again_is_not_repeated() {
    let policy = Policy::from_yaml(
        "exemptResources:\n  - group: authentication.k8s.io\n    resource: tokenreviews\n",
    )
    .unwrap();
    assert_eq!(
        policy.effective_exempt_resources(),
        ResourceRule::defaults()
    );
}

#[test]
fn exempt_resources_include_defaults_false_leaves_only_what_is_written() {
    let policy = Policy::from_yaml(
        "exemptResources:\n  - group: acme.cert-manager.io\n    resource: challenges\nexemptResourcesIncludeDefaults: false\n",
    )
    .unwrap();
    assert!(!leases_exempt(&policy));
    assert!(
        policy
            .exempt_resource("", "events", None, &workload())
            .is_none()
    );
    assert!(
        policy
            .exempt_resource("acme.cert-manager.io", "challenges", None, &workload())
            .is_some()
    );
    assert_eq!(
        policy.effective_exempt_resources(),
        [ResourceRule::new("acme.cert-manager.io", "challenges")]
    );
    // The identities keep their built-ins: the two switches are separate.
    assert!(exempt_user(&policy, "system:kube-controller-manager"));
}

#[test]
fn exempt_resources_include_defaults_false_alone_exempts_no_resource() {
    let policy = Policy::from_yaml("exemptResourcesIncludeDefaults: false\n").unwrap();
    assert!(policy.effective_exempt_resources().is_empty());
    assert!(!leases_exempt(&policy));
}

#[test]
fn a_written_agent_list_replaces_its_default() {
    let policy =
        Policy::from_yaml("agent:\n  users: [\"system:serviceaccount:ops:deployer\"]\n").unwrap();
    assert_eq!(users(&policy.agent), ["system:serviceaccount:ops:deployer"]);
    assert_eq!(policy.agent.matches(&requester(AGENT_USER, &[])), None);
}

#[test]
fn an_agent_list_left_out_keeps_its_default() {
    let policy = Policy::from_yaml("agent:\n  groups: [gitwarden-agents]\n").unwrap();
    assert_eq!(users(&policy.agent), [AGENT_USER]);
    assert_eq!(policy.agent.groups, ["gitwarden-agents"]);
}

#[test]
fn agent_has_no_include_defaults_switch() {
    let message = parse_error("agent:\n  includeDefaults: false\n");
    assert!(message.contains("includeDefaults"), "{message}");
}

#[test]
fn misspelt_include_defaults_is_refused() {
    let message = parse_error("exempt:\n  includeDefault: false\n");
    assert!(message.contains("includeDefault"), "{message}");
    let message = parse_error("exemptResourcesIncludeDefault: false\n");
    assert!(
        message.contains("exemptResourcesIncludeDefault"),
        "{message}"
    );
}

#[test]
fn a_field_left_out_of_break_glass_keeps_its_default() {
    let policy = Policy::from_yaml("breakGlass:\n  maxTtl: 8h\n").unwrap();
    assert_eq!(policy.break_glass.default_ttl, HumanDuration::from_hours(1));
    assert_eq!(policy.break_glass.groups, [DEFAULT_BREAK_GLASS_GROUP]);
}

#[test]
fn unknown_top_level_field_is_refused() {
    let message = parse_error("exemptUsers: [alice]\n");
    assert!(message.contains("exemptUsers"), "{message}");
}

#[test]
fn unknown_nested_field_is_refused() {
    let message = parse_error("breakGlass:\n  maxTTL: 2h\n");
    assert!(message.contains("maxTTL"), "{message}");
    let message = parse_error("exempt:\n  user: [alice]\n");
    assert!(message.contains("user"), "{message}");
}

#[test]
fn malformed_duration_is_refused_naming_the_field() {
    let message = parse_error("breakGlass:\n  maxTtl: 1 day\n");
    assert!(message.contains("breakGlass: maxTtl: "), "{message}");
    assert!(message.contains("line 2"), "{message}");
    assert!(message.contains("2h30m"), "{message}");
}

#[test]
fn empty_user_pattern_is_refused_naming_the_field() {
    let message = parse_error("exempt:\n  users: [\"\"]\n");
    assert!(message.contains("exempt.users"), "{message}");
}

#[test]
fn invalid_namespace_pattern_is_refused() {
    let message = parse_error("namespaces:\n  exempt: [Kube-System]\n");
    assert!(message.contains("Kube-System"), "{message}");
}

#[test]
fn malformed_yaml_is_refused() {
    parse_error("agent: [unclosed\n");
}

#[test]
fn system_masters_in_exempt_groups_is_refused_with_the_reason() {
    let found = problems("exempt:\n  groups: [system:nodes, system:masters]\n");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].field, "exempt.groups[1]");
    assert!(
        found[0].reason.contains("bypasses RBAC"),
        "{}",
        found[0].reason
    );
    assert!(
        found[0].reason.contains("break-glass"),
        "{}",
        found[0].reason
    );
}

#[test]
fn system_masters_as_agent_is_refused() {
    let found = problems("agent:\n  groups: [system:masters]\n");
    assert_eq!(found[0].field, "agent.groups[0]");
}

#[test]
fn everyone_groups_in_exempt_are_refused() {
    let found = problems("exempt:\n  groups: [system:authenticated, system:unauthenticated]\n");
    assert_eq!(found.len(), 2);
    assert!(
        found[0].reason.contains("users: [\"*\"]"),
        "{}",
        found[0].reason
    );
}

#[test]
fn system_masters_is_refused_when_the_builtins_are_left_out() {
    let found = problems("exempt:\n  includeDefaults: false\n  groups: [system:masters]\n");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].field, "exempt.groups[0]");
    assert!(
        found[0].reason.contains("bypasses RBAC"),
        "{}",
        found[0].reason
    );
}

#[test]
fn explicit_star_user_is_accepted() {
    let policy = Policy::from_yaml("exempt:\n  users: [\"*\"]\n").unwrap();
    assert_eq!(policy.exempt.users, [IdentityPattern::new("*").unwrap()]);
    assert!(exempt_user(&policy, "alice"));
}

#[test]
fn empty_agent_is_refused() {
    let found = problems("agent:\n  users: []\n");
    assert_eq!(found[0].field, "agent");
}

#[test]
fn default_ttl_longer_than_max_ttl_is_refused() {
    let found = problems("breakGlass:\n  defaultTtl: 5h\n");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].field, "breakGlass.defaultTtl");
    assert!(
        found[0].reason.contains("5h") && found[0].reason.contains("4h"),
        "{}",
        found[0].reason
    );
}

#[test]
fn zero_max_ttl_is_refused() {
    let found = problems("breakGlass:\n  maxTtl: 0s\n  defaultTtl: 0s\n");
    let fields: Vec<_> = found.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["breakGlass.maxTtl", "breakGlass.defaultTtl"]);
}

#[test]
fn blank_break_glass_group_is_refused() {
    let found = problems("breakGlass:\n  groups: [oncall, \" \"]\n");
    assert_eq!(found[0].field, "breakGlass.groups[1]");
}

#[test]
fn empty_break_glass_groups_disable_break_glass_and_are_valid() {
    let policy = Policy::from_yaml("breakGlass:\n  groups: []\n").unwrap();
    assert!(policy.break_glass.groups.is_empty());
}

#[test]
fn blank_exempt_resource_is_refused() {
    let found = problems("exemptResources:\n  - resource: \"\"\n    subresource: \"\"\n");
    let fields: Vec<_> = found.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "exemptResources[0].resource",
            "exemptResources[0].subresource"
        ]
    );
}

#[test]
fn blank_git_source_is_refused() {
    assert_eq!(problems("gitSource: \"\"\n")[0].field, "gitSource");
}

#[test]
fn all_problems_are_reported_at_once() {
    let error =
        Policy::from_yaml("exempt:\n  groups: [system:masters]\nbreakGlass:\n  defaultTtl: 5h\n")
            .unwrap_err()
            .to_string();
    assert!(error.contains("exempt.groups[0]"), "{error}");
    assert!(error.contains("breakGlass.defaultTtl"), "{error}");
}

#[test]
fn written_policy_reads_back_equal() {
    let policy = Policy {
        git_source: Some("https://git.example.com/c.git".into()),
        ..Policy::default()
    };
    let yaml = policy.to_yaml().unwrap();
    assert_eq!(Policy::from_yaml(&yaml).unwrap(), policy);
    assert!(yaml.contains("defaultTtl: 1h"), "{yaml}");
    assert!(yaml.contains("includeDefaults: true"), "{yaml}");
    assert!(
        yaml.contains("exemptResourcesIncludeDefaults: true"),
        "{yaml}"
    );
}

#[test]
fn default_policy_reads_back_equal() {
    round_trips(&Policy::default());
}

#[test]
fn written_additions_and_opt_outs_read_back_equal() {
    for yaml in [
        "exempt:\n  users: [\"system:serviceaccount:cert-manager:*\"]\n  groups: [operators]\n",
        "exempt:\n  includeDefaults: false\n  users: [system:kube-controller-manager]\n",
        "exempt:\n  includeDefaults: false\n",
        "exemptResources:\n  - group: cert-manager.io\n    resource: \"*\"\n  - resource: pods\n    subresource: status\n",
        "exemptResources:\n  - group: coordination.k8s.io\n    resource: leases\nexemptResourcesIncludeDefaults: false\n",
        "agent:\n  users: [\"system:serviceaccount:ops:deployer\"]\n  groups: [deployers]\n",
    ] {
        round_trips(&Policy::from_yaml(yaml).unwrap());
    }
}

#[test]
fn break_glass_group_membership_is_reported() {
    let bg = BreakGlassPolicy::default();
    let member = Requester {
        username: "alice".into(),
        groups: vec!["devs".into(), DEFAULT_BREAK_GLASS_GROUP.into()],
        ..Requester::default()
    };
    assert_eq!(bg.allowed_group(&member), Some(DEFAULT_BREAK_GLASS_GROUP));
    assert_eq!(bg.allowed_group(&Requester::default()), None);
}

#[test]
fn events_and_leases_are_exempt_for_service_accounts_but_not_for_people() {
    let policy = Policy::default();
    for (group, resource) in [("", "events"), ("coordination.k8s.io", "leases")] {
        assert!(
            policy
                .exempt_resource(group, resource, None, &workload())
                .is_some()
        );
        let alice = requester("alice", &["system:authenticated"]);
        assert!(
            policy
                .exempt_resource(group, resource, None, &alice)
                .is_none()
        );
    }
}

#[test]
fn a_kube_system_service_account_that_is_no_controller_is_not_exempt() {
    let policy = Policy::default();
    assert!(exempt_user(
        &policy,
        "system:serviceaccount:kube-system:generic-garbage-collector"
    ));
    assert!(!exempt_user(
        &policy,
        "system:serviceaccount:kube-system:default"
    ));
    assert!(!exempt_user(
        &policy,
        "system:serviceaccount:kube-system:coredns"
    ));
    assert!(!exempt_user(
        &policy,
        "system:serviceaccount:kube-system:evil"
    ));
}

#[test]
fn written_by_service_accounts_reads_back_from_yaml() {
    let policy = Policy::from_yaml(
        "exemptResources:\n  - group: example.io\n    resource: heartbeats\n    writtenBy: serviceAccounts\n",
    )
    .unwrap();
    assert!(
        policy
            .exempt_resource("example.io", "heartbeats", None, &workload())
            .is_some()
    );
    assert!(
        policy
            .exempt_resource("example.io", "heartbeats", None, &requester("alice", &[]))
            .is_none()
    );
    round_trips(&policy);
}
