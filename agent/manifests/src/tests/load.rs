use super::{load_err, load_files, load_ok, names};
use crate::ManifestFile;

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n";

#[test]
fn multi_document_yaml_skips_empty_and_comment_only_documents() {
    let text = "---\n---\n# just a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n...\n";
    let set = load_ok(&[("cm.yaml", text)]);
    assert_eq!(names(&set), ["ConfigMap/a", "ConfigMap/b"]);
    assert_eq!(set.manifests[0].location.to_string(), "cm.yaml:5");
    assert_eq!(set.manifests[1].location.to_string(), "cm.yaml:12");
}

#[test]
fn empty_file_loads_nothing() {
    assert!(load_ok(&[("empty.yaml", ""), ("c.yml", "# nothing\n")]).is_empty());
}

#[test]
fn kind_list_is_flattened_into_its_items_with_their_lines() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: a\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata:\n    name: web\n";
    let set = load_ok(&[("list.yaml", text)]);
    assert_eq!(names(&set), ["ConfigMap/a", "Deployment/web"]);
    assert_eq!(set.manifests[0].location.line, 4);
    assert_eq!(set.manifests[1].location.line, 8);
}

#[test]
fn typed_list_items_inherit_api_version_and_kind() {
    let text = "apiVersion: v1\nkind: ConfigMapList\nitems:\n- metadata:\n    name: a\n- metadata:\n    name: b\n";
    let set = load_ok(&[("cms.yaml", text)]);
    assert_eq!(names(&set), ["ConfigMap/a", "ConfigMap/b"]);
    assert_eq!(set.manifests[1].gvk.version, "v1");
}

#[test]
fn kind_ending_in_list_with_a_name_is_an_object_not_a_list() {
    let text = "apiVersion: example.com/v1\nkind: AccessList\nmetadata:\n  name: team\nitems: []\n";
    assert_eq!(names(&load_ok(&[("a.yaml", text)])), ["AccessList/team"]);
}

#[test]
fn list_item_errors_name_the_item() {
    let text = r#"{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}]}"#;
    let errors = load_err(&[("l.json", text)]);
    assert_eq!(errors, ["l.json:1: items[0]: metadata.name is missing"]);
}

#[test]
fn json_file_with_one_object_loads() {
    let text = "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"ConfigMap\",\n  \"metadata\": {\"name\": \"a\", \"namespace\": \"ns\"},\n  \"data\": {\"k\": \"v\"}\n}\n";
    let set = load_ok(&[("cm.json", text)]);
    assert_eq!(names(&set), ["ConfigMap/a"]);
    assert_eq!(set.manifests[0].namespace.as_deref(), Some("ns"));
    assert_eq!(set.manifests[0].content()["data"]["k"], "v");
}

#[test]
fn json_list_items_are_located_at_their_lines() {
    let text = "{\n \"apiVersion\": \"v1\",\n \"kind\": \"List\",\n \"items\": [\n  {\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"a\"}},\n  {\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"b\"}}\n ]\n}\n";
    let set = load_ok(&[("l.json", text)]);
    assert_eq!(names(&set), ["ConfigMap/a", "ConfigMap/b"]);
    assert_eq!(set.manifests[1].location.line, 6);
}

#[test]
fn json_stream_of_objects_loads_each_at_its_line() {
    let text = "{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"a\"}}\n\n{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"b\"}}\n";
    let set = load_ok(&[("s.json", text)]);
    assert_eq!(set.manifests[1].location.line, 3);
}

#[test]
fn json_syntax_error_names_its_line_and_column() {
    let errors = load_err(&[("bad.json", "{\n  \"kind\": \"ConfigMap\",\n  oops\n}\n")]);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("bad.json:3: invalid JSON: "),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("(column 3)"), "{}", errors[0]);
}

#[test]
fn yaml_syntax_error_in_third_document_names_its_file_line() {
    let text = format!(
        "{CM}---\n{}---\n# third\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n   bad: [\n",
        CM.replace("name: a", "name: b")
    );
    let errors = load_err(&[("multi.yaml", &text)]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    // Document 3 starts at line 12; the bad line is 15 or 16 (where the
    // parser notices), never a line relative to the document.
    assert!(
        errors[0].starts_with("multi.yaml:15: ") || errors[0].starts_with("multi.yaml:16: "),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].contains("document starting at line 12"),
        "{}",
        errors[0]
    );
    assert!(!errors[0].contains("line 4 column"), "{}", errors[0]);
}

#[test]
fn a_syntax_error_does_not_hide_errors_in_later_documents() {
    let text = format!("a: [\n---\n{}", CM.replace("name: a", "generateName: a-"));
    let errors = load_err(&[("m.yaml", &text)]);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].starts_with("m.yaml:"));
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("m.yaml:3: ") && e.contains("generateName"))
    );
}

#[test]
fn missing_api_version_names_file_line() {
    let errors = load_err(&[("x.yaml", "# c\n\nkind: ConfigMap\nmetadata:\n  name: a\n")]);
    assert_eq!(errors, ["x.yaml:3: apiVersion is missing"]);
}

#[test]
fn missing_kind_names_file_line() {
    let errors = load_err(&[(
        "x.yaml",
        &format!("{CM}---\napiVersion: v1\nmetadata:\n  name: b\n"),
    )]);
    assert_eq!(errors, ["x.yaml:6: kind is missing"]);
}

#[test]
fn missing_name_names_file_line() {
    let errors = load_err(&[(
        "x.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  namespace: a\n",
    )]);
    assert_eq!(errors, ["x.yaml:1: metadata.name is missing"]);
}

#[test]
fn generate_name_is_refused() {
    let errors = load_err(&[(
        "x.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: migrate-\n",
    )]);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("x.yaml:1: metadata.generateName is not supported"));
    assert_eq!(errors[1], "x.yaml:1: metadata.name is missing");
}

#[test]
fn document_that_is_not_a_mapping_is_refused() {
    let errors = load_err(&[("x.yaml", "- a\n- b\n")]);
    assert_eq!(
        errors,
        ["x.yaml:1: expected a Kubernetes object (a mapping), found a list"]
    );
}

#[test]
fn malformed_api_version_is_refused() {
    let errors = load_err(&[(
        "x.yaml",
        "apiVersion: /v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
    )]);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("is not <version> or <group>/<version>"));
}

#[test]
fn a_kind_with_spaces_is_refused() {
    // Found by fuzzing: a folded YAML scalar gave the kind
    // "z giploy CustomResourceDefinition", whose inventory form
    // `<apiVersion> <kind> <name>` then parsed back as another object.
    let errors = load_err(&[(
        "x.yaml",
        "apiVersion: v1\nkind: z\n  giploy ConfigMap\nmetadata:\n  name: a\n",
    )]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("kind \"z giploy ConfigMap\" is not valid"),
        "{errors:?}"
    );
}

#[test]
fn duplicate_across_two_files_names_both_locations() {
    let errors = load_err(&[("a.yaml", CM), ("b/c.yaml", &format!("# x\n{CM}"))]);
    assert_eq!(
        errors,
        ["b/c.yaml:2: duplicate object v1 ConfigMap a: also defined at a.yaml:1"]
    );
}

#[test]
fn the_same_object_under_two_versions_is_a_duplicate() {
    let a = "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: h\n  namespace: n\n";
    let b = a.replace("autoscaling/v1", "autoscaling/v2");
    let errors = load_err(&[("a.yaml", a), ("b.yaml", &b)]);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("also defined at a.yaml:1"));
}

#[test]
fn same_name_in_different_namespaces_is_not_a_duplicate() {
    let b = CM.replace("name: a", "name: a\n  namespace: other");
    assert_eq!(load_ok(&[("a.yaml", CM), ("b.yaml", &b)]).len(), 2);
}

#[test]
fn all_errors_are_collected_across_files_and_sorted() {
    let errors = load_err(&[
        (
            "z.yaml",
            "kind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: Secret\n",
        ),
        (
            "a.json",
            "{\"apiVersion\": \"v1\", \"metadata\": {\"name\": \"Bad_Name\"}}",
        ),
        ("m.yaml", "a: [\n"),
    ]);
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_eq!(errors[0], "a.json:1: kind is missing");
    assert!(
        errors[1].starts_with("m.yaml:2: invalid YAML"),
        "{}",
        errors[1]
    );
    assert_eq!(errors[2], "z.yaml:1: apiVersion is missing");
    assert_eq!(errors[3], "z.yaml:5: metadata.name is missing");
}

#[test]
fn load_errors_display_one_per_line() {
    let errors = load_files(&[("x.yaml", "kind: A\n---\nkind: B\n")]).unwrap_err();
    let text = errors.to_string();
    assert_eq!(text.lines().count(), errors.len());
    assert!(text.lines().all(|line| line.starts_with("x.yaml:")));
}

#[test]
fn invalid_names_are_rejected_per_kind() {
    let doc = |api: &str, kind: &str, name: &str| {
        format!("apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name:?}\n")
    };
    for (api, kind, name) in [
        ("v1", "ConfigMap", "Upper"),
        ("v1", "ConfigMap", "a..b"),
        ("v1", "ConfigMap", "-a"),
        ("v1", "Namespace", "a.b"),
        ("v1", "Service", "1abc"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole", "a/b"),
    ] {
        let errors = load_err(&[("x.yaml", &doc(api, kind, name))]);
        assert!(
            errors[0].contains("is not a valid name"),
            "{kind} {name}: {errors:?}"
        );
    }
    let long = "a".repeat(254);
    assert!(load_files(&[("x.yaml", &doc("v1", "ConfigMap", &long))]).is_err());
}

#[test]
fn names_the_api_server_accepts_are_accepted() {
    let set = load_ok(&[(
        "x.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: system:aggregate-to-view\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a.b-c.0\n",
    )]);
    assert_eq!(set.len(), 2);
}

#[test]
fn unknown_metadata_field_is_refused() {
    let errors = load_err(&[(
        "x.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  lables: {a: b}\n",
    )]);
    assert_eq!(errors, ["x.yaml:1: unknown field metadata.lables"]);
}

#[test]
fn unquoted_label_value_is_refused_naming_the_key() {
    let errors = load_err(&[(
        "x.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels:\n    enabled: true\n",
    )]);
    assert_eq!(
        errors,
        ["x.yaml:1: metadata.labels.enabled must be a string, found a boolean (quote it)"]
    );
}

#[test]
fn empty_namespace_counts_as_absent() {
    let set = load_ok(&[(
        "x.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: \"\"\n",
    )]);
    assert_eq!(set.manifests[0].namespace, None);
}

#[test]
fn file_with_another_extension_is_refused() {
    let errors = load_err(&[("README.md", "# hi\n")]);
    assert_eq!(
        errors,
        ["README.md:1: not a manifest file (expected .yaml, .yml or .json)"]
    );
}

#[test]
fn invalid_utf8_names_the_line() {
    let content = b"apiVersion: v1\nkind: \xff\n";
    let errors = crate::load(&[ManifestFile {
        path: "x.yaml",
        content,
    }])
    .unwrap_err();
    assert_eq!(errors.to_string(), "x.yaml:2: the file is not valid UTF-8");
}

#[test]
fn yaml_anchors_and_merge_keys_are_resolved() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels: &l\n    team: a\ndata:\n  <<: {x: \"1\"}\n  y: \"2\"\n";
    let set = load_ok(&[("x.yaml", text)]);
    assert_eq!(set.manifests[0].content()["data"]["x"], "1");
}

#[test]
fn api_version_and_kind_are_kept_outside_the_content() {
    let set = load_ok(&[(
        "x.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec: {}\nstatus: {}\n",
    )]);
    let manifest = &set.manifests[0];
    assert_eq!(
        (
            manifest.object_ref().api_version().as_str(),
            manifest.gvk.kind.as_str()
        ),
        ("apps/v1", "Deployment")
    );
    assert_eq!(
        (manifest.gvk.group.as_str(), manifest.gvk.version.as_str()),
        ("apps", "v1")
    );
    let content = manifest.content();
    assert!(content.get("metadata").is_none());
    assert!(content.get("apiVersion").is_none() && content.get("kind").is_none());
    assert_eq!(content.get("spec"), Some(&serde_json::json!({})));
}

#[test]
fn malformed_crd_is_refused() {
    let text = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\nspec:\n  group: example.com\n  names: {plural: widgets}\n  scope: Namespaced\n  versions: [{name: v1}]\n";
    let errors = load_err(&[("crd.yaml", text)]);
    assert_eq!(
        errors,
        [
            "crd.yaml:1: CustomResourceDefinition widgets.example.com: spec.names.kind is missing or not a string"
        ]
    );
}

#[test]
fn crds_and_namespaces_helpers_report_what_the_revision_defines() {
    let set = load_ok(&[(
        "x.yaml",
        &format!(
            "{}---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n",
            super::scope::CRD
        ),
    )]);
    let crds = set.crds();
    assert_eq!(crds.len(), 1);
    assert_eq!(
        (
            crds[0].group.as_str(),
            crds[0].kind.as_str(),
            crds[0].plural.as_str()
        ),
        ("example.com", "Widget", "widgets")
    );
    assert_eq!(crds[0].scope, crate::Scope::Cluster);
    assert_eq!(crds[0].versions, ["v1", "v2"]);
    assert_eq!(
        set.namespaces()
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["team-a"]
    );
}

#[test]
fn prune_disabled_annotation_is_reported() {
    let set = load_ok(&[(
        "x.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: data\n  annotations:\n    gitwarden.io/prune: disabled\n",
    )]);
    assert!(set.manifests[0].prune_disabled());
}
