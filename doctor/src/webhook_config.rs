//! Sanity checks of gitwarden's webhook configurations: they exist, the entry
//! protecting the cluster fails closed (only gitwarden's own namespace may
//! fail open), its selectors leave no namespace or object out by accident, and
//! its rules cover every resource and subresource.

use std::collections::BTreeMap;

use gitwarden_certs::webhooks::WebhookConfiguration;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, RuleWithOperations, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, ListParams};

use crate::report::Finding;
use crate::selector;

/// The label the API server sets on every namespace to its own name.
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Namespaces the shipped configuration leaves out on purpose: the control
/// plane's own, which gitwarden never protects.
const CONTROL_PLANE_NAMESPACES: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];

/// One webhook entry of either configuration kind, as the checks need it
/// (shared with `gitwarden-certs`, which injects the CA bundle into the same
/// entries).
pub use gitwarden_certs::webhooks::WebhookEntry as Entry;

/// The labels every namespace called `name` carries.
fn name_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(NAME_LABEL.to_string(), name.to_string())])
}

/// The name of a namespace no selector means on purpose: an ordinary new one.
const PROBE_NAMESPACE: &str = "gitwarden-doctor-probe-namespace";

/// Whether the entry's namespaceSelector selects the namespace `name`.
fn selects(entry: &Entry<'_>, name: &str) -> bool {
    entry
        .namespace_selector
        .is_none_or(|s| selector::matches(s, &name_labels(name)))
}

/// Whether the entry is gitwarden's own-namespace entry: it selects the
/// system namespace and would not select an ordinary new namespace.
pub fn is_system_entry(entry: &Entry<'_>, system_namespace: &str) -> bool {
    selects(entry, system_namespace) && !selects(entry, PROBE_NAMESPACE)
}

/// Whether the entry is the one that confines exempt identities in
/// Kubernetes' own namespaces: it selects `kube-system` and neither an
/// ordinary new namespace nor gitwarden's.
pub fn is_confine_entry(entry: &Entry<'_>, system_namespace: &str) -> bool {
    selects(entry, "kube-system")
        && !selects(entry, system_namespace)
        && !selects(entry, PROBE_NAMESPACE)
}

/// Whether the rules send CREATE, UPDATE and DELETE of every resource and
/// subresource in every group, version and scope.
pub fn covers_everything(rules: &[RuleWithOperations]) -> bool {
    let all = |list: &Option<Vec<String>>, item: &str| {
        list.iter().flatten().any(|v| v == "*" || v == item)
    };
    rules.iter().any(|r| {
        ["CREATE", "UPDATE", "DELETE"]
            .iter()
            .all(|op| all(&r.operations, op))
            && r.api_groups.iter().flatten().any(|g| g == "*")
            && r.api_versions.iter().flatten().any(|v| v == "*")
            && r.resources.iter().flatten().any(|res| res == "*/*")
            && r.scope.as_deref().is_none_or(|s| s == "*")
    })
}

/// Checks of the ValidatingWebhookConfiguration's entries against the
/// cluster's namespaces (name → labels). Pure.
pub fn check_validating(
    entries: &[Entry<'_>],
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
    system_namespace: &str,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let (system, others): (Vec<&Entry<'_>>, Vec<&Entry<'_>>) = entries
        .iter()
        .partition(|e| is_system_entry(e, system_namespace));
    let (confine, protected): (Vec<&Entry<'_>>, Vec<&Entry<'_>>) = others
        .into_iter()
        .partition(|e| is_confine_entry(e, system_namespace));
    if protected.is_empty() {
        out.push(Finding::critical(
            "webhook/coverage",
            "no entry of the ValidatingWebhookConfiguration protects namespaces other than \
             gitwarden's own: nothing outside git is refused",
        ));
    }
    for e in &protected {
        if e.failure_policy == "Fail" {
            out.push(Finding::ok(
                "webhook/failure-policy",
                format!("{} fails closed (failurePolicy Fail)", e.describe()),
            ));
        } else {
            out.push(Finding::critical(
                "webhook/failure-policy",
                format!(
                    "{} has failurePolicy {}: while the webhook is down or unreachable, every write it should refuse is allowed; set failurePolicy: Fail",
                    e.describe(),
                    e.failure_policy
                ),
            ));
        }
        if covers_everything(e.rules) {
            out.push(Finding::ok(
                "webhook/rules",
                format!(
                    "{} sends CREATE, UPDATE and DELETE of every resource and subresource",
                    e.describe()
                ),
            ));
        } else {
            out.push(Finding::warning(
                "webhook/rules",
                format!(
                    "{} does not send CREATE, UPDATE and DELETE of every resource and subresource (apiGroups/apiVersions [\"*\"], resources [\"*/*\"], scope \"*\"): what it leaves out is not checked",
                    e.describe()
                ),
            ));
        }
        if let Some(sel) = e.object_selector.filter(|s| !selector::is_empty(Some(s))) {
            out.push(Finding::warning(
                "webhook/object-selector",
                format!(
                    "{} only checks objects matching {:?}: any other object is changed without git",
                    e.describe(),
                    selector::describe(sel)
                ),
            ));
        }
    }
    if !protected.is_empty() {
        out.extend(namespace_coverage(&protected, namespaces, system_namespace));
    }
    match system.first() {
        None => out.push(Finding::warning(
            "webhook/system-namespace",
            format!(
                "no entry is dedicated to {system_namespace}: gitwarden's own objects there are either unprotected or fail closed with the webhook"
            ),
        )),
        Some(e) if e.failure_policy == "Fail" => out.push(Finding::ok(
            "webhook/system-namespace",
            format!(
                "{} covers {system_namespace} and fails closed; the agent, kept off the webhook's path, can always repair gitwarden",
                e.describe()
            ),
        )),
        Some(e) => out.push(Finding::warning(
            "webhook/system-namespace",
            format!(
                "{} fails open: while the webhook is down, anyone with RBAC can change gitwarden's own objects in {system_namespace} (its policy, Leases, Secrets); set failurePolicy: Fail (the agent never depends on the webhook)",
                e.describe()
            ),
        )),
    }
    match confine.first() {
        None => out.push(Finding::warning(
            "webhook/confinement",
            format!(
                "no entry checks Pods, workloads and tokens in {}: a person can run a Pod there as a controller's service account (an exempt identity) or one that reaches its node",
                CONTROL_PLANE_NAMESPACES.join(", ")
            ),
        )),
        Some(e) if e.failure_policy == "Fail" => out.push(Finding::ok(
            "webhook/confinement",
            format!(
                "{} keeps exempt identities and node access out of people's Pods in {} and fails closed",
                e.describe(),
                CONTROL_PLANE_NAMESPACES.join(", ")
            ),
        )),
        Some(e) => out.push(Finding::warning(
            "webhook/confinement",
            format!(
                "{} fails open: while the webhook is down, a person can run a Pod as a controller's service account in {}",
                e.describe(),
                CONTROL_PLANE_NAMESPACES.join(", ")
            ),
        )),
    }
    out
}

/// Which namespaces no protecting entry selects, beyond the control plane's
/// own and gitwarden's (which has its own entry).
fn namespace_coverage(
    protected: &[&Entry<'_>],
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
    system_namespace: &str,
) -> Vec<Finding> {
    let selected = |labels: &BTreeMap<String, String>| {
        protected.iter().any(|e| {
            e.namespace_selector
                .is_none_or(|s| selector::matches(s, labels))
        })
    };
    let ordinary: Vec<(&String, &BTreeMap<String, String>)> = namespaces
        .iter()
        .filter(|(n, _)| !CONTROL_PLANE_NAMESPACES.contains(&n.as_str()) && *n != system_namespace)
        .collect();
    let uncovered: Vec<&str> = ordinary
        .iter()
        .filter(|(_, labels)| !selected(labels))
        .map(|(n, _)| n.as_str())
        .collect();
    let probe_covered = selected(&name_labels(PROBE_NAMESPACE));
    let selectors: Vec<String> = protected
        .iter()
        .filter_map(|e| e.namespace_selector.map(selector::describe))
        .collect();
    if uncovered.len() == ordinary.len() && !probe_covered {
        return vec![Finding::critical(
            "webhook/namespace-selector",
            format!(
                "the namespaceSelector ({}) excludes every namespace: nothing is protected",
                selectors.join("; ")
            ),
        )];
    }
    if uncovered.is_empty() {
        let mut findings = vec![Finding::ok(
            "webhook/namespace-selector",
            format!(
                "all {} namespaces are checked (besides {} and {system_namespace}, which has its own entry)",
                ordinary.len(),
                CONTROL_PLANE_NAMESPACES.join(", ")
            ),
        )];
        if !probe_covered {
            findings.push(Finding::warning(
                "webhook/namespace-selector",
                format!(
                    "a new namespace without particular labels would not be checked (namespaceSelector {})",
                    selectors.join("; ")
                ),
            ));
        }
        return findings;
    }
    const SHOWN: usize = 10;
    let more = uncovered.len().saturating_sub(SHOWN);
    vec![Finding::warning(
        "webhook/namespace-selector",
        format!(
            "{} namespace(s) are not checked by the webhook (namespaceSelector {}): {}{}",
            uncovered.len(),
            selectors.join("; "),
            uncovered[..uncovered.len().min(SHOWN)].join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ),
    )]
}

/// The configurations as read from the cluster.
#[derive(Debug, Default)]
pub struct Configurations {
    /// The ValidatingWebhookConfiguration, if present.
    pub validating: Option<ValidatingWebhookConfiguration>,
    /// The MutatingWebhookConfiguration, if present.
    pub mutating: Option<MutatingWebhookConfiguration>,
}

impl Configurations {
    /// Every entry of both configurations.
    pub fn entries(&self) -> Vec<Entry<'_>> {
        let mut all = self
            .validating
            .as_ref()
            .map(WebhookConfiguration::entries)
            .unwrap_or_default();
        all.extend(
            self.mutating
                .as_ref()
                .map(WebhookConfiguration::entries)
                .unwrap_or_default(),
        );
        all
    }
}

/// Reads the configurations named `name` and the namespaces, and checks them.
#[tracing::instrument(skip(client))]
pub async fn check(
    client: &Client,
    name: &str,
    system_namespace: &str,
) -> (Configurations, Vec<Finding>) {
    let mut out = Vec::new();
    let mut configs = Configurations::default();
    match Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .get_opt(name)
        .await
    {
        Ok(Some(c)) => configs.validating = Some(c),
        Ok(None) => out.push(Finding::critical(
            "webhook/validating",
            format!(
                "ValidatingWebhookConfiguration {name} does not exist: the API server asks gitwarden nothing, every change bypasses git"
            ),
        )),
        Err(e) => out.push(Finding::critical(
            "webhook/validating",
            format!("cannot read ValidatingWebhookConfiguration {name}: {e}"),
        )),
    }
    match Api::<MutatingWebhookConfiguration>::all(client.clone())
        .get_opt(name)
        .await
    {
        Ok(Some(c)) => {
            out.push(Finding::ok(
                "webhook/mutating",
                format!("MutatingWebhookConfiguration {name} exists (stamps break-glass changes)"),
            ));
            configs.mutating = Some(c);
        }
        Ok(None) => out.push(Finding::warning(
            "webhook/mutating",
            format!(
                "MutatingWebhookConfiguration {name} does not exist: break-glass changes are not stamped, so they are refused"
            ),
        )),
        Err(e) => out.push(Finding::warning(
            "webhook/mutating",
            format!("cannot read MutatingWebhookConfiguration {name}: {e}"),
        )),
    }
    if let Some(validating) = &configs.validating {
        let namespaces = match Api::<Namespace>::all(client.clone())
            .list(&ListParams::default())
            .await
        {
            Ok(list) => list
                .items
                .into_iter()
                .filter_map(|ns| {
                    let name = ns.metadata.name?;
                    let mut labels = ns.metadata.labels.unwrap_or_default();
                    labels
                        .entry(NAME_LABEL.to_string())
                        .or_insert_with(|| name.clone());
                    Some((name, labels))
                })
                .collect(),
            Err(e) => {
                out.push(Finding::warning(
                    "webhook/namespace-selector",
                    format!("cannot list namespaces to evaluate the namespaceSelector: {e}"),
                ));
                BTreeMap::new()
            }
        };
        out.push(Finding::ok(
            "webhook/validating",
            format!("ValidatingWebhookConfiguration {name} exists"),
        ));
        out.extend(check_validating(
            &validating.entries(),
            &namespaces,
            system_namespace,
        ));
    }
    (configs, out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::report::Severity;

    /// The first document (the ValidatingWebhookConfiguration) of a shipped
    /// manifest, with the local template's placeholders filled.
    fn shipped_from(text: &str) -> ValidatingWebhookConfiguration {
        let text = text
            .replace("${WEBHOOK_URL}", "https://127.0.0.1:9443")
            .replace("${CA_BUNDLE}", "");
        let first = text.split("\n---\n").next().unwrap();
        serde_yaml_ng::from_str(first).unwrap()
    }

    /// deploy/local's configuration: what the demo and the tests install.
    fn shipped() -> ValidatingWebhookConfiguration {
        shipped_from(include_str!(
            "../../deploy/local/webhook-configuration.yaml"
        ))
    }

    #[test]
    fn the_in_cluster_configuration_of_deploy_base_passes_every_check() {
        let config = shipped_from(include_str!("../../deploy/base/webhook-configuration.yaml"));
        let out = check_validating(&config.entries(), &cluster(), "gitwarden-system");
        assert!(out.iter().all(|f| f.severity == Severity::Info), "{out:#?}");
    }

    fn namespaces(names: &[&str]) -> BTreeMap<String, BTreeMap<String, String>> {
        names
            .iter()
            .map(|n| (n.to_string(), name_labels(n)))
            .collect()
    }

    fn cluster() -> BTreeMap<String, BTreeMap<String, String>> {
        namespaces(&["default", "kube-system", "gitwarden-system", "team-a"])
    }

    fn worst(findings: &[Finding], check: &str) -> Option<Severity> {
        findings
            .iter()
            .filter(|f| f.check == check)
            .map(|f| f.severity)
            .max()
    }

    #[test]
    fn the_shipped_configuration_passes_every_check() {
        let config = shipped();
        let out = check_validating(&config.entries(), &cluster(), "gitwarden-system");
        assert!(out.iter().all(|f| f.severity == Severity::Info), "{out:#?}");
    }

    #[test]
    fn the_system_entry_is_recognised_by_its_selector() {
        let config = shipped();
        let entries = &config.entries();
        assert!(!is_system_entry(&entries[0], "gitwarden-system"));
        assert!(is_system_entry(&entries[1], "gitwarden-system"));
    }

    #[test]
    fn ignore_on_the_protecting_entry_is_critical_and_named() {
        let mut config = shipped();
        config.webhooks.as_mut().unwrap()[0].failure_policy = Some("Ignore".into());
        let out = check_validating(&config.entries(), &cluster(), "gitwarden-system");
        let f = out
            .iter()
            .find(|f| f.check == "webhook/failure-policy")
            .unwrap();
        assert_eq!(f.severity, Severity::Critical);
        assert!(f.message.contains("validate.gitwarden.io"), "{}", f.message);
        assert!(f.message.contains("Ignore"), "{}", f.message);
    }

    #[test]
    fn ignore_on_the_system_entry_is_a_warning() {
        let mut config = shipped();
        config.webhooks.as_mut().unwrap()[1].failure_policy = Some("Ignore".into());
        let out = check_validating(&config.entries(), &cluster(), "gitwarden-system");
        assert_eq!(
            worst(&out, "webhook/system-namespace"),
            Some(Severity::Warning)
        );
    }

    #[test]
    fn the_confine_entry_is_recognised_and_its_absence_is_a_warning() {
        let mut config = shipped();
        let entries = config.entries();
        assert!(is_confine_entry(&entries[2], "gitwarden-system"));
        assert!(!is_confine_entry(&entries[0], "gitwarden-system"));
        assert!(!is_confine_entry(&entries[1], "gitwarden-system"));
        config.webhooks.as_mut().unwrap().truncate(2);
        let out = check_validating(&config.entries(), &cluster(), "gitwarden-system");
        assert_eq!(worst(&out, "webhook/confinement"), Some(Severity::Warning));
    }

    #[test]
    fn a_selector_that_matches_no_namespace_is_critical() {
        let mut config = shipped();
        config.webhooks.as_mut().unwrap()[0].namespace_selector = Some(
            serde_json::from_value(serde_json::json!({"matchLabels": {"protected": "yes"}}))
                .unwrap(),
        );
        let out = check_validating(&config.entries(), &cluster(), "gitwarden-system");
        assert_eq!(
            worst(&out, "webhook/namespace-selector"),
            Some(Severity::Critical)
        );
    }

    #[test]
    fn namespaces_left_out_are_listed_as_a_warning() {
        let mut config = shipped();
        config.webhooks.as_mut().unwrap()[0].namespace_selector = Some(
            serde_json::from_value(serde_json::json!({"matchExpressions": [{"key": NAME_LABEL,
                "operator": "NotIn", "values": ["kube-system", "gitwarden-system", "team-a"]}]}))
            .unwrap(),
        );
        let out = check_validating(&config.entries(), &cluster(), "gitwarden-system");
        let f = out
            .iter()
            .find(|f| f.check == "webhook/namespace-selector")
            .unwrap();
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.message.contains("team-a"), "{}", f.message);
    }

    #[test]
    fn an_object_selector_and_narrow_rules_are_warnings() {
        let mut config = shipped();
        let entry = &mut config.webhooks.as_mut().unwrap()[0];
        entry.object_selector = Some(
            serde_json::from_value(
                serde_json::json!({"matchLabels": {"app.kubernetes.io/managed-by": "gitwarden"}}),
            )
            .unwrap(),
        );
        entry.rules.as_mut().unwrap()[0].resources = Some(vec!["*".into()]);
        let out = check_validating(&config.entries(), &cluster(), "gitwarden-system");
        assert_eq!(
            worst(&out, "webhook/object-selector"),
            Some(Severity::Warning)
        );
        assert_eq!(worst(&out, "webhook/rules"), Some(Severity::Warning));
    }

    #[test]
    fn an_unset_failure_policy_is_fail() {
        let mut config = shipped();
        config.webhooks.as_mut().unwrap()[0].failure_policy = None;
        let out = check_validating(&config.entries(), &cluster(), "gitwarden-system");
        assert_eq!(worst(&out, "webhook/failure-policy"), Some(Severity::Info));
    }

    #[test]
    fn a_configuration_without_a_protecting_entry_is_critical() {
        let mut config = shipped();
        config.webhooks.as_mut().unwrap().remove(0);
        let out = check_validating(&config.entries(), &cluster(), "gitwarden-system");
        assert_eq!(worst(&out, "webhook/coverage"), Some(Severity::Critical));
    }
}
