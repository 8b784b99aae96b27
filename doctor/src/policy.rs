//! The admission policy in force: read from its ConfigMap, so that the
//! identities it names (the agent, exempt components) are reported as
//! expected, and a policy that does not parse is reported.

use gitwarden_shared::names::POLICY_KEY;
use gitwarden_shared::policy::Policy;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::Api;

use crate::report::Finding;

/// The policy of `namespace/name`, or the built-in defaults when it is
/// missing or unreadable, with a finding saying which.
pub async fn read(client: &Client, namespace: &str, name: &str) -> (Policy, Finding) {
    let check = "policy/configmap";
    let found = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await;
    let text = match found {
        Ok(Some(cm)) => cm
            .data
            .and_then(|mut d| d.remove(POLICY_KEY))
            .unwrap_or_default(),
        Ok(None) => {
            return (
                Policy::default(),
                Finding::warning(
                    check,
                    format!(
                        "the policy ConfigMap {namespace}/{name} does not exist: the webhook uses its built-in defaults"
                    ),
                ),
            );
        }
        Err(e) => {
            return (
                Policy::default(),
                Finding::warning(
                    check,
                    format!("cannot read the policy ConfigMap {namespace}/{name}: {e}"),
                ),
            );
        }
    };
    match Policy::from_yaml(&text) {
        Ok(policy) => (
            policy,
            Finding::ok(check, format!("the policy in {namespace}/{name} is valid")),
        ),
        Err(e) => (
            Policy::default(),
            Finding::warning(
                check,
                format!(
                    "the policy in {namespace}/{name} is invalid ({}); the webhook keeps the last valid one",
                    gitwarden_runtime::errors::chain(&e)
                ),
            ),
        ),
    }
}
