//! Notifications: break-glass, denials (aggregated), the agent's reports
//! (drift healed, sync failed/recovered, signature refused, no leader,
//! break-glass expired/reverted, admission objects removed), plus what the
//! webhook sees itself (audit write errors, the certificate expiring), sent
//! to generic webhooks (HMAC-signed JSON), Slack, Teams and Alertmanager.
//!
//! The audit log is the outbox: each receiver follows it from a persisted
//! cursor ([`cursor`], [`follow`]), so delivery is at least once and
//! survives restarts (kill -9 included) without a second queue, and nothing
//! on the admission path waits for it. Modules, one job each: [`config`]
//! reads the configuration, [`event`] turns records into messages,
//! [`aggregate`] folds denials and decides how far the cursor may go,
//! [`receivers`] shapes payloads and sends, [`deliver`] runs one receiver
//! (retry, backoff, rate limit).

pub mod aggregate;
pub mod config;
pub mod cursor;
pub mod deliver;
pub mod event;
pub mod follow;
pub mod receivers;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use config::NotifyConfig;
use event::{EventKind, Notification};

/// The label of per-receiver metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabels {
    /// The receiver's name.
    pub receiver: String,
}

/// `gitwarden_webhook_notifications_*`.
#[derive(Debug, Default)]
pub struct NotifyMetrics {
    /// Messages delivered.
    pub delivered: Family<ReceiverLabels, Counter>,
    /// Failed attempts (each is retried).
    pub failed: Family<ReceiverLabels, Counter>,
    /// Messages waiting (in memory; more may wait in the log).
    pub pending: Family<ReceiverLabels, Gauge>,
    /// The receiver's cursor: the audit sequence number delivered up to.
    pub cursor: Family<ReceiverLabels, Gauge>,
    /// Messages that waited for the rate limit.
    pub rate_limited: Family<ReceiverLabels, Counter>,
    /// 1 while the configuration in force is the newest one, 0 while an
    /// invalid one is ignored.
    pub config_valid: Gauge,
}

impl NotifyMetrics {
    /// Registers under `gitwarden_webhook_notifications`.
    pub fn new(registry: &mut Registry) -> Arc<NotifyMetrics> {
        let m = NotifyMetrics::default();
        let r = registry.sub_registry_with_prefix("gitwarden_webhook_notifications");
        r.register(
            "delivered",
            "Notifications delivered, by receiver",
            m.delivered.clone(),
        );
        r.register(
            "failed",
            "Notification delivery attempts that failed (retried), by receiver",
            m.failed.clone(),
        );
        r.register(
            "pending",
            "Notifications waiting to be delivered, by receiver",
            m.pending.clone(),
        );
        r.register(
            "cursor",
            "Audit sequence number each receiver has been notified up to",
            m.cursor.clone(),
        );
        r.register(
            "rate_limited",
            "Notifications delayed by the receiver's rate limit",
            m.rate_limited.clone(),
        );
        r.register(
            "config_valid",
            "1 while the notification configuration is valid, 0 while an invalid one is ignored",
            m.config_valid.clone(),
        );
        Arc::new(m)
    }
}

/// Where the notifier reads and keeps things.
#[derive(Debug, Clone)]
pub struct NotifyOptions {
    /// `notifications.yaml` (the mounted ConfigMap key).
    pub config: PathBuf,
    /// Relative `urlFile` / `hmacSecretFile` are read here (a mounted Secret).
    pub secrets_dir: Option<PathBuf>,
    /// The audit log directory (followed read-only).
    pub audit_dir: PathBuf,
    /// Where the log is durable up to ([`crate::audit::AuditLog::durable`]).
    pub durable: crate::audit::DurableSeq,
    /// Where cursors are kept.
    pub cursor_dir: PathBuf,
    /// How often the configuration, the certificate and the audit writer
    /// are checked.
    pub poll: Duration,
}

/// What the webhook observes itself.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The audit writer's failed writes.
    pub audit_write_errors: Option<Counter>,
    /// The serving certificate's notAfter (Unix seconds, 0 unknown).
    pub cert_not_after: Gauge,
}

/// Starts the notifier: follows the configuration and runs one task per
/// receiver. Returns at once; runs until the process ends.
pub fn spawn(options: NotifyOptions, metrics: Arc<NotifyMetrics>, observed: Observed) {
    let (direct, _) = broadcast::channel(256);
    tokio::spawn(watch_observed(observed, direct.clone(), options.poll));
    tokio::spawn(follow_config(options, metrics, direct));
}

async fn follow_config(
    options: NotifyOptions,
    metrics: Arc<NotifyMetrics>,
    direct: broadcast::Sender<Notification>,
) {
    let client = receivers::client();
    let mut current: Option<NotifyConfig> = None;
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    let mut last_error: Option<String> = None;
    loop {
        let path = options.config.clone();
        let secrets = options.secrets_dir.clone();
        let loaded = tokio::task::spawn_blocking(move || config::load(&path, secrets.as_deref()))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        match loaded {
            Ok(config) => {
                metrics.config_valid.set(1);
                last_error = None;
                if current.as_ref() != Some(&config) {
                    for task in tasks.drain(..) {
                        task.abort();
                    }
                    tracing::info!(
                        receivers = config.receivers.len(),
                        denial_window = ?config.denial_window,
                        "notifications configured"
                    );
                    for receiver in &config.receivers {
                        tasks.push(tokio::spawn(deliver::run(deliver::Job {
                            receiver: receiver.clone(),
                            window: config.denial_window,
                            audit_dir: options.audit_dir.clone(),
                            durable: options.durable.clone(),
                            cursor_dir: options.cursor_dir.clone(),
                            direct: direct.subscribe(),
                            metrics: metrics.clone(),
                            client: client.clone(),
                        })));
                    }
                    current = Some(config);
                }
            }
            Err(e) => {
                metrics.config_valid.set(0);
                let text = gitwarden_runtime::errors::chain(&e);
                if last_error.as_deref() != Some(text.as_str()) {
                    tracing::error!(
                        error = %text,
                        "notifications: invalid configuration ignored, the previous one stays in force"
                    );
                    last_error = Some(text);
                }
            }
        }
        // The certificate warning threshold follows the configuration.
        if let Some(config) = &current {
            CERT_WARNING.store(
                config.certificate_expiry_warning.as_secs(),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        tokio::time::sleep(options.poll).await;
    }
}

/// The configured certificate warning, in seconds; `u64::MAX` until a
/// configuration is loaded (nothing is sent before receivers exist).
static CERT_WARNING: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);

/// Audit write errors cannot go through the audit log, and the certificate
/// is not in it: both are watched here and sent directly, each at most once
/// per its dedupe window.
async fn watch_observed(
    observed: Observed,
    direct: broadcast::Sender<Notification>,
    poll: Duration,
) {
    const AUDIT_DEDUPE: i64 = 10 * 60;
    const CERT_DEDUPE: i64 = 24 * 3600;
    let mut seen_errors = observed.audit_write_errors.as_ref().map_or(0, Counter::get);
    let mut last_audit: Option<i64> = None;
    let mut last_cert: Option<i64> = None;
    loop {
        tokio::time::sleep(poll.max(Duration::from_secs(1))).await;
        let now = jiff::Timestamp::now().as_second();
        if let Some(errors) = &observed.audit_write_errors {
            let count = errors.get();
            if count > seen_errors && last_audit.is_none_or(|t| now - t >= AUDIT_DEDUPE) {
                let _ = direct.send(Notification::direct(
                    EventKind::AuditWriteError,
                    format!("audit-write-error-{now}"),
                    format!(
                        "the webhook failed {} audit write(s); refused and break-glass requests are failing until the audit volume is fixed",
                        count - seen_errors
                    ),
                ));
                last_audit = Some(now);
                seen_errors = count;
            }
        }
        let not_after = observed.cert_not_after.get();
        let warning = CERT_WARNING.load(std::sync::atomic::Ordering::Relaxed);
        let configured = warning != u64::MAX;
        let warning = i64::try_from(warning).unwrap_or(i64::MAX);
        if configured
            && not_after > 0
            && now.saturating_add(warning) >= not_after
            && last_cert.is_none_or(|t| now - t >= CERT_DEDUPE)
        {
            let expires = jiff::Timestamp::from_second(not_after)
                .map(|t| t.to_string())
                .unwrap_or_default();
            let _ = direct.send(Notification::direct(
                EventKind::CertificateExpiring,
                format!("certificate-expiring-{not_after}-{}", now / CERT_DEDUPE),
                format!("the webhook's serving certificate expires at {expires}"),
            ));
            last_cert = Some(now);
        }
    }
}
