//! The webhook's TLS: each configuration entry's `caBundle` must parse, must
//! be the issuer of the certificate the webhook serves (for the name the API
//! server dials), and neither may be expired or close to it. A broken
//! certificate with `failurePolicy: Fail` refuses every write in the cluster.
//!
//! Reading and verifying the certificates is `gitwarden-certs`' (the same code
//! that writes and rotates them); this module decides where the chain comes
//! from and what the findings say.

use std::time::{Duration, SystemTime};

use gitwarden_certs::inspect::{self, CertInfo, format_time};
use gitwarden_certs::verify::verify_chain;
use k8s_openapi::api::admissionregistration::v1::WebhookClientConfig;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use rustls::pki_types::CertificateDer;

use crate::report::Finding;
use crate::tls;
use crate::webhook_config::Entry;

/// The Secret holding the serving certificate of the in-cluster webhook.
pub use gitwarden_shared::names::WEBHOOK_TLS_SECRET as TLS_SECRET;

/// Where the API server sends admission requests for one or more entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL or `service ns/name:port`, for messages.
    pub label: String,
    /// host and port to dial: the URL's, or the Service's DNS name (which
    /// resolves only when doctor runs inside the cluster).
    pub dial: Option<(String, u16)>,
    /// The name the API server verifies the certificate for.
    pub server_name: String,
    /// The Service's namespace, where its TLS Secret may be.
    pub service_namespace: Option<String>,
    /// The `caBundle` (PEM bytes), if any.
    pub ca_bundle: Option<Vec<u8>>,
    /// The entries that use it (`validate.gitwarden.io`, ...).
    pub entries: Vec<String>,
}

impl Endpoint {
    /// The endpoint of a client config, or why it has none.
    pub fn from_client_config(config: &WebhookClientConfig) -> Result<Endpoint, String> {
        let ca_bundle = config
            .ca_bundle
            .as_ref()
            .map(|b| b.0.clone())
            .filter(|b| !b.is_empty());
        if let Some(url) = &config.url {
            let parsed = reqwest::Url::parse(url).map_err(|e| format!("url {url:?}: {e}"))?;
            let host = parsed
                .host_str()
                .map(|h| h.trim_matches(['[', ']']).to_string())
                .ok_or_else(|| format!("url {url:?} has no host"))?;
            let port = parsed.port_or_known_default().unwrap_or(443);
            return Ok(Endpoint {
                label: format!(
                    "{}://{}:{port}",
                    parsed.scheme(),
                    parsed.host_str().unwrap_or(&host)
                ),
                dial: Some((host.clone(), port)),
                server_name: host,
                service_namespace: None,
                ca_bundle,
                entries: Vec::new(),
            });
        }
        if let Some(svc) = &config.service {
            let server_name = format!("{}.{}.svc", svc.name, svc.namespace);
            let port = svc.port.and_then(|p| u16::try_from(p).ok()).unwrap_or(443);
            return Ok(Endpoint {
                label: format!("service {}/{}:{port}", svc.namespace, svc.name),
                dial: Some((server_name.clone(), port)),
                server_name,
                service_namespace: Some(svc.namespace.clone()),
                ca_bundle,
                entries: Vec::new(),
            });
        }
        Err("clientConfig names neither a url nor a service".into())
    }
}

/// The distinct endpoints of the entries (same address and CA bundle = one).
pub fn endpoints(entries: &[Entry<'_>]) -> (Vec<Endpoint>, Vec<Finding>) {
    let mut out: Vec<Endpoint> = Vec::new();
    let mut problems = Vec::new();
    for e in entries {
        match Endpoint::from_client_config(e.client_config) {
            Ok(endpoint) => {
                let name = e.name.to_string();
                match out
                    .iter_mut()
                    .find(|o| o.label == endpoint.label && o.ca_bundle == endpoint.ca_bundle)
                {
                    Some(existing) => existing.entries.push(name),
                    None => out.push(Endpoint {
                        entries: vec![name],
                        ..endpoint
                    }),
                }
            }
            Err(why) => problems.push(Finding::critical(
                "certificate/client-config",
                format!("{}: {why}", e.describe()),
            )),
        }
    }
    (out, problems)
}

/// Settings of the certificate checks.
#[derive(Debug, Clone, Copy)]
pub struct CertSettings {
    /// Warn when a certificate expires within this.
    pub warn_before: Duration,
    /// Give up on a TLS handshake after this.
    pub timeout: Duration,
}

/// Expiry findings for one certificate (pure): critical when expired,
/// warning within `warn_before`, else ok.
pub fn expiry(what: &str, info: &CertInfo, now: SystemTime, warn_before: Duration) -> Finding {
    let check = "certificate/expiry";
    let not_after = info.validity.not_after;
    match not_after.duration_since(now) {
        Err(_) => Finding::critical(
            check,
            format!(
                "{what} ({}) expired at {}: the API server cannot call the webhook",
                info.subject,
                format_time(not_after)
            ),
        ),
        Ok(left) if left < warn_before => Finding::warning(
            check,
            format!(
                "{what} ({}) expires in {} day(s), at {}: rotate it (gitwarden-certs)",
                info.subject,
                left.as_secs() / 86_400,
                format_time(not_after)
            ),
        ),
        Ok(left) => Finding::ok(
            check,
            format!(
                "{what} ({}) is valid for {} more days, until {}",
                info.subject,
                left.as_secs() / 86_400,
                format_time(not_after)
            ),
        ),
    }
}

/// Whether the CA bundle issued the serving chain (pure). A chain that fails
/// only because it expired is checked again inside its validity window, so
/// that the issuer question gets its own answer.
pub fn issuer(
    endpoint: &Endpoint,
    bundle: &[CertificateDer<'static>],
    chain: &[CertificateDer<'static>],
    source: &str,
    now: SystemTime,
) -> Finding {
    let check = "certificate/ca-bundle";
    let entries = endpoint.entries.join(", ");
    let name = match tls::server_name(&endpoint.server_name) {
        Ok(n) => n,
        Err(e) => return Finding::critical(check, format!("{entries}: {e}")),
    };
    let leaf = chain.first().and_then(|c| CertInfo::from_der(c).ok());
    let mut result = verify_chain(bundle, chain, &name, now);
    let expired = matches!(
        &result,
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Expired | rustls::CertificateError::ExpiredContext { .. }
        ))
    );
    if let (true, Some(leaf)) = (expired, &leaf) {
        let inside = leaf.validity.not_before + Duration::from_secs(1);
        result = verify_chain(bundle, chain, &name, inside);
    }
    let subject = leaf.map(|l| l.subject).unwrap_or_else(|| "?".into());
    match result {
        Ok(()) => Finding::ok(
            check,
            format!(
                "the caBundle of {entries} is the issuer of the serving certificate {subject} (from {source}) for {}",
                endpoint.server_name
            ),
        ),
        Err(e) => Finding::critical(
            check,
            format!(
                "the serving certificate {subject} (from {source}) does not verify against the caBundle of {entries} for {}: {e}; the API server refuses to call the webhook",
                endpoint.server_name
            ),
        ),
    }
}

/// Checks one endpoint: the CA bundle, the serving certificate's issuer and
/// both expiries.
pub async fn check(client: &Client, endpoint: &Endpoint, settings: CertSettings) -> Vec<Finding> {
    let now = SystemTime::now();
    let entries = endpoint.entries.join(", ");
    let mut out = Vec::new();
    let Some(pem) = &endpoint.ca_bundle else {
        out.push(Finding::critical(
            "certificate/ca-bundle",
            format!(
                "{entries} ({}) has no caBundle: the API server cannot verify the webhook (inject it with gitwarden-certs or cert-manager)",
                endpoint.label
            ),
        ));
        return out;
    };
    let bundle = match inspect::parse_pem(pem) {
        Ok(b) => b,
        Err(e) => {
            out.push(Finding::critical(
                "certificate/ca-bundle",
                format!("the caBundle of {entries} does not parse: {e}"),
            ));
            return out;
        }
    };
    for ca in &bundle {
        match CertInfo::from_der(ca) {
            Ok(info) => out.push(expiry(
                &format!("the CA of {entries}"),
                &info,
                now,
                settings.warn_before,
            )),
            Err(e) => out.push(Finding::critical(
                "certificate/ca-bundle",
                format!("the caBundle of {entries} holds an unreadable certificate: {e}"),
            )),
        }
    }
    let (chain, source) = match serving_chain(client, endpoint, settings.timeout).await {
        Ok(found) => found,
        Err(why) => {
            out.push(Finding::warning(
                "certificate/serving",
                format!("cannot check the serving certificate of {entries}: {why}"),
            ));
            return out;
        }
    };
    out.push(issuer(endpoint, &bundle, &chain, &source, now));
    if let Some(leaf) = chain.first() {
        match CertInfo::from_der(leaf) {
            Ok(info) => out.push(expiry(
                &format!("the serving certificate of {entries}"),
                &info,
                now,
                settings.warn_before,
            )),
            Err(e) => out.push(Finding::critical(
                "certificate/serving",
                format!("the serving certificate of {entries} is unreadable: {e}"),
            )),
        }
    }
    out
}

/// The serving chain: by a TLS handshake, else (for a Service) from its TLS
/// Secret.
async fn serving_chain(
    client: &Client,
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<(Vec<CertificateDer<'static>>, String), String> {
    let mut handshake_error = None;
    if let Some((host, port)) = &endpoint.dial {
        match tls::fetch_chain(host, *port, timeout).await {
            Ok(chain) => return Ok((chain, format!("a TLS handshake with {}", endpoint.label))),
            Err(e) => handshake_error = Some(gitwarden_runtime::errors::chain(&e)),
        }
    }
    let Some(ns) = endpoint.service_namespace.as_deref() else {
        return Err(handshake_error.unwrap_or_else(|| "nothing to connect to".into()));
    };
    let from_secret = async {
        let secret = Api::<Secret>::namespaced(client.clone(), ns)
            .get_opt(TLS_SECRET)
            .await
            .map_err(|e| format!("reading Secret {ns}/{TLS_SECRET}: {e}"))?
            .ok_or_else(|| format!("Secret {ns}/{TLS_SECRET} does not exist"))?;
        let pem = secret
            .data
            .as_ref()
            .and_then(|d| d.get("tls.crt"))
            .ok_or_else(|| format!("Secret {ns}/{TLS_SECRET} has no tls.crt"))?;
        inspect::parse_pem(&pem.0).map_err(|e| format!("Secret {ns}/{TLS_SECRET} tls.crt: {e}"))
    };
    match from_secret.await {
        Ok(chain) => Ok((chain, format!("Secret {ns}/{TLS_SECRET}"))),
        Err(secret_error) => Err(match handshake_error {
            Some(h) => format!("{h} (doctor runs outside the cluster?); {secret_error}"),
            None => secret_error,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::report::Severity;
    use gitwarden_certs::{CertificateAuthority, Validity};

    const DAY: Duration = Duration::from_secs(86_400);

    fn client_config(json: serde_json::Value) -> WebhookClientConfig {
        serde_json::from_value(json).unwrap()
    }

    fn endpoint(server_name: &str) -> Endpoint {
        Endpoint {
            label: "test".into(),
            dial: None,
            server_name: server_name.into(),
            service_namespace: None,
            ca_bundle: None,
            entries: vec!["validate.gitwarden.io".into()],
        }
    }

    #[test]
    fn a_url_endpoint_dials_its_host_and_verifies_its_ip() {
        let e = Endpoint::from_client_config(&client_config(
            serde_json::json!({"url": "https://127.0.0.1:9443/validate", "caBundle": "YWJj"}),
        ))
        .unwrap();
        assert_eq!(e.dial, Some(("127.0.0.1".into(), 9443)));
        assert_eq!(e.server_name, "127.0.0.1");
        assert_eq!(e.ca_bundle.as_deref(), Some(&b"abc"[..]));
    }

    #[test]
    fn a_service_endpoint_verifies_the_service_dns_name() {
        let e = Endpoint::from_client_config(&client_config(serde_json::json!({
            "service": {"name": "gitwarden-webhook", "namespace": "gitwarden-system", "path": "/validate"}
        })))
        .unwrap();
        assert_eq!(
            e.dial,
            Some(("gitwarden-webhook.gitwarden-system.svc".into(), 443))
        );
        assert_eq!(e.server_name, "gitwarden-webhook.gitwarden-system.svc");
        assert_eq!(e.label, "service gitwarden-system/gitwarden-webhook:443");
        assert_eq!(e.ca_bundle, None);
    }

    #[test]
    fn entries_sharing_address_and_bundle_are_checked_once() {
        let cc = client_config(serde_json::json!({"url": "https://127.0.0.1:9443/validate"}));
        let other_path = client_config(serde_json::json!({"url": "https://127.0.0.1:9443/mutate"}));
        let entry = |name, cc| Entry {
            kind: "ValidatingWebhookConfiguration",
            config: "gitwarden",
            name,
            failure_policy: "Fail",
            namespace_selector: None,
            object_selector: None,
            rules: &[],
            client_config: cc,
        };
        let (eps, problems) = endpoints(&[entry("a", &cc), entry("b", &other_path)]);
        assert!(problems.is_empty());
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].entries, ["a", "b"]);
    }

    #[test]
    fn expiry_is_critical_when_past_and_a_warning_when_close() {
        let now = SystemTime::now();
        let ca = CertificateAuthority::generate("x", DAY).unwrap();
        let real = CertInfo::from_pem(ca.cert_pem()).unwrap();
        let info = |left: Duration| CertInfo {
            validity: Validity {
                not_before: now - DAY,
                not_after: now + left,
            },
            ..real.clone()
        };
        assert_eq!(
            expiry("c", &info(100 * DAY), now, 30 * DAY).severity,
            Severity::Info
        );
        assert_eq!(
            expiry("c", &info(3 * DAY), now, 30 * DAY).severity,
            Severity::Warning
        );
        let past = info(DAY);
        let past = CertInfo {
            validity: Validity {
                not_after: now - DAY,
                ..past.validity
            },
            ..past
        };
        let expired = expiry("c", &past, now, 30 * DAY);
        assert_eq!(expired.severity, Severity::Critical);
        assert!(
            expired
                .message
                .contains(&format!("expired at {}", format_time(now - DAY))),
            "{}",
            expired.message
        );
    }

    #[test]
    fn the_issuer_check_passes_for_the_signing_ca_and_fails_for_another() {
        let ca = CertificateAuthority::generate("ca", DAY).unwrap();
        let serving = ca
            .issue_serving_cert(&["localhost"], &["127.0.0.1".parse().unwrap()], DAY)
            .unwrap();
        let chain = inspect::parse_pem(serving.cert_pem.as_bytes()).unwrap();
        let own = inspect::parse_pem(ca.cert_pem().as_bytes()).unwrap();
        let other_ca = CertificateAuthority::generate("other", DAY).unwrap();
        let other = inspect::parse_pem(other_ca.cert_pem().as_bytes()).unwrap();
        let ep = endpoint("127.0.0.1");
        let now = SystemTime::now();
        assert_eq!(issuer(&ep, &own, &chain, "t", now).severity, Severity::Info);
        let bad = issuer(&ep, &other, &chain, "t", now);
        assert_eq!(bad.severity, Severity::Critical);
        assert!(
            bad.message.contains("validate.gitwarden.io"),
            "{}",
            bad.message
        );
    }

    #[test]
    fn an_expired_chain_from_the_right_ca_still_passes_the_issuer_check() {
        let ca = CertificateAuthority::generate("ca", 10 * DAY).unwrap();
        let serving = ca.issue_serving_cert(&["localhost"], &[], DAY).unwrap();
        let chain = inspect::parse_pem(serving.cert_pem.as_bytes()).unwrap();
        let own = inspect::parse_pem(ca.cert_pem().as_bytes()).unwrap();
        let later = SystemTime::now() + 3 * DAY;
        let f = issuer(&endpoint("localhost"), &own, &chain, "t", later);
        assert_eq!(f.severity, Severity::Info, "{}", f.message);
    }
}
