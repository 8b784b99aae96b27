use super::{load_ok, names};
use crate::{ManifestSet, ResolvedSet, Scope, ScopeLookup};
use kube::core::GroupVersionKind;
use std::collections::HashMap;

/// A cluster-scoped CRD for `Widget` (example.com, v1 and v2), for tests.
pub(crate) const CRD: &str = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\nspec:\n  group: example.com\n  names: {kind: Widget, plural: widgets}\n  scope: Cluster\n  versions: [{name: v1}, {name: v2}]\n";

/// Discovery of a small cluster: core kinds and Deployments.
fn discovery() -> HashMap<GroupVersionKind, Scope> {
    [
        ("", "v1", "ConfigMap", Scope::Namespaced),
        ("", "v1", "Namespace", Scope::Cluster),
        ("apps", "v1", "Deployment", Scope::Namespaced),
        (
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            Scope::Cluster,
        ),
        (
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            Scope::Cluster,
        ),
        ("example.com", "v1", "Gadget", Scope::Namespaced),
    ]
    .into_iter()
    .map(|(g, v, k, s)| (GroupVersionKind::gvk(g, v, k), s))
    .collect()
}

fn resolve(set: ManifestSet) -> Result<ResolvedSet, Vec<String>> {
    let scopes: &dyn ScopeLookup = &discovery();
    set.resolve_namespaces(scopes, "apps")
        .map_err(|e| e.errors.iter().map(ToString::to_string).collect())
}

#[test]
fn namespaced_objects_without_namespace_get_the_default() {
    let set = load_ok(&[(
        "x.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: team\n",
    )]);
    let set = resolve(set).unwrap();
    let namespaces: Vec<_> = set
        .manifests()
        .iter()
        .map(|m| m.namespace.as_deref())
        .collect();
    assert_eq!(namespaces, [Some("apps"), Some("team")]);
    assert_eq!(
        set.manifests()[0].metadata.namespace.as_deref(),
        Some("apps")
    );
    assert_eq!(set.manifests()[0].scope, Some(Scope::Namespaced));
}

#[test]
fn cluster_scoped_objects_stay_without_namespace() {
    let set = load_ok(&[(
        "x.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n",
    )]);
    let set = resolve(set).unwrap();
    assert_eq!(set.manifests()[0].namespace, None);
    assert_eq!(set.manifests()[0].scope, Some(Scope::Cluster));
}

#[test]
fn crd_in_the_same_revision_gives_its_custom_resources_their_scope() {
    let set = load_ok(&[
        ("crd.yaml", CRD),
        (
            "w.yaml",
            "apiVersion: example.com/v2\nkind: Widget\nmetadata:\n  name: w\n",
        ),
        (
            "g.yaml",
            "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n",
        ),
    ]);
    let set = resolve(set).unwrap();
    assert_eq!(set.manifests()[1].scope, Some(Scope::Cluster));
    assert_eq!(set.manifests()[1].namespace, None);
    // A kind discovery knows and the revision does not define.
    assert_eq!(set.manifests()[2].namespace.as_deref(), Some("apps"));
}

#[test]
fn cluster_scoped_object_with_namespace_is_an_error() {
    let set = load_ok(&[(
        "x.yaml",
        "# role\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: r\n  namespace: team\n",
    )]);
    let errors = resolve(set).unwrap_err();
    assert_eq!(
        errors,
        [
            "x.yaml:2: ClusterRole r is cluster-scoped but has metadata.namespace \"team\": remove it"
        ]
    );
}

#[test]
fn unknown_kind_is_an_error() {
    let set = load_ok(&[(
        "x.yaml",
        "apiVersion: example.org/v1\nkind: Thing\nmetadata:\n  name: t\n",
    )]);
    let errors = resolve(set).unwrap_err();
    assert_eq!(
        errors,
        ["x.yaml:1: unknown kind example.org/v1 Thing (is its CRD installed or in this revision?)"]
    );
}

#[test]
fn version_the_revision_crd_does_not_serve_is_an_error() {
    let set = load_ok(&[
        ("crd.yaml", CRD),
        (
            "w.yaml",
            "apiVersion: example.com/v3\nkind: Widget\nmetadata:\n  name: w\n",
        ),
    ]);
    let errors = resolve(set).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("w.yaml:1: unknown kind example.com/v3 Widget: the CustomResourceDefinition widgets.example.com at crd.yaml:1 does not serve version v3"), "{}", errors[0]);
}

#[test]
fn all_resolution_errors_are_collected_and_nothing_changes() {
    let set = load_ok(&[(
        "x.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: example.org/v1\nkind: Thing\nmetadata:\n  name: t\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n  namespace: x\n",
    )]);
    let before = set.clone();
    assert_eq!(resolve(set.clone()).unwrap_err().len(), 2);
    assert_eq!(set, before);
    assert_eq!(names(&set).len(), 3);
}

#[test]
fn defaulting_into_a_duplicate_is_an_error() {
    let set = load_ok(&[
        (
            "a.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
        ),
        (
            "b.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: apps\n",
        ),
    ]);
    let errors = resolve(set).unwrap_err();
    assert_eq!(
        errors,
        ["b.yaml:1: duplicate object v1 ConfigMap apps/a: also defined at a.yaml:1"]
    );
}
