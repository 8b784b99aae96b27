//! `mutation_patch`: what `/mutate` stamps on the object.

use serde_json::json;

use super::*;
use crate::decision::mutation_patch;

const REASON: &str = "INC-42";

fn dynamic(value: &Value) -> DynamicObject {
    serde_json::from_value(value.clone()).unwrap()
}

/// Decide `req` and return the patch for its object, plus the object.
fn patch_for(req: Req) -> (Option<json_patch::Patch>, Value) {
    let built = req.build();
    let decision = decide(&Policy::default(), &built, now());
    let object = serde_json::to_value(built.object.as_ref().unwrap()).unwrap();
    let creates = built.operation == kube::core::admission::Operation::Create;
    (
        mutation_patch(&decision, &dynamic(&object), creates),
        object,
    )
}

/// The label `/mutate` puts on every object a break-glass request creates.
fn label() -> Value {
    json!({"gitwarden.io/break-glass": "created"})
}

fn stamps_now() -> Value {
    json!({
        "gitwarden.io/break-glass-by": "oncall",
        "gitwarden.io/break-glass-at": NOW,
        "gitwarden.io/break-glass-until": at(HOUR),
    })
}

#[test]
fn new_window_on_an_object_without_annotations_adds_the_annotations_map() {
    // A reason is needed to ask for break-glass, so the object has annotations;
    // check the map-creating branch on a copy without any.
    let req = Req::create()
        .no_old()
        .object(annotated(&[("gitwarden.io/break-glass", REASON)]))
        .user(ONCALL);
    let decision = decide(&Policy::default(), &req.build(), now());
    let bare = dynamic(&object());
    let patch = mutation_patch(&decision, &bare, true).unwrap();
    assert_eq!(
        serde_json::to_value(&patch).unwrap(),
        json!([
            {"op": "add", "path": "/metadata/annotations", "value": stamps_now()},
            {"op": "add", "path": "/metadata/labels", "value": label()},
        ])
    );
}

#[test]
fn new_window_adds_each_stamp_with_escaped_paths() {
    let (patch, _) = patch_for(
        Req::create()
            .no_old()
            .object(annotated(&[("gitwarden.io/break-glass", REASON)]))
            .user(ONCALL),
    );
    assert_eq!(
        serde_json::to_value(patch.unwrap()).unwrap(),
        json!([
            {"op": "add", "path": "/metadata/annotations/gitwarden.io~1break-glass-by", "value": "oncall"},
            {"op": "add", "path": "/metadata/annotations/gitwarden.io~1break-glass-at", "value": NOW},
            {"op": "add", "path": "/metadata/annotations/gitwarden.io~1break-glass-until", "value": at(HOUR)},
            {"op": "add", "path": "/metadata/labels", "value": label()},
        ])
    );
}

#[test]
fn applying_the_patch_stamps_the_object() {
    let (patch, mut object) = patch_for(
        Req::create()
            .no_old()
            .object(annotated(&[
                ("gitwarden.io/break-glass", REASON),
                ("team", "shop"),
            ]))
            .user(ONCALL),
    );
    json_patch::patch(&mut object, &patch.unwrap()).unwrap();
    let mut expected = stamps_now();
    expected["gitwarden.io/break-glass"] = json!(REASON);
    expected["team"] = json!("shop");
    assert_eq!(object["metadata"]["annotations"], expected);
    assert_eq!(object["metadata"]["labels"], label());
}

#[test]
fn stamps_left_from_a_previous_window_are_replaced() {
    let previous = [
        ("gitwarden.io/break-glass", "INC-1"),
        ("gitwarden.io/break-glass-by", "bob"),
        ("gitwarden.io/break-glass-at", "2026-11-22T00:00:00Z"),
        ("gitwarden.io/break-glass-until", "2026-11-22T01:00:00Z"),
    ];
    let mut current = previous;
    current[0].1 = REASON;
    let (patch, _) = patch_for(
        Req::update()
            .old(annotated(&previous))
            .object(annotated(&current))
            .user(ONCALL),
    );
    let ops = serde_json::to_value(patch.unwrap()).unwrap();
    let annotation_ops: Vec<&Value> = ops
        .as_array()
        .unwrap()
        .iter()
        .filter(|op| {
            op["path"]
                .as_str()
                .unwrap()
                .starts_with("/metadata/annotations")
        })
        .collect();
    assert_eq!(annotation_ops.len(), 3, "{ops}");
    assert!(
        annotation_ops.iter().all(|op| op["op"] == "replace"),
        "{ops}"
    );
}

#[test]
fn an_already_stamped_object_needs_no_patch() {
    let mut stamped = annotated(&[("gitwarden.io/break-glass", REASON)]);
    for (key, value) in stamps_now().as_object().unwrap() {
        stamped["metadata"]["annotations"][key] = value.clone();
    }
    stamped["metadata"]["labels"] = json!({"app": "web", "gitwarden.io/break-glass": "created"});
    let (patch, _) = patch_for(Req::create().no_old().object(stamped).user(ONCALL));
    assert!(patch.is_none());
}

#[test]
fn stamps_dropped_within_an_open_window_are_put_back() {
    let open = [
        ("gitwarden.io/break-glass", REASON),
        ("gitwarden.io/break-glass-by", "bob"),
        ("gitwarden.io/break-glass-at", "2026-11-23T05:30:00Z"),
        ("gitwarden.io/break-glass-until", "2026-11-23T06:30:00Z"),
    ];
    let (patch, mut object) = patch_for(
        Req::update()
            .old(annotated(&open))
            .object(annotated(&[("gitwarden.io/break-glass", REASON)]))
            .user(ONCALL),
    );
    json_patch::patch(&mut object, &patch.unwrap()).unwrap();
    assert_eq!(
        object["metadata"]["annotations"]["gitwarden.io/break-glass-by"],
        "bob"
    );
    assert_eq!(
        object["metadata"]["annotations"]["gitwarden.io/break-glass-until"],
        "2026-11-23T06:30:00Z"
    );
}

#[test]
fn a_denial_has_no_patch() {
    let (patch, _) = patch_for(
        Req::update()
            .object(annotated(&[("gitwarden.io/break-glass", REASON)]))
            .user(ALICE),
    );
    assert!(patch.is_none());
}

#[test]
fn an_ordinary_allow_has_no_patch() {
    let (patch, _) = patch_for(Req::update().user(AGENT));
    assert!(patch.is_none());
}

/// [`object`] as stored (with a `uid`), with these annotations and labels.
fn live(annotations: &[(&str, &str)], labels: &[(&str, &str)]) -> Value {
    let mut o = annotated(annotations);
    o["metadata"]["labels"] = labelled(labels)["metadata"]["labels"].clone();
    o["metadata"]["uid"] = json!("6b1f0c1e-0000-4000-8000-000000000001");
    o
}

/// The ops of a patch as JSON.
fn ops(patch: &json_patch::Patch) -> Vec<Value> {
    serde_json::to_value(patch)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

const OPEN: [(&str, &str); 4] = [
    ("gitwarden.io/break-glass", REASON),
    ("gitwarden.io/break-glass-by", "bob"),
    ("gitwarden.io/break-glass-at", "2026-11-23T05:30:00Z"),
    ("gitwarden.io/break-glass-until", "2026-11-23T06:30:00Z"),
];

#[test]
fn a_new_window_adds_the_label_beside_the_objects_own_labels() {
    let mut new = annotated(&[("gitwarden.io/break-glass", REASON)]);
    new["metadata"]["labels"] = json!({"app": "web"});
    let (patch, mut object) = patch_for(Req::create().no_old().object(new).user(ONCALL));
    let patch = patch.unwrap();
    assert!(
        ops(&patch).contains(&json!(
            {"op": "add", "path": "/metadata/labels/gitwarden.io~1break-glass", "value": "created"}
        )),
        "{:?}",
        ops(&patch)
    );
    json_patch::patch(&mut object, &patch).unwrap();
    assert_eq!(
        object["metadata"]["labels"],
        json!({"app": "web", "gitwarden.io/break-glass": "created"})
    );
}

#[test]
fn an_existing_object_changed_under_break_glass_is_labelled_changed() {
    let (patch, mut object) = patch_for(
        Req::update()
            .old(live(&[], &[("app", "web")]))
            .object(live(
                &[("gitwarden.io/break-glass", REASON)],
                &[("app", "web")],
            ))
            .user(ONCALL),
    );
    json_patch::patch(&mut object, &patch.unwrap()).unwrap();
    assert_eq!(
        object["metadata"]["labels"]["gitwarden.io/break-glass"],
        "changed"
    );
}

#[test]
fn an_object_created_under_break_glass_stays_labelled_created_through_a_new_window() {
    // Extending the emergency with a new reason must not make the object
    // permanent: it keeps `created`, so the agent deletes it afterwards.
    let mut previous = OPEN;
    previous[0].1 = "INC-1";
    let (patch, mut object) = patch_for(
        Req::update()
            .old(live(&previous, &[("gitwarden.io/break-glass", "created")]))
            .object(live(&OPEN, &[("gitwarden.io/break-glass", "created")]))
            .user(ONCALL),
    );
    if let Some(patch) = patch {
        assert!(
            ops(&patch)
                .iter()
                .all(|op| !op["path"].as_str().unwrap().starts_with("/metadata/labels")),
            "the label is left as it is: {:?}",
            ops(&patch)
        );
        json_patch::patch(&mut object, &patch).unwrap();
    }
    assert_eq!(
        object["metadata"]["labels"]["gitwarden.io/break-glass"],
        "created"
    );
}

#[test]
fn a_stamped_and_labelled_object_in_an_open_window_needs_no_patch() {
    let (patch, _) = patch_for(
        Req::update()
            .old(live(&OPEN, &[("gitwarden.io/break-glass", "changed")]))
            .object(live(&OPEN, &[("gitwarden.io/break-glass", "changed")]))
            .user(ONCALL),
    );
    assert!(patch.is_none(), "stamps and label already right");
}

#[test]
fn a_label_dropped_or_altered_within_an_open_window_is_put_back() {
    let old = live(&OPEN, &[("gitwarden.io/break-glass", "changed")]);
    for labels in [
        &[("app", "web")][..],
        &[("gitwarden.io/break-glass", "nope")][..],
    ] {
        let (patch, mut object) = patch_for(
            Req::update()
                .old(old.clone())
                .object(live(&OPEN, labels))
                .user(ONCALL),
        );
        let patch = patch.expect("the label must be put back");
        assert_eq!(ops(&patch).len(), 1, "only the label: {:?}", ops(&patch));
        json_patch::patch(&mut object, &patch).unwrap();
        assert_eq!(
            object["metadata"]["labels"]["gitwarden.io/break-glass"],
            "changed"
        );
    }
}
