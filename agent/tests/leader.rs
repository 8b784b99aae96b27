//! Leader election against the real API server (tests/cluster).
//!
//! Short timings (lease 3 s, renew deadline 2 s, retry 500 ms) keep the suite
//! quick while exercising the same code paths as the 15/10/2 s defaults.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gitwarden_agent::leader::{Attempt, LeaderElector, LeaseConfig, RunOutcome};
use gitwarden_tests::{Identity, TestCluster};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;

const LEASE: &str = "gitwarden-agent";
const LEASE_DURATION: Duration = Duration::from_secs(3);

fn config(namespace: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: namespace.to_string(),
        name: LEASE.to_string(),
        identity: identity.to_string(),
        lease_duration: LEASE_DURATION,
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(500),
    }
}

async fn elector(namespace: &str, identity: &str) -> LeaderElector {
    let client = TestCluster::shared().client(Identity::Admin).await.unwrap();
    LeaderElector::new(client, config(namespace, identity)).unwrap()
}

async fn admin() -> Client {
    TestCluster::shared().client(Identity::Admin).await.unwrap()
}

async fn lease(client: &Client, namespace: &str) -> Lease {
    Api::<Lease>::namespaced(client.clone(), namespace)
        .get(LEASE)
        .await
        .unwrap()
}

fn holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref().and_then(|s| s.holder_identity.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_electors_on_an_absent_lease_exactly_one_wins() {
    let ns = TestCluster::shared().namespace("leader").await.unwrap();
    let (a, b) = (
        elector(ns.name(), "replica-a").await,
        elector(ns.name(), "replica-b").await,
    );
    let (ra, rb) = tokio::join!(a.try_acquire_or_renew(), b.try_acquire_or_renew());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let winners = [&ra, &rb]
        .iter()
        .filter(|r| ***r == Attempt::Leading)
        .count();
    assert_eq!(winners, 1, "a: {ra:?}, b: {rb:?}");

    let winner = if ra == Attempt::Leading {
        "replica-a"
    } else {
        "replica-b"
    };
    let l = lease(&admin().await, ns.name()).await;
    assert_eq!(holder(&l).as_deref(), Some(winner));
    // The loser, asking again, is told who holds it.
    let loser = if ra == Attempt::Leading { &b } else { &a };
    assert_eq!(
        loser.try_acquire_or_renew().await.unwrap(),
        Attempt::HeldBy(winner.to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_electors_on_one_lease_exactly_one_leads() {
    let ns = TestCluster::shared().namespace("leader").await.unwrap();
    let leading = Arc::new(AtomicUsize::new(0));
    let max_leading = Arc::new(AtomicUsize::new(0));
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);

    let mut tasks = Vec::new();
    for id in ["replica-a", "replica-b"] {
        let e = elector(ns.name(), id).await;
        let (leading, max_leading) = (leading.clone(), max_leading.clone());
        let mut stop = stop_tx.subscribe();
        tasks.push(tokio::spawn(async move {
            e.run(
                async move {
                    let _ = stop.recv().await;
                },
                |_still_leading| async move {
                    let now = leading.fetch_add(1, Ordering::SeqCst) + 1;
                    max_leading.fetch_max(now, Ordering::SeqCst);
                    // Leader-only work runs until cancelled.
                    struct Leave(Arc<AtomicUsize>);
                    impl Drop for Leave {
                        fn drop(&mut self) {
                            self.0.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                    let _leave = Leave(leading);
                    std::future::pending::<()>().await;
                },
            )
            .await
        }));
    }

    // Across several renewal periods and more than one lease duration, exactly
    // one replica leads at every sample.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut holders = std::collections::BTreeSet::new();
    let client = admin().await;
    for _ in 0..10 {
        assert_eq!(leading.load(Ordering::SeqCst), 1, "exactly one leader");
        holders.insert(holder(&lease(&client, ns.name()).await).unwrap());
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(max_leading.load(Ordering::SeqCst), 1, "never two leaders");
    assert_eq!(
        holders.len(),
        1,
        "the lease never changed hands: {holders:?}"
    );

    let _ = stop_tx.send(());
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap().unwrap());
    }
    outcomes.sort_by_key(|o| format!("{o:?}"));
    // Shutdown releases the lease, so the standby may briefly take over
    // before its own shutdown; either way nobody ended by losing the lease.
    assert!(
        outcomes.iter().all(|o| *o != RunOutcome::Lost),
        "{outcomes:?}"
    );
    assert!(
        outcomes.contains(&RunOutcome::ShutdownWhileLeading),
        "{outcomes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_records_holder_times_duration_and_transitions() {
    let ns = TestCluster::shared().namespace("leader").await.unwrap();
    let before = jiff::Timestamp::now();
    let leadership = elector(ns.name(), "replica-a").await.acquire().await;
    assert!(leadership.is_leading());
    let l = lease(&admin().await, ns.name()).await;
    let spec = l.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-a"));
    assert_eq!(spec.lease_duration_seconds, Some(3));
    assert_eq!(spec.lease_transitions, Some(0));
    let acquired = spec.acquire_time.unwrap().0;
    let renewed = spec.renew_time.unwrap().0;
    assert!(
        acquired
            >= before
                .checked_sub(jiff::SignedDuration::from_secs(1))
                .unwrap()
    );
    assert!(renewed >= acquired);

    // Renewal moves renewTime forward, not acquireTime.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let spec = lease(&admin().await, ns.name()).await.spec.unwrap();
    assert_eq!(spec.acquire_time.unwrap().0, acquired);
    assert!(
        spec.renew_time.unwrap().0 > renewed,
        "renewed in the background"
    );
    assert!(leadership.is_leading());
    assert!(leadership.release().await.unwrap());
    let spec = lease(&admin().await, ns.name()).await.spec.unwrap();
    assert_eq!(spec.holder_identity, None, "release clears the holder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_after_the_leader_dies_without_releasing() {
    let ns = TestCluster::shared().namespace("leader").await.unwrap();
    let (led_tx, led_rx) = tokio::sync::oneshot::channel();
    let a = elector(ns.name(), "replica-a").await;
    let doomed = tokio::spawn(async move {
        let leadership = a.acquire().await;
        let _ = led_tx.send(());
        std::future::pending::<()>().await;
        drop(leadership);
    });
    led_rx.await.unwrap();

    let b = elector(ns.name(), "replica-b").await;
    let standby = tokio::spawn(b.acquire());
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        !standby.is_finished(),
        "the standby must not lead while the leader renews"
    );

    // Simulate death: the leader's task vanishes without releasing.
    doomed.abort();
    let died = Instant::now();
    let _ = doomed.await;
    let leadership = tokio::time::timeout(Duration::from_secs(10), standby)
        .await
        .expect("the standby took over")
        .unwrap();
    let took = died.elapsed();
    assert!(leadership.is_leading());
    // The last renewal was at most one retry period (500 ms) before death, so the
    // lease (3 s) cannot have expired sooner than 2.5 s after it.
    assert!(
        took >= Duration::from_millis(2300),
        "took over after {took:?}: before the lease expired"
    );
    assert!(took <= Duration::from_secs(5), "took over after {took:?}");
    let spec = lease(&admin().await, ns.name()).await.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(spec.lease_transitions, Some(1));
    eprintln!("standby took over {took:?} after the leader died");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_release_hands_over_well_before_expiry() {
    let ns = TestCluster::shared().namespace("leader").await.unwrap();
    let leader = elector(ns.name(), "replica-a").await.acquire().await;
    let standby = tokio::spawn(elector(ns.name(), "replica-b").await.acquire());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!standby.is_finished());

    let released = Instant::now();
    assert!(leader.release().await.unwrap());
    let leadership = tokio::time::timeout(Duration::from_secs(5), standby)
        .await
        .expect("the standby took over")
        .unwrap();
    let took = released.elapsed();
    assert!(leadership.is_leading());
    // One jittered retry period (at most 600 ms) plus a request, not a 3 s lease.
    assert!(
        took < Duration::from_millis(1500),
        "handover took {took:?}, lease is {LEASE_DURATION:?}"
    );
    let spec = lease(&admin().await, ns.name()).await.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(spec.lease_transitions, Some(1));
    eprintln!("graceful handover took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_whose_lease_is_stolen_stops_leading_and_cancels_its_work() {
    let ns = TestCluster::shared().namespace("leader").await.unwrap();
    let a = elector(ns.name(), "replica-a").await;
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let cancelled = Arc::new(AtomicUsize::new(0));
    let flag = cancelled.clone();
    let run = tokio::spawn(a.run(
        std::future::pending::<()>(),
        move |mut leading| async move {
            struct Cancelled(Arc<AtomicUsize>);
            impl Drop for Cancelled {
                fn drop(&mut self) {
                    self.0.fetch_add(1, Ordering::SeqCst);
                }
            }
            let _guard = Cancelled(flag);
            let _ = started_tx.send(());
            // Well-behaved work also watches the flag; here it only waits for it.
            let _ = leading.wait_for(|l| !*l).await;
            std::future::pending::<()>().await;
        },
    ));
    started_rx.await.unwrap();

    // Someone else overwrites the holder with a fresh renewTime.
    let client = admin().await;
    let api = Api::<Lease>::namespaced(client.clone(), ns.name());
    let mut l = lease(&client, ns.name()).await;
    let spec = l.spec.as_mut().unwrap();
    spec.holder_identity = Some("thief".to_string());
    spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
    let mut written = api.replace(LEASE, &PostParams::default(), &l).await;
    while let Err(kube::Error::Api(s)) = &written {
        // The leader renewed in between: steal the newer version.
        assert!(s.is_conflict(), "{s:?}");
        let mut l = lease(&client, ns.name()).await;
        let spec = l.spec.as_mut().unwrap();
        spec.holder_identity = Some("thief".to_string());
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        written = api.replace(LEASE, &PostParams::default(), &l).await;
    }
    written.unwrap();
    let stolen = Instant::now();

    let outcome = tokio::time::timeout(Duration::from_secs(3), run)
        .await
        .expect("the leader noticed within the renew period")
        .unwrap()
        .unwrap();
    let took = stolen.elapsed();
    assert_eq!(outcome, RunOutcome::Lost);
    assert_eq!(
        cancelled.load(Ordering::SeqCst),
        1,
        "the work was cancelled"
    );
    // Noticed at the next renewal (500 ms), not at the renew deadline.
    assert!(took < Duration::from_millis(1500), "noticed after {took:?}");
    // A lost lease is not ours to release: the thief keeps it.
    assert_eq!(
        holder(&lease(&client, ns.name()).await).as_deref(),
        Some("thief")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_standby_returns_without_leading() {
    let ns = TestCluster::shared().namespace("leader").await.unwrap();
    let _leader = elector(ns.name(), "replica-a").await.acquire().await;
    let b = elector(ns.name(), "replica-b").await;
    let outcome = b
        .run(tokio::time::sleep(Duration::from_secs(1)), |_| async {
            panic!("the standby must not run leader work");
        })
        .await
        .unwrap();
    assert_eq!(outcome, RunOutcome::ShutdownWhileStandby);
}

#[test]
fn unsafe_timings_are_rejected() {
    let ok = config("ns", "me");
    assert!(ok.validate().is_ok());
    let mut c = ok.clone();
    c.renew_deadline = c.lease_duration;
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("renew_deadline")
    );
    let mut c = ok.clone();
    c.retry_period = Duration::from_secs(2);
    assert!(
        c.validate()
            .unwrap_err()
            .to_string()
            .contains("retry_period")
    );
    let mut c = ok.clone();
    c.identity.clear();
    assert!(c.validate().is_err());
    let defaults = LeaseConfig::new("ns", "lease", LeaseConfig::default_identity());
    assert!(defaults.validate().is_ok());
    assert_eq!(defaults.lease_duration, Duration::from_secs(15));
    assert_ne!(
        LeaseConfig::default_identity(),
        LeaseConfig::default_identity(),
        "identities are unique per process start"
    );
}
