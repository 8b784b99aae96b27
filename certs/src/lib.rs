//! Webhook TLS for gitwarden.
//!
//! The API server calls admission webhooks only over TLS and only trusts the CA
//! bundle registered in the webhook configuration. This crate generates that CA
//! and the serving certificates it signs, with rcgen on the same aws-lc-rs
//! crypto provider the rest of gitwarden uses, so no OpenSSL is ever needed.
//!
//! The pure parts (reading certificates, the CA bundle, what a Secret holds,
//! deciding what needs renewal) are in [`inspect`], [`bundle`], [`verify`],
//! [`secrets`] and [`rotation`]; the only module that talks to the API
//! server is [`cluster`], which keeps the webhook's Secrets and the webhook
//! configurations' `caBundle` current.
//! `gitwarden-doctor` reads and verifies what the webhook serves with
//! the same [`inspect`] and [`verify`], so the tool that writes certificates
//! and the one that audits them cannot disagree about one.

pub mod bundle;
pub mod cluster;
pub mod inspect;
pub mod rotation;
pub mod secrets;
pub mod verify;
pub mod webhooks;

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Why a certificate could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters or failed to sign.
    #[error("generating {what}")]
    Generate {
        /// Which certificate or key was being generated.
        what: &'static str,
        /// The underlying rcgen error.
        #[source]
        source: rcgen::Error,
    },
    /// A DNS name is not a valid subject alternative name.
    #[error("invalid DNS name {name:?} for a serving certificate: {why}")]
    InvalidDnsName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// The validity period does not fit the certificate time range.
    #[error("validity of {0:?} is out of range")]
    Validity(Duration),
    /// A stored CA certificate or key could not be loaded.
    #[error("loading the CA: {0}")]
    Load(String),
}

/// A certificate authority that exists only to sign webhook serving certificates.
/// Its certificate is what goes into a webhook configuration's `caBundle`.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    not_after: SystemTime,
}

/// A serving certificate and its private key, both PEM, ready for rustls.
#[derive(Clone)]
pub struct ServingCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM. Never log it.
    pub key_pem: String,
    /// When the certificate stops being valid: rotation is planned from this.
    pub not_after: SystemTime,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn validity_window(
    validity: Duration,
) -> Result<(time::OffsetDateTime, time::OffsetDateTime, SystemTime), CertError> {
    let now = time::OffsetDateTime::now_utc();
    let span = time::Duration::try_from(validity).map_err(|_| CertError::Validity(validity))?;
    let not_after = now.checked_add(span).ok_or(CertError::Validity(validity))?;
    // Backdate a little: clocks of the API server and the webhook may differ.
    let not_before = now - time::Duration::minutes(5);
    Ok((not_before, not_after, SystemTime::from(not_after)))
}

impl CertificateAuthority {
    /// Generates a fresh CA key and self-signed certificate.
    pub fn generate(common_name: &str, validity: Duration) -> Result<Self, CertError> {
        let key = KeyPair::generate().map_err(|source| CertError::Generate {
            what: "CA key",
            source,
        })?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let (not_before, not_after, expiry) = validity_window(validity)?;
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params
            .self_signed(&key)
            .map_err(|source| CertError::Generate {
                what: "CA certificate",
                source,
            })?;
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            not_after: expiry,
        })
    }

    /// Loads a CA stored earlier (its certificate and private key, PEM), so
    /// that a rotation signs new serving certificates with the CA the webhook
    /// configurations already trust. Refuses a key that does not belong to
    /// the certificate: signing with it would produce certificates nobody trusts.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let key = KeyPair::from_pem(key_pem)
            .map_err(|e| CertError::Load(format!("the CA key is not a PEM private key: {e}")))?;
        let info = inspect::CertInfo::from_pem(cert_pem)
            .map_err(|e| CertError::Load(format!("the CA certificate: {e}")))?;
        if !info.is_ca {
            return Err(CertError::Load(
                "the CA certificate is not a CA (basicConstraints)".into(),
            ));
        }
        if info.public_key != rcgen::PublicKeyData::der_bytes(&key) {
            return Err(CertError::Load(
                "the CA key does not belong to the CA certificate".into(),
            ));
        }
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| CertError::Load(format!("the CA certificate: {e}")))?;
        Ok(Self {
            issuer,
            cert_pem: info.pem.clone(),
            not_after: info.validity.not_after,
        })
    }

    /// The CA certificate, PEM: the webhook configurations' `caBundle` (base64 of this).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PEM, for storing it so that later rotations keep the same CA.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// When the CA itself expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Issues a serving certificate for the given DNS names and IP addresses
    /// (e.g. `gitwarden-webhook.gitwarden-system.svc` in a cluster, `127.0.0.1` locally).
    pub fn issue_serving_cert(
        &self,
        dns_names: &[&str],
        ips: &[IpAddr],
        validity: Duration,
    ) -> Result<ServingCert, CertError> {
        let key = KeyPair::generate().map_err(|source| CertError::Generate {
            what: "serving key",
            source,
        })?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            dns_names.first().copied().unwrap_or("gitwarden-webhook"),
        );
        params.distinguished_name = dn;
        for name in dns_names {
            let invalid = |why: String| CertError::InvalidDnsName {
                name: (*name).to_string(),
                why,
            };
            check_dns_name(name).map_err(invalid)?;
            let san = (*name)
                .try_into()
                .map_err(|e: rcgen::Error| invalid(e.to_string()))?;
            params.subject_alt_names.push(SanType::DnsName(san));
        }
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (not_before, not_after, expiry) = validity_window(validity)?;
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| CertError::Generate {
                what: "serving certificate",
                source,
            })?;
        Ok(ServingCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after: expiry,
        })
    }
}

/// Checks a DNS name as a TLS client will (RFC 1123 labels, an optional
/// leading `*.` wildcard): rcgen accepts any IA5 string, and a certificate for
/// a misspelt name only fails later, inside the API server's webhook call.
fn check_dns_name(name: &str) -> Result<(), String> {
    let host = name.strip_prefix("*.").unwrap_or(name);
    if host.is_empty() || name.len() > 253 {
        return Err("must be 1 to 253 characters".into());
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("label {label:?} must be 1 to 63 characters"));
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!(
                "label {label:?} may contain only letters, digits and '-'"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} must not start or end with '-'"));
        }
    }
    Ok(())
}

/// The validity window of a PEM certificate (the first one in the text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Not valid before this time.
    pub not_before: SystemTime,
    /// Not valid after this time.
    pub not_after: SystemTime,
}

impl Validity {
    /// Whether `now` lies inside the window: an expired serving certificate makes
    /// every admission call fail, so the webhook reports it loudly.
    pub fn contains(&self, now: SystemTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// Reads the validity window of the first certificate in a PEM text, so the
/// webhook can report expiry before the API server does. The same reading as
/// [`inspect::CertInfo::from_pem`], narrowed to what the webhook needs.
pub fn pem_validity(pem: &str) -> Result<Validity, InspectError> {
    inspect::CertInfo::from_pem(pem).map(|info| info.validity)
}

/// A PEM text that could not be read as a certificate.
#[derive(Debug, thiserror::Error)]
#[error("reading certificate: {0}")]
pub struct InspectError(String);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn serving_cert_is_pem_and_signed_for_the_requested_names() {
        let ca = CertificateAuthority::generate("test-ca", Duration::from_secs(3600)).unwrap();
        let cert = ca
            .issue_serving_cert(
                &["webhook.example.svc"],
                &["127.0.0.1".parse().unwrap()],
                Duration::from_secs(600),
            )
            .unwrap();
        assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(cert.key_pem.contains("PRIVATE KEY"));
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(cert.not_after > SystemTime::now() + Duration::from_secs(590));
        assert!(cert.not_after < ca.not_after());
    }

    #[test]
    fn pem_validity_reads_the_window_of_an_issued_cert() {
        let ca = CertificateAuthority::generate("test-ca", Duration::from_secs(3600)).unwrap();
        let cert = ca
            .issue_serving_cert(&["a.example"], &[], Duration::from_secs(600))
            .unwrap();
        let validity = pem_validity(&cert.cert_pem).unwrap();
        assert!(validity.contains(SystemTime::now()));
        assert!(!validity.contains(SystemTime::now() + Duration::from_secs(3600)));
    }

    #[test]
    fn a_stored_ca_loads_and_signs_certificates_it_verifies() {
        let ca = CertificateAuthority::generate("stored-ca", Duration::from_secs(3600)).unwrap();
        let loaded = CertificateAuthority::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        let serving = loaded
            .issue_serving_cert(&["a.example"], &[], Duration::from_secs(600))
            .unwrap();
        let trusted = [inspect::CertInfo::from_pem(ca.cert_pem()).unwrap()];
        let info = inspect::CertInfo::from_pem(&serving.cert_pem).unwrap();
        verify::serves_for(
            &info,
            &trusted,
            &["a.example".into()],
            &[],
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(
            loaded.not_after(),
            pem_validity(ca.cert_pem()).unwrap().not_after
        );
    }

    #[test]
    fn a_stored_ca_with_a_foreign_key_is_refused() {
        let ca = CertificateAuthority::generate("stored-ca", Duration::from_secs(3600)).unwrap();
        let other = CertificateAuthority::generate("other", Duration::from_secs(3600)).unwrap();
        let err = CertificateAuthority::from_pem(ca.cert_pem(), &other.key_pem())
            .err()
            .unwrap();
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn pem_validity_rejects_garbage() {
        assert!(pem_validity("not a certificate").is_err());
    }

    #[test]
    fn invalid_dns_name_is_rejected_with_the_name() {
        let ca = CertificateAuthority::generate("test-ca", Duration::from_secs(3600)).unwrap();
        let err = ca
            .issue_serving_cert(&["bad name with spaces"], &[], Duration::from_secs(60))
            .unwrap_err();
        assert!(err.to_string().contains("bad name with spaces"), "{err}");
    }
}
