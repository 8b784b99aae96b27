//! Kubernetes label selectors, evaluated locally: ClusterRole aggregation and
//! the webhook's namespaceSelector are both selectors, and `doctor` must know
//! exactly what they match to say who holds a right and which namespaces the
//! webhook does not see.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `selector` matches an object with `labels`, with the API server's
/// semantics: every `matchLabels` pair and every `matchExpressions` entry must
/// hold; an empty selector matches everything. An unknown operator matches
/// nothing (the API server refuses such selectors; failing closed here keeps
/// `doctor` from claiming coverage it cannot prove).
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs_hold = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions_hold = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    pairs_hold && expressions_hold
}

/// Whether the selector is absent or empty, i.e. selects every object.
pub fn is_empty(selector: Option<&LabelSelector>) -> bool {
    selector.is_none_or(|s| {
        s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
            && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
    })
}

/// The selector in the compact `kubectl` form, for messages
/// (`a=b,kubernetes.io/metadata.name notin (x,y)`).
pub fn describe(selector: &LabelSelector) -> String {
    let pairs = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"));
    let expressions = selector.match_expressions.iter().flatten().map(|e| {
        let values = e.values.as_deref().unwrap_or_default().join(",");
        match e.operator.as_str() {
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            op => format!("{} {} ({values})", e.key, op.to_lowercase()),
        }
    });
    pairs.chain(expressions).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn selector(json: serde_json::Value) -> LabelSelector {
        serde_json::from_value(json).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_empty_selector_matches_everything() {
        assert!(matches(&LabelSelector::default(), &labels(&[])));
        assert!(is_empty(None));
        assert!(is_empty(Some(&LabelSelector::default())));
    }

    #[test]
    fn match_labels_need_every_pair() {
        let s = selector(serde_json::json!({"matchLabels": {"a": "1", "b": "2"}}));
        assert!(matches(&s, &labels(&[("a", "1"), ("b", "2"), ("c", "3")])));
        assert!(!matches(&s, &labels(&[("a", "1")])));
        assert!(!is_empty(Some(&s)));
    }

    #[test]
    fn not_in_matches_objects_without_the_key() {
        let s = selector(serde_json::json!({"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}
        ]}));
        assert!(matches(&s, &labels(&[])));
        assert!(matches(
            &s,
            &labels(&[("kubernetes.io/metadata.name", "default")])
        ));
        assert!(!matches(
            &s,
            &labels(&[("kubernetes.io/metadata.name", "kube-system")])
        ));
    }

    #[test]
    fn in_exists_and_does_not_exist_follow_the_api_server() {
        let s = selector(serde_json::json!({"matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "stage"]},
            {"key": "team", "operator": "Exists"},
            {"key": "skip", "operator": "DoesNotExist"}
        ]}));
        assert!(matches(&s, &labels(&[("env", "prod"), ("team", "x")])));
        assert!(!matches(&s, &labels(&[("env", "dev"), ("team", "x")])));
        assert!(!matches(&s, &labels(&[("env", "prod")])));
        assert!(!matches(
            &s,
            &labels(&[("env", "prod"), ("team", "x"), ("skip", "")])
        ));
    }

    #[test]
    fn an_unknown_operator_matches_nothing() {
        let s = selector(serde_json::json!({"matchExpressions": [
            {"key": "a", "operator": "Like", "values": ["x"]}
        ]}));
        assert!(!matches(&s, &labels(&[("a", "x")])));
    }

    #[test]
    fn describe_reads_like_kubectl() {
        let s = selector(serde_json::json!({
            "matchLabels": {"a": "b"},
            "matchExpressions": [{"key": "n", "operator": "NotIn", "values": ["x", "y"]}]
        }));
        assert_eq!(describe(&s), "a=b,n notin (x,y)");
    }
}
