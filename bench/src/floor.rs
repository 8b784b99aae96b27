//! The floor: the cheapest possible admission webhook on the same stack (rustls,
//! axum, axum-server), answering every review with a fixed allow. gitwarden's
//! allow path is measured against it.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::Router;
use axum::routing::post;

/// Where the floor server listens and with which certificate.
#[derive(Debug, clap::Args)]
pub struct Options {
    #[arg(long)]
    listen: SocketAddr,
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
}

const ALLOW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"","allowed":true}}"#;

pub async fn serve(opts: Options) -> anyhow::Result<()> {
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&opts.cert, &opts.key).await?;
    let app = Router::new().route(
        "/validate",
        post(|_body: axum::body::Bytes| async {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                ALLOW,
            )
        }),
    );
    // TCP_NODELAY like gitwarden-webhook, so that the two differ only in
    // what they do per request.
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls)
        .acceptor(axum_server::accept::NoDelayAcceptor::new());
    axum_server::bind(opts.listen)
        .acceptor(acceptor)
        .serve(app.into_make_service())
        .await?;
    Ok(())
}
