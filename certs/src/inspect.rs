//! Reading certificates back: what a certificate says about itself.
//!
//! Rotation decides from what is in the cluster, not from what this program
//! remembers, and `doctor` judges what the webhook serves against the
//! `caBundle` the API server trusts. Both start by reading PEM text (a Secret,
//! a `caBundle`) or DER (a TLS handshake): validity, names, issuer, whether it
//! is a CA, and its public key (to check that a stored key belongs to it).
//! This module is the only place gitwarden does that, so the two can never
//! read the same certificate differently.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use crate::{InspectError, Validity};

/// The PEM label of a certificate block.
const CERTIFICATE: &str = "CERTIFICATE";

/// One parsed certificate and the PEM block it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The certificate as one PEM block (normalised: `-----BEGIN CERTIFICATE-----` … with a final newline).
    pub pem: String,
    /// The DER bytes: the identity of the certificate when comparing bundles.
    pub der: Vec<u8>,
    /// When the certificate is valid.
    pub validity: Validity,
    /// Whether basicConstraints marks it as a CA.
    pub is_ca: bool,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP address subject alternative names.
    pub ips: Vec<IpAddr>,
    /// The raw subject public key bits (without the algorithm), to compare with a private key's public half.
    pub public_key: Vec<u8>,
    /// The subject (`CN=...`), for messages.
    pub subject: String,
    /// The issuer (`CN=...`), for messages: which CA a served certificate claims to come from.
    pub issuer: String,
}

impl CertInfo {
    /// Parses the first PEM block of a text, which must be a certificate.
    pub fn from_pem(pem: &str) -> Result<CertInfo, InspectError> {
        let block = blocks(pem.as_bytes())
            .next()
            .unwrap_or_else(|| Err(InspectError("not PEM: no PEM block found".into())))?;
        Self::from_der(&block.contents)
    }

    /// Parses every certificate of a PEM text (a CA bundle gitwarden writes
    /// or compares). Blocks that are not certificates are an error: a bundle
    /// with garbage in it is not silently shortened.
    pub fn all_from_pem(pem: &str) -> Result<Vec<CertInfo>, InspectError> {
        let mut certs = Vec::new();
        for block in blocks(pem.as_bytes()) {
            let block = block?;
            if block.label != CERTIFICATE {
                return Err(InspectError(format!(
                    "unexpected PEM block {:?} in a certificate bundle",
                    block.label
                )));
            }
            certs.push(Self::from_der(&block.contents)?);
        }
        Ok(certs)
    }

    /// Parses one DER certificate: what a TLS handshake presents, or one
    /// entry of [`parse_pem`]'s result.
    pub fn from_der(der: &[u8]) -> Result<CertInfo, InspectError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| InspectError(format!("not an X.509 certificate: {e}")))?;
        let mut dns_names = Vec::new();
        let mut ips = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => dns_names.push((*dns).to_string()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            ips.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(CertInfo {
            pem: to_pem(der),
            der: der.to_vec(),
            validity: Validity {
                not_before: to_system(cert.validity().not_before.timestamp()),
                not_after: to_system(cert.validity().not_after.timestamp()),
            },
            is_ca: cert.is_ca(),
            dns_names,
            ips,
            public_key: cert.public_key().subject_public_key.data.to_vec(),
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
        })
    }
}

/// Every certificate of a PEM text, DER, in order, as a TLS client reads a
/// `caBundle` or a `tls.crt`: blocks of other kinds are skipped (the API
/// server's Go client skips them too, so they break nothing), and the X.509
/// content is not judged here, so one unreadable certificate can be reported
/// on its own ([`CertInfo::from_der`]) while the others are still verified.
/// A text with no certificate at all is an error.
pub fn parse_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, InspectError> {
    let mut certs = Vec::new();
    for block in blocks(pem) {
        let block = block?;
        if block.label == CERTIFICATE {
            certs.push(CertificateDer::from(block.contents));
        }
    }
    if certs.is_empty() {
        return Err(InspectError("no PEM certificate found".into()));
    }
    Ok(certs)
}

/// The PEM blocks of a text, whatever their label; text around them is ignored.
fn blocks(pem: &[u8]) -> impl Iterator<Item = Result<Pem, InspectError>> + '_ {
    Pem::iter_from_buffer(pem).map(|block| block.map_err(|e| InspectError(format!("not PEM: {e}"))))
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Seconds since the epoch (negative before it) as a `SystemTime`.
fn to_system(secs: i64) -> SystemTime {
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// Wraps DER bytes as a PEM certificate block with 64-column lines.
fn to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A time for messages: RFC 3339 in UTC, to the second. Any date a
/// certificate can carry is written (X.509 allows 1950 to 9999, and a
/// certificate read from the cluster is outside input); one outside the
/// calendar's range is written `?` rather than panicking.
pub fn format_time(t: SystemTime) -> String {
    let epoch = time::OffsetDateTime::UNIX_EPOCH;
    let at = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => time::Duration::try_from(after)
            .ok()
            .and_then(|d| epoch.checked_add(d)),
        Err(before) => time::Duration::try_from(before.duration())
            .ok()
            .and_then(|d| epoch.checked_sub(d)),
    };
    match at {
        Some(at) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        ),
        None => "?".into(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::CertificateAuthority;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn reads_names_ca_flag_and_key_of_an_issued_certificate() {
        let ca = CertificateAuthority::generate("inspect-ca", Duration::from_secs(3600)).unwrap();
        let serving = ca
            .issue_serving_cert(
                &["a.example", "b.example"],
                &["127.0.0.1".parse().unwrap()],
                Duration::from_secs(600),
            )
            .unwrap();
        let info = CertInfo::from_pem(&serving.cert_pem).unwrap();
        assert_eq!(info.dns_names, ["a.example", "b.example"]);
        assert_eq!(info.ips, ["127.0.0.1".parse::<IpAddr>().unwrap()]);
        assert!(!info.is_ca);
        let ca_info = CertInfo::from_pem(ca.cert_pem()).unwrap();
        assert!(ca_info.is_ca);
        assert!(
            ca_info.subject.contains("inspect-ca"),
            "{}",
            ca_info.subject
        );
    }

    #[test]
    fn from_der_reads_subject_issuer_and_validity() {
        let ca = CertificateAuthority::generate("doctor-test-ca", DAY).unwrap();
        let serving = ca.issue_serving_cert(&["localhost"], &[], DAY).unwrap();
        let info = CertInfo::from_der(&parse_pem(serving.cert_pem.as_bytes()).unwrap()[0]).unwrap();
        assert_eq!(info.subject, "CN=localhost");
        assert_eq!(info.issuer, "CN=doctor-test-ca");
        assert!(info.validity.not_after > SystemTime::now() + DAY - Duration::from_secs(60));
        assert_eq!(info, CertInfo::from_pem(&serving.cert_pem).unwrap());
    }

    #[test]
    fn a_bundle_parses_into_each_certificate_and_renders_back_identically() {
        let a = CertificateAuthority::generate("a", Duration::from_secs(3600)).unwrap();
        let b = CertificateAuthority::generate("b", Duration::from_secs(3600)).unwrap();
        let text = format!("{}{}", a.cert_pem(), b.cert_pem());
        let all = CertInfo::all_from_pem(&text).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            CertInfo::all_from_pem(&all[0].pem).unwrap()[0].der,
            all[0].der
        );
        assert_ne!(all[0].der, all[1].der);
    }

    #[test]
    fn a_private_key_in_a_bundle_is_refused() {
        let a = CertificateAuthority::generate("a", Duration::from_secs(3600)).unwrap();
        let text = format!("{}{}", a.cert_pem(), a.key_pem());
        assert!(CertInfo::all_from_pem(&text).is_err());
    }

    #[test]
    fn parse_pem_reads_the_certificates_a_tls_client_would_and_skips_other_blocks() {
        let a = CertificateAuthority::generate("a", DAY).unwrap();
        let b = CertificateAuthority::generate("b", DAY).unwrap();
        let text = format!("a comment\n{}{}{}", a.cert_pem(), a.key_pem(), b.cert_pem());
        let ders = parse_pem(text.as_bytes()).unwrap();
        let strict = CertInfo::all_from_pem(&format!("{}{}", a.cert_pem(), b.cert_pem())).unwrap();
        assert_eq!(ders.len(), 2);
        for (der, info) in ders.iter().zip(&strict) {
            assert_eq!(der.as_ref(), info.der.as_slice());
        }
    }

    #[test]
    fn garbage_is_not_a_pem_certificate() {
        assert!(parse_pem(b"hello").is_err());
        assert!(parse_pem(b"").is_err());
        let key_only = CertificateAuthority::generate("a", DAY).unwrap().key_pem();
        assert!(parse_pem(key_only.as_bytes()).is_err());
        assert!(CertInfo::from_pem("hello").is_err());
        assert!(CertInfo::from_pem(&key_only).is_err());
    }

    #[test]
    fn times_are_formatted_as_rfc3339() {
        assert_eq!(
            format_time(SystemTime::UNIX_EPOCH + Duration::from_secs(86_400)),
            "1970-01-02T00:00:00Z"
        );
    }

    #[test]
    fn times_any_certificate_can_carry_are_formatted_without_panicking() {
        assert_eq!(
            format_time(SystemTime::UNIX_EPOCH - Duration::from_secs(86_400)),
            "1969-12-31T00:00:00Z"
        );
        assert_eq!(
            format_time(SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799)),
            "9999-12-31T23:59:59Z"
        );
        assert_eq!(
            format_time(SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_800)),
            "?"
        );
    }
}
