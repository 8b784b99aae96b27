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
    (mutation_patch(&decision, &dynamic(&object)), object)
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
    let patch = mutation_patch(&decision, &bare).unwrap();
    assert_eq!(
        serde_json::to_value(&patch).unwrap(),
        json!([{"op": "add", "path": "/metadata/annotations", "value": stamps_now()}])
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
    assert_eq!(ops.as_array().unwrap().len(), 3);
    assert!(
        ops.as_array()
            .unwrap()
            .iter()
            .all(|op| op["op"] == "replace"),
        "{ops}"
    );
}

#[test]
fn an_already_stamped_object_needs_no_patch() {
    let mut stamped = annotated(&[("gitwarden.io/break-glass", REASON)]);
    for (key, value) in stamps_now().as_object().unwrap() {
        stamped["metadata"]["annotations"][key] = value.clone();
    }
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
