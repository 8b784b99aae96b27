//! A leader that never comes: an agent kept from leading by a Lease holder
//! that is no agent replica says so early and loudly — `/status`
//! (`leaderElection`), a Warning Event `LeaderUnavailable` on the Lease once
//! per stuck period, and the gauge `gitwarden_agent_leader_stuck` — while a
//! standby behind a healthy, renewing leader raises no alarm.

use std::time::{Duration, Instant};

use gitwarden_agent::standby::{Standing, StuckReason};
use gitwarden_agent::status::Role;
use gitwarden_tests::testdata;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::Value;

use crate::common::{AgentSetup, RunningAgent, wait_for};

/// Short timings: the agent calls a wait stuck after 3 lease durations (6 s).
const TIMINGS: [&str; 6] = [
    "--lease-duration",
    "2s",
    "--lease-renew-deadline",
    "1500ms",
    "--lease-retry-period",
    "500ms",
];

fn settings() -> String {
    testdata::rendered("agent/configmap.yaml", &[("NAME", "settings")]).unwrap()
}

fn gauge(metrics: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with("gitwarden_agent_leader_stuck "))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

async fn leader_election(agent: &RunningAgent) -> Option<Standing> {
    Some(agent.status().await?.leader_election)
}

/// The LeaderUnavailable Events on the Lease `gitwarden-agent` in the test namespace.
fn stuck_events(s: &AgentSetup) -> Vec<Value> {
    let out = s.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "reason=LeaderUnavailable,involvedObject.name=gitwarden-agent",
        "-o",
        "json",
    ]);
    let list: Value = serde_json::from_str(out.expect_success()).unwrap();
    list["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_kept_from_leading_by_a_foreign_lease_holder_reports_it_stuck() {
    let s = AgentSetup::new("leader-stuck").await;
    // A holder that is no agent replica, claiming the Lease for an hour,
    // written with the agent's own identity (the only one allowed to write
    // gitwarden's Lease once the webhook enforces).
    let as_agent = s
        .cluster
        .client_for_kubeconfig(s.agent_kubeconfig())
        .await
        .unwrap();
    let leases: Api<Lease> = Api::namespaced(as_agent, s.ns());
    let now = jiff::Timestamp::now();
    leases
        .create(
            &PostParams::default(),
            &Lease {
                metadata: ObjectMeta {
                    name: Some("gitwarden-agent".into()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some("mallory".into()),
                    lease_duration_seconds: Some(3600),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    ..Default::default()
                }),
            },
        )
        .await
        .unwrap();
    let commit = s.commit(&[("settings.yaml", &settings())], "settings");
    let agent = s.start_agent(&TIMINGS);
    let answering = wait_for(Duration::from_secs(30), || agent.status()).await;
    assert!(
        answering.is_some(),
        "the agent never answered:\n{}",
        agent.log()
    );
    let started = Instant::now();

    let stuck = wait_for(Duration::from_secs(30), || async {
        let election = leader_election(&agent).await?;
        election.is_stuck().then_some(election)
    })
    .await;
    let Some(stuck) = stuck else {
        panic!(
            "the agent never reported itself stuck: {:?}\n{}",
            agent.status().await,
            agent.log()
        )
    };
    let Standing::Stuck {
        holder,
        waiting_since,
        stuck_since,
        reason,
        message,
    } = &stuck
    else {
        unreachable!("waited for a stuck standing: {stuck:#?}")
    };
    let waited = stuck_since.duration_since(*waiting_since);
    eprintln!(
        "reported stuck {:?} after the agent answered; waited {waited:#} before calling it stuck (threshold 6s)",
        started.elapsed()
    );
    assert!(
        waited >= jiff::SignedDuration::from_secs(6),
        "stuck too early: {waited:#}"
    );
    assert_eq!(
        holder.as_ref().map(|h| h.identity.as_str()),
        Some("mallory"),
        "{stuck:#?}"
    );
    assert_eq!(
        holder.as_ref().map(|h| h.lease_seconds),
        Some(3600),
        "{stuck:#?}"
    );
    assert_eq!(
        holder.as_ref().map(|h| h.renewing),
        Some(false),
        "{stuck:#?}"
    );
    assert_eq!(*reason, StuckReason::HolderNotRenewing, "{stuck:#?}");
    // `waitingSince` and `stuckSince` are timestamps: `Standing::Stuck`
    // requires both, so the deserialisation above checked them.
    assert!(message.contains("mallory"), "{stuck:#?}");
    let status = agent.status().await.unwrap();
    assert_eq!(status.role, Role::Standby);
    assert!(status.revision.is_none(), "a standby never syncs");
    assert_eq!(gauge(&agent.metrics().await.unwrap()), Some(1.0));

    let event = wait_for(Duration::from_secs(10), || async {
        let events = stuck_events(&s);
        (!events.is_empty()).then_some(events)
    })
    .await;
    let Some(events) = event else {
        panic!("no LeaderUnavailable Event:\n{}", agent.log())
    };
    assert_eq!(events[0]["type"], "Warning");
    assert_eq!(events[0]["involvedObject"]["kind"], "Lease");
    assert!(
        events[0]["message"].as_str().unwrap().contains("mallory"),
        "{:#}",
        events[0]
    );
    // Once per stuck period, not per retry (the agent retries every 500 ms).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = stuck_events(&s);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert!(
        events[0]["series"].is_null() && events[0]["count"].as_u64().unwrap_or(1) <= 1,
        "announced again: {:#}",
        events[0]
    );

    // The squatter goes: the agent leads, syncs, and is no longer stuck.
    let admin = s
        .cluster
        .client(gitwarden_tests::Identity::Admin)
        .await
        .unwrap();
    Api::<Lease>::namespaced(admin, s.ns())
        .delete("gitwarden-agent", &DeleteParams::default())
        .await
        .unwrap();
    let leading = wait_for(Duration::from_secs(30), || async {
        let status = agent.status().await?;
        (status.leader_election == Standing::Leading
            && status.revision.as_deref() == Some(commit.as_str()))
        .then_some(())
    })
    .await;
    assert!(
        leading.is_some(),
        "the agent did not lead and sync: {:?}",
        agent.status().await
    );
    assert_eq!(gauge(&agent.metrics().await.unwrap()), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_behind_a_healthy_leader_is_waiting_not_stuck() {
    let s = AgentSetup::new("leader-healthy").await;
    let commit = s.commit(&[("settings.yaml", &settings())], "settings");
    let leader = s.start_agent(&TIMINGS);
    let led = wait_for(Duration::from_secs(30), || async {
        let status = leader.status().await?;
        (status.revision.as_deref() == Some(commit.as_str())).then_some(())
    })
    .await;
    assert!(
        led.is_some(),
        "the first agent did not lead:\n{}",
        leader.log()
    );
    let standby = s.start_agent(&TIMINGS);
    // Well past the 6 s threshold.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let election = leader_election(&standby).await.unwrap();
    let Standing::Waiting { holder, .. } = &election else {
        panic!("not waiting: {election:#?}")
    };
    assert_eq!(
        holder.as_ref().map(|h| h.renewing),
        Some(true),
        "{election:#?}"
    );
    assert_eq!(gauge(&standby.metrics().await.unwrap()), Some(0.0));
    assert!(stuck_events(&s).is_empty());
}
