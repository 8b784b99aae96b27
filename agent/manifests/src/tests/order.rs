use super::load_ok;
use super::scope::CRD;
use crate::{ObjectRef, Phase, prune_order};

fn doc(api: &str, kind: &str, namespace: Option<&str>, name: &str) -> String {
    let ns = namespace
        .map(|ns| format!("  namespace: {ns}\n"))
        .unwrap_or_default();
    format!("---\napiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}\n{ns}")
}

/// A revision written in the "wrong" order, one of each phase and more.
fn revision() -> String {
    [
        doc("example.com/v1", "Widget", None, "w"),
        doc(
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
            None,
            "hook",
        ),
        doc("apps/v1", "Deployment", Some("b"), "web"),
        doc("apps/v1", "Deployment", Some("a"), "web"),
        doc("v1", "ConfigMap", Some("a"), "conf"),
        doc("v1", "ServiceAccount", Some("a"), "sa"),
        doc("v1", "Namespace", None, "a"),
        doc("cert-manager.io/v1", "Certificate", Some("a"), "tls"),
        format!("---\n{CRD}"),
    ]
    .concat()
}

fn apply_names(phases: &[Vec<&crate::Manifest>]) -> Vec<Vec<String>> {
    phases
        .iter()
        .map(|phase| phase.iter().map(|m| m.object_ref().to_string()).collect())
        .collect()
}

#[test]
fn apply_order_puts_crds_then_namespaces_then_setup_then_workloads_then_webhooks_then_custom_resources()
 {
    let set = load_ok(&[("all.yaml", &revision())]);
    assert_eq!(
        apply_names(&set.apply_order()),
        [
            vec!["apiextensions.k8s.io/v1 CustomResourceDefinition widgets.example.com"],
            vec!["v1 Namespace a"],
            vec!["v1 ServiceAccount a/sa", "v1 ConfigMap a/conf"],
            vec!["apps/v1 Deployment a/web", "apps/v1 Deployment b/web"],
            vec!["admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration hook"],
            vec![
                "cert-manager.io/v1 Certificate a/tls",
                "example.com/v1 Widget w"
            ],
        ]
    );
}

#[test]
fn apply_phases_are_labelled() {
    let set = load_ok(&[("all.yaml", &revision())]);
    let phases: Vec<Phase> = set.apply_phases().into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        phases,
        [
            Phase::CustomResourceDefinitions,
            Phase::Namespaces,
            Phase::Setup,
            Phase::Workloads,
            Phase::Webhooks,
            Phase::CustomResources
        ]
    );
}

#[test]
fn apply_order_does_not_depend_on_file_order() {
    let a = load_ok(&[("all.yaml", &revision())]);
    let mut docs: Vec<String> = revision()
        .split("---\n")
        .filter(|d| !d.is_empty())
        .map(|d| format!("---\n{d}"))
        .collect();
    docs.reverse();
    let b = load_ok(&[("all.yaml", &docs.concat())]);
    assert_eq!(apply_names(&a.apply_order()), apply_names(&b.apply_order()));
}

#[test]
fn kind_in_a_builtin_looking_group_defined_by_a_revision_crd_is_a_custom_resource() {
    let crd = CRD.replace("example.com", "storage.k8s.io");
    let text = format!(
        "---\n{crd}{}",
        doc("storage.k8s.io/v1", "Widget", None, "w")
    );
    let set = load_ok(&[("x.yaml", &text)]);
    let phases = set.apply_phases();
    assert_eq!(phases.last().unwrap().0, Phase::CustomResources);
}

#[test]
fn prune_order_is_the_reverse_of_apply_order() {
    let set = load_ok(&[("all.yaml", &revision())]);
    let apply: Vec<String> = set
        .apply_order()
        .concat()
        .iter()
        .map(|m| m.object_ref().to_string())
        .collect();
    let refs = set.object_refs();
    let prune: Vec<String> = prune_order(&refs)
        .concat()
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut reversed = apply;
    reversed.reverse();
    assert_eq!(prune, reversed);
}

#[test]
fn prune_order_groups_phases() {
    let refs: Vec<ObjectRef> = [
        "v1 Namespace a",
        "v1 ConfigMap a/c",
        "example.com/v1 Widget w",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    let phases = prune_order(&refs);
    assert_eq!(phases.len(), 3);
    assert_eq!(phases[0][0].kind, "Widget");
    assert_eq!(phases[2][0].kind, "Namespace");
}
