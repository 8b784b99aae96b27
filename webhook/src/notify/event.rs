//! What a notification is about: the event kinds, and one [`Notification`]
//! built from audit records (or observed directly by the webhook).

use gitwarden_shared::audit::{AgentReportReason, AuditDecision, AuditRecord};
use gitwarden_shared::decision::BreakGlassWindow;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Every event a receiver can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A break-glass window was opened, or a change made within one.
    BreakGlass,
    /// A break-glass window still open was extended with a new reason.
    BreakGlassExtended,
    /// Changes were refused (aggregated per user and object).
    Denied,
    /// The agent deleted or restored an admission-configuration object.
    AdmissionObjectRemoved,
    /// The agent re-applied a drifted object.
    DriftHealed,
    /// A sync failed.
    SyncFailed,
    /// A sync succeeded after failures.
    SyncRecovered,
    /// A commit signature was refused.
    SignatureVerificationFailed,
    /// No agent led for too long.
    LeaderUnavailable,
    /// A break-glass window expired.
    BreakGlassExpired,
    /// A break-glass change was reverted to git.
    BreakGlassReverted,
    /// The webhook could not write its audit log.
    AuditWriteError,
    /// The webhook's serving certificate expires soon.
    CertificateExpiring,
}

impl EventKind {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::BreakGlass => "break-glass",
            EventKind::BreakGlassExtended => "break-glass-extended",
            EventKind::Denied => "denied",
            EventKind::AdmissionObjectRemoved => "admission-object-removed",
            EventKind::DriftHealed => "drift-healed",
            EventKind::SyncFailed => "sync-failed",
            EventKind::SyncRecovered => "sync-recovered",
            EventKind::SignatureVerificationFailed => "signature-verification-failed",
            EventKind::LeaderUnavailable => "leader-unavailable",
            EventKind::BreakGlassExpired => "break-glass-expired",
            EventKind::BreakGlassReverted => "break-glass-reverted",
            EventKind::AuditWriteError => "audit-write-error",
            EventKind::CertificateExpiring => "certificate-expiring",
        }
    }

    /// `critical`, `warning` or `info`: Alertmanager's severity label and
    /// the colour of chat messages.
    pub fn severity(self) -> &'static str {
        match self {
            EventKind::BreakGlass
            | EventKind::BreakGlassExtended
            | EventKind::AdmissionObjectRemoved
            | EventKind::SignatureVerificationFailed
            | EventKind::AuditWriteError => "critical",
            EventKind::Denied
            | EventKind::SyncFailed
            | EventKind::LeaderUnavailable
            | EventKind::CertificateExpiring => "warning",
            EventKind::DriftHealed
            | EventKind::SyncRecovered
            | EventKind::BreakGlassExpired
            | EventKind::BreakGlassReverted => "info",
        }
    }

    /// The kind of an audit record; `None` for records no receiver is told
    /// about.
    pub fn of(record: &AuditRecord) -> Option<EventKind> {
        match record.decision {
            AuditDecision::Denied => Some(EventKind::Denied),
            AuditDecision::BreakGlass => match record.break_glass_window {
                Some(BreakGlassWindow::Extended) => Some(EventKind::BreakGlassExtended),
                _ => Some(EventKind::BreakGlass),
            },
            AuditDecision::Removed => Some(EventKind::AdmissionObjectRemoved),
            AuditDecision::Reported => {
                match AgentReportReason::from_code(&record.reason)? {
                    AgentReportReason::DriftHealed => Some(EventKind::DriftHealed),
                    AgentReportReason::SyncFailed => Some(EventKind::SyncFailed),
                    AgentReportReason::SyncRecovered => Some(EventKind::SyncRecovered),
                    AgentReportReason::SignatureVerificationFailed => {
                        Some(EventKind::SignatureVerificationFailed)
                    }
                    AgentReportReason::LeaderUnavailable => Some(EventKind::LeaderUnavailable),
                    AgentReportReason::BreakGlassExpired => Some(EventKind::BreakGlassExpired),
                    AgentReportReason::BreakGlassReverted => Some(EventKind::BreakGlassReverted),
                    // Recorded as `removed`, never as `reported`.
                    AgentReportReason::AdmissionObjectNotInGit
                    | AgentReportReason::AdmissionObjectRestored
                    | AgentReportReason::AdmissionObjectRecreated => None,
                }
            }
        }
    }
}

/// The object a notification is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// API group ("" for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource.
    pub resource: String,
    /// Namespace, for namespaced objects.
    pub namespace: Option<String>,
    /// Name, when known.
    pub name: Option<String>,
}

impl ObjectRef {
    /// `deployments team-a/web`.
    pub fn describe(&self) -> String {
        let name = self.name.as_deref().unwrap_or("(unnamed)");
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{name}", self.resource),
            None => format!("{} {name}", self.resource),
        }
    }
}

/// One message to deliver: the generic webhook's JSON body as is; the other
/// receivers reshape it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Always 1 (the schema version).
    pub version: u32,
    /// A stable id: the (first) audit record's id, or for events observed
    /// directly, a kind-and-time key. Re-deliveries carry the same id, so
    /// receivers can drop duplicates.
    pub id: String,
    /// What happened.
    pub event: EventKind,
    /// critical, warning or info.
    pub severity: &'static str,
    /// One line for people.
    pub summary: String,
    /// Who (for record-based events).
    pub user: Option<String>,
    /// On what.
    pub object: Option<ObjectRef>,
    /// The record's reason code.
    pub reason: Option<String>,
    /// The record's message.
    pub message: String,
    /// The break-glass reason.
    pub break_glass_reason: Option<String>,
    /// Until when the break-glass window is open.
    pub break_glass_until: Option<Timestamp>,
    /// How many records this message stands for (aggregated denials).
    pub count: u64,
    /// Time of the first record.
    pub first_time: Timestamp,
    /// Time of the last record.
    pub last_time: Timestamp,
    /// The audit record ids, at most [`MAX_IDS`] (the first ones).
    pub record_ids: Vec<String>,
    /// Sequence number of the last record covered (not sent: the cursor).
    #[serde(skip)]
    pub last_seq: u64,
    /// Sequence number of the first record covered (not sent).
    #[serde(skip)]
    pub first_seq: u64,
}

/// Most record ids one message lists.
pub const MAX_IDS: usize = 20;

impl Notification {
    /// A message for one record.
    pub fn from_record(kind: EventKind, record: &AuditRecord) -> Notification {
        let object = (!record.resource.is_empty()).then(|| ObjectRef {
            group: record.group.clone(),
            version: record.version.clone(),
            resource: record.resource.clone(),
            namespace: record.namespace.clone(),
            name: record.name.clone(),
        });
        let mut n = Notification {
            version: 1,
            id: record.id.clone(),
            event: kind,
            severity: kind.severity(),
            summary: String::new(),
            user: Some(record.user.clone()).filter(|u| !u.is_empty()),
            object,
            reason: Some(record.reason.clone()),
            message: record.message.clone(),
            break_glass_reason: record.break_glass_reason.clone(),
            break_glass_until: record.break_glass_until,
            count: 1,
            first_time: record.time,
            last_time: record.time,
            record_ids: vec![record.id.clone()],
            last_seq: record.seq,
            first_seq: record.seq,
        };
        n.summary = n.summarize();
        n
    }

    /// A message the webhook observed itself (not in the audit log).
    pub fn direct(kind: EventKind, id: String, message: String) -> Notification {
        let now = Timestamp::now();
        let mut n = Notification {
            version: 1,
            id,
            event: kind,
            severity: kind.severity(),
            summary: String::new(),
            user: None,
            object: None,
            reason: None,
            message,
            break_glass_reason: None,
            break_glass_until: None,
            count: 1,
            first_time: now,
            last_time: now,
            record_ids: Vec::new(),
            last_seq: 0,
            first_seq: 0,
        };
        n.summary = n.summarize();
        n
    }

    /// Adds one more record of the same kind, user and object.
    pub fn absorb(&mut self, record: &AuditRecord) {
        self.count += 1;
        self.last_time = record.time;
        self.last_seq = record.seq;
        if self.record_ids.len() < MAX_IDS {
            self.record_ids.push(record.id.clone());
        }
        self.message = record.message.clone();
        self.summary = self.summarize();
    }

    /// The one line people read first.
    pub fn summarize(&self) -> String {
        let object = self
            .object
            .as_ref()
            .map(ObjectRef::describe)
            .unwrap_or_default();
        let user = self.user.as_deref().unwrap_or("?");
        match self.event {
            EventKind::BreakGlass => format!(
                "gitwarden: break-glass by {user} on {object}: {:?}{}",
                self.break_glass_reason.as_deref().unwrap_or(""),
                self.break_glass_until
                    .map(|t| format!(", until {t}"))
                    .unwrap_or_default()
            ),
            EventKind::BreakGlassExtended => format!(
                "gitwarden: break-glass EXTENDED by {user} on {object}: {:?}{}",
                self.break_glass_reason.as_deref().unwrap_or(""),
                self.break_glass_until
                    .map(|t| format!(", now until {t}"))
                    .unwrap_or_default()
            ),
            EventKind::Denied if self.count > 1 => format!(
                "gitwarden: {} changes by {user} to {object} refused",
                self.count
            ),
            EventKind::Denied => format!("gitwarden: a change by {user} to {object} was refused"),
            EventKind::AdmissionObjectRemoved => {
                format!("gitwarden: admission object {object} not in git was undone")
            }
            other if object.is_empty() => {
                format!("gitwarden: {}: {}", other.as_str(), self.message)
            }
            other => format!("gitwarden: {} {object}: {}", other.as_str(), self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitwarden_shared::audit::{AgentReportReason, AuditEvent, GENESIS_HASH};

    fn kind_of(decision: AuditDecision, reason: &str) -> Option<EventKind> {
        EventKind::of(
            &AuditEvent::new(decision, reason)
                .into_record(1)
                .seal(GENESIS_HASH),
        )
    }

    #[test]
    fn every_agent_report_has_an_event_kind() {
        for reason in AgentReportReason::ALL {
            assert!(
                kind_of(reason.decision(), reason.code()).is_some(),
                "{reason:?}"
            );
        }
        assert_eq!(
            kind_of(AuditDecision::Reported, "sync_failed"),
            Some(EventKind::SyncFailed)
        );
        assert_eq!(kind_of(AuditDecision::Reported, "something_new"), None);
        assert_eq!(
            kind_of(AuditDecision::BreakGlass, "break_glass"),
            Some(EventKind::BreakGlass)
        );
    }

    #[test]
    fn a_break_glass_record_that_extended_its_window_is_its_own_event() {
        let mut event = AuditEvent::new(AuditDecision::BreakGlass, "break_glass");
        event.break_glass_window = Some(BreakGlassWindow::Extended);
        let record = event.into_record(1).seal(GENESIS_HASH);
        assert_eq!(EventKind::of(&record), Some(EventKind::BreakGlassExtended));
        let n = Notification::from_record(EventKind::BreakGlassExtended, &record);
        assert_eq!(n.severity, "critical");
        assert!(n.summary.contains("EXTENDED"), "{}", n.summary);
    }

    #[test]
    fn kinds_serialise_as_their_wire_names() {
        for kind in [
            EventKind::BreakGlass,
            EventKind::SignatureVerificationFailed,
            EventKind::CertificateExpiring,
        ] {
            assert_eq!(
                serde_json::to_value(kind).expect("serialises"),
                kind.as_str()
            );
        }
    }
}
