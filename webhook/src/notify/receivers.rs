//! The four payload shapes, and one POST.
//!
//! - `webhook`: the [`Notification`] as JSON; with a secret, the header
//!   `X-Gitwarden-Signature: sha256=<hex HMAC-SHA256 of the body>`; always
//!   `X-Gitwarden-Event` and `X-Gitwarden-Delivery` (the id, for dedupe).
//! - `slack`: an incoming-webhook message (`text` + one section block).
//! - `teams`: an Office 365 connector MessageCard.
//! - `alertmanager`: one alert for `POST /api/v2/alerts`, labelled with the
//!   event, severity and id, so Alertmanager's routing, grouping and
//!   silences apply and a re-delivery is the same alert.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::config::{Receiver, ReceiverKind};
use super::event::Notification;

/// How long an Alertmanager alert stays firing (it resolves by itself:
/// these are events, not states).
const ALERT_DURATION: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "X-Gitwarden-Signature";

/// `sha256=<hex>` of `body` under `key`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn facts(n: &Notification) -> Vec<(&'static str, String)> {
    let mut facts = vec![("Event", n.event.as_str().to_owned())];
    if let Some(user) = &n.user {
        facts.push(("User", user.clone()));
    }
    if let Some(object) = &n.object {
        facts.push(("Object", object.describe()));
    }
    if let Some(reason) = &n.break_glass_reason {
        facts.push(("Break-glass reason", reason.clone()));
    }
    if let Some(until) = n.break_glass_until {
        facts.push(("Until", until.to_string()));
    }
    if n.count > 1 {
        facts.push(("Count", n.count.to_string()));
    }
    facts.push(("Audit id", n.id.clone()));
    facts
}

/// The body for `kind`.
pub fn payload(kind: ReceiverKind, n: &Notification) -> Value {
    match kind {
        ReceiverKind::Webhook => serde_json::to_value(n).unwrap_or(Value::Null),
        ReceiverKind::Slack => {
            let details: Vec<String> = facts(n)
                .into_iter()
                .map(|(k, v)| format!("*{k}:* {v}"))
                .collect();
            json!({
                "text": n.summary,
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": format!("*{}*", n.summary)}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": details.join("\n")}},
                ],
            })
        }
        ReceiverKind::Teams => json!({
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": n.summary,
            "themeColor": match n.severity { "critical" => "D13438", "warning" => "FFB900", _ => "0078D7" },
            "title": n.summary,
            "text": n.message,
            "sections": [{
                "facts": facts(n).into_iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
            }],
        }),
        ReceiverKind::Alertmanager => {
            let mut labels = json!({
                "alertname": "GitwardenEvent",
                "event": n.event.as_str(),
                "severity": n.severity,
                "gitwarden_id": n.id,
            });
            if let Some(user) = &n.user {
                labels["user"] = json!(user);
            }
            if let Some(object) = &n.object {
                labels["resource"] = json!(object.resource);
                if let Some(ns) = &object.namespace {
                    labels["namespace"] = json!(ns);
                }
                if let Some(name) = &object.name {
                    labels["name"] = json!(name);
                }
            }
            let ends = n
                .last_time
                .checked_add(ALERT_DURATION)
                .unwrap_or(n.last_time);
            json!([{
                "labels": labels,
                "annotations": {
                    "summary": n.summary,
                    "description": n.message,
                    "count": n.count.to_string(),
                },
                "startsAt": n.first_time.to_string(),
                "endsAt": ends.to_string(),
            }])
        }
    }
}

/// Where to POST for `receiver`.
pub fn endpoint(receiver: &Receiver) -> String {
    match receiver.kind {
        ReceiverKind::Alertmanager if !receiver.url.ends_with("/api/v2/alerts") => {
            format!("{}/api/v2/alerts", receiver.url.trim_end_matches('/'))
        }
        _ => receiver.url.clone(),
    }
}

/// Why a delivery failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No answer (connection, TLS, timeout).
    #[error("sending")]
    Http(#[source] reqwest::Error),
    /// An answer other than 2xx.
    #[error("the receiver answered {status}: {body}")]
    Status {
        /// The status.
        status: u16,
        /// The start of the body.
        body: String,
    },
}

/// The client every receiver uses: rustls, a bounded time per attempt.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

/// One delivery attempt.
pub async fn send(
    client: &reqwest::Client,
    receiver: &Receiver,
    n: &Notification,
) -> Result<(), SendError> {
    let body = serde_json::to_vec(&payload(receiver.kind, n)).unwrap_or_default();
    let mut request = client
        .post(endpoint(receiver))
        .header("content-type", "application/json")
        .header("X-Gitwarden-Event", n.event.as_str())
        .header("X-Gitwarden-Delivery", &n.id);
    if let Some(key) = &receiver.hmac_secret {
        request = request.header(SIGNATURE_HEADER, sign(key, &body));
    }
    let response = request.body(body).send().await.map_err(SendError::Http)?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let mut body = response.text().await.unwrap_or_default();
    body.truncate(200);
    Err(SendError::Status {
        status: status.as_u16(),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::event::EventKind;
    use gitwarden_shared::audit::{AuditDecision, AuditEvent, GENESIS_HASH};

    fn break_glass() -> Notification {
        let record = AuditEvent::new(AuditDecision::BreakGlass, "break_glass")
            .with_user("carol", None, vec![])
            .with_resource("apps", "v1", "deployments", None)
            .with_object(Some("shop".to_owned()), Some("web".to_owned()))
            .with_break_glass("INC-42", None)
            .into_record(7)
            .seal(GENESIS_HASH);
        Notification::from_record(EventKind::BreakGlass, &record)
    }

    #[test]
    fn generic_json_names_the_event_the_id_and_the_object() {
        let n = break_glass();
        let body = payload(ReceiverKind::Webhook, &n);
        assert_eq!(body["event"], "break-glass");
        assert_eq!(body["id"], n.id);
        assert_eq!(body["user"], "carol");
        assert_eq!(body["object"]["namespace"], "shop");
        assert_eq!(body["breakGlassReason"], "INC-42");
        assert_eq!(body["count"], 1);
        assert!(body.get("lastSeq").is_none());
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn chat_and_alertmanager_shapes() {
        let n = break_glass();
        let slack = payload(ReceiverKind::Slack, &n);
        assert!(
            slack["text"]
                .as_str()
                .is_some_and(|t| t.contains("break-glass by carol"))
        );
        assert_eq!(slack["blocks"][0]["type"], "section");
        let teams = payload(ReceiverKind::Teams, &n);
        assert_eq!(teams["@type"], "MessageCard");
        assert_eq!(teams["sections"][0]["facts"][0]["name"], "Event");
        let am = payload(ReceiverKind::Alertmanager, &n);
        assert_eq!(am[0]["labels"]["alertname"], "GitwardenEvent");
        assert_eq!(am[0]["labels"]["severity"], "critical");
        assert_eq!(am[0]["labels"]["gitwarden_id"], n.id);
        assert!(am[0]["endsAt"].is_string());
    }

    #[test]
    fn alertmanager_endpoint_gets_the_api_path() {
        let r = Receiver {
            name: "am".into(),
            kind: ReceiverKind::Alertmanager,
            url: "http://am:9093/".into(),
            hmac_secret: None,
            events: None,
            rate_per_minute: 1,
            burst: 1,
        };
        assert_eq!(endpoint(&r), "http://am:9093/api/v2/alerts");
    }
}
