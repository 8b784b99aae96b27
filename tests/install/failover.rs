//! gitwarden's pods go away and the promise holds: the standby agent takes
//! the lead within a lease duration (15s) and syncs; with every webhook
//! killed, writes fail closed instead of slipping through; a rolling restart
//! of the webhook, committed to git, fails no request the API server sends.

use std::time::{Duration, Instant};

use gitwarden_tests::Identity;
use gitwarden_tests::install::{
    GITWARDEN_IN_GIT, SYSTEM_NAMESPACE, jsonpath, render_overlay, wait_ready_replicas,
};
use gitwarden_tests::node::NodeCluster;
use gitwarden_tests::wait::wait_blocking;

use crate::installed::{disrupting, installed, leader_pod};

/// The agent's lease duration and retry period (deploy/base keeps the
/// defaults). A lease that was not released can be taken once it has not
/// been renewed for a lease duration; candidates look every retry period.
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RETRY_PERIOD: Duration = Duration::from_secs(2);

#[test]
fn another_agent_takes_the_lead_within_a_lease_duration_when_the_leader_dies() {
    let installed = installed();
    let _disrupting = disrupting();
    let node = installed.node;
    let leader = leader_pod(node);
    // Nobody deletes gitwarden's pods by hand, cluster-admin included.
    let refused = node.kubectl(
        Identity::Admin,
        &[
            "delete",
            "pod",
            "-n",
            SYSTEM_NAMESPACE,
            &leader,
            "--wait=false",
        ],
    );
    assert!(refused.expect_failure().contains("denied"), "{refused:?}");
    // So the leader is lost as it is in practice: its process dies (SIGKILL,
    // no chance to release the lease) and the kubelet restarts it.
    let started = Instant::now();
    node.kill_container(SYSTEM_NAMESPACE, &leader).unwrap();
    let holder = jsonpath(
        node,
        &["lease", "gitwarden-agent", "-n", SYSTEM_NAMESPACE],
        "{.spec.holderIdentity}",
    );
    // A new holder: the standby, or the restarted process (a new identity).
    let successor = wait_blocking((LEASE_DURATION + RETRY_PERIOD) * 2, || {
        let now = jsonpath(
            node,
            &["lease", "gitwarden-agent", "-n", SYSTEM_NAMESPACE],
            "{.spec.holderIdentity}",
        );
        (!now.is_empty() && now != holder).then_some(now)
    })
    .expect("nobody took the lead");
    let took = started.elapsed();
    eprintln!(
        "failover: {successor} leads {:.1}s after {leader}'s agent was killed",
        took.as_secs_f64()
    );
    assert!(
        took <= LEASE_DURATION + RETRY_PERIOD,
        "another agent took the lead {took:?} after the leader died: more than a lease duration and a retry period"
    );
    // The new leader syncs: a commit pushed now is applied.
    let commit = installed
        .target
        .change(
            &[(
                "apps/failover/marker.yaml",
                Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: failover-marker\n  namespace: shop\ndata:\n  applied-by: successor\n"),
            )],
            "After the failover",
        )
        .unwrap();
    let applied = wait_blocking(Duration::from_secs(60), || {
        (jsonpath(
            node,
            &["configmap", "failover-marker", "-n", "shop"],
            "{.data.applied-by}",
        ) == "successor")
            .then_some(())
    });
    assert!(
        applied.is_some(),
        "commit {commit} was not applied after the failover"
    );
    eprintln!(
        "failover: commit applied {:.1}s after the leader was killed",
        started.elapsed().as_secs_f64()
    );
}

/// What a write refused by gitwarden looks like, and one refused because no
/// webhook answered (fail closed).
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    ByGitwarden,
    FailedClosed,
}

/// Alice tries to change the shop's settings: gitwarden refuses it when it
/// answers; the API server refuses it when it cannot reach gitwarden. Any
/// success fails the test.
fn alices_write(node: &NodeCluster, n: usize) -> Refusal {
    let out = node.kubectl(
        Identity::Alice,
        &[
            "-n",
            "shop",
            "create",
            "configmap",
            &format!("by-alice-{n}"),
            "--from-literal=x=y",
        ],
    );
    assert!(!out.success, "alice's write {n} went through: {out:?}");
    if out.stderr.contains("gitwarden:") && out.stderr.contains("denied") {
        Refusal::ByGitwarden
    } else if out.stderr.contains("failed calling webhook")
        || out.stderr.contains("no endpoints available")
    {
        Refusal::FailedClosed
    } else {
        panic!(
            "alice's write {n} failed for another reason: {}",
            out.stderr
        )
    }
}

fn wait_webhook_ready(node: &NodeCluster) {
    let ready = wait_ready_replicas(
        node,
        SYSTEM_NAMESPACE,
        "statefulset",
        "gitwarden-webhook",
        2,
        Duration::from_secs(180),
    );
    assert!(ready.is_some(), "the webhook's replicas did not come back");
}

#[test]
fn with_every_webhook_killed_writes_fail_closed_and_recover_when_they_return() {
    let installed = installed();
    let _disrupting = disrupting();
    let node = installed.node;
    assert_eq!(alices_write(node, 0), Refusal::ByGitwarden);
    for pod in ["gitwarden-webhook-0", "gitwarden-webhook-1"] {
        node.kill_container(SYSTEM_NAMESPACE, pod).unwrap();
    }
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut n = 1;
    // Until gitwarden answers again after having been unreachable.
    loop {
        let refusal = alices_write(node, n);
        n += 1;
        let back = refusal == Refusal::ByGitwarden && seen.contains(&Refusal::FailedClosed);
        seen.push(refusal);
        if back || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let closed = seen.iter().filter(|r| **r == Refusal::FailedClosed).count();
    eprintln!(
        "webhook down: {} writes tried, {closed} failed closed, none went through",
        seen.len()
    );
    assert!(closed > 0, "no write met a missing webhook: {seen:?}");
    assert_eq!(
        seen.last(),
        Some(&Refusal::ByGitwarden),
        "gitwarden never answered again"
    );
    wait_webhook_ready(node);
}

#[test]
fn a_rolling_restart_of_the_webhook_fails_no_request() {
    let installed = installed();
    let _disrupting = disrupting();
    let node = installed.node;
    wait_webhook_ready(node);
    let stop = std::sync::atomic::AtomicBool::new(false);
    /// Stops the writer however the restart ends (a failed assertion too).
    struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let (tried, failed_closed) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let (mut tried, mut closed) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tried += 1;
                if alices_write(node, 1000 + tried) == Refusal::FailedClosed {
                    closed += 1;
                }
            }
            (tried, closed)
        });
        let _stop = StopOnDrop(&stop);
        // The restart is a commit: the agent applies the changed pod
        // template and the StatefulSet controller replaces one replica at a
        // time, each gracefully (preStop, drain), the next once the first is
        // Ready again.
        let uids: Vec<String> = ["gitwarden-webhook-0", "gitwarden-webhook-1"]
            .iter()
            .map(|pod| {
                jsonpath(
                    node,
                    &["pod", pod, "-n", SYSTEM_NAMESPACE],
                    "{.metadata.uid}",
                )
            })
            .collect();
        installed
            .target
            .change(
                &[(
                    GITWARDEN_IN_GIT,
                    Some(&render_overlay("install-restarted").unwrap()),
                )],
                "Restart the webhook",
            )
            .unwrap();
        let replaced = wait_blocking(Duration::from_secs(300), || {
            let done = ["gitwarden-webhook-0", "gitwarden-webhook-1"]
                .iter()
                .zip(&uids)
                .all(|(pod, old)| {
                    let now = jsonpath(
                        node,
                        &["pod", pod, "-n", SYSTEM_NAMESPACE],
                        "{.metadata.uid}",
                    );
                    let ready = jsonpath(
                        node,
                        &["pod", pod, "-n", SYSTEM_NAMESPACE],
                        "{.status.conditions[?(@.type==\"Ready\")].status}",
                    );
                    !now.is_empty() && &now != old && ready == "True"
                });
            done.then_some(())
        });
        assert!(
            replaced.is_some(),
            "the webhook's pods were not replaced by the commit"
        );
        drop(_stop);
        writer.join().unwrap()
    });
    eprintln!("rolling restart: {tried} writes during it, {failed_closed} met no webhook");
    assert!(tried > 10, "too few requests to tell: {tried}");
    assert_eq!(
        failed_closed, 0,
        "{failed_closed} of {tried} requests met no webhook during the restart"
    );
}
