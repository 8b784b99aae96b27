//! Saying which replicas' records an answer lacks, and recognising a peer's
//! request for one replica's records.

use axum::http::{HeaderMap, HeaderValue};
use gitwarden_shared::names;

/// The longest reason given for one missing replica.
const MAX_REASON_CHARS: usize = 240;

/// A replica whose records an answer lacks, and why.
///
/// Shown as `REPLICA: WHY`; [`missing_header`] joins them with `; ` into
/// [`names::AUDIT_MISSING_HEADER`], so that the caller knows the answer is
/// not the whole log, and which part is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The replica: its pod, else its address, else what could not be
    /// listed.
    pub replica: String,
    /// Why its records are missing, in a few words.
    pub why: String,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.replica, self.why)
    }
}

/// Whether the caller asked this replica for its own records only
/// ([`names::AUDIT_SCOPE_HEADER`]: [`names::AUDIT_SCOPE_REPLICA`]): a peer
/// asking, which must not ask further.
pub fn replica_scope(headers: &HeaderMap) -> bool {
    gitwarden_runtime::access::asks_replica_only(
        headers,
        names::AUDIT_SCOPE_HEADER,
        names::AUDIT_SCOPE_REPLICA,
    )
}

/// [`names::AUDIT_MISSING_HEADER`]'s value for `missing` (`None` when
/// nothing is missing): `REPLICA: WHY` per replica joined by `; `, each
/// reason shortened and made a valid header value (error texts may hold
/// anything).
pub fn missing_header(missing: &[Missing]) -> Option<HeaderValue> {
    if missing.is_empty() {
        return None;
    }
    let text = missing
        .iter()
        .map(|m| {
            format!(
                "{}: {}",
                header_text(&m.replica, 100),
                header_text(&m.why, MAX_REASON_CHARS)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    Some(
        HeaderValue::from_str(&text)
            .unwrap_or_else(|_| HeaderValue::from_static("some replicas did not answer")),
    )
}

/// `text` with everything but printable ASCII replaced (and `;`, which
/// separates replicas), at most `max` characters.
fn header_text(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| match c {
            ';' => ',',
            c if c == ' ' || c.is_ascii_graphic() => c,
            _ => '?',
        })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_replica_scope_header_is_recognised() {
        let mut headers = HeaderMap::new();
        assert!(!replica_scope(&headers));
        headers.insert(
            names::AUDIT_SCOPE_HEADER,
            HeaderValue::from_static("Replica"),
        );
        assert!(replica_scope(&headers));
        headers.insert(names::AUDIT_SCOPE_HEADER, HeaderValue::from_static("all"));
        assert!(!replica_scope(&headers));
    }

    #[test]
    fn missing_replicas_become_one_safe_header() {
        assert_eq!(missing_header(&[]), None);
        let value = missing_header(&[
            Missing {
                replica: "gitwarden-webhook-1".into(),
                why: "unreachable at 10.0.0.11:8443: connection refused\r\nx-injected: yes; ü"
                    .into(),
            },
            Missing {
                replica: "gitwarden-webhook-2".into(),
                why: "x".repeat(1000),
            },
        ])
        .unwrap();
        let text = value.to_str().unwrap();
        let parts: Vec<_> = text.split("; ").collect();
        assert_eq!(parts.len(), 2, "{text}");
        assert_eq!(
            parts[0],
            "gitwarden-webhook-1: unreachable at 10.0.0.11:8443: connection refused??x-injected: yes, ?"
        );
        assert!(parts[1].starts_with("gitwarden-webhook-2: xxx"), "{text}");
        assert!(parts[1].len() <= "gitwarden-webhook-2: ".len() + MAX_REASON_CHARS + 3);
    }
}
