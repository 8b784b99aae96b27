//! A leader that never comes: telling a healthy standby from a stuck one.
//!
//! With two replicas one of them always waits, and that is fine while the
//! other leads and renews its Lease. It is not fine when the Lease is held by
//! something that does not renew it (a holder written by hand with a long
//! duration, a crashed process whose lease claims hours), or when the Lease
//! cannot be read or written at all: then no replica syncs, nothing heals, and
//! a deleted webhook configuration stays deleted. After waiting several lease
//! durations in such a state the agent reports itself **stuck**, once per
//! stuck period, so an operator hears about it before the drift does.

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

/// What one acquisition attempt saw of the Lease; sent by
/// [`crate::leader::LeaderElector`] to its observer after every attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Election {
    /// No attempt finished yet.
    Starting,
    /// This replica holds the Lease.
    Leading,
    /// Another identity holds an unexpired Lease.
    Waiting(Holder),
    /// The Lease could not be read or written (forbidden, API server down).
    Unreachable {
        /// The API error.
        error: String,
    },
}

/// The Lease's holder as a standby sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    /// `holderIdentity`.
    pub identity: String,
    /// `renewTime` (or `acquireTime`), when the Lease records one.
    pub renewed_at: Option<Timestamp>,
    /// `leaseDurationSeconds`: how long the holder claims the Lease without renewing.
    pub lease_seconds: u64,
    /// Whether this replica saw the holder renew within one of its own
    /// lease durations: what a live agent replica does every retry period.
    pub renewing: bool,
}

/// Why a standby is stuck rather than waiting for a healthy leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum StuckReason {
    /// The holder does not renew, yet its Lease has not expired: it claims
    /// a duration far beyond the agent's, so no replica will take over soon.
    HolderNotRenewing,
    /// The holder renews but claims a Lease longer than the stuck threshold:
    /// not an agent replica configured like this one.
    HolderClaimsLongLease {
        /// The duration it claims.
        lease_seconds: u64,
    },
    /// The Lease cannot be read or written.
    LeaseUnreachable {
        /// The last API error.
        error: String,
    },
}

/// Where this replica stands in the election, as `/status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum Standing {
    /// No attempt finished yet.
    #[default]
    Starting,
    /// This replica leads.
    Leading,
    /// Another replica leads and renews: a healthy standby.
    #[serde(rename_all = "camelCase")]
    Waiting {
        /// Who holds the Lease (absent while it cannot be read).
        holder: Option<Holder>,
        /// Since when this replica waits.
        waiting_since: Timestamp,
    },
    /// No leader is coming: see `reason`.
    #[serde(rename_all = "camelCase")]
    Stuck {
        /// Who holds the Lease (absent while it cannot be read).
        holder: Option<Holder>,
        /// Since when this replica waits.
        waiting_since: Timestamp,
        /// Since when the wait counts as stuck.
        stuck_since: Timestamp,
        /// Why.
        reason: StuckReason,
        /// One sentence for people.
        message: String,
    },
}

impl Standing {
    /// Whether this is a stuck wait.
    pub fn is_stuck(&self) -> bool {
        matches!(self, Standing::Stuck { .. })
    }
}

/// The judgement after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// Where the replica stands now.
    pub standing: Standing,
    /// This attempt turned a wait into a stuck one: announce it (once per
    /// stuck period, not on every retry).
    pub newly_stuck: bool,
}

/// Follows the attempts of one replica and judges its wait.
#[derive(Debug, Clone)]
pub struct StandbyTracker {
    threshold: Duration,
    waiting_since: Option<Timestamp>,
    stuck_since: Option<Timestamp>,
}

impl StandbyTracker {
    /// A tracker that calls a wait stuck after `threshold` (3 lease
    /// durations in the agent: a dead leader's lease expires after one).
    pub fn new(threshold: Duration) -> Self {
        StandbyTracker {
            threshold,
            waiting_since: None,
            stuck_since: None,
        }
    }

    /// Judges the wait after the attempt that saw `election` at `now`.
    pub fn observe(&mut self, now: Timestamp, election: &Election) -> Assessment {
        let (holder, unreachable) = match election {
            Election::Starting => return self.reset(Standing::Starting),
            Election::Leading => return self.reset(Standing::Leading),
            Election::Waiting(holder) => (Some(holder.clone()), None),
            Election::Unreachable { error } => (None, Some(error.clone())),
        };
        let waiting_since = *self.waiting_since.get_or_insert(now);
        let waited = Duration::try_from(now.duration_since(waiting_since)).unwrap_or_default();
        let reason = if waited < self.threshold {
            None
        } else if let Some(error) = unreachable {
            Some(StuckReason::LeaseUnreachable { error })
        } else {
            holder.as_ref().and_then(|h| self.suspicious(h))
        };
        let Some(reason) = reason else {
            self.stuck_since = None;
            return Assessment {
                standing: Standing::Waiting {
                    holder,
                    waiting_since,
                },
                newly_stuck: false,
            };
        };
        let newly_stuck = self.stuck_since.is_none();
        let stuck_since = *self.stuck_since.get_or_insert(now);
        let message = message(&holder, &reason, waited);
        Assessment {
            standing: Standing::Stuck {
                holder,
                waiting_since,
                stuck_since,
                reason,
                message,
            },
            newly_stuck,
        }
    }

    /// Why a holder that keeps this replica waiting is no healthy leader.
    fn suspicious(&self, holder: &Holder) -> Option<StuckReason> {
        if !holder.renewing {
            Some(StuckReason::HolderNotRenewing)
        } else if Duration::from_secs(holder.lease_seconds) > self.threshold {
            Some(StuckReason::HolderClaimsLongLease {
                lease_seconds: holder.lease_seconds,
            })
        } else {
            None
        }
    }

    fn reset(&mut self, standing: Standing) -> Assessment {
        self.waiting_since = None;
        self.stuck_since = None;
        Assessment {
            standing,
            newly_stuck: false,
        }
    }
}

fn message(holder: &Option<Holder>, reason: &StuckReason, waited: Duration) -> String {
    let waited = waited.as_secs();
    let who = holder.as_ref().map_or_else(
        || "the leader Lease".to_owned(),
        |h| {
            let until = h
                .renewed_at
                .and_then(|at| at.checked_add(Duration::from_secs(h.lease_seconds)).ok())
                .map_or_else(|| "an unknown time".to_owned(), |t| t.to_string());
            format!("the leader Lease, held by {:?} until {until},", h.identity)
        },
    );
    match reason {
        StuckReason::HolderNotRenewing => format!(
            "no leader for {waited}s: {who} is not being renewed; no replica syncs git until it expires or is released"
        ),
        StuckReason::HolderClaimsLongLease { lease_seconds } => format!(
            "no leader for {waited}s: {who} claims {lease_seconds}s, longer than any agent replica would"
        ),
        StuckReason::LeaseUnreachable { error } => {
            format!("no leader for {waited}s: {who} cannot be read or written: {error}")
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const THRESHOLD: Duration = Duration::from_secs(45);

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn holder(renewing: bool, lease_seconds: u64) -> Election {
        Election::Waiting(Holder {
            identity: "mallory".into(),
            renewed_at: Some(at(0)),
            lease_seconds,
            renewing,
        })
    }

    #[test]
    fn a_short_wait_is_not_stuck() {
        let mut tracker = StandbyTracker::new(THRESHOLD);
        let first = tracker.observe(at(0), &holder(false, 3600));
        assert!(matches!(first.standing, Standing::Waiting { .. }));
        let later = tracker.observe(at(44), &holder(false, 3600));
        assert!(!later.standing.is_stuck());
    }

    #[test]
    fn a_holder_that_does_not_renew_makes_the_wait_stuck_after_the_threshold() {
        let mut tracker = StandbyTracker::new(THRESHOLD);
        tracker.observe(at(0), &holder(false, 3600));
        let stuck = tracker.observe(at(46), &holder(false, 3600));
        assert!(stuck.newly_stuck);
        let Standing::Stuck {
            reason,
            waiting_since,
            message,
            ..
        } = &stuck.standing
        else {
            panic!("{stuck:?}")
        };
        assert_eq!(*reason, StuckReason::HolderNotRenewing);
        assert_eq!(*waiting_since, at(0));
        assert!(message.contains("mallory"), "{message}");
    }

    #[test]
    fn a_stuck_period_is_announced_once() {
        let mut tracker = StandbyTracker::new(THRESHOLD);
        tracker.observe(at(0), &holder(false, 3600));
        assert!(tracker.observe(at(50), &holder(false, 3600)).newly_stuck);
        let again = tracker.observe(at(52), &holder(false, 3600));
        assert!(again.standing.is_stuck());
        assert!(!again.newly_stuck);
    }

    #[test]
    fn a_healthy_leader_keeps_a_standby_waiting_forever_without_alarm() {
        let mut tracker = StandbyTracker::new(THRESHOLD);
        tracker.observe(at(0), &holder(true, 15));
        let much_later = tracker.observe(at(3600), &holder(true, 15));
        assert!(!much_later.standing.is_stuck());
    }

    #[test]
    fn a_renewing_holder_claiming_a_long_lease_is_stuck() {
        let mut tracker = StandbyTracker::new(THRESHOLD);
        tracker.observe(at(0), &holder(true, 86_400));
        let stuck = tracker.observe(at(60), &holder(true, 86_400));
        assert!(matches!(
            stuck.standing,
            Standing::Stuck {
                reason: StuckReason::HolderClaimsLongLease {
                    lease_seconds: 86_400
                },
                ..
            }
        ));
    }

    #[test]
    fn an_unreachable_lease_is_stuck_after_the_threshold() {
        let mut tracker = StandbyTracker::new(THRESHOLD);
        let error = Election::Unreachable {
            error: "forbidden".into(),
        };
        tracker.observe(at(0), &error);
        let stuck = tracker.observe(at(45), &error);
        assert!(stuck.newly_stuck);
        assert!(matches!(
            stuck.standing,
            Standing::Stuck {
                reason: StuckReason::LeaseUnreachable { .. },
                holder: None,
                ..
            }
        ));
    }

    #[test]
    fn leading_ends_the_stuck_period_and_a_new_one_is_announced_again() {
        let mut tracker = StandbyTracker::new(THRESHOLD);
        tracker.observe(at(0), &holder(false, 3600));
        assert!(tracker.observe(at(50), &holder(false, 3600)).newly_stuck);
        assert_eq!(
            tracker.observe(at(60), &Election::Leading).standing,
            Standing::Leading
        );
        tracker.observe(at(100), &holder(false, 3600));
        let second = tracker.observe(at(150), &holder(false, 3600));
        assert!(second.newly_stuck);
    }

    #[test]
    fn the_status_form_names_the_state_holder_and_reason() {
        let mut tracker = StandbyTracker::new(THRESHOLD);
        tracker.observe(at(0), &holder(false, 3600));
        let stuck = tracker.observe(at(50), &holder(false, 3600));
        let json = serde_json::to_value(&stuck.standing).unwrap();
        assert_eq!(json["state"], "stuck");
        assert_eq!(json["holder"]["identity"], "mallory");
        assert_eq!(json["reason"]["type"], "holderNotRenewing");
        assert!(json["waitingSince"].is_string());
    }
}
