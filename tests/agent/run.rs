//! `gitwarden-agent run`: drift healed, pushes applied, one leader at a time.

use std::time::{Duration, Instant};

use gitwarden_agent::status::Role;
use gitwarden_tests::testdata;

use crate::common::{AgentSetup, wait_for};

/// The app in git: its settings ConfigMap.
fn app() -> String {
    testdata::read("settings-configmap.yaml").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_by_admin_to_a_managed_object_is_healed_within_seconds() {
    let s = AgentSetup::new("run-drift").await;
    let commit = s.commit(&[("app/settings.yaml", &app())], "first");
    let agent = s.start_agent(&["--interval", "1h", "--leader-elect=false"]);
    assert!(
        agent.synced(&commit).await,
        "first sync did not finish:\n{}",
        agent.log()
    );
    s.kubectl(&[
        "patch",
        "configmap",
        "settings",
        "-p",
        r#"{"data":{"greeting":"hand-made"}}"#,
    ])
    .expect_success();
    let started = Instant::now();
    let healed = wait_for(Duration::from_secs(20), || async {
        let value = s.kubectl(&[
            "get",
            "configmap",
            "settings",
            "-o",
            "jsonpath={.data.greeting}",
        ]);
        (value.stdout == "hello").then_some(())
    })
    .await;
    assert!(
        healed.is_some(),
        "drift was not healed within 20s:\n{}",
        agent.log()
    );
    eprintln!("drift healed {:?} after the change", started.elapsed());
    // The status is written when the healing sync finishes (after its
    // inventory write and Events), a moment after the object is back.
    let counted = wait_for(Duration::from_secs(20), || async {
        let status = agent.status().await?;
        (status.drift_healed >= 1).then_some(())
    })
    .await;
    assert!(
        counted.is_some(),
        "status never counted the heal: {:?}",
        agent.status().await
    );
    let event = wait_for(Duration::from_secs(10), || async {
        let out = s.kubectl(&[
            "get",
            "events",
            "--field-selector",
            "reason=DriftHealed",
            "-o",
            "jsonpath={.items[*].involvedObject.name}",
        ]);
        out.stdout.contains("settings").then_some(())
    })
    .await;
    assert!(
        event.is_some(),
        "no DriftHealed Event on the ConfigMap:\n{}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_commit_is_applied_within_seconds_of_post_hook() {
    let s = AgentSetup::new("run-hook").await;
    let commit = s.commit(&[("app/settings.yaml", &app())], "first");
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "push-secret\n").unwrap();
    let agent = s.start_agent(&[
        "--interval",
        "1h",
        "--leader-elect=false",
        "--hook-token-file",
        token.path().to_str().unwrap(),
    ]);
    assert!(agent.synced(&commit).await, "{}", agent.log());
    let next = s.commit(
        &[("app/settings.yaml", &app().replace("hello", "pushed"))],
        "second",
    );
    let client = reqwest::Client::new();
    let refused = client
        .post(format!("{}/hook", agent.url))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let accepted = client
        .post(format!("{}/hook", agent.url))
        .bearer_auth("push-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    assert!(
        agent.synced(&next).await,
        "the pushed commit was not applied:\n{}",
        agent.log()
    );
    let value = s.kubectl(&[
        "get",
        "configmap",
        "settings",
        "-o",
        "jsonpath={.data.greeting}",
    ]);
    assert_eq!(value.expect_success(), "pushed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_elect_one_leader_and_the_standby_takes_over_when_it_dies() {
    let s = AgentSetup::new("run-leader").await;
    let commit = s.commit(&[("app/settings.yaml", &app())], "first");
    let lease = [
        "--interval",
        "1h",
        "--lease-duration",
        "3s",
        "--lease-renew-deadline",
        "2s",
        "--lease-retry-period",
        "300ms",
    ];
    let mut first = s.start_agent(&lease);
    assert!(first.synced(&commit).await, "{}", first.log());
    let second = s.start_agent(&lease);
    let standby = wait_for(Duration::from_secs(10), || async {
        (second.status().await?.role == Role::Standby).then_some(())
    })
    .await;
    assert!(
        standby.is_some(),
        "the second agent did not stand by:\n{}",
        second.log()
    );
    assert!(
        second.status().await.unwrap().last_attempt.is_none(),
        "a standby must never sync"
    );
    // Outside a pod the standby cannot look the leader's pod up: it answers
    // with its own status and says why, instead of failing.
    let answer = reqwest::get(format!("{}/status", second.url))
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let why = answer
        .headers()
        .get(gitwarden_shared::names::STATUS_LEADER_UNREACHABLE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(why.contains("does not run in a pod"), "{why:?}");
    let own: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(own["role"], "standby", "{own}");
    first.kill();
    let took_over = wait_for(Duration::from_secs(20), || async {
        (second.status().await?.role == Role::Leader).then_some(())
    })
    .await;
    assert!(
        took_over.is_some(),
        "the standby did not take over:\n{}",
        second.log()
    );
    assert!(second.synced(&commit).await, "{}", second.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitwarden_agent_status_reads_a_running_agents_status_as_typed_fields() {
    let s = AgentSetup::new("run-status").await;
    let commit = s.commit(&[("app/settings.yaml", &app())], "first");
    let agent = s.start_agent(&["--interval", "1h", "--leader-elect=false"]);
    assert!(
        agent.synced(&commit).await,
        "first sync did not finish:\n{}",
        agent.log()
    );
    let out =
        std::process::Command::new(gitwarden_tests::binaries::binary("gitwarden-agent").unwrap())
            .args(["status", "--url", &agent.url])
            .output()
            .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("role:          leader"), "{stdout}");
    assert!(
        stdout.contains(&format!("revision:      {commit}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("created"),
        "the applied ConfigMap is listed: {stdout}"
    );
    assert!(!stdout.contains("error:"), "{stdout}");
}
