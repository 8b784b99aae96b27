//! One receiver's loop: read the log after its cursor, aggregate, wait for
//! a token, send, retry with backoff until it is delivered, then advance
//! and persist the cursor.
//!
//! Nothing is dropped: a failing receiver is retried forever (each failure
//! is counted and logged), and while it fails the loop stops reading the
//! log once [`MAX_PENDING`] messages wait, so memory stays bounded and the
//! rest stays in the log, behind the cursor.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use super::NotifyMetrics;
use super::aggregate::Pending;
use super::config::Receiver;
use super::cursor::Cursor;
use super::event::Notification;
use super::follow::Follower;
use super::receivers::send;

/// Most messages one receiver holds in memory.
pub const MAX_PENDING: usize = 1000;
/// How often the log is polled when idle.
const POLL: Duration = Duration::from_millis(200);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// A token bucket: `burst` messages at once, then `rate_per_minute`.
/// Excess waits; nothing is dropped.
#[derive(Debug)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_second: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_minute: u32, burst: u32) -> TokenBucket {
        TokenBucket {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_second: f64::from(rate_per_minute) / 60.0,
            last: Instant::now(),
        }
    }

    /// How long until a token is available (zero: now); takes it if so.
    pub fn try_take(&mut self) -> Duration {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.per_second)
        }
    }
}

/// Everything one receiver's loop needs.
pub struct Job {
    /// The receiver.
    pub receiver: Receiver,
    /// The denial window.
    pub window: Duration,
    /// The audit log directory.
    pub audit_dir: PathBuf,
    /// Where the log is durable up to: nothing later is notified.
    pub durable: crate::audit::DurableSeq,
    /// Where cursors live.
    pub cursor_dir: PathBuf,
    /// Events the webhook observed itself.
    pub direct: broadcast::Receiver<Notification>,
    /// Counters.
    pub metrics: Arc<NotifyMetrics>,
    /// The HTTP client.
    pub client: reqwest::Client,
}

/// Runs until aborted (on a configuration change or shutdown).
pub async fn run(mut job: Job) {
    let name = job.receiver.name.clone();
    let labels = super::ReceiverLabels {
        receiver: name.clone(),
    };
    // Counters start at 0 as soon as the receiver exists, so that an alert's
    // increase() sees the first failure and "never delivered" is a series.
    job.metrics.delivered.get_or_create(&labels).inc_by(0);
    job.metrics.failed.get_or_create(&labels).inc_by(0);
    job.metrics.rate_limited.get_or_create(&labels).inc_by(0);
    let cursor = loop {
        match start_cursor(&job).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::error!(receiver = %name, error = %e, "notifications: cannot read or create the cursor; retrying");
                job.metrics.failed.get_or_create(&labels).inc();
                tokio::time::sleep(BACKOFF_MAX / 4).await;
            }
        }
    };
    let (cursor, start) = cursor;
    job.metrics
        .cursor
        .get_or_create(&labels)
        .set(i64::try_from(start).unwrap_or(i64::MAX));
    tracing::info!(receiver = %name, kind = job.receiver.kind.as_str(), cursor = start, "notifications: receiver started");
    let mut follower = Some(Follower::new(&job.audit_dir, start, job.durable.clone()));
    let mut pending = Pending::new(job.window, start);
    let mut direct: std::collections::VecDeque<Notification> = Default::default();
    let mut stored = start;
    let mut bucket = TokenBucket::new(job.receiver.rate_per_minute, job.receiver.burst);
    let mut backoff = BACKOFF_MIN;
    loop {
        // Read what is new, while there is room.
        if pending.len() < MAX_PENDING
            && let Some(mut f) = follower.take()
        {
            let room = MAX_PENDING - pending.len();
            let (f, batch) = tokio::task::spawn_blocking(move || {
                let batch = f.next_batch(room);
                (f, batch)
            })
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            follower = Some(f);
            match batch {
                Ok(records) => {
                    for record in &records {
                        pending.push(record, |k| job.receiver.wants(k));
                    }
                }
                Err(e) => {
                    tracing::warn!(receiver = %name, error = %e, "notifications: reading the audit log")
                }
            }
        }
        loop {
            match job.direct.try_recv() {
                Ok(n) if job.receiver.wants(n.event) => direct.push_back(n),
                Ok(_) => {}
                Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                    tracing::error!(receiver = %name, missed, "notifications: direct events lost (too many at once)");
                }
                Err(_) => break,
            }
        }
        pending.flush_due(jiff::Timestamp::now());
        job.metrics
            .pending
            .get_or_create(&labels)
            .set(i64::try_from(pending.len() + direct.len()).unwrap_or(i64::MAX));

        let next = direct.front().or_else(|| pending.front()).cloned();
        let Some(next) = next else {
            tokio::time::sleep(POLL).await;
            continue;
        };
        let wait = bucket.try_take();
        if !wait.is_zero() {
            job.metrics.rate_limited.get_or_create(&labels).inc();
            tokio::time::sleep(wait).await;
            let _ = bucket.try_take();
        }
        match send(&job.client, &job.receiver, &next).await {
            Ok(()) => {
                backoff = BACKOFF_MIN;
                job.metrics.delivered.get_or_create(&labels).inc();
                tracing::info!(receiver = %name, id = %next.id, event = next.event.as_str(), count = next.count, "notification delivered");
                if direct.front().is_some_and(|d| d.id == next.id) {
                    direct.pop_front();
                } else {
                    pending.pop();
                }
                let safe = pending.safe_cursor();
                if safe > stored {
                    let c = cursor.clone();
                    let stored_ok = tokio::task::spawn_blocking(move || c.store(safe))
                        .await
                        .map_err(|e| std::io::Error::other(e.to_string()))
                        .and_then(|r| r);
                    match stored_ok {
                        Ok(()) => {
                            stored = safe;
                            job.metrics
                                .cursor
                                .get_or_create(&labels)
                                .set(i64::try_from(safe).unwrap_or(i64::MAX));
                        }
                        Err(e) => {
                            tracing::error!(receiver = %name, error = %e, "notifications: persisting the cursor (will re-deliver after a restart)")
                        }
                    }
                }
            }
            Err(e) => {
                job.metrics.failed.get_or_create(&labels).inc();
                tracing::warn!(receiver = %name, id = %next.id, error = gitwarden_runtime::errors::chain(&e), retry_in = ?backoff, "notification not delivered; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// The receiver's cursor and its value; a new receiver starts at the end of
/// the log (it is not sent the history).
async fn start_cursor(job: &Job) -> std::io::Result<(Cursor, u64)> {
    let cursor = Cursor::new(&job.cursor_dir, &job.receiver.name)?;
    let audit_dir = job.audit_dir.clone();
    let durable = job.durable.clone();
    let c = cursor.clone();
    let value = tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
        match c.load() {
            Ok(Some(seq)) => Ok(seq),
            Ok(None) => {
                let last = Follower::last_seq(&audit_dir, &durable)?;
                c.store(last)?;
                Ok(last)
            }
            Err(e) => {
                // Never skip silently: a cursor that cannot be read means
                // starting over (duplicates, not losses).
                tracing::error!(error = %e, "notifications: unreadable cursor; re-delivering from the start of the log");
                Ok(0)
            }
        }
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))??;
    Ok((cursor, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let mut bucket = TokenBucket::new(60, 2);
        assert!(bucket.try_take().is_zero());
        assert!(bucket.try_take().is_zero());
        let wait = bucket.try_take();
        assert!(
            wait > Duration::from_millis(800) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        bucket.last -= Duration::from_secs(1);
        assert!(bucket.try_take().is_zero());
    }
}
