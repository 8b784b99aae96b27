//! The agent's own audit records, delivered to the webhook's audit log.
//!
//! What the agent undoes without a webhook ever seeing it — an admission
//! object deleted because it was not in git — belongs in the same durable,
//! hash-chained log as every refusal. The webhook owns that log; the agent
//! sends `POST {audit_url}/audit/events` with its own bearer token, and the
//! webhook checks with a TokenReview that the caller is the agent.
//!
//! Delivery never blocks the caller: records go into a bounded in-memory
//! queue and one task sends them in order, retrying with backoff. A record
//! is never dropped silently: a full queue, and a record the webhook keeps
//! refusing, are logged as errors naming the record.

use std::path::PathBuf;
use std::time::Duration;

use gitwarden_runtime::credential::TokenSource;
use tokio::sync::mpsc;

/// How many records may wait for delivery; beyond that new records are
/// refused (and logged), so a webhook that is down for long cannot make the
/// agent's memory grow without bound.
pub const QUEUE_CAPACITY: usize = 1024;

/// How often a record the webhook refuses (400, 401, 403, 404 …) is retried
/// before it is given up, with an error log. Records that fail for transient
/// reasons (network, 5xx, 429) are retried until they are delivered.
const REFUSED_ATTEMPTS: u32 = 8;

/// One record, in the body `POST /audit/events` accepts (the webhook and
/// the agent share the type, so the contract cannot drift).
pub use gitwarden_shared::audit::AgentReport as AuditRecord;
pub use gitwarden_shared::audit::AgentReportReason;

/// How a record is named in log lines: `DELETE validatingwebhookconfigurations evil`.
fn describe(record: &AuditRecord) -> String {
    match &record.namespace {
        Some(ns) => format!(
            "{} {} {ns}/{}",
            record.operation, record.resource, record.name
        ),
        None => format!("{} {} {}", record.operation, record.resource, record.name),
    }
}

/// Why the audit client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The CA file could not be read.
    #[error("reading the audit CA {path}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client could not be built (a CA that does not parse).
    #[error("building the audit HTTP client")]
    Client(#[source] reqwest::Error),
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// 201: the webhook made the record durable.
    Delivered {
        /// The audit record id it answered.
        id: String,
    },
    /// Worth retrying until it works: network error, 5xx (503: the log is
    /// not durable right now), 408, 429.
    Transient(String),
    /// The webhook refuses this caller or record (401, 403, 400, 404 …):
    /// retried a few times (a policy or a webhook may be changing), then
    /// given up with an error log.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The webhook's answer.
        body: String,
    },
}

/// Classifies an HTTP answer of `POST /audit/events`.
pub fn classify(status: u16, body: &str) -> Delivery {
    match status {
        200 | 201 => {
            let id = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_owned))
                .unwrap_or_default();
            Delivery::Delivered { id }
        }
        408 | 429 | 500..=599 => Delivery::Transient(format!("HTTP {status}: {}", excerpt(body))),
        _ => Delivery::Refused {
            status,
            body: excerpt(body),
        },
    }
}

fn excerpt(body: &str) -> String {
    body.chars().take(300).collect()
}

/// The sending side: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct AuditSink {
    queue: mpsc::Sender<AuditRecord>,
}

/// Whether [`AuditSink::submit`] queued the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// It will be delivered (retrying as long as needed).
    Queued,
    /// The queue is full (or delivery stopped): the record is logged as an
    /// error instead of being sent.
    Overflowed,
}

impl AuditSink {
    /// Starts the delivery task to `base_url` (the webhook's base URL),
    /// trusting only the certificates in `ca` when given.
    pub fn start(
        base_url: &str,
        ca: Option<&std::path::Path>,
        bearer: TokenSource,
    ) -> Result<(AuditSink, tokio::task::JoinHandle<()>), AuditError> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5));
        if let Some(path) = ca {
            let pem = std::fs::read(path).map_err(|source| AuditError::CaFile {
                path: path.to_owned(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(AuditError::Client)?;
            builder = builder.tls_certs_only(certs);
        }
        let client = builder.build().map_err(AuditError::Client)?;
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let url = format!("{}/audit/events", base_url.trim_end_matches('/'));
        let task = tokio::spawn(deliver(receiver, client, url, bearer));
        Ok((AuditSink { queue }, task))
    }

    /// Queues `record` for delivery without waiting.
    pub fn submit(&self, record: AuditRecord) -> Submitted {
        match self.queue.try_send(record) {
            Ok(()) => Submitted::Queued,
            Err(mpsc::error::TrySendError::Full(record)) => {
                tracing::error!(record = %describe(&record), reason = record.reason.code(), message = %record.message,
                    capacity = QUEUE_CAPACITY,
                    "audit queue full: this record is NOT in the audit log (the webhook has been unreachable for long)");
                Submitted::Overflowed
            }
            Err(mpsc::error::TrySendError::Closed(record)) => {
                tracing::error!(record = %describe(&record), reason = record.reason.code(), message = %record.message,
                    "audit delivery stopped: this record is NOT in the audit log");
                Submitted::Overflowed
            }
        }
    }
}

/// The sink the agent's own reports go to (drift healed, sync failed and
/// recovered, signature refused, no leader, break-glass reverted/expired),
/// installed once at start-up when `--audit-url` is set. Without it,
/// [`report`] only logs.
static GLOBAL: std::sync::OnceLock<AuditSink> = std::sync::OnceLock::new();

/// Makes `sink` the destination of [`report`].
pub fn install(sink: AuditSink) {
    let _ = GLOBAL.set(sink);
}

/// The object a report is about, as the agent knows it (kind, not the
/// plural resource: the resource is derived with English plural rules,
/// good enough for people and notifications).
#[derive(Debug, Clone)]
pub struct ReportedObject {
    /// API group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

/// `Deployment` → `deployments`, `Ingress` → `ingresses`, `NetworkPolicy`
/// → `networkpolicies`.
pub fn plural(kind: &str) -> String {
    let lower = kind.to_lowercase();
    if lower.ends_with('s') || lower.ends_with('x') || lower.ends_with("ch") {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

/// Records an event of the agent's in the webhook's audit log (and so in
/// notifications), without waiting. A no-op (logged at debug) when no
/// `--audit-url` is set.
pub fn report(reason: AgentReportReason, message: String, object: Option<ReportedObject>) {
    let Some(sink) = GLOBAL.get() else {
        tracing::debug!(reason = reason.code(), %message, "no --audit-url: not reported to the audit log");
        return;
    };
    let record = match object {
        Some(o) => AuditRecord {
            reason,
            message,
            operation: "UPDATE".to_owned(),
            group: o.group,
            version: o.version,
            resource: plural(&o.kind),
            namespace: o.namespace,
            name: o.name,
        },
        None => AuditRecord {
            reason,
            message,
            operation: String::new(),
            group: String::new(),
            version: String::new(),
            resource: String::new(),
            namespace: None,
            name: String::new(),
        },
    };
    let _ = sink.submit(record);
}

/// Sends the queued records one by one, in order, each until it is
/// delivered (or refused too often).
async fn deliver(
    mut queue: mpsc::Receiver<AuditRecord>,
    client: reqwest::Client,
    url: String,
    bearer: TokenSource,
) {
    while let Some(record) = queue.recv().await {
        let mut delay = Duration::from_millis(500);
        let mut refusals = 0;
        loop {
            match send(&client, &url, &bearer, &record).await {
                Delivery::Delivered { id } => {
                    tracing::info!(record = %describe(&record), audit_id = %id, "recorded in the audit log");
                    break;
                }
                Delivery::Transient(why) => {
                    tracing::warn!(record = %describe(&record), error = %why, retry_in = ?delay,
                        "audit record not delivered yet; retrying");
                }
                Delivery::Refused { status, body } => {
                    refusals += 1;
                    if refusals >= REFUSED_ATTEMPTS {
                        tracing::error!(record = %describe(&record), reason = record.reason.code(), message = %record.message,
                            status, answer = %body,
                            "the webhook keeps refusing this audit record: it is NOT in the audit log");
                        break;
                    }
                    tracing::warn!(record = %describe(&record), status, answer = %body, retry_in = ?delay,
                        "the webhook refused the audit record; retrying");
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(60));
        }
    }
}

async fn send(
    client: &reqwest::Client,
    url: &str,
    bearer: &TokenSource,
    record: &AuditRecord,
) -> Delivery {
    let token = match bearer.token().await {
        Ok(token) => token,
        Err(e) => return Delivery::Transient(e.to_string()),
    };
    let response = client
        .post(url)
        .bearer_auth(token)
        .json(record)
        .send()
        .await;
    match response {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            classify(status, &body)
        }
        Err(e) => Delivery::Transient(e.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record() -> AuditRecord {
        AuditRecord {
            reason: AgentReportReason::AdmissionObjectNotInGit,
            message: "deleted".into(),
            operation: "DELETE".into(),
            group: "admissionregistration.k8s.io".into(),
            version: "v1".into(),
            resource: "validatingwebhookconfigurations".into(),
            namespace: None,
            name: "evil".into(),
        }
    }

    #[test]
    fn the_body_is_the_contract_of_post_audit_events() {
        assert_eq!(
            serde_json::to_value(record()).unwrap(),
            serde_json::json!({"reason":"admission_object_not_in_git","message":"deleted",
                "operation":"DELETE","group":"admissionregistration.k8s.io","version":"v1",
                "resource":"validatingwebhookconfigurations","namespace":null,"name":"evil"})
        );
    }

    #[test]
    fn answers_are_classified_for_retrying() {
        assert_eq!(
            classify(201, r#"{"id":"000000000007-abcdef01"}"#),
            Delivery::Delivered {
                id: "000000000007-abcdef01".into()
            }
        );
        assert!(matches!(
            classify(503, "not durable"),
            Delivery::Transient(_)
        ));
        assert!(matches!(classify(429, ""), Delivery::Transient(_)));
        assert!(matches!(
            classify(403, "not the agent"),
            Delivery::Refused { status: 403, .. }
        ));
        assert!(matches!(
            classify(401, ""),
            Delivery::Refused { status: 401, .. }
        ));
    }

    #[tokio::test]
    async fn a_full_queue_says_so_instead_of_dropping_silently() {
        let (queue, _receiver) = mpsc::channel(1);
        let sink = AuditSink { queue };
        assert_eq!(sink.submit(record()), Submitted::Queued);
        assert_eq!(sink.submit(record()), Submitted::Overflowed);
    }

    #[test]
    fn plural_follows_the_api_servers_rules_for_common_kinds() {
        assert_eq!(plural("Deployment"), "deployments");
        assert_eq!(plural("Ingress"), "ingresses");
        assert_eq!(plural("NetworkPolicy"), "networkpolicies");
        assert_eq!(plural("Gateway"), "gateways");
    }
}
