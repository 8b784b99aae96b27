use crate::ObjectRef;
use kube::core::GroupVersionKind;
use std::collections::BTreeSet;

fn r(text: &str) -> ObjectRef {
    text.parse().unwrap()
}

#[test]
fn displays_as_api_version_kind_and_namespaced_name() {
    let gvk = GroupVersionKind::gvk("apps", "v1", "Deployment");
    assert_eq!(
        ObjectRef::new(&gvk, Some("team-a"), "web").to_string(),
        "apps/v1 Deployment team-a/web"
    );
    let gvk = GroupVersionKind::gvk("", "v1", "Namespace");
    assert_eq!(
        ObjectRef::new(&gvk, None, "team-a").to_string(),
        "v1 Namespace team-a"
    );
}

#[test]
fn parses_its_display_form_back() {
    for text in [
        "apps/v1 Deployment team-a/web",
        "v1 Namespace team-a",
        "rbac.authorization.k8s.io/v1 ClusterRole system:aggregate-to-view",
    ] {
        let parsed = r(text);
        assert_eq!(parsed.to_string(), text);
    }
    let parsed = r("v1 ConfigMap ns/name");
    assert_eq!(
        (
            parsed.group.as_str(),
            parsed.namespace.as_deref(),
            parsed.name.as_str()
        ),
        ("", Some("ns"), "name")
    );
    assert!("v1 ConfigMap".parse::<ObjectRef>().is_err());
    assert!("v1 ConfigMap /name".parse::<ObjectRef>().is_err());
}

#[test]
fn serialises_as_one_compact_string() {
    let refs = vec![r("apps/v1 Deployment team-a/web"), r("v1 Namespace team-a")];
    let json = serde_json::to_string(&refs).unwrap();
    assert_eq!(
        json,
        r#"["apps/v1 Deployment team-a/web","v1 Namespace team-a"]"#
    );
    let back: Vec<ObjectRef> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, refs);
}

#[test]
fn identity_ignores_the_version() {
    assert_eq!(
        r("autoscaling/v1 HorizontalPodAutoscaler a/h"),
        r("autoscaling/v2 HorizontalPodAutoscaler a/h")
    );
    let inventory: BTreeSet<ObjectRef> = [r("autoscaling/v1 HorizontalPodAutoscaler a/h")].into();
    let desired: BTreeSet<ObjectRef> = [r("autoscaling/v2 HorizontalPodAutoscaler a/h")].into();
    assert_eq!(inventory.difference(&desired).count(), 0);
}

#[test]
fn orders_by_group_kind_namespace_name() {
    let mut refs = [
        r("v1 ConfigMap b/x"),
        r("apps/v1 Deployment a/x"),
        r("v1 ConfigMap a/y"),
        r("v1 Namespace z"),
    ];
    refs.sort();
    let texts: Vec<String> = refs.iter().map(ToString::to_string).collect();
    assert_eq!(
        texts,
        [
            "v1 ConfigMap a/y",
            "v1 ConfigMap b/x",
            "v1 Namespace z",
            "apps/v1 Deployment a/x"
        ]
    );
}
