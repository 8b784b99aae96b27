//! The cluster side of webhook TLS: the two Secrets and the `caBundle` of the
//! webhook configurations.
//!
//! State lives in the cluster, nowhere else:
//! - the CA Secret (`gitwarden-webhook-ca`): `tls.crt`/`tls.key` are the
//!   current CA, `ca.crt` the published bundle (current CA first, then older
//!   CAs still valid);
//! - the TLS Secret (`gitwarden-webhook-tls`) that the webhook pods mount:
//!   `tls.crt`/`tls.key` the serving certificate, `ca.crt` the same bundle;
//! - `clientConfig.caBundle` of every entry of the named Validating- and
//!   MutatingWebhookConfigurations: base64 of the bundle.
//!
//! `install` creates missing Secrets (type `kubernetes.io/tls`); `rotate`
//! never does, and fills the empty ones `deploy/base` ships (type `Opaque`)
//! as `install` would: see [`crate::secrets`]. Webhook configurations that
//! do not exist are reported; with [`Options::configurations_optional`] as a
//! note only, since the webhook registers them itself once it is ready, with
//! the bundle of the Secret it mounts.
//!
//! Writes happen in an order that is safe to interrupt anywhere: the CA
//! Secret first (a new CA key is never lost), then the bundles in the webhook
//! configurations (the API server trusts the new CA before anything serves
//! with it), then the TLS Secret. A rerun finishes what an interrupted run
//! left; a run with nothing to do sends no write at all.
//!
//! The bundle is injected with a JSON patch under field manager
//! [`FIELD_MANAGER`], never with the agent's manager and never as a server-side
//! apply: an update manager owns only `caBundle`, so the agent's server-side
//! apply of the configurations from git (which carry no `caBundle`) leaves it
//! alone, and removing a webhook entry from git still removes the entry.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::json;

use crate::bundle;
use crate::inspect::{CertInfo, format_time};
use crate::rotation::{Lifetimes, Plan, Step, Stored, UnusableCa, Wanted, plan};
use crate::secrets::{self, CA_CRT, Contents, TLS_CRT, TLS_KEY};
use crate::webhooks::WebhookConfiguration;
use crate::{CertError, CertificateAuthority, ServingCert};

/// The field manager of every write this module makes, so `managedFields`
/// show who owns `caBundle` and the Secrets' data.
pub const FIELD_MANAGER: &str = "gitwarden-certs";

/// The Secret the webhook pods mount (see `deploy/base/webhook.yaml`).
pub const TLS_SECRET: &str = gitwarden_shared::names::WEBHOOK_TLS_SECRET;

/// The Secret holding the CA key and the bundle.
pub const CA_SECRET: &str = gitwarden_shared::names::WEBHOOK_CA_SECRET;

/// Common name of the CAs this program creates.
pub const CA_COMMON_NAME: &str = "gitwarden-webhook-ca";

/// Where the certificates live and which webhook configurations trust them.
#[derive(Debug, Clone)]
pub struct Target {
    /// Namespace of both Secrets (`gitwarden-system`).
    pub namespace: String,
    /// Name of the TLS Secret the webhook mounts.
    pub tls_secret: String,
    /// Name of the CA Secret.
    pub ca_secret: String,
    /// ValidatingWebhookConfigurations whose every entry gets the bundle.
    pub validating: Vec<String>,
    /// MutatingWebhookConfigurations whose every entry gets the bundle.
    pub mutating: Vec<String>,
}

/// How a run may act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Create the Secrets when they are missing (`install`). Without it a
    /// missing Secret is an error: the CronJob's service account may not
    /// create Secrets (see `deploy/base/certs.yaml`).
    pub create_missing: bool,
    /// Decide and report, write nothing.
    pub dry_run: bool,
    /// A named webhook configuration that does not exist is a note, not an
    /// incomplete run: the webhook registers its configurations itself once
    /// it is ready, so before that (the bootstrap Job) they are absent by design.
    pub configurations_optional: bool,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A request to the API server failed.
    #[error("{what}")]
    Kube {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// `rotate` found a Secret absent: it never creates one.
    #[error(
        "Secret {namespace}/{name} does not exist: apply deploy/base (it ships both Secrets empty) or run `gitwarden-certs install` (rotate never creates Secrets)"
    )]
    NotInstalled {
        /// The namespace looked in.
        namespace: String,
        /// The missing Secret.
        name: String,
    },
    /// The CA Secret holds a CA that cannot sign; it is never replaced.
    #[error(
        "refusing to replace the CA in Secret {namespace}/{name} (remove its data to have a new CA issued)"
    )]
    UnusableCa {
        /// The namespace of the Secret.
        namespace: String,
        /// The CA Secret.
        name: String,
        /// What is wrong with the stored CA.
        #[source]
        source: UnusableCa,
    },
    /// Generating or loading a certificate failed.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// A stored object holds something this program cannot use.
    #[error("{0}")]
    Invalid(String),
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Kube { what, source }
}

/// What a run found and did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The decision for the CA.
    pub ca: Step,
    /// The decision for the serving certificate.
    pub serving: Step,
    /// Every write sent (or, in a dry run, that would be sent), in order.
    pub writes: Vec<String>,
    /// Named webhook configurations that do not exist (`kind/name`).
    pub missing_configurations: Vec<String>,
    /// Whether those are expected ([`Options::configurations_optional`]).
    pub configurations_optional: bool,
    /// Secrets (`namespace/name`) that existed without certificates: the
    /// empty ones `deploy/base` ships, which this run issues into (or
    /// would, in a dry run).
    pub empty_secrets: Vec<String>,
    /// The CA's subject and expiry after the run.
    pub ca_expiry: SystemTime,
    /// The serving certificate's expiry after the run.
    pub serving_expiry: SystemTime,
    /// Every CA in the bundle after the run: subject and expiry.
    pub bundle: Vec<(String, SystemTime)>,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

impl Report {
    /// Whether anything was (or would be) written.
    pub fn changed(&self) -> bool {
        !self.writes.is_empty()
    }

    /// Whether a named webhook configuration that must exist did not, so
    /// its entries did not get the bundle (exit code 1).
    pub fn incomplete(&self) -> bool {
        !self.missing_configurations.is_empty() && !self.configurations_optional
    }

    /// Human-readable lines for the CLI.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .empty_secrets
            .iter()
            .map(|name| format!("Secret {name}: empty, not issued yet"))
            .collect();
        out.extend([
            format!(
                "CA: {}; expires {}",
                self.ca.describe(),
                format_time(self.ca_expiry)
            ),
            format!(
                "serving certificate: {}; expires {}",
                self.serving.describe(),
                format_time(self.serving_expiry)
            ),
        ]);
        for (subject, not_after) in &self.bundle {
            out.push(format!(
                "bundle: {subject}, expires {}",
                format_time(*not_after)
            ));
        }
        for missing in &self.missing_configurations {
            out.push(if self.configurations_optional {
                format!(
                    "note: {missing} not registered yet, no caBundle injected (the webhook registers it with the bundle of its Secret)"
                )
            } else {
                format!("warning: {missing} not found, no caBundle injected")
            });
        }
        let verb = if self.dry_run { "would write" } else { "wrote" };
        for write in &self.writes {
            out.push(format!("{verb}: {write}"));
        }
        if self.writes.is_empty() {
            out.push("nothing to do: no writes sent".into());
        } else if self.dry_run {
            out.push(format!("dry run: {} write(s) not sent", self.writes.len()));
        }
        out
    }
}

/// The DNS names of a Service: `NAME.NAMESPACE.svc` (what the API server
/// dials) and `NAME.NAMESPACE.svc.cluster.local`, followed by `extra`.
pub fn service_dns_names(service: &str, namespace: &str, extra: &[String]) -> Vec<String> {
    let mut names = vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ];
    for name in extra {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// Brings the Secrets and bundles to the wanted state (see the module docs).
#[tracing::instrument(skip_all, fields(namespace = %target.namespace, dry_run = options.dry_run))]
pub async fn reconcile(
    client: Client,
    target: &Target,
    wanted: &Wanted,
    lifetimes: &Lifetimes,
    options: Options,
    now: SystemTime,
) -> Result<Report, ClusterError> {
    lifetimes.check().map_err(ClusterError::Invalid)?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &target.namespace);
    let ca_secret = get_secret(&secrets, &target.namespace, &target.ca_secret).await?;
    let tls_secret = get_secret(&secrets, &target.namespace, &target.tls_secret).await?;
    let mut empty_secrets = Vec::new();
    for (secret, name) in [
        (&ca_secret, &target.ca_secret),
        (&tls_secret, &target.tls_secret),
    ] {
        if secrets::contents(secret.as_ref()) == Contents::Empty {
            empty_secrets.push(format!("{}/{name}", target.namespace));
        }
        match secret {
            None if !options.create_missing => {
                return Err(ClusterError::NotInstalled {
                    namespace: target.namespace.clone(),
                    name: name.clone(),
                });
            }
            None => {}
            Some(secret) => secrets::check_type(secret).map_err(|why| {
                ClusterError::Invalid(format!(
                    "Secret {}/{name} {why}: delete it and apply deploy/base again",
                    target.namespace
                ))
            })?,
        }
    }
    let stored = secrets::stored(ca_secret.as_ref(), tls_secret.as_ref());
    let decided =
        plan(&stored, wanted, lifetimes, now).map_err(|source| ClusterError::UnusableCa {
            namespace: target.namespace.clone(),
            name: target.ca_secret.clone(),
            source,
        })?;
    tracing::info!(ca = ?decided.ca, serving = ?decided.serving, "planned");
    let material = materialize(&stored, &decided, wanted, lifetimes, now)?;

    let mut report = Report {
        ca: decided.ca.clone(),
        serving: decided.serving.clone(),
        writes: Vec::new(),
        missing_configurations: Vec::new(),
        configurations_optional: options.configurations_optional,
        empty_secrets,
        ca_expiry: material.ca_info.validity.not_after,
        serving_expiry: material.serving_expiry,
        bundle: material
            .bundle
            .iter()
            .map(|c| (c.subject.clone(), c.validity.not_after))
            .collect(),
        dry_run: options.dry_run,
    };

    // 1. The CA Secret: a new CA key is stored before anything depends on it.
    let ca_data = BTreeMap::from([
        (TLS_CRT, material.ca_cert.clone()),
        (TLS_KEY, material.ca_key.clone()),
        (CA_CRT, material.bundle_pem.clone()),
    ]);
    write_secret(
        &secrets,
        &target.ca_secret,
        ca_secret,
        &ca_data,
        "ca",
        options,
        &mut report,
    )
    .await?;

    // 2. The bundle in every webhook entry: trusted before it is served.
    for name in &target.validating {
        inject::<ValidatingWebhookConfiguration>(
            &client,
            name,
            &material.bundle_pem,
            options,
            &mut report,
        )
        .await?;
    }
    for name in &target.mutating {
        inject::<MutatingWebhookConfiguration>(
            &client,
            name,
            &material.bundle_pem,
            options,
            &mut report,
        )
        .await?;
    }

    // 3. The TLS Secret the pods mount (kubelet and the webhook's hot reload take it from here).
    let tls_data = BTreeMap::from([
        (TLS_CRT, material.serving_cert.clone()),
        (TLS_KEY, material.serving_key.clone()),
        (CA_CRT, material.bundle_pem.clone()),
    ]);
    write_secret(
        &secrets,
        &target.tls_secret,
        tls_secret,
        &tls_data,
        "webhook-tls",
        options,
        &mut report,
    )
    .await?;
    Ok(report)
}

/// The certificates and keys after the plan is carried out, as PEM texts:
/// stored texts are reused unchanged where nothing is renewed, so an
/// unchanged state compares equal byte for byte.
struct Material {
    ca_info: CertInfo,
    ca_cert: String,
    ca_key: String,
    bundle: Vec<CertInfo>,
    bundle_pem: String,
    serving_cert: String,
    serving_key: String,
    serving_expiry: SystemTime,
}

fn materialize(
    stored: &Stored,
    decided: &Plan,
    wanted: &Wanted,
    lifetimes: &Lifetimes,
    now: SystemTime,
) -> Result<Material, ClusterError> {
    let (ca, ca_cert, ca_key) = match (&decided.ca, &stored.ca_cert, &stored.ca_key) {
        (Step::Keep, Some(cert), Some(key)) => (
            CertificateAuthority::from_pem(cert, key)?,
            cert.clone(),
            key.clone(),
        ),
        _ => {
            let ca = CertificateAuthority::generate(CA_COMMON_NAME, lifetimes.ca_validity)?;
            let (cert, key) = (ca.cert_pem().to_string(), ca.key_pem());
            (ca, cert, key)
        }
    };
    let ca_info = CertInfo::from_pem(&ca_cert)
        .map_err(|e| ClusterError::Invalid(format!("the CA certificate: {e}")))?;
    let bundle = bundle::merge(&ca_info, &decided.carry_over, now);
    let mut bundle_pem = bundle::render(&bundle);
    if let Some(previous) = &stored.bundle
        && bundle::same_certificates(previous, &bundle_pem)
    {
        bundle_pem.clone_from(previous);
    }
    let (serving_cert, serving_key) =
        match (&decided.serving, &stored.serving_cert, &stored.serving_key) {
            (Step::Keep, Some(cert), Some(key)) => (cert.clone(), key.clone()),
            _ => {
                let ServingCert {
                    cert_pem, key_pem, ..
                } = issue(&ca, wanted, lifetimes.validity, now)?;
                (cert_pem, key_pem)
            }
        };
    let serving_expiry = CertInfo::from_pem(&serving_cert)
        .map_err(|e| ClusterError::Invalid(format!("the serving certificate: {e}")))?
        .validity
        .not_after;
    Ok(Material {
        ca_info,
        ca_cert,
        ca_key,
        bundle,
        bundle_pem,
        serving_cert,
        serving_key,
        serving_expiry,
    })
}

/// Issues a serving certificate that never outlives its CA.
fn issue(
    ca: &CertificateAuthority,
    wanted: &Wanted,
    validity: Duration,
    now: SystemTime,
) -> Result<ServingCert, ClusterError> {
    let ca_left = ca.not_after().duration_since(now).unwrap_or_default();
    let names: Vec<&str> = wanted.dns_names.iter().map(String::as_str).collect();
    Ok(ca.issue_serving_cert(&names, &wanted.ips, validity.min(ca_left))?)
}

async fn get_secret(
    secrets: &Api<Secret>,
    namespace: &str,
    name: &str,
) -> Result<Option<Secret>, ClusterError> {
    secrets
        .get_opt(name)
        .await
        .map_err(kube_err(format!("reading Secret {namespace}/{name}")))
}

async fn write_secret(
    secrets: &Api<Secret>,
    name: &str,
    existing: Option<Secret>,
    data: &BTreeMap<&str, String>,
    component: &str,
    options: Options,
    report: &mut Report,
) -> Result<(), ClusterError> {
    let namespace = secrets.namespace().unwrap_or_default().to_string();
    let wanted: BTreeMap<String, ByteString> = data
        .iter()
        .map(|(k, v)| ((*k).to_string(), ByteString(v.clone().into_bytes())))
        .collect();
    let params = PostParams {
        dry_run: false,
        field_manager: Some(FIELD_MANAGER.into()),
    };
    match existing {
        None => {
            report
                .writes
                .push(format!("create Secret {namespace}/{name}"));
            if options.dry_run {
                return Ok(());
            }
            let secret: Secret = serde_json::from_value(json!({
                "metadata": {
                    "name": name,
                    "labels": {
                        "app.kubernetes.io/name": "gitwarden",
                        "app.kubernetes.io/component": component,
                    },
                },
                "type": "kubernetes.io/tls",
            }))
            .map_err(|e| ClusterError::Invalid(format!("building Secret {name}: {e}")))?;
            let secret = Secret {
                data: Some(wanted),
                ..secret
            };
            secrets
                .create(&params, &secret)
                .await
                .map_err(kube_err(format!("creating Secret {namespace}/{name}")))?;
        }
        Some(mut secret) => {
            let current = secret.data.clone().unwrap_or_default();
            let same = wanted.iter().all(|(k, v)| current.get(k) == Some(v));
            if same {
                return Ok(());
            }
            let changed: Vec<&str> = wanted
                .iter()
                .filter(|(k, v)| current.get(*k) != Some(*v))
                .map(|(k, _)| k.as_str())
                .collect();
            report.writes.push(format!(
                "update Secret {namespace}/{name} ({})",
                changed.join(", ")
            ));
            if options.dry_run {
                return Ok(());
            }
            let mut data = current;
            data.extend(wanted);
            secret.data = Some(data);
            secret.metadata.managed_fields = None;
            // replace carries the resourceVersion read above: a concurrent
            // writer makes this fail instead of being overwritten.
            secrets
                .replace(name, &params, &secret)
                .await
                .map_err(kube_err(format!("updating Secret {namespace}/{name}")))?;
        }
    }
    Ok(())
}

/// JSON-patches `caBundle` into every entry of one webhook configuration
/// whose bundle differs. Each `add` is guarded by a `test` of the entry's
/// name at that index, so a concurrent reorder fails the patch instead of
/// giving one entry another's bundle.
async fn inject<K>(
    client: &Client,
    name: &str,
    bundle_pem: &str,
    options: Options,
    report: &mut Report,
) -> Result<(), ClusterError>
where
    K: WebhookConfiguration
        + Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
{
    let kind = K::kind(&());
    let api: Api<K> = Api::all(client.clone());
    let Some(config) = api
        .get_opt(name)
        .await
        .map_err(kube_err(format!("reading {kind} {name}")))?
    else {
        report.missing_configurations.push(format!("{kind}/{name}"));
        return Ok(());
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode(bundle_pem);
    let mut ops = Vec::new();
    let mut names = Vec::new();
    for (index, entry) in config.entries().into_iter().enumerate() {
        let current_text = entry
            .client_config
            .ca_bundle
            .as_ref()
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .unwrap_or_default();
        if bundle::same_certificates(&current_text, bundle_pem) {
            continue;
        }
        ops.push(
            json!({"op": "test", "path": format!("/webhooks/{index}/name"), "value": entry.name}),
        );
        ops.push(json!({"op": "add", "path": format!("/webhooks/{index}/clientConfig/caBundle"), "value": encoded}));
        names.push(entry.name);
    }
    if ops.is_empty() {
        return Ok(());
    }
    report.writes.push(format!(
        "patch {kind} {name}: caBundle of {}",
        names.join(", ")
    ));
    if options.dry_run {
        return Ok(());
    }
    let patch: json_patch::Patch = serde_json::from_value(serde_json::Value::Array(ops))
        .map_err(|e| ClusterError::Invalid(format!("building the caBundle patch: {e}")))?;
    api.patch(
        name,
        &PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        },
        &Patch::Json::<()>(patch),
    )
    .await
    .map_err(kube_err(format!("patching caBundle into {kind} {name}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_come_first_and_extras_are_not_repeated() {
        let names = service_dns_names(
            "gitwarden-webhook",
            "gitwarden-system",
            &[
                "localhost".into(),
                "gitwarden-webhook.gitwarden-system.svc".into(),
            ],
        );
        assert_eq!(
            names,
            [
                "gitwarden-webhook.gitwarden-system.svc",
                "gitwarden-webhook.gitwarden-system.svc.cluster.local",
                "localhost"
            ]
        );
    }
}
