//! The webhook registers its own Validating- and MutatingWebhookConfiguration,
//! from a template in git, once it can answer.
//!
//! Why not ship the configurations as plain objects: they take effect the
//! moment they exist. Installed before a replica can answer (an image that
//! cannot be pulled, a crash loop, no certificate yet), they make every write
//! in the cluster fail — fail closed is the point of them — and the cluster
//! stays locked until someone deletes them by hand. So the template ships as
//! a ConfigMap, and each replica, while it is ready ([`Readiness`]), keeps the
//! live configurations equal to it, as Kyverno does with its own. A broken
//! install registers nothing and leaves the cluster writable; doctor and the
//! pods' own status say why.
//!
//! Once registered, enforcement is never withdrawn by gitwarden: a replica
//! that turns unready stops registering, it does not unregister. The live
//! objects are compared with the template as the API server defaults it
//! ([`admission_object::tampered`]): an added webhook entry, a match
//! condition, a deleted configuration are put back as soon as the watch on
//! them reports the change (about one round trip), or within one interval
//! when the watch is down. The leading agent restores an *edited*
//! configuration to the template too (the template ConfigMap is in its git)
//! and creates a *deleted* one again with the `caBundle` it held, so both are
//! undone while no webhook replica runs: enforcement that had started
//! stays, even if that means failing closed until a replica answers.
//!
//! Here, a missing configuration is created only once every Service it
//! calls has a ready endpoint: this replica is ready before the kubelet's
//! probe puts it behind the Service, and a configuration created in between
//! makes every write fail with "no endpoints available". That is what keeps
//! a fresh or broken install from locking the cluster; the agent creates
//! again only what it saw in force.
//!
//! The CA bundle: each webhook entry keeps the live `caBundle` when it holds
//! every certificate of the bundle this replica serves with (`ca.crt` beside
//! its certificate); otherwise it gets that bundle. gitwarden-certs may add a
//! renewed CA first (a superset is kept), and a bundle that cannot verify
//! this replica is replaced.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt as _;
use gitwarden_shared::admission_object::{self, TemplateError};
use gitwarden_shared::names::WEBHOOK_FIELD_MANAGER;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;

use crate::readiness::Readiness;

/// Where the template and the bundle are, and how often to look.
#[derive(Debug, Clone)]
pub struct RegistrationOptions {
    /// The template file (the mounted ConfigMap key).
    pub template: PathBuf,
    /// The PEM CA bundle the API server must trust (`ca.crt`).
    pub ca_bundle: PathBuf,
    /// Time between two comparisons.
    pub interval: Duration,
}

/// What one comparison did to one configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
pub enum Outcome {
    /// It did not exist: created from the template.
    Registered,
    /// It differed from the template: put back.
    Restored,
    /// Only its CA bundle could not verify this replica: replaced.
    BundleInjected,
    /// Equal to the template.
    Unchanged,
    /// It did not exist, and the Service it calls has no ready endpoint
    /// yet: not created, since the API server could reach no replica and
    /// every write in the cluster would fail.
    AwaitingEndpoints,
}

/// Why a comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The template file could not be read.
    #[error("reading the template {}", path.display())]
    ReadTemplate {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The template is not a list of webhook configurations.
    #[error("the template {}", path.display())]
    Template {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: TemplateError,
    },
    /// The CA bundle could not be read.
    #[error("reading the CA bundle {}", path.display())]
    ReadBundle {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The CA bundle holds no certificate.
    #[error("the CA bundle {} holds no PEM certificate", path.display())]
    EmptyBundle {
        /// The file.
        path: PathBuf,
    },
    /// A template object is not a valid webhook configuration body.
    #[error("the template's {kind} {name} is not a valid object")]
    Body {
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The API server refused or could not be reached.
    #[error("{verb} {kind} {name}")]
    Api {
        /// What was tried.
        verb: &'static str,
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
        /// Why.
        #[source]
        source: Box<kube::Error>,
    },
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Outcome,
}

/// `gitwarden_webhook_registration_*`.
#[derive(Debug, Default)]
pub struct RegistrationMetrics {
    outcomes: Family<OutcomeLabels, Counter>,
    errors: Counter,
    registered: Gauge,
}

impl RegistrationMetrics {
    /// Registers under `gitwarden_webhook_registration`.
    pub fn new(registry: &mut Registry) -> Arc<RegistrationMetrics> {
        let m = RegistrationMetrics::default();
        let r = registry.sub_registry_with_prefix("gitwarden_webhook_registration");
        r.register(
            "outcomes",
            "Comparisons of a webhook configuration with its template, by outcome",
            m.outcomes.clone(),
        );
        r.register(
            "errors",
            "Comparisons that failed (template, bundle or API server)",
            m.errors.clone(),
        );
        r.register(
            "registered",
            "1 while every configuration of the template is registered as it says",
            m.registered.clone(),
        );
        Arc::new(m)
    }
}

/// How often an unready replica checks whether it can register yet.
const READINESS_POLL: Duration = Duration::from_millis(500);

/// Keeps the configurations registered while this replica is ready.
pub struct Registrar {
    client: kube::Client,
    options: RegistrationOptions,
    readiness: Readiness,
    metrics: Arc<RegistrationMetrics>,
    /// Template objects as the API server defaults them, per template body.
    defaulted: HashMap<String, (Value, Value)>,
    /// Kind and name of each configuration of the template last read.
    names: Vec<(String, String)>,
}

impl Registrar {
    /// A registrar; [`Registrar::run`] starts it.
    pub fn new(
        client: kube::Client,
        options: RegistrationOptions,
        readiness: Readiness,
        metrics: Arc<RegistrationMetrics>,
    ) -> Registrar {
        Registrar {
            client,
            options,
            readiness,
            metrics,
            defaulted: HashMap::new(),
            names: Vec::new(),
        }
    }

    /// Compares every interval, and at once whenever a registered
    /// configuration changes or is deleted, forever.
    ///
    /// Why the watch: deleting a webhook configuration is the one change to
    /// gitwarden no webhook can refuse, and until it is back nothing
    /// enforces. Waiting for the next interval left a cluster-admin up to
    /// that long to write freely; the watch puts it back in about the time
    /// of one request. The interval stays as the backstop for a watch that
    /// is down.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.options.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Watched once the template has been read: it names them.
        let mut watched: Vec<(String, String)> = Vec::new();
        let mut changes = self.changes(&watched);
        let mut waiting = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                Some(()) = changes.next() => {}
                // Until ready, look often: enforcement starts as soon as this
                // replica can answer, not an interval later.
                _ = tokio::time::sleep(READINESS_POLL), if waiting => {}
            }
            if !self.readiness.ready() {
                if !waiting {
                    tracing::info!(
                        "not ready: the webhook configurations are not registered until this replica can answer"
                    );
                }
                waiting = true;
                continue;
            }
            waiting = false;
            let span =
                tracing::info_span!("registration", template = %self.options.template.display());
            let result = tracing::Instrument::instrument(self.reconcile(), span).await;
            match result {
                Ok(registered) => {
                    self.metrics.registered.set(i64::from(registered));
                    if self.names != watched {
                        watched = self.names.clone();
                        changes = self.changes(&watched);
                    }
                }
                Err(e) => {
                    self.metrics.errors.inc();
                    self.metrics.registered.set(0);
                    tracing::warn!(
                        error = gitwarden_runtime::errors::chain(&e),
                        "registering the webhook configurations failed; retrying"
                    );
                }
            }
        }
    }

    /// One item per change (apply or delete) of each configuration `names`
    /// (kind, name), from a watch of each kind on exactly that name, which
    /// the registration ClusterRole allows by name.
    fn changes(&self, names: &[(String, String)]) -> futures::stream::BoxStream<'static, ()> {
        use kube::runtime::{WatchStreamExt as _, watcher};
        let watches = names.iter().cloned().map(|(kind, name)| {
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource(&kind));
            let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
            watcher(api, config)
                .default_backoff()
                .filter_map(move |event| {
                    let changed = match event {
                        Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => true,
                        Ok(_) => false,
                        Err(e) => {
                            tracing::debug!(%kind, error = %e, "watching the configuration failed; retrying");
                            false
                        }
                    };
                    std::future::ready(changed.then_some(()))
                })
                .boxed()
        });
        futures::stream::select_all(watches).boxed()
    }

    /// One comparison of every configuration of the template; whether all
    /// of them are registered now.
    pub async fn reconcile(&mut self) -> Result<bool, RegistrationError> {
        let path = &self.options.template;
        let text = tokio::fs::read_to_string(path).await.map_err(|source| {
            RegistrationError::ReadTemplate {
                path: path.clone(),
                source,
            }
        })?;
        let template = admission_object::registration_template(&text).map_err(|source| {
            RegistrationError::Template {
                path: path.clone(),
                source,
            }
        })?;
        self.names = template
            .iter()
            .filter_map(|o| {
                Some((
                    o["kind"].as_str()?.to_owned(),
                    o["metadata"]["name"].as_str()?.to_owned(),
                ))
            })
            .collect();
        let bundle = self.bundle().await?;
        let mut registered = true;
        for object in template {
            let outcome = self.reconcile_one(&object, &bundle).await?;
            self.metrics
                .outcomes
                .get_or_create(&OutcomeLabels { outcome })
                .inc();
            if outcome == Outcome::AwaitingEndpoints {
                registered = false;
                tracing::info!(
                    kind = object["kind"].as_str().unwrap_or_default(),
                    name = object["metadata"]["name"].as_str().unwrap_or_default(),
                    "not registered yet: the Service it calls has no ready endpoint, so the API server could reach no replica"
                );
            } else if outcome != Outcome::Unchanged {
                tracing::info!(
                    kind = object["kind"].as_str().unwrap_or_default(),
                    name = object["metadata"]["name"].as_str().unwrap_or_default(),
                    ?outcome,
                    "webhook configuration registered from the template"
                );
            }
        }
        Ok(registered)
    }

    /// The PEM bundle, checked to hold certificates.
    async fn bundle(&self) -> Result<Bundle, RegistrationError> {
        let path = &self.options.ca_bundle;
        let pem = tokio::fs::read(path)
            .await
            .map_err(|source| RegistrationError::ReadBundle {
                path: path.clone(),
                source,
            })?;
        let certificates = certificates(&pem);
        if certificates.is_empty() {
            return Err(RegistrationError::EmptyBundle { path: path.clone() });
        }
        Ok(Bundle {
            base64: base64::engine::general_purpose::STANDARD.encode(&pem),
            certificates,
        })
    }

    async fn reconcile_one(
        &mut self,
        template: &Value,
        bundle: &Bundle,
    ) -> Result<Outcome, RegistrationError> {
        let kind = template["kind"].as_str().unwrap_or_default().to_owned();
        let name = template["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource(&kind));
        let api_error = |verb: &'static str| {
            let (kind, name) = (kind.clone(), name.clone());
            move |source| RegistrationError::Api {
                verb,
                kind,
                name,
                source: Box::new(source),
            }
        };
        let params = PostParams {
            field_manager: Some(WEBHOOK_FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        let live = api.get_opt(&name).await.map_err(api_error("reading"))?;
        let Some(live) = live else {
            if !self.services_ready(template).await? {
                return Ok(Outcome::AwaitingEndpoints);
            }
            let body = admission_object::with_ca_bundle(template, &bundle.base64);
            let object = dynamic(body, &kind, &name)?;
            api.create(&params, &object)
                .await
                .map_err(api_error("creating"))?;
            return Ok(Outcome::Registered);
        };
        let live = serde_json::to_value(&live).unwrap_or(Value::Null);
        let defaulted = self.defaulted(&api, template, &kind, &name).await?;
        let tampered = admission_object::tampered(&defaulted, &live);
        let trusted = bundle.trusted_by(&live);
        if !tampered && trusted {
            return Ok(Outcome::Unchanged);
        }
        // `restored` keeps the live bundle wherever the body sets none.
        let body = if trusted {
            template.clone()
        } else {
            admission_object::with_ca_bundle(template, &bundle.base64)
        };
        let restored = admission_object::restored(&body, &live);
        let object = dynamic(restored, &kind, &name)?;
        api.replace(&name, &params, &object)
            .await
            .map_err(api_error("replacing"))?;
        Ok(if tampered {
            Outcome::Restored
        } else {
            Outcome::BundleInjected
        })
    }

    /// Whether every Service the configuration's webhooks call has a ready
    /// endpoint (URL-based webhooks need none).
    ///
    /// Why: this replica is ready before the kubelet says so. Its readiness
    /// probe runs on its own period, and only then does the pod join the
    /// Service. A configuration created in between sends every write to a
    /// Service with no endpoints, and the API server refuses them all
    /// ("no endpoints available") until the probe passes. An existing
    /// configuration is restored without waiting: it is already enforcing.
    async fn services_ready(&self, template: &Value) -> Result<bool, RegistrationError> {
        for (namespace, name) in admission_object::called_services(template) {
            let slices = crate::service_endpoints::slices(self.client.clone(), &namespace, &name)
                .await
                .map_err(|source| RegistrationError::Api {
                    verb: "listing the endpoints of",
                    kind: "Service".to_owned(),
                    name: format!("{namespace}/{name}"),
                    source: Box::new(source),
                })?;
            let ready = slices.iter().any(|slice| {
                slice
                    .endpoints
                    .iter()
                    .flatten()
                    .any(crate::service_endpoints::is_ready)
            });
            if !ready {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The template object as the API server defaults it (a dry-run create
    /// under a generated name), cached per template body.
    async fn defaulted(
        &mut self,
        api: &Api<DynamicObject>,
        template: &Value,
        kind: &str,
        name: &str,
    ) -> Result<Value, RegistrationError> {
        let key = format!("{kind}/{name}");
        if let Some((body, defaulted)) = self.defaulted.get(&key)
            && body == template
        {
            return Ok(defaulted.clone());
        }
        let mut probe = template.clone();
        probe["metadata"] = serde_json::json!({"generateName": "gitwarden-defaults-"});
        let probe = dynamic(probe, kind, name)?;
        let params = PostParams {
            dry_run: true,
            field_manager: Some(WEBHOOK_FIELD_MANAGER.to_owned()),
        };
        let created =
            api.create(&params, &probe)
                .await
                .map_err(|source| RegistrationError::Api {
                    verb: "defaulting (dry run)",
                    kind: kind.to_owned(),
                    name: name.to_owned(),
                    source: Box::new(source),
                })?;
        let defaulted = serde_json::to_value(&created).unwrap_or(Value::Null);
        self.defaulted
            .insert(key, (template.clone(), defaulted.clone()));
        Ok(defaulted)
    }
}

/// The bundle this replica serves with.
struct Bundle {
    base64: String,
    certificates: BTreeSet<Vec<u8>>,
}

impl Bundle {
    /// Whether every webhook entry of `live` trusts every certificate of
    /// this bundle.
    fn trusted_by(&self, live: &Value) -> bool {
        let entries = live["webhooks"].as_array().map_or(0, Vec::len);
        let bundles = admission_object::ca_bundles(live);
        bundles.len() == entries
            && bundles.iter().all(|(_, encoded)| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .is_ok_and(|pem| certificates(&pem).is_superset(&self.certificates))
            })
    }
}

/// The DER certificates of a PEM text (anything else in it is ignored).
fn certificates(pem: &[u8]) -> BTreeSet<Vec<u8>> {
    rustls_pemfile::certs(&mut &pem[..])
        .filter_map(Result::ok)
        .map(|der| der.as_ref().to_vec())
        .collect()
}

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "admissionregistration.k8s.io",
        "v1",
        kind,
    ))
}

fn dynamic(body: Value, kind: &str, name: &str) -> Result<DynamicObject, RegistrationError> {
    serde_json::from_value(body).map_err(|source| RegistrationError::Body {
        kind: kind.to_owned(),
        name: name.to_owned(),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const CA_A: &str = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
    const CA_B: &str = "-----BEGIN CERTIFICATE-----\nAwQF\n-----END CERTIFICATE-----\n";

    fn bundle(pem: &str) -> Bundle {
        Bundle {
            base64: base64::engine::general_purpose::STANDARD.encode(pem),
            certificates: certificates(pem.as_bytes()),
        }
    }

    fn live(bundles: &[Option<&str>]) -> Value {
        let webhooks: Vec<Value> = bundles
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let mut config = json!({"service": {"name": "gitwarden-webhook"}});
                if let Some(pem) = b {
                    config["caBundle"] =
                        json!(base64::engine::general_purpose::STANDARD.encode(pem));
                }
                json!({"name": format!("w{i}.gitwarden.io"), "clientConfig": config})
            })
            .collect();
        json!({"webhooks": webhooks})
    }

    #[test]
    fn a_live_bundle_holding_every_served_ca_is_kept() {
        let both = format!("{CA_A}{CA_B}");
        assert!(bundle(CA_A).trusted_by(&live(&[Some(CA_A), Some(&both)])));
    }

    #[test]
    fn a_missing_or_foreign_bundle_in_any_entry_is_not_trusted() {
        assert!(!bundle(CA_A).trusted_by(&live(&[Some(CA_A), None])));
        assert!(!bundle(CA_A).trusted_by(&live(&[Some(CA_B)])));
        let both = format!("{CA_A}{CA_B}");
        assert!(!bundle(&both).trusted_by(&live(&[Some(CA_A)])));
    }
}
