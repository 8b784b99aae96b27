//! Aggregated ClusterRoles (`aggregationRule`), resolved locally.
//!
//! The controller manager copies the rules of every ClusterRole matching an
//! aggregation selector into the aggregated role; `admin`, `edit` and `view`
//! are built this way. `doctor` resolves the union itself, so a label added to
//! a small ClusterRole that quietly extends `edit` is seen even when the
//! aggregation controller has not run (yet).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};

use crate::selector;

/// Every ClusterRole's effective rules by name: its own rules plus, for an
/// aggregated role, the effective rules of every ClusterRole its selectors
/// match (recursively; cycles are cut).
pub fn resolve(roles: &[ClusterRole]) -> BTreeMap<String, Vec<PolicyRule>> {
    let by_name: BTreeMap<&str, &ClusterRole> = roles
        .iter()
        .filter_map(|r| r.metadata.name.as_deref().map(|n| (n, r)))
        .collect();
    by_name
        .keys()
        .map(|name| {
            let mut seen = BTreeSet::new();
            let mut rules = Vec::new();
            collect(name, &by_name, &mut seen, &mut rules);
            (name.to_string(), rules)
        })
        .collect()
}

fn collect<'a>(
    name: &'a str,
    by_name: &BTreeMap<&'a str, &'a ClusterRole>,
    seen: &mut BTreeSet<&'a str>,
    rules: &mut Vec<PolicyRule>,
) {
    if !seen.insert(name) {
        return;
    }
    let Some(role) = by_name.get(name) else {
        return;
    };
    for rule in role.rules.iter().flatten() {
        if !rules.contains(rule) {
            rules.push(rule.clone());
        }
    }
    let selectors = role
        .aggregation_rule
        .as_ref()
        .and_then(|a| a.cluster_role_selectors.as_ref());
    for sel in selectors.into_iter().flatten() {
        for (other, other_role) in by_name {
            let labels = other_role.metadata.labels.clone().unwrap_or_default();
            if *other != name && selector::matches(sel, &labels) {
                collect(other, by_name, seen, rules);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn role(json: serde_json::Value) -> ClusterRole {
        serde_json::from_value(json).unwrap()
    }

    fn verbs(rules: &[PolicyRule]) -> Vec<String> {
        rules.iter().flat_map(|r| r.verbs.clone()).collect()
    }

    #[test]
    fn a_plain_role_keeps_its_own_rules() {
        let roles = [role(serde_json::json!({"metadata": {"name": "plain"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}))];
        let resolved = resolve(&roles);
        assert_eq!(verbs(&resolved["plain"]), ["get"]);
    }

    #[test]
    fn an_aggregated_role_gains_the_rules_of_labelled_roles() {
        let roles = [
            role(serde_json::json!({"metadata": {"name": "edit"},
                "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg/edit": "true"}}]}})),
            role(
                serde_json::json!({"metadata": {"name": "sneaky", "labels": {"agg/edit": "true"}},
                "rules": [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}]}),
            ),
            role(serde_json::json!({"metadata": {"name": "unrelated"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]})),
        ];
        let resolved = resolve(&roles);
        assert_eq!(verbs(&resolved["edit"]), ["impersonate"]);
        assert_eq!(verbs(&resolved["sneaky"]), ["impersonate"]);
    }

    #[test]
    fn aggregation_is_followed_through_aggregated_roles_and_cycles_end() {
        let roles = [
            role(
                serde_json::json!({"metadata": {"name": "a", "labels": {"to-b": "1"}},
                "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"to-a": "1"}}]}}),
            ),
            role(
                serde_json::json!({"metadata": {"name": "b", "labels": {"to-a": "1"}},
                "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"to-b": "1"}}]},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
            ),
            role(
                serde_json::json!({"metadata": {"name": "c", "labels": {"to-b": "1"}},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]}),
            ),
        ];
        let resolved = resolve(&roles);
        let mut a = verbs(&resolved["a"]);
        a.sort();
        assert_eq!(a, ["delete", "get"]);
    }

    #[test]
    fn rules_already_copied_by_the_controller_are_not_repeated() {
        let rule = serde_json::json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]});
        let roles = [
            role(serde_json::json!({"metadata": {"name": "agg"},
                "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": "1"}}]},
                "rules": [rule.clone()]})),
            role(
                serde_json::json!({"metadata": {"name": "part", "labels": {"x": "1"}}, "rules": [rule]}),
            ),
        ];
        assert_eq!(resolve(&roles)["agg"].len(), 1);
    }
}
