//! The JSON patch `/mutate` returns to stamp a break-glass window on the
//! object, so that the window's owner, start and end travel with the object
//! where the agent and later requests can read them, and to label it so the
//! agent can find every object touched under break-glass with a selector.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use kube::core::DynamicObject;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use super::{Decision, Verdict};
use crate::names::{
    BREAK_GLASS_AT, BREAK_GLASS_BY, BREAK_GLASS_LABEL, BREAK_GLASS_LABEL_CHANGED,
    BREAK_GLASS_LABEL_CREATED, BREAK_GLASS_UNTIL,
};

/// The patch that makes `object` carry the stamps of the decision's
/// break-glass window and the [`BREAK_GLASS_LABEL`], or `None` when there is
/// nothing to stamp: the decision is not an allowed break-glass change, or
/// the object already carries exactly these stamps and the label.
///
/// That covers a new window (stamps added, or replacing those left over from
/// a previous window) and an open window whose stamps or label the request
/// dropped (put back). `metadata.annotations` and `metadata.labels` are
/// created when the object has none. `/validate` calls [`super::decide`] too
/// but never applies this patch.
///
/// The label says whether the window created the object (`creates` is true
/// for a CREATE) or changed one that existed before; an object once labelled
/// [`BREAK_GLASS_LABEL_CREATED`] keeps that value through later changes, so
/// the agent deletes it after the last window closes.
pub fn mutation_patch(decision: &Decision, object: &DynamicObject, creates: bool) -> Option<Patch> {
    if decision.verdict != Verdict::Allow {
        return None;
    }
    let grant = decision.break_glass.as_ref()?;
    let stamps = [
        (BREAK_GLASS_BY, grant.by.clone()),
        (BREAK_GLASS_AT, grant.at.to_string()),
        (BREAK_GLASS_UNTIL, grant.until.to_string()),
    ];
    let created_before = object
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(BREAK_GLASS_LABEL))
        .is_some_and(|value| value == BREAK_GLASS_LABEL_CREATED);
    let value = if creates || created_before {
        BREAK_GLASS_LABEL_CREATED
    } else {
        BREAK_GLASS_LABEL_CHANGED
    };
    let label = [(BREAK_GLASS_LABEL, value.to_owned())];
    let mut operations = ensure("annotations", object.metadata.annotations.as_ref(), &stamps);
    operations.extend(ensure("labels", object.metadata.labels.as_ref(), &label));
    (!operations.is_empty()).then_some(Patch(operations))
}

/// The operations that make the `metadata.<map>` map hold every `wanted`
/// entry: one `add` of the whole map when the object has none, otherwise an
/// `add` or `replace` per missing or different entry.
fn ensure(
    map: &str,
    current: Option<&BTreeMap<String, String>>,
    wanted: &[(&str, String)],
) -> Vec<PatchOperation> {
    let Some(current) = current else {
        let entries: Map<String, Value> = wanted
            .iter()
            .map(|(key, value)| ((*key).to_owned(), Value::String(value.clone())))
            .collect();
        return vec![PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(["metadata", map]),
            value: Value::Object(entries),
        })];
    };
    wanted
        .iter()
        .filter(|(key, value)| current.get(*key) != Some(value))
        .map(|(key, value)| {
            let path = PointerBuf::from_tokens(["metadata", map, key]);
            let value = Value::String(value.clone());
            if current.contains_key(*key) {
                PatchOperation::Replace(ReplaceOperation { path, value })
            } else {
                PatchOperation::Add(AddOperation { path, value })
            }
        })
        .collect()
}
