//! What a receiver still has to send, in order, and how far its cursor may
//! advance.
//!
//! Denials of one user on one object whose times fall within the denial
//! window become one message (a retry loop is one message, with a count).
//! Everything else — break-glass above all — is one message per record and
//! is never folded into another. The cursor may only pass a record once the
//! message that covers it has been delivered, so it is the first pending
//! record's sequence number minus one. Windows are measured on the records'
//! own times, so after a restart the same records form the same messages
//! (with the same ids).

use std::collections::VecDeque;
use std::time::Duration;

use gitwarden_shared::audit::AuditRecord;
use jiff::Timestamp;

use super::event::{EventKind, Notification};

/// The messages of one receiver that are not delivered yet.
#[derive(Debug)]
pub struct Pending {
    window: Duration,
    /// Denial aggregates still collecting, with their key.
    open: Vec<(String, Notification)>,
    /// Messages ready to send, oldest first.
    ready: VecDeque<Notification>,
    /// The last record read (delivered, pending or not wanted).
    read_up_to: u64,
}

fn key(record: &AuditRecord) -> String {
    format!(
        "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
        record.user,
        record.group,
        record.resource,
        record.namespace.as_deref().unwrap_or(""),
        record.name.as_deref().unwrap_or("")
    )
}

impl Pending {
    /// Nothing pending; the cursor stands at `cursor`.
    pub fn new(window: Duration, cursor: u64) -> Pending {
        Pending {
            window,
            open: Vec::new(),
            ready: VecDeque::new(),
            read_up_to: cursor,
        }
    }

    /// Takes the next record of the log; `wants` says whether the receiver
    /// subscribes to its kind.
    pub fn push(&mut self, record: &AuditRecord, wants: impl Fn(EventKind) -> bool) {
        self.read_up_to = self.read_up_to.max(record.seq);
        let Some(kind) = EventKind::of(record).filter(|k| wants(*k)) else {
            return;
        };
        if kind != EventKind::Denied {
            self.ready
                .push_back(Notification::from_record(kind, record));
            return;
        }
        let key = key(record);
        let window =
            jiff::SignedDuration::try_from(self.window).unwrap_or(jiff::SignedDuration::MAX);
        if let Some((_, open)) = self.open.iter_mut().find(|(k, n)| {
            *k == key
                && n.first_time
                    .checked_add(window)
                    .is_ok_and(|end| record.time < end)
        }) {
            open.absorb(record);
        } else {
            self.open
                .push((key, Notification::from_record(kind, record)));
        }
    }

    /// Moves aggregates whose window has closed by `now` to the ready queue.
    pub fn flush_due(&mut self, now: Timestamp) {
        let window =
            jiff::SignedDuration::try_from(self.window).unwrap_or(jiff::SignedDuration::MAX);
        let mut k = 0;
        while k < self.open.len() {
            let due = self.open[k]
                .1
                .first_time
                .checked_add(window)
                .is_ok_and(|end| end <= now);
            if due {
                let (_, n) = self.open.remove(k);
                self.ready.push_back(n);
            } else {
                k += 1;
            }
        }
    }

    /// The next message to send.
    pub fn front(&self) -> Option<&Notification> {
        self.ready.front()
    }

    /// The next message was delivered.
    pub fn pop(&mut self) -> Option<Notification> {
        self.ready.pop_front()
    }

    /// Messages not yet delivered (open aggregates included).
    pub fn len(&self) -> usize {
        self.open.len() + self.ready.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When the earliest open aggregate closes.
    pub fn next_due(&self) -> Option<Timestamp> {
        let window =
            jiff::SignedDuration::try_from(self.window).unwrap_or(jiff::SignedDuration::MAX);
        self.open
            .iter()
            .filter_map(|(_, n)| n.first_time.checked_add(window).ok())
            .min()
    }

    /// How far the persisted cursor may advance: every record up to it has
    /// been delivered or was not wanted.
    pub fn safe_cursor(&self) -> u64 {
        self.open
            .iter()
            .map(|(_, n)| n.first_seq)
            .chain(self.ready.iter().map(|n| n.first_seq))
            .min()
            .map_or(self.read_up_to, |first| first.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gitwarden_shared::audit::{AuditDecision, AuditEvent, GENESIS_HASH};

    fn record(seq: u64, decision: AuditDecision, user: &str, name: &str, secs: i64) -> AuditRecord {
        AuditEvent::new(decision, "not_from_git")
            .with_time(Timestamp::from_second(1_800_000_000 + secs).expect("time"))
            .with_user(user, None, vec![])
            .with_resource("", "v1", "configmaps", None)
            .with_object(Some("ns".to_owned()), Some(name.to_owned()))
            .into_record(seq)
            .seal(GENESIS_HASH)
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("time")
    }

    #[test]
    fn a_burst_of_denials_is_one_message_with_a_count() {
        let mut p = Pending::new(Duration::from_secs(60), 0);
        for seq in 1..=20 {
            p.push(
                &record(seq, AuditDecision::Denied, "alice", "web", seq as i64),
                |_| true,
            );
        }
        assert_eq!(p.len(), 1);
        assert_eq!(p.safe_cursor(), 0, "nothing may be passed before delivery");
        p.flush_due(at(59));
        assert!(p.front().is_none(), "the window is still open");
        p.flush_due(at(61));
        let n = p.pop().expect("one message");
        assert_eq!(n.count, 20);
        assert_eq!(n.record_ids.len(), 20);
        assert_eq!(n.id, n.record_ids[0]);
        assert!(n.summary.contains("20 changes by alice"), "{}", n.summary);
        assert_eq!(p.safe_cursor(), 20);
    }

    #[test]
    fn break_glass_is_never_aggregated_and_users_objects_are_kept_apart() {
        let mut p = Pending::new(Duration::from_secs(60), 0);
        p.push(&record(1, AuditDecision::Denied, "alice", "web", 0), |_| {
            true
        });
        p.push(
            &record(2, AuditDecision::BreakGlass, "carol", "web", 1),
            |_| true,
        );
        p.push(
            &record(3, AuditDecision::BreakGlass, "carol", "web", 2),
            |_| true,
        );
        p.push(&record(4, AuditDecision::Denied, "bob", "web", 3), |_| true);
        p.push(&record(5, AuditDecision::Denied, "alice", "db", 4), |_| {
            true
        });
        p.push(
            &record(6, AuditDecision::Denied, "alice", "web", 120),
            |_| true,
        );
        assert_eq!(p.len(), 2 + 4);
        // The open denial (seq 1) holds the cursor back even after the
        // break-glass messages are delivered.
        p.pop();
        p.pop();
        assert_eq!(p.safe_cursor(), 0);
        p.flush_due(at(100));
        for _ in 0..3 {
            assert_eq!(p.pop().expect("denial").count, 1);
        }
        assert_eq!(p.safe_cursor(), 5);
    }

    #[test]
    fn unwanted_records_advance_the_cursor() {
        let mut p = Pending::new(Duration::from_secs(60), 3);
        p.push(&record(4, AuditDecision::Denied, "alice", "web", 0), |k| {
            k == EventKind::BreakGlass
        });
        assert!(p.is_empty());
        assert_eq!(p.safe_cursor(), 4);
    }
}
