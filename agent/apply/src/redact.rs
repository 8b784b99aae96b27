//! Secret values never reach `diff` output: like `kubectl diff`, a Secret's
//! `data` and `stringData` values are masked on both sides before the two
//! are compared, so a change still shows (as `*** (before)` → `*** (after)`)
//! but its value does not.

use serde_json::Value;

/// The annotation `kubectl apply` (client-side) copies the whole object into.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Masks the values of a Secret's `before` and `after` in place; objects of
/// other kinds are left alone.
pub(crate) fn mask_secret_values(before: &mut Value, after: &mut Value) {
    if !is_secret(before) && !is_secret(after) {
        return;
    }
    for field in ["data", "stringData"] {
        let keys: Vec<String> = [&*before, &*after]
            .iter()
            .filter_map(|object| object.get(field).and_then(Value::as_object))
            .flat_map(|map| map.keys().cloned())
            .collect();
        for key in keys {
            let old = before.get(field).and_then(|m| m.get(&key)).cloned();
            let new = after.get(field).and_then(|m| m.get(&key)).cloned();
            let (old_mask, new_mask) = if old == new {
                ("***", "***")
            } else {
                ("*** (before)", "*** (after)")
            };
            set(before, field, &key, old.is_some(), old_mask);
            set(after, field, &key, new.is_some(), new_mask);
        }
    }
    for object in [before, after] {
        if let Some(annotations) = object
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
            && let Some(value) = annotations.get_mut(LAST_APPLIED)
        {
            *value = Value::String("***".to_string());
        }
    }
}

fn is_secret(object: &Value) -> bool {
    object.get("kind").and_then(Value::as_str) == Some("Secret")
        && object.get("apiVersion").and_then(Value::as_str) == Some("v1")
}

fn set(object: &mut Value, field: &str, key: &str, present: bool, mask: &str) {
    if let (true, Some(map)) = (
        present,
        object.get_mut(field).and_then(Value::as_object_mut),
    ) {
        map.insert(key.to_string(), Value::String(mask.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_changed_secret_value_shows_as_changed_without_its_value() {
        let mut before =
            json!({"apiVersion": "v1", "kind": "Secret", "data": {"a": "b2xk", "same": "eA=="}});
        let mut after = json!({"apiVersion": "v1", "kind": "Secret", "data": {"a": "bmV3", "same": "eA==", "added": "eQ=="}});
        mask_secret_values(&mut before, &mut after);
        assert_eq!(before["data"], json!({"a": "*** (before)", "same": "***"}));
        assert_eq!(
            after["data"],
            json!({"a": "*** (after)", "same": "***", "added": "*** (after)"})
        );
        let patch = serde_json::to_string(&json_patch::diff(&before, &after)).unwrap_or_default();
        assert!(
            !patch.contains("bmV3") && !patch.contains("b2xk"),
            "{patch}"
        );
    }

    #[test]
    fn other_kinds_keep_their_data() {
        let mut before = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"}});
        let mut after = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "2"}});
        mask_secret_values(&mut before, &mut after);
        assert_eq!(after["data"]["a"], "2");
    }
}
