//! The agent's health as it reports it at GET /status: without a running,
//! succeeding agent nothing heals drift or a deleted webhook configuration.

use std::time::Duration;

use serde_json::Value;

use crate::report::Finding;

/// Judges a /status document (pure): the last success's age against
/// `max_age`, and the last error.
pub fn judge(status: &Value, now: jiff::Timestamp, max_age: Duration) -> Vec<Finding> {
    let mut out = Vec::new();
    let role = status["role"].as_str().unwrap_or("?");
    let revision = status["revision"].as_str().unwrap_or("-");
    let election = &status["leaderElection"];
    if election["state"] == "stuck" {
        out.push(Finding::critical(
            "agent/leader",
            format!(
                "the agent reports that no leader is coming: {}",
                election["message"].as_str().unwrap_or("(no message)")
            ),
        ));
    }
    if role == "standby" {
        out.push(Finding::ok(
            "agent/status",
            "the agent answering is a standby replica (another replica leads)",
        ));
        return out;
    }
    match status["lastSuccess"].as_str() {
        None => out.push(Finding::warning(
            "agent/last-success",
            format!("the agent ({role}) has not completed a sync yet"),
        )),
        Some(text) => match text.parse::<jiff::Timestamp>() {
            Err(e) => out.push(Finding::warning(
                "agent/last-success",
                format!("the agent's lastSuccess {text:?} is not a time: {e}"),
            )),
            Ok(at) => {
                let age = now.duration_since(at).unsigned_abs();
                let age_text = format!("{}s ago", age.as_secs());
                if age > max_age {
                    out.push(Finding::warning(
                        "agent/last-success",
                        format!(
                            "the agent's last successful sync was {age_text} (at {text}, revision {revision}), longer than {}s",
                            max_age.as_secs()
                        ),
                    ));
                } else {
                    out.push(Finding::ok(
                        "agent/last-success",
                        format!("the agent ({role}) last synced revision {revision} {age_text}"),
                    ));
                }
            }
        },
    }
    if let Some(error) = status["error"].as_str() {
        out.push(Finding::warning(
            "agent/error",
            format!("the agent's last sync failed: {error}"),
        ));
    }
    out
}

/// How doctor reaches the agent's /status.
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    /// The agent's base URL.
    pub url: &'a str,
    /// doctor's own bearer token, for an agent that reviews tokens.
    pub token: Option<&'a str>,
    /// Timeout of the request.
    pub timeout: Duration,
}

/// GET `{url}/status` and judge it; an unreachable agent is critical: nothing
/// heals drift or restores a deleted webhook configuration. A refusal is
/// only a warning: the agent answers, doctor may just not read its status.
pub async fn check(probe: &Probe<'_>, max_age: Duration) -> Vec<Finding> {
    let status_url = format!("{}/status", probe.url.trim_end_matches('/'));
    let fetched = async {
        let client = reqwest::Client::builder().timeout(probe.timeout).build()?;
        let mut request = client.get(&status_url);
        if let Some(token) = probe.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let code = response.status().as_u16();
        let unreachable = response
            .headers()
            .get(gitwarden_shared::names::STATUS_LEADER_UNREACHABLE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok::<_, reqwest::Error>((code, response.json::<Value>().await.ok(), unreachable))
    }
    .await;
    match fetched {
        Ok((200..=299, Some(status), unreachable)) => {
            let mut findings = judge(&status, jiff::Timestamp::now(), max_age);
            // Any replica behind the Service answers, a standby with the
            // leader's status; one that could not ask it shows its own.
            if let Some(why) = unreachable {
                findings.push(Finding::warning(
                    "agent/leader-unreachable",
                    format!(
                        "the agent replica at {status_url} is a standby and could not reach the leader to answer with its status: {why}"
                    ),
                ));
            }
            findings
        }
        Ok((code @ (401 | 403), _, _)) => vec![Finding::warning(
            "agent/status-refused",
            format!(
                "the agent at {status_url} answers but refused doctor's credentials ({code}): {}",
                if probe.token.is_some() {
                    "bind doctor's user to the ClusterRole gitwarden-status-reader (get on the non-resource URL /status)"
                } else {
                    "doctor's kubeconfig user has no bearer token to present (a client certificate?); use one with a token"
                }
            ),
        )],
        Ok((code, _, _)) => vec![Finding::critical(
            "agent/status",
            format!("the agent's status at {status_url} answered {code} without a status document"),
        )],
        Err(e) => vec![Finding::critical(
            "agent/status",
            format!(
                "the agent's status at {status_url} is unreachable ({e}): nothing heals drift or a deleted webhook configuration"
            ),
        )],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::report::Severity;

    fn now() -> jiff::Timestamp {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_recent_success_is_ok() {
        let status = serde_json::json!({"role": "leader", "revision": "abc", "lastSuccess": "2026-11-23T09:59:30Z"});
        let out = judge(&status, now(), Duration::from_secs(600));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].severity, Severity::Info);
        assert!(out[0].message.contains("30s ago"), "{}", out[0].message);
    }

    #[test]
    fn an_old_success_and_an_error_are_warnings() {
        let status = serde_json::json!({"role": "leader", "lastSuccess": "2026-11-23T08:00:00Z",
            "error": "fetching: connection refused"});
        let out = judge(&status, now(), Duration::from_secs(600));
        assert!(
            out.iter().all(|f| f.severity == Severity::Warning),
            "{out:#?}"
        );
        assert!(out.iter().any(|f| f.message.contains("connection refused")));
    }

    #[test]
    fn never_synced_is_a_warning() {
        let status = serde_json::json!({"role": "leader", "lastSuccess": null});
        let out = judge(&status, now(), Duration::from_secs(600));
        assert_eq!(out[0].check, "agent/last-success");
        assert_eq!(out[0].severity, Severity::Warning);
    }

    #[test]
    fn a_standby_stuck_without_a_leader_is_critical() {
        let status = serde_json::json!({"role": "standby", "leaderElection": {
            "state": "stuck", "message": "no leader for 60s: held by \"mallory\""}});
        let out = judge(&status, now(), Duration::from_secs(600));
        let stuck: Vec<_> = out.iter().filter(|f| f.check == "agent/leader").collect();
        assert_eq!(stuck.len(), 1, "{out:#?}");
        assert_eq!(stuck[0].severity, Severity::Critical);
        assert!(stuck[0].message.contains("mallory"));
    }

    #[test]
    fn a_standby_is_fine_without_syncing() {
        let status = serde_json::json!({"role": "standby"});
        let out = judge(&status, now(), Duration::from_secs(600));
        assert_eq!(out[0].severity, Severity::Info);
    }
}
