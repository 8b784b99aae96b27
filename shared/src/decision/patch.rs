//! The JSON patch `/mutate` returns to stamp a break-glass window on the
//! object, so that the window's owner, start and end travel with the object
//! where the agent and later requests can read them.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use kube::core::DynamicObject;
use serde_json::{Map, Value};

use super::{Decision, Verdict};
use crate::names::{BREAK_GLASS_AT, BREAK_GLASS_BY, BREAK_GLASS_UNTIL};

/// The patch that makes `object` carry the stamps of the decision's
/// break-glass window, or `None` when there is nothing to stamp: the
/// decision is not an allowed break-glass change, or the object already
/// carries exactly these stamps.
///
/// That covers a new window (stamps added, or replacing those left over from
/// a previous window) and an open window whose stamps the request dropped
/// (put back). `metadata.annotations` is created when the object has none.
/// `/validate` calls [`super::decide`] too but never applies this patch.
pub fn mutation_patch(decision: &Decision, object: &DynamicObject) -> Option<Patch> {
    if decision.verdict != Verdict::Allow {
        return None;
    }
    let grant = decision.break_glass.as_ref()?;
    let wanted = [
        (BREAK_GLASS_BY, grant.by.clone()),
        (BREAK_GLASS_AT, grant.at.to_string()),
        (BREAK_GLASS_UNTIL, grant.until.to_string()),
    ];
    let Some(current) = object.metadata.annotations.as_ref() else {
        let annotations: Map<String, Value> = wanted
            .into_iter()
            .map(|(key, value)| (key.to_owned(), Value::String(value)))
            .collect();
        return Some(Patch(vec![PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", "annotations"]),
            value: Value::Object(annotations),
        })]));
    };
    let operations: Vec<PatchOperation> = wanted
        .into_iter()
        .filter(|(key, value)| current.get(*key) != Some(value))
        .map(|(key, value)| {
            let path = PointerBuf::from_tokens(["metadata", "annotations", key]);
            let value = Value::String(value);
            if current.contains_key(key) {
                PatchOperation::Replace(ReplaceOperation { path, value })
            } else {
                PatchOperation::Add(AddOperation { path, value })
            }
        })
        .collect();
    (!operations.is_empty()).then_some(Patch(operations))
}
