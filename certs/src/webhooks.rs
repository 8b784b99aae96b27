//! The entries of a webhook configuration, of either kind.
//!
//! k8s-openapi gives `ValidatingWebhook` and `MutatingWebhook` the same
//! fields but no common trait. Injecting the CA bundle (here) and checking
//! the configurations (`gitwarden-doctor`) both walk every entry of
//! both kinds; this one view serves both, so neither repeats itself per kind.

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, RuleWithOperations, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// One webhook entry of either configuration kind.
#[derive(Debug, Clone, Copy)]
pub struct WebhookEntry<'a> {
    /// `ValidatingWebhookConfiguration` or `MutatingWebhookConfiguration`.
    pub kind: &'static str,
    /// The configuration's name.
    pub config: &'a str,
    /// The entry's name (`validate.gitwarden.io`).
    pub name: &'a str,
    /// `Fail` or `Ignore` (the API's default, `Fail`, when unset).
    pub failure_policy: &'a str,
    /// Which namespaces' objects are sent.
    pub namespace_selector: Option<&'a LabelSelector>,
    /// Which objects are sent.
    pub object_selector: Option<&'a LabelSelector>,
    /// Which requests are sent.
    pub rules: &'a [RuleWithOperations],
    /// Where and with which CA they are sent.
    pub client_config: &'a WebhookClientConfig,
}

impl WebhookEntry<'_> {
    /// `ValidatingWebhookConfiguration gitwarden, entry validate.gitwarden.io`.
    pub fn describe(&self) -> String {
        format!("{} {}, entry {}", self.kind, self.config, self.name)
    }
}

/// A webhook configuration whose entries can be walked as [`WebhookEntry`]s.
pub trait WebhookConfiguration {
    /// Every entry, in the configuration's order (the index is the entry's
    /// position in `/webhooks`, for JSON patches).
    fn entries(&self) -> Vec<WebhookEntry<'_>>;
}

/// Implements [`WebhookConfiguration`] for configuration types whose
/// `webhooks` have the shared fields.
macro_rules! webhook_configuration {
    ($($config:ty),+) => {$(
        impl WebhookConfiguration for $config {
            fn entries(&self) -> Vec<WebhookEntry<'_>> {
                let config = self.metadata.name.as_deref().unwrap_or("?");
                self.webhooks
                    .iter()
                    .flatten()
                    .map(|w| WebhookEntry {
                        kind: <$config as k8s_openapi::Resource>::KIND,
                        config,
                        name: &w.name,
                        failure_policy: w.failure_policy.as_deref().unwrap_or("Fail"),
                        namespace_selector: w.namespace_selector.as_ref(),
                        object_selector: w.object_selector.as_ref(),
                        rules: w.rules.as_deref().unwrap_or_default(),
                        client_config: &w.client_config,
                    })
                    .collect()
            }
        }
    )+};
}

webhook_configuration!(ValidatingWebhookConfiguration, MutatingWebhookConfiguration);

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, ValidatingWebhook};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn meta() -> ObjectMeta {
        ObjectMeta {
            name: Some("gitwarden".into()),
            ..Default::default()
        }
    }

    #[test]
    fn both_kinds_give_their_entries_in_order_with_the_api_defaults() {
        let validating = ValidatingWebhookConfiguration {
            metadata: meta(),
            webhooks: Some(vec![
                ValidatingWebhook {
                    name: "a.gitwarden.io".into(),
                    failure_policy: Some("Ignore".into()),
                    ..Default::default()
                },
                ValidatingWebhook {
                    name: "b.gitwarden.io".into(),
                    ..Default::default()
                },
            ]),
        };
        let mutating = MutatingWebhookConfiguration {
            metadata: meta(),
            webhooks: Some(vec![MutatingWebhook {
                name: "m.gitwarden.io".into(),
                ..Default::default()
            }]),
        };
        let v = validating.entries();
        assert_eq!(
            v.iter()
                .map(|e| (e.name, e.failure_policy))
                .collect::<Vec<_>>(),
            [("a.gitwarden.io", "Ignore"), ("b.gitwarden.io", "Fail")]
        );
        assert_eq!(
            v[1].describe(),
            "ValidatingWebhookConfiguration gitwarden, entry b.gitwarden.io"
        );
        let m = mutating.entries();
        assert_eq!(m.len(), 1);
        assert_eq!(
            m[0].describe(),
            "MutatingWebhookConfiguration gitwarden, entry m.gitwarden.io"
        );
    }
}
