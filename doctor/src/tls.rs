//! Fetching the webhook's serving chain by a TLS handshake that trusts
//! nothing, only to see what the server presents. Judging it (parsing the
//! `caBundle`, reading the certificates, verifying the chain exactly as the
//! API server's TLS client would) is `gitwarden-certs`' job:
//! [`gitwarden_certs::inspect`] and [`gitwarden_certs::verify`].

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Why the served chain could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// No connection (refused, unreachable, timed out).
    #[error("connecting to {addr}")]
    Connect {
        /// host:port.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The handshake itself failed.
    #[error("TLS handshake with {addr}")]
    Handshake {
        /// host:port.
        addr: String,
        /// The I/O error carrying the TLS alert.
        #[source]
        source: std::io::Error,
    },
    /// Timed out.
    #[error("no TLS handshake with {0} within the timeout")]
    Timeout(String),
    /// rustls refused the configuration or the name.
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    /// The host is not a valid TLS server name.
    #[error("{0:?} is not a valid TLS server name")]
    Name(String),
    /// The server presented no certificate.
    #[error("the server presented no certificate")]
    NoCertificate,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Accepts whatever the server presents, checking only the handshake
/// signatures: `doctor` wants to see the certificate, and judges it later
/// against the `caBundle`.
#[derive(Debug)]
struct Capture(Arc<CryptoProvider>);

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The chain a TLS server at `host:port` presents (leaf first), using `host`
/// for SNI.
pub async fn fetch_chain(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let addr = format!("{host}:{port}");
    let name = server_name(host)?;
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Capture(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let connect = async {
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|source| TlsError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|source| TlsError::Handshake {
                addr: addr.clone(),
                source,
            })?;
        let chain: Vec<CertificateDer<'static>> = tls
            .get_ref()
            .1
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| c.clone().into_owned())
            .collect();
        if chain.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        Ok(chain)
    };
    tokio::time::timeout(timeout, connect)
        .await
        .map_err(|_| TlsError::Timeout(addr.clone()))?
}

/// A TLS server name for a DNS name or an IP address (brackets allowed).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.trim_matches(['[', ']']).to_string())
        .map_err(|_| TlsError::Name(host.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use gitwarden_certs::CertificateAuthority;
    use gitwarden_certs::inspect::parse_pem;
    use rustls::pki_types::pem::PemObject as _;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn ca() -> CertificateAuthority {
        CertificateAuthority::generate("doctor-test-ca", DAY).unwrap()
    }

    #[tokio::test]
    async fn fetch_chain_returns_what_a_real_tls_server_presents() {
        use rustls::pki_types::PrivateKeyDer;
        let ca = ca();
        let serving = ca
            .issue_serving_cert(&["localhost"], &["127.0.0.1".parse().unwrap()], DAY)
            .unwrap();
        let chain = parse_pem(serving.cert_pem.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            if let Ok((tcp, _)) = listener.accept().await {
                let _ = acceptor.accept(tcp).await;
            }
        });
        let got = fetch_chain("127.0.0.1", port, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(got, chain);
    }

    #[tokio::test]
    async fn fetch_chain_reports_a_closed_port_as_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = fetch_chain("127.0.0.1", port, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, TlsError::Connect { .. }), "{err}");
    }

    #[test]
    fn server_names_accept_dns_names_and_bracketed_ips() {
        assert_eq!(
            server_name("[::1]").unwrap(),
            ServerName::IpAddress("::1".parse::<std::net::IpAddr>().unwrap().into())
        );
        assert!(matches!(
            server_name("gitwarden-webhook.gitwarden-system.svc").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(matches!(server_name("not a name"), Err(TlsError::Name(_))));
    }
}
