//! Peers asked for real: fake replicas on loopback serving TLS, with
//! certificates trusted or not, answering or refusing.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use gitwarden_shared::audit::AuditRecord;
use gitwarden_shared::names;

use super::endpoints::tests::here;
use super::{AuditPeers, Peer};

const SERVICE_NAME: &str = "gitwarden-webhook.gitwarden-system.svc";

/// What a fake peer saw of the requests it got: headers and query.
type Seen = Arc<Mutex<Vec<(HeaderMap, Option<String>)>>>;

fn record(user: &str) -> AuditRecord {
    gitwarden_shared::audit::AuditEvent::new(
        gitwarden_shared::audit::AuditDecision::Denied,
        "not_from_git",
    )
    .with_user(user, None, vec![])
    .into_record(1)
    .seal(gitwarden_shared::audit::GENESIS_HASH)
}

/// A fake peer on loopback serving `cert` signed by `ca`, answering
/// `GET /audit` with `status` and `body`.
async fn fake_peer(
    name: &str,
    cert: &gitwarden_certs::ServingCert,
    status: axum::http::StatusCode,
    body: String,
    seen: Seen,
) -> Peer {
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(
        cert.cert_pem.clone().into_bytes(),
        cert.key_pem.clone().into_bytes(),
    )
    .await
    .unwrap();
    let app = axum::Router::new().route(
        "/audit",
        axum::routing::get(
            move |headers: HeaderMap, axum::extract::RawQuery(query): axum::extract::RawQuery| {
                let seen = seen.clone();
                let body = body.clone();
                async move {
                    seen.lock().unwrap().push((headers, query));
                    (status, body)
                }
            },
        ),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = axum_server::from_tcp_rustls(listener, config).unwrap();
    tokio::spawn(server.serve(app.into_make_service()));
    Peer {
        name: name.to_owned(),
        address,
    }
}

fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn audit_peers(ca_bundle: PathBuf) -> AuditPeers {
    // Never used to list anything here: building it needs no server.
    let config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
    AuditPeers::new(
        kube::Client::try_from(config).unwrap(),
        "gitwarden-webhook",
        here(Some("gitwarden-webhook-0"), None),
        ca_bundle,
    )
    .unwrap()
}

#[tokio::test]
async fn peers_are_asked_over_verified_tls_with_the_callers_credentials() {
    install_crypto();
    let validity = Duration::from_secs(3600);
    let ca = gitwarden_certs::CertificateAuthority::generate("test-ca", validity).unwrap();
    let good = ca
        .issue_serving_cert(&[SERVICE_NAME], &[], validity)
        .unwrap();
    let stranger = gitwarden_certs::CertificateAuthority::generate("other-ca", validity)
        .unwrap()
        .issue_serving_cert(&[SERVICE_NAME], &[], validity)
        .unwrap();
    let wrong_name = ca
        .issue_serving_cert(&["elsewhere.gitwarden-system.svc"], &[], validity)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();

    let seen = Seen::default();
    let ok = axum::http::StatusCode::OK;
    let records = serde_json::to_string(&[record("bob")]).unwrap();
    let answering = fake_peer("gitwarden-webhook-1", &good, ok, records, seen.clone()).await;
    let refusing = fake_peer(
        "gitwarden-webhook-2",
        &good,
        axum::http::StatusCode::FORBIDDEN,
        "\"alice\" may not get /audit\nmore".to_owned(),
        seen.clone(),
    )
    .await;
    let foreign = fake_peer(
        "gitwarden-webhook-3",
        &stranger,
        ok,
        "[]".into(),
        seen.clone(),
    )
    .await;
    let misnamed = fake_peer(
        "gitwarden-webhook-4",
        &wrong_name,
        ok,
        "[]".into(),
        seen.clone(),
    )
    .await;
    let garbled = fake_peer("gitwarden-webhook-5", &good, ok, "{}".into(), seen.clone()).await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let gone = Peer {
        name: "gitwarden-webhook-6".into(),
        address: closed,
    };

    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer alices-token"),
    );
    headers.insert(
        gitwarden_runtime::access::FORWARDED_AUTHORIZATION,
        HeaderValue::from_static("Bearer forwarded"),
    );
    headers.insert(header::COOKIE, HeaderValue::from_static("not=forwarded"));
    let peers = audit_peers(ca_file.clone());
    let gathered = peers
        .ask_peers(
            &[answering, refusing, foreign, misnamed, garbled, gone],
            &headers,
            Some("namespace=shop&limit=5"),
        )
        .await;

    assert_eq!(gathered.answers.len(), 1, "{gathered:?}");
    assert_eq!(gathered.answers[0][0].user, "bob");
    let why: Vec<(&str, &str)> = gathered
        .missing
        .iter()
        .map(|m| (m.replica.as_str(), m.why.as_str()))
        .collect();
    assert_eq!(why.len(), 5, "{why:?}");
    assert_eq!(
        why[0],
        (
            "gitwarden-webhook-2",
            "answered 403: \"alice\" may not get /audit"
        )
    );
    for (replica, reason) in &why[1..3] {
        // A certificate this replica does not trust, or not for the
        // Service's name: the credentials are never sent.
        assert!(
            reason.starts_with("unreachable at 127.0.0.1:"),
            "{replica}: {reason}"
        );
    }
    assert_eq!(why[3].0, "gitwarden-webhook-5");
    assert!(
        why[3].1.starts_with("answered with no audit records"),
        "{why:?}"
    );
    assert_eq!(why[4].0, "gitwarden-webhook-6");
    assert!(
        why[4].1.starts_with(&format!("unreachable at {closed}")),
        "{why:?}"
    );

    // Only the peers with a trusted certificate for the Service's name
    // were asked: with the caller's credentials as received, the replica
    // scope and the same query, and nothing else of the caller's.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (got, query) in seen.iter() {
        assert_eq!(got[header::AUTHORIZATION], "Bearer alices-token");
        assert_eq!(
            got[gitwarden_runtime::access::FORWARDED_AUTHORIZATION],
            "Bearer forwarded"
        );
        assert_eq!(got[names::AUDIT_SCOPE_HEADER], names::AUDIT_SCOPE_REPLICA);
        assert!(got.get(header::COOKIE).is_none());
        assert_eq!(query.as_deref(), Some("namespace=shop&limit=5"));
    }
}

#[tokio::test]
async fn without_a_usable_ca_no_peer_is_asked() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let peers = audit_peers(dir.path().join("ca.crt"));
    let peer = Peer {
        name: "gitwarden-webhook-1".into(),
        address: "127.0.0.1:9".parse().unwrap(),
    };
    let gathered = peers
        .ask_peers(std::slice::from_ref(&peer), &HeaderMap::new(), None)
        .await;
    assert!(gathered.answers.is_empty());
    assert_eq!(gathered.missing.len(), 1);
    assert!(
        gathered.missing[0]
            .why
            .starts_with("this replica's CA bundle"),
        "{gathered:?}"
    );
    std::fs::write(dir.path().join("ca.crt"), "no PEM here").unwrap();
    let gathered = peers.ask_peers(&[peer], &HeaderMap::new(), None).await;
    assert!(
        gathered.missing[0].why.contains("no certificate"),
        "{gathered:?}"
    );
}
