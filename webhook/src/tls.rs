//! The webhook's serving certificate, reloaded from disk when it changes.
//!
//! cert-manager and `gitwarden-certs` rotate the certificate by rewriting the
//! mounted files. The webhook polls them and swaps the rustls configuration
//! atomically: connections already accepted finish with the old certificate,
//! new ones get the new one, and nothing restarts. A broken pair of files (a
//! half-written rotation, a key that does not match) keeps the last good one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum_server::tls_rustls::RustlsConfig;
use tokio::sync::watch;

use crate::metrics::{ReloadLabels, WebhookMetrics};

/// Where the certificate and key live, and how often to look at them.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// How often the files are checked for changes.
    pub poll: Duration,
}

/// What the readiness endpoint reports about TLS.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsStatus {
    /// The serving certificate's notAfter (RFC 3339), when it could be read.
    pub not_after: Option<String>,
    /// Whether the certificate is outside its validity window right now.
    pub expired: bool,
    /// The last reload error, cleared by the next good reload.
    pub last_error: Option<String>,
}

/// Loads the files, waiting while they do not exist yet (a Secret volume
/// that the certificate bootstrap has not filled); fails with the file names
/// when they exist but cannot be used.
pub async fn load_when_present(files: &CertFiles) -> anyhow::Result<RustlsConfig> {
    let mut waited = false;
    loop {
        let present = tokio::fs::metadata(&files.cert)
            .await
            .is_ok_and(|m| m.len() > 0)
            && tokio::fs::metadata(&files.key)
                .await
                .is_ok_and(|m| m.len() > 0);
        if present {
            if waited {
                tracing::info!(cert = %files.cert.display(), "serving certificate present");
            }
            return load(files).await;
        }
        if !waited {
            tracing::warn!(
                cert = %files.cert.display(),
                key = %files.key.display(),
                "waiting for the serving certificate (not ready, nothing registered): \
                 is the gitwarden-certs-bootstrap Job done, or cert-manager's Certificate issued?"
            );
            waited = true;
        }
        tokio::time::sleep(files.poll.max(std::time::Duration::from_millis(200))).await;
    }
}

/// Loads the files once; fails with the file names when they cannot be used.
pub async fn load(files: &CertFiles) -> anyhow::Result<RustlsConfig> {
    RustlsConfig::from_pem_file(&files.cert, &files.key)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "loading TLS certificate {} and key {}: {e}",
                files.cert.display(),
                files.key.display()
            )
        })
}

async fn fingerprint(files: &CertFiles) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    Ok((
        tokio::fs::read(&files.cert).await?,
        tokio::fs::read(&files.key).await?,
    ))
}

/// Inspects the certificate's validity, updating the gauge and the status.
fn inspect(cert_pem: &[u8], metrics: &WebhookMetrics, status: &mut TlsStatus) {
    let text = String::from_utf8_lossy(cert_pem);
    match gitwarden_certs::pem_validity(&text) {
        Ok(v) => {
            let secs = v
                .not_after
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            metrics
                .cert_not_after_seconds
                .set(i64::try_from(secs).unwrap_or(i64::MAX));
            status.not_after = jiff::Timestamp::try_from(v.not_after)
                .ok()
                .map(|t| t.to_string());
            status.expired = !v.contains(SystemTime::now());
            if status.expired {
                tracing::error!(not_after = ?status.not_after, "the serving certificate is outside its validity window: the API server will refuse to call this webhook");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read the serving certificate's validity"),
    }
}

/// Watches the files and reloads `config` when their content changes. Runs until
/// the process ends; publishes its status on the returned channel.
pub fn spawn_reloader(
    files: CertFiles,
    config: RustlsConfig,
    metrics: Arc<WebhookMetrics>,
) -> watch::Receiver<TlsStatus> {
    let (tx, rx) = watch::channel(TlsStatus::default());
    tokio::spawn(async move {
        let mut last = fingerprint(&files).await.ok();
        let mut rejected = None;
        let mut status = TlsStatus::default();
        if let Some((cert, _)) = &last {
            inspect(cert, &metrics, &mut status);
        }
        tx.send_replace(status.clone());
        loop {
            tokio::time::sleep(files.poll).await;
            let current = match fingerprint(&files).await {
                Ok(c) => c,
                Err(e) => {
                    // Mid-rotation a file may briefly be missing: keep serving.
                    tracing::debug!(error = %e, "serving certificate files not readable right now");
                    continue;
                }
            };
            if rejected.as_ref() == Some(&current) {
                continue;
            }
            if last.as_ref() == Some(&current) {
                // Expiry changes with time, not with the files.
                inspect(&current.0, &metrics, &mut status);
                tx.send_replace(status.clone());
                continue;
            }
            match config
                .reload_from_pem(current.0.clone(), current.1.clone())
                .await
            {
                Ok(()) => {
                    tracing::info!(cert = %files.cert.display(), "reloaded the serving certificate");
                    metrics
                        .tls_reloads
                        .get_or_create(&ReloadLabels { result: "ok" })
                        .inc();
                    status.last_error = None;
                    inspect(&current.0, &metrics, &mut status);
                    last = Some(current);
                }
                Err(e) => {
                    // Likely a half-written rotation; try again on the next tick.
                    tracing::warn!(error = %e, "new serving certificate files are not usable; keeping the previous ones");
                    metrics
                        .tls_reloads
                        .get_or_create(&ReloadLabels { result: "error" })
                        .inc();
                    status.last_error = Some(e.to_string());
                    rejected = Some(current);
                }
            }
            tx.send_replace(status.clone());
        }
    });
    rx
}
