//! Leader election on a `coordination.k8s.io/v1` Lease.
//!
//! Two agent replicas must never apply at once (issue 4, item 9): the replica
//! that holds the Lease syncs, the other waits and takes over when the holder
//! dies (after the lease expires) or steps down (at once). kube-rs has no elector,
//! so this one follows client-go's `leaderelection` package:
//!
//! - a Lease is **acquired** only when it is absent, has no holder, is expired,
//!   or is already ours; every write carries the `resourceVersion` it was based
//!   on, so of two replicas racing for an expired lease exactly one wins and the
//!   other gets `409 Conflict` and retries later;
//! - the holder **renews** every `retry_period`; when no renewal succeeded for
//!   `renew_deadline` (which is shorter than `lease_duration`), or when another
//!   identity is found holding the lease, the holder stops leading *before* any
//!   other replica may consider the lease expired;
//! - on graceful shutdown the holder **releases** the lease (clears
//!   `holderIdentity`) so a standby takes over within one retry period instead
//!   of waiting out the lease.
//!
//! Expiry is judged by the lease's own `renewTime + leaseDurationSeconds`
//! against this host's clock, **and** by how recently this replica saw the
//! record change: a holder that keeps renewing is never considered expired, even
//! if the two clocks disagree by more than the lease duration.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::standby::{Election, Holder};

/// Upper bound of the random extra wait added to `retry_period` between
/// acquisition attempts (as a fraction of it), so that standbys started
/// together do not hit the API server in lock-step. `renew_deadline` must
/// exceed the longest jittered wait, as in client-go.
const JITTER_FACTOR: f64 = 0.2;

/// Where the lease lives, who we are, and the timing of the protocol.
///
/// The three durations must satisfy
/// `lease_duration > renew_deadline > retry_period * 1.2`: a holder gives up
/// leadership (at `renew_deadline`) strictly before a standby may take the lease
/// (at `lease_duration`), and it gets at least one retry before giving up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Namespace of the Lease object: the agent's own namespace, so RBAC can
    /// grant it `leases` there and nowhere else.
    pub namespace: String,
    /// Name of the Lease object, shared by all replicas that must exclude each other.
    pub name: String,
    /// This replica's identity as written to `holderIdentity`. Unique per
    /// process (see [`LeaseConfig::default_identity`]), so a restarted pod
    /// never mistakes its predecessor's lease for its own.
    pub identity: String,
    /// How long a standby waits after the last renewal before taking over
    /// a lease whose holder stopped renewing (default 15 s).
    pub lease_duration: Duration,
    /// How long the holder keeps leading without a successful renewal
    /// (default 10 s).
    pub renew_deadline: Duration,
    /// Interval between renewals and between acquisition attempts (default 2 s).
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// A configuration with client-go's default timings (15 s / 10 s / 2 s),
    /// which tolerate API-server hiccups of several seconds without flapping.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// An identity for this process: the pod name (`POD_NAME`, from the
    /// downward API) or the host name, plus a random suffix. The suffix keeps
    /// two processes on one host, or a restarted container, distinct: a new
    /// process must not "renew" a lease that its dead predecessor held.
    pub fn default_identity() -> String {
        let base = std::env::var("POD_NAME")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "gitwarden-agent".to_string());
        format!("{base}_{:08x}", rand::random::<u32>())
    }

    /// Checks the timing invariants and the names, so that a bad configuration
    /// fails at start-up instead of producing two leaders later.
    pub fn validate(&self) -> Result<(), LeaderError> {
        let invalid = |reason: String| Err(LeaderError::InvalidConfig { reason });
        if self.namespace.is_empty() || self.name.is_empty() {
            return invalid("the lease namespace and name must not be empty".into());
        }
        if self.identity.is_empty() {
            return invalid("the identity must not be empty".into());
        }
        if self.retry_period.is_zero() {
            return invalid("retry_period must be positive".into());
        }
        if self.lease_duration < Duration::from_secs(1) {
            return invalid(format!(
                "lease_duration ({:?}) must be at least 1s: the Lease stores whole seconds",
                self.lease_duration
            ));
        }
        if self.lease_duration <= self.renew_deadline {
            return invalid(format!(
                "lease_duration ({:?}) must be greater than renew_deadline ({:?}), \
                 or a standby could take over while the holder still leads",
                self.lease_duration, self.renew_deadline
            ));
        }
        if self.renew_deadline <= self.retry_period.mul_f64(1.0 + JITTER_FACTOR) {
            return invalid(format!(
                "renew_deadline ({:?}) must be greater than 1.2 x retry_period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        Ok(())
    }

    /// `lease_duration` in the whole seconds the Lease records, rounded up so
    /// that standbys never wait less than configured.
    fn lease_duration_seconds(&self) -> i32 {
        let secs =
            self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(secs).unwrap_or(i32::MAX)
    }
}

/// Why leader election could not proceed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The configuration breaks an invariant the protocol relies on.
    #[error("invalid leader election configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// An API request on the Lease failed (other than the expected conflicts).
    #[error("{action} lease {namespace}/{name}")]
    Api {
        /// What we were doing: "reading", "creating", "updating".
        action: &'static str,
        /// Namespace of the Lease.
        namespace: String,
        /// Name of the Lease.
        name: String,
        /// The client's error (boxed: it is large, and errors are rare).
        #[source]
        source: Box<kube::Error>,
    },
}

/// The result of one acquire-or-renew attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the lease, freshly renewed.
    Leading,
    /// Another identity holds an unexpired lease.
    HeldBy(String),
    /// Another writer changed the lease between our read and our write (or
    /// created it first); nothing is known yet, try again later.
    Conflict,
}

/// What this replica last saw of the lease, for the clock-skew-proof
/// expiry rule: when it last saw the record *change*.
#[derive(Debug, Default)]
struct Observed {
    resource_version: Option<String>,
    /// When the current resourceVersion was first seen changing from another
    /// one we had seen before (or first seen, for a lease without timestamps).
    changed_at: Option<Instant>,
}

impl Observed {
    /// Whether the lease record changed (by another writer) within `window`.
    fn changed_within(&self, window: Duration) -> bool {
        self.changed_at.is_some_and(|t| t.elapsed() < window)
    }
}

/// Acquires and renews one Lease for one identity.
///
/// Built once per process; [`LeaderElector::acquire`] turns it into a
/// [`Leadership`] that renews in the background, or use [`LeaderElector::run`]
/// to run leader-only work that is cancelled when leadership ends.
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Mutex<Observed>,
    /// Told after every acquisition attempt what it saw, so the agent can
    /// report a standby whose leader never comes.
    observer: Option<watch::Sender<Election>>,
    /// The holder seen by the last attempt that found the lease held.
    last_holder: Mutex<Option<Holder>>,
}

/// How [`LeaderElector::run`] ended, so `main` can decide whether to exit
/// (client-go's advice after a lost lease: restart rather than resume).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Shutdown was requested before this replica became leader.
    ShutdownWhileStandby,
    /// Shutdown was requested while leading: work was cancelled and the lease released.
    ShutdownWhileLeading,
    /// The leader-only work finished by itself; the lease was released.
    Completed,
    /// Leadership was lost (renewal failed past the deadline, or the lease was
    /// taken); the work was cancelled. The lease was not released: it is not ours.
    Lost,
}

impl LeaderElector {
    /// An elector for `config`, validated up front.
    pub fn new(client: Client, config: LeaseConfig) -> Result<Self, LeaderError> {
        config.validate()?;
        Ok(LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: Mutex::new(Observed::default()),
            observer: None,
            last_holder: Mutex::new(None),
        })
    }

    /// Reports every acquisition attempt's view of the lease to `observer`
    /// ([`Election`]): who holds it, whether they renew, or why it could
    /// not be read. Without an observer the elector reports nothing.
    pub fn with_observer(mut self, observer: watch::Sender<Election>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// This replica's identity, as written to `holderIdentity`.
    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// The configuration this elector runs with.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// One step of the protocol: read the lease and, if it is free, expired or
    /// ours, write it with us as holder and a fresh `renewTime`.
    ///
    /// Exposed so that callers and tests can drive the protocol by hand; the
    /// loops in [`LeaderElector::acquire`] and [`Leadership`] are built on it.
    pub async fn try_acquire_or_renew(&self) -> Result<Attempt, LeaderError> {
        let cfg = &self.config;
        let now = jiff::Timestamp::now();
        let current = self
            .api
            .get_opt(&cfg.name)
            .await
            .map_err(|source| self.api_error("reading", source))?;

        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    namespace: Some(cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(cfg.lease_duration_seconds()),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created, false);
                    tracing::info!(
                        lease = %cfg.name, namespace = %cfg.namespace, identity = %cfg.identity,
                        "acquired leadership (created the lease)"
                    );
                    Ok(Attempt::Leading)
                }
                Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => {
                    Ok(Attempt::Conflict)
                }
                Err(source) => Err(self.api_error("creating", source)),
            };
        };

        let first_sighting = self.observe(&lease, true);
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == cfg.identity;
        if !holder.is_empty() && !ours && self.held(spec, now, first_sighting) {
            let sighting = Holder {
                identity: holder.clone(),
                renewed_at: spec
                    .renew_time
                    .as_ref()
                    .or(spec.acquire_time.as_ref())
                    .map(|t| t.0),
                lease_seconds: spec
                    .lease_duration_seconds
                    .map_or(0, |s| u64::from(s.unsigned_abs())),
                renewing: self.lock_observed().changed_within(cfg.lease_duration),
            };
            *self
                .last_holder
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sighting);
            return Ok(Attempt::HeldBy(holder));
        }

        if !ours {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            spec.holder_identity = Some(cfg.identity.clone());
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(cfg.lease_duration_seconds());

        // `replace` sends the resourceVersion we read: optimistic concurrency.
        match self
            .api
            .replace(&cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.observe(&written, false);
                if !ours {
                    tracing::info!(
                        lease = %cfg.name, namespace = %cfg.namespace, identity = %cfg.identity,
                        previous_holder = %holder, "acquired leadership"
                    );
                }
                Ok(Attempt::Leading)
            }
            Err(kube::Error::Api(s)) if s.is_conflict() => Ok(Attempt::Conflict),
            Err(source) => Err(self.api_error("updating", source)),
        }
    }

    /// Waits until this replica holds the lease, retrying every
    /// `retry_period` plus jitter. API errors are logged and retried: a standby
    /// must survive API-server restarts. Cancel by dropping the future.
    pub async fn acquire(self) -> Leadership {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => {
                    self.tell(Election::Leading);
                    return Leadership::start(self);
                }
                Ok(Attempt::HeldBy(holder)) => {
                    tracing::debug!(lease = %self.config.name, %holder, "lease held by another replica");
                    let sighting = self
                        .last_holder
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone();
                    if let Some(sighting) = sighting {
                        self.tell(Election::Waiting(sighting));
                    }
                }
                Ok(Attempt::Conflict) => {
                    tracing::debug!(lease = %self.config.name, "lost a race for the lease");
                }
                Err(e) => {
                    let error = gitwarden_runtime::errors::chain(&e);
                    tracing::warn!(%error, "leader election: acquisition attempt failed");
                    self.tell(Election::Unreachable { error });
                }
            }
            tokio::time::sleep(jittered(self.config.retry_period)).await;
        }
    }

    /// Reports an attempt's view to the observer, if there is one.
    fn tell(&self, election: Election) {
        if let Some(observer) = &self.observer {
            observer.send_replace(election);
        }
    }

    /// Runs `on_leading` while, and only while, this replica leads.
    ///
    /// Waits for the lease (or for `shutdown`), then runs the work. The work
    /// future is **dropped** (cancelled at its next await point) as soon as
    /// leadership is lost or shutdown is requested; it also receives a
    /// [`watch::Receiver`] that turns `false` at the same moment, for code that
    /// must check before each write. On shutdown or completion the lease is
    /// released so a standby takes over at once.
    pub async fn run<S, F, Fut>(self, shutdown: S, on_leading: F) -> Result<RunOutcome, LeaderError>
    where
        S: Future<Output = ()>,
        F: FnOnce(watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()>,
    {
        tokio::pin!(shutdown);
        let leadership = tokio::select! {
            leadership = self.acquire() => leadership,
            () = &mut shutdown => return Ok(RunOutcome::ShutdownWhileStandby),
        };

        enum Ended {
            Completed,
            Lost,
            Shutdown,
        }
        let ended = {
            let work = on_leading(leadership.subscribe());
            tokio::select! {
                () = work => Ended::Completed,
                () = leadership.lost() => Ended::Lost,
                () = &mut shutdown => Ended::Shutdown,
            }
        };
        match ended {
            Ended::Lost => Ok(RunOutcome::Lost),
            Ended::Completed => {
                leadership.release().await?;
                Ok(RunOutcome::Completed)
            }
            Ended::Shutdown => {
                leadership.release().await?;
                Ok(RunOutcome::ShutdownWhileLeading)
            }
        }
    }

    /// Clears `holderIdentity` if we still hold the lease, so a standby can
    /// take it on its next attempt. Returns whether anything was released.
    async fn release_lease(&self) -> Result<bool, LeaderError> {
        let cfg = &self.config;
        for _ in 0..5 {
            let Some(mut lease) = self
                .api
                .get_opt(&cfg.name)
                .await
                .map_err(|source| self.api_error("reading", source))?
            else {
                return Ok(false);
            };
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
                return Ok(false);
            }
            let now = jiff::Timestamp::now();
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(now));
            match self
                .api
                .replace(&cfg.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => {
                    tracing::info!(lease = %cfg.name, namespace = %cfg.namespace,
                        identity = %cfg.identity, "released leadership");
                    return Ok(true);
                }
                // A late renewal of ours landed in between: read again.
                Err(kube::Error::Api(s)) if s.is_conflict() => continue,
                Err(source) => return Err(self.api_error("updating", source)),
            }
        }
        Ok(false)
    }

    /// Whether another holder's lease is still valid at `now`, by either clock:
    /// the lease's timestamps, or our own observation of it changing.
    fn held(&self, spec: &LeaseSpec, now: jiff::Timestamp, first_sighting: bool) -> bool {
        let seconds = spec
            .lease_duration_seconds
            .filter(|s| *s > 0)
            .map_or(self.config.lease_duration, |s| {
                Duration::from_secs(u64::from(s.unsigned_abs()))
            });
        let stamp = spec.renew_time.as_ref().or(spec.acquire_time.as_ref());
        let by_timestamp = stamp.is_some_and(|t| {
            jiff::SignedDuration::try_from(seconds)
                .ok()
                .and_then(|d| t.0.checked_add(d).ok())
                .is_some_and(|expiry| expiry > now)
        });
        let by_observation = {
            let observed = self.lock_observed();
            let changed_at = observed.changed_at;
            // A holder without timestamps is judged by observation from the first sighting.
            let changed_at = if stamp.is_none() && first_sighting {
                Some(changed_at.unwrap_or_else(Instant::now))
            } else {
                changed_at
            };
            changed_at.is_some_and(|t| t.elapsed() < seconds)
        };
        by_timestamp || by_observation
    }

    /// Records the lease's resourceVersion; returns whether this was the first
    /// sighting. `from_read` marks reads (another writer's change) as opposed
    /// to our own writes, which must not count as "the holder is alive".
    fn observe(&self, lease: &Lease, from_read: bool) -> bool {
        let rv = lease.metadata.resource_version.clone();
        let mut observed = self.lock_observed();
        let first = observed.resource_version.is_none();
        if observed.resource_version != rv {
            let has_stamp = lease
                .spec
                .as_ref()
                .is_some_and(|s| s.renew_time.is_some() || s.acquire_time.is_some());
            observed.changed_at = if from_read && (!first || !has_stamp) {
                Some(Instant::now())
            } else {
                None
            };
            observed.resource_version = rv;
        }
        first
    }

    fn lock_observed(&self) -> std::sync::MutexGuard<'_, Observed> {
        // The state is two plain fields: a poisoned lock still holds usable data.
        self.observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn api_error(&self, action: &'static str, source: kube::Error) -> LeaderError {
        LeaderError::Api {
            action,
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source: Box::new(source),
        }
    }
}

/// Proof of holding the lease, renewed by a background task.
///
/// [`Leadership::subscribe`] gives a channel that turns `false` (once, for
/// good) when renewal fails past `renew_deadline` or another identity is seen
/// holding the lease. Dropping a `Leadership` stops renewing **without**
/// releasing — what a crash looks like to the standby, which then waits for
/// expiry; call [`Leadership::release`] on graceful shutdown instead.
#[derive(Debug)]
pub struct Leadership {
    elector: Arc<LeaderElector>,
    leading: watch::Receiver<bool>,
    renewer: JoinHandle<()>,
}

impl Leadership {
    fn start(elector: LeaderElector) -> Leadership {
        let elector = Arc::new(elector);
        let (tx, rx) = watch::channel(true);
        let renewer = tokio::spawn(renew_loop(Arc::clone(&elector), tx, Instant::now()));
        Leadership {
            elector,
            leading: rx,
            renewer,
        }
    }

    /// Whether this replica still leads. Check it before every write that
    /// must not happen twice (e.g. an apply).
    pub fn is_leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// A channel that is `true` while leading and turns `false` when
    /// leadership ends; hand it to leader-only tasks.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Resolves when leadership is lost (immediately if it already is).
    pub async fn lost(&self) {
        let mut rx = self.leading.clone();
        // An error means the renewer is gone, which also ends leadership.
        let _ = rx.wait_for(|leading| !*leading).await;
    }

    /// This replica's identity.
    pub fn identity(&self) -> &str {
        self.elector.identity()
    }

    /// Stops renewing and releases the lease (clears `holderIdentity`) so a
    /// standby takes over on its next attempt instead of waiting for expiry.
    /// Returns whether the lease was still ours to release.
    pub async fn release(mut self) -> Result<bool, LeaderError> {
        self.renewer.abort();
        // Wait until the renewer has really stopped, so no renewal follows the
        // release (a request already in flight is fenced by resourceVersion).
        let _ = (&mut self.renewer).await;
        self.elector.release_lease().await
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        // A dead process renews nothing: stop the background task with us.
        self.renewer.abort();
    }
}

/// Renews every `retry_period`; gives up leadership when another identity
/// holds the lease or when no renewal succeeded for `renew_deadline`. Every
/// request is bounded by that deadline, so a hung API call cannot extend it.
async fn renew_loop(elector: Arc<LeaderElector>, leading: watch::Sender<bool>, acquired: Instant) {
    let cfg = elector.config.clone();
    let mut last_renewed = acquired;
    let reason = loop {
        let deadline = last_renewed + cfg.renew_deadline;
        let next = (Instant::now() + cfg.retry_period).min(deadline);
        tokio::time::sleep_until(next).await;
        let attempt_started = Instant::now();
        match tokio::time::timeout_at(deadline, elector.try_acquire_or_renew()).await {
            Ok(Ok(Attempt::Leading)) => last_renewed = attempt_started,
            Ok(Ok(Attempt::HeldBy(holder))) => {
                break format!("the lease is now held by {holder}");
            }
            Ok(Ok(Attempt::Conflict)) => {
                tracing::debug!(lease = %cfg.name, "renewal conflicted; retrying");
            }
            Ok(Err(e)) => tracing::warn!(
                error = gitwarden_runtime::errors::chain(&e),
                "leader election: renewal failed"
            ),
            Err(_) => {
                break format!(
                    "no successful renewal within the renew deadline ({:?})",
                    cfg.renew_deadline
                );
            }
        }
        if Instant::now() >= last_renewed + cfg.renew_deadline {
            break format!(
                "no successful renewal within the renew deadline ({:?})",
                cfg.renew_deadline
            );
        }
    };
    tracing::warn!(lease = %cfg.name, namespace = %cfg.namespace, identity = %cfg.identity,
        %reason, "lost leadership");
    let _ = leading.send(false);
}

/// `base` plus a random extra of up to [`JITTER_FACTOR`] of it.
fn jittered(base: Duration) -> Duration {
    let extra: f64 = rand::rng().random_range(0.0..JITTER_FACTOR);
    base + base.mul_f64(extra)
}
