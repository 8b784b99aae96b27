//! Would a TLS client accept this serving certificate?
//!
//! The check is the one the API server makes when it calls the webhook: the
//! chain to a trusted CA, the validity at a given time and the name it dials.
//! It runs rustls' WebPKI verifier (on the aws-lc-rs provider) rather than a
//! home-made comparison of issuer names, so a certificate this module accepts
//! is one a real TLS client accepts. [`verify_chain`] asks it of a chain as
//! served for one name (what `doctor` fetched from the webhook);
//! [`serves_for`] asks it of a stored certificate for every name it must
//! serve (what rotation decides from). Both use the same verifier, so
//! `doctor` and rotation cannot disagree about a certificate.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::client::{VerifierBuilderError, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::inspect::CertInfo;

/// Whether `chain` (leaf first, then intermediates) is valid for `name` with
/// `ca_bundle` as the only trust anchors at time `at`: the check the API
/// server makes when it calls the webhook. The rustls error is returned as
/// is, so a caller can tell an expired chain from one the bundle did not issue.
pub fn verify_chain(
    ca_bundle: &[CertificateDer<'static>],
    chain: &[CertificateDer<'static>],
    name: &ServerName<'_>,
    at: SystemTime,
) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    for ca in ca_bundle {
        roots.add(ca.clone())?;
    }
    let verifier = verifier(roots).map_err(|e| rustls::Error::General(e.to_string()))?;
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or(rustls::Error::NoCertificatesPresented)?;
    let at = UnixTime::since_unix_epoch(
        at.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    verifier
        .verify_server_cert(leaf, intermediates, name, &[], at)
        .map(|_| ())
}

/// Checks that `serving` chains to one of `trusted` and is valid for every
/// DNS name and IP address in `names`/`ips` at `now`. The error says which
/// name or which rule failed, for the rotation's report.
pub fn serves_for(
    serving: &CertInfo,
    trusted: &[CertInfo],
    dns_names: &[String],
    ips: &[IpAddr],
    now: SystemTime,
) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    for ca in trusted {
        roots
            .add(CertificateDer::from(ca.der.clone()))
            .map_err(|e| format!("CA {:?} cannot be a trust anchor: {e}", ca.subject))?;
    }
    let verifier = verifier(roots).map_err(|e| format!("building a verifier: {e}"))?;
    let since_epoch = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| "time before 1970".to_string())?;
    let end_entity = CertificateDer::from(serving.der.clone());
    let names = dns_names
        .iter()
        .map(|n| {
            ServerName::try_from(n.clone()).map_err(|e| format!("invalid DNS name {n:?}: {e}"))
        })
        .chain(ips.iter().map(|ip| Ok(ServerName::IpAddress((*ip).into()))));
    for name in names {
        let name = name?;
        verifier
            .verify_server_cert(
                &end_entity,
                &[],
                &name,
                &[],
                UnixTime::since_unix_epoch(since_epoch),
            )
            .map_err(|e| format!("not valid for {}: {e}", name.to_str()))?;
    }
    Ok(())
}

/// rustls' WebPKI server verifier on the aws-lc-rs provider, trusting only
/// `roots`: the one verifier behind both questions of this module.
fn verifier(roots: RootCertStore) -> Result<Arc<WebPkiServerVerifier>, VerifierBuilderError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build()
}

/// Whether a private key (PEM) is the key of a certificate: a Secret whose
/// `tls.key` does not match `tls.crt` serves nothing.
pub fn key_matches(cert: &CertInfo, key_pem: &str) -> bool {
    match rcgen::KeyPair::from_pem(key_pem) {
        Ok(key) => rcgen::PublicKeyData::der_bytes(&key) == cert.public_key.as_slice(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;
    use crate::CertificateAuthority;
    use crate::inspect::parse_pem;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn setup() -> (CertificateAuthority, CertInfo, String) {
        let ca = CertificateAuthority::generate("verify-ca", Duration::from_secs(3600)).unwrap();
        let serving = ca
            .issue_serving_cert(
                &["webhook.ns.svc"],
                &["127.0.0.1".parse().unwrap()],
                Duration::from_secs(600),
            )
            .unwrap();
        (
            ca,
            CertInfo::from_pem(&serving.cert_pem).unwrap(),
            serving.key_pem,
        )
    }

    /// A CA that lives a day, as `doctor`'s tests used.
    fn day_ca() -> CertificateAuthority {
        CertificateAuthority::generate("doctor-test-ca", DAY).unwrap()
    }

    fn name(host: &str) -> ServerName<'static> {
        ServerName::try_from(host.to_string()).unwrap()
    }

    #[test]
    fn a_certificate_from_the_trusted_ca_serves_its_names() {
        let (ca, serving, _) = setup();
        let trusted = [CertInfo::from_pem(ca.cert_pem()).unwrap()];
        serves_for(
            &serving,
            &trusted,
            &["webhook.ns.svc".into()],
            &["127.0.0.1".parse().unwrap()],
            SystemTime::now(),
        )
        .unwrap();
    }

    #[test]
    fn a_certificate_from_another_ca_is_refused() {
        let (_, serving, _) = setup();
        let other = CertificateAuthority::generate("other", Duration::from_secs(3600)).unwrap();
        let trusted = [CertInfo::from_pem(other.cert_pem()).unwrap()];
        let err = serves_for(
            &serving,
            &trusted,
            &["webhook.ns.svc".into()],
            &[],
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(err.contains("webhook.ns.svc"), "{err}");
    }

    #[test]
    fn a_name_the_certificate_lacks_is_named_in_the_error() {
        let (ca, serving, _) = setup();
        let trusted = [CertInfo::from_pem(ca.cert_pem()).unwrap()];
        let err = serves_for(
            &serving,
            &trusted,
            &[
                "webhook.ns.svc".into(),
                "webhook.ns.svc.cluster.local".into(),
            ],
            &[],
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(err.contains("webhook.ns.svc.cluster.local"), "{err}");
    }

    #[test]
    fn an_expired_certificate_is_refused() {
        let (ca, serving, _) = setup();
        let trusted = [CertInfo::from_pem(ca.cert_pem()).unwrap()];
        let later = SystemTime::now() + Duration::from_secs(1200);
        assert!(serves_for(&serving, &trusted, &["webhook.ns.svc".into()], &[], later).is_err());
    }

    #[test]
    fn only_the_certificates_own_key_matches() {
        let (ca, serving, key) = setup();
        assert!(key_matches(&serving, &key));
        assert!(!key_matches(&serving, &ca.key_pem()));
        assert!(!key_matches(&serving, "not a key"));
    }

    #[test]
    fn a_serving_chain_verifies_against_its_own_ca_for_its_ip_and_name() {
        let ca = day_ca();
        let serving = ca
            .issue_serving_cert(&["localhost"], &["127.0.0.1".parse().unwrap()], DAY)
            .unwrap();
        let bundle = parse_pem(ca.cert_pem().as_bytes()).unwrap();
        let chain = parse_pem(serving.cert_pem.as_bytes()).unwrap();
        for host in ["127.0.0.1", "localhost"] {
            verify_chain(&bundle, &chain, &name(host), SystemTime::now()).unwrap();
        }
    }

    #[test]
    fn a_serving_chain_from_another_ca_is_refused_as_unknown_issuer() {
        let serving = day_ca()
            .issue_serving_cert(&["localhost"], &[], DAY)
            .unwrap();
        let other = CertificateAuthority::generate("another-ca", DAY).unwrap();
        let bundle = parse_pem(other.cert_pem().as_bytes()).unwrap();
        let chain = parse_pem(serving.cert_pem.as_bytes()).unwrap();
        let err = verify_chain(&bundle, &chain, &name("localhost"), SystemTime::now()).unwrap_err();
        assert!(err.to_string().to_lowercase().contains("issuer"), "{err}");
    }

    #[test]
    fn a_ca_with_the_same_name_but_another_key_is_refused() {
        let serving = day_ca()
            .issue_serving_cert(&["localhost"], &[], DAY)
            .unwrap();
        let bundle = parse_pem(day_ca().cert_pem().as_bytes()).unwrap();
        let chain = parse_pem(serving.cert_pem.as_bytes()).unwrap();
        assert!(verify_chain(&bundle, &chain, &name("localhost"), SystemTime::now()).is_err());
    }

    #[test]
    fn a_name_the_chain_does_not_carry_is_refused() {
        let ca = day_ca();
        let serving = ca.issue_serving_cert(&["localhost"], &[], DAY).unwrap();
        let err = verify_chain(
            &parse_pem(ca.cert_pem().as_bytes()).unwrap(),
            &parse_pem(serving.cert_pem.as_bytes()).unwrap(),
            &name("gitwarden-webhook.gitwarden-system.svc"),
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not valid for name"), "{err}");
    }

    #[test]
    fn an_expired_chain_is_refused_as_expired() {
        let ca = day_ca();
        let serving = ca.issue_serving_cert(&["localhost"], &[], DAY).unwrap();
        let err = verify_chain(
            &parse_pem(ca.cert_pem().as_bytes()).unwrap(),
            &parse_pem(serving.cert_pem.as_bytes()).unwrap(),
            &name("localhost"),
            SystemTime::now() + 3 * DAY,
        )
        .unwrap_err();
        assert!(err.to_string().to_lowercase().contains("expired"), "{err}");
    }

    #[test]
    fn an_empty_chain_is_refused() {
        let bundle = parse_pem(day_ca().cert_pem().as_bytes()).unwrap();
        assert!(matches!(
            verify_chain(&bundle, &[], &name("localhost"), SystemTime::now()),
            Err(rustls::Error::NoCertificatesPresented)
        ));
    }

    #[test]
    fn verify_chain_and_serves_for_agree() {
        let (ca, serving, _) = setup();
        let trusted = [CertInfo::from_pem(ca.cert_pem()).unwrap()];
        let bundle = [CertificateDer::from(trusted[0].der.clone())];
        let chain = [CertificateDer::from(serving.der.clone())];
        for (host, at) in [
            ("webhook.ns.svc", SystemTime::now()),
            ("other.ns.svc", SystemTime::now()),
            ("webhook.ns.svc", SystemTime::now() + DAY),
        ] {
            assert_eq!(
                verify_chain(&bundle, &chain, &name(host), at).is_ok(),
                serves_for(&serving, &trusted, &[host.into()], &[], at).is_ok(),
                "{host}"
            );
        }
    }
}
