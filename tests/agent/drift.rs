//! Which watch events are drift: a controller updating an object's status is
//! not, a change to what git declares (or to its labels and annotations) is.

use std::time::Duration;

use gitwarden_agent::status::Status;
use gitwarden_tests::testdata;

use crate::common::{AgentSetup, RunningAgent, wait_for};

async fn status(agent: &RunningAgent) -> Status {
    agent.status().await.unwrap_or_default()
}

/// Waits until the agent has not started a sync for `quiet`, and returns the
/// last attempt's time then.
async fn settled(agent: &RunningAgent, quiet: Duration) -> Option<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = status(agent).await.last_attempt;
    loop {
        tokio::time::sleep(quiet).await;
        let now = status(agent).await.last_attempt;
        if now == last {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent kept syncing (last attempt {now:?}):\n{}",
            agent.log()
        );
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_update_is_not_drift_but_an_annotation_change_is() {
    let s = AgentSetup::new("drift-status").await;
    let web = testdata::read("agent/web-deployment.yaml").unwrap();
    let commit = s.commit(&[("app/web.yaml", &web)], "first");
    let agent = s.start_agent(&["--interval", "1h", "--leader-elect=false"]);
    let first = agent.synced(&commit).await;
    assert!(first, "first sync did not finish:\n{}", agent.log());

    // The watch is live: a spec change is healed.
    s.kubectl(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"replicas":5}}"#,
    ])
    .expect_success();
    let healed = wait_for(Duration::from_secs(20), || async {
        let out = s.kubectl(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}",
        ]);
        (out.stdout == "2").then_some(())
    })
    .await;
    assert!(healed.is_some(), "spec drift not healed:\n{}", agent.log());
    let before = settled(&agent, Duration::from_secs(2)).await;

    // What the deployment controller does all day: status only.
    for n in 1..=3 {
        s.kubectl(&[
            "patch",
            "deployment",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            &format!(
                r#"{{"status":{{"conditions":[{{"type":"Probe","status":"True","reason":"StatusOnly","message":"update {n}"}}]}}}}"#
            ),
        ])
        .expect_success();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        status(&agent).await.last_attempt,
        before,
        "a status-only update started a resync:\n{}",
        agent.log()
    );

    // An annotation is metadata a human may change: that is still looked at.
    s.kubectl(&["annotate", "deployment", "web", "team=checkout"])
        .expect_success();
    let resynced = wait_for(Duration::from_secs(20), || async {
        (status(&agent).await.last_attempt != before).then_some(())
    })
    .await;
    assert!(
        resynced.is_some(),
        "an annotation change did not reach the drift watch:\n{}",
        agent.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healed_drift_is_reported_by_the_agent_to_the_webhooks_audit_log() {
    use gitwarden_shared::audit::AuditDecision;
    use gitwarden_tests::loopback::LoopbackWebhook;

    let s = AgentSetup::new("drift-audit").await;
    let admin = s.cluster.kubeconfig(gitwarden_tests::Identity::Admin);
    gitwarden_tests::webhook::apply(
        &admin,
        &gitwarden_tests::testdata::rendered(
            "agent/admission-chain-policy.yaml",
            &[("NAMESPACE", s.ns()), ("ALLOW", "")],
        )
        .unwrap(),
    )
    .unwrap();
    // Registered nowhere: it only keeps the audit log the agent reports to.
    let webhook = LoopbackWebhook::start(&admin, &format!("{}/gitwarden-policy", s.ns()))
        .await
        .unwrap();
    let web = testdata::read("agent/web-deployment.yaml").unwrap();
    let commit = s.commit(&[("app/web.yaml", &web)], "web");
    let ca = webhook.ca_file();
    let agent = s.start_agent(&[
        "--interval",
        "1h",
        "--leader-elect=false",
        "--audit-url",
        &webhook.url,
        "--audit-ca",
        ca.to_str().unwrap(),
    ]);
    let synced = agent.synced(&commit).await;
    assert!(synced, "{}", agent.log());

    s.kubectl(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"replicas":5}}"#,
    ])
    .expect_success();
    let record = wait_for(Duration::from_secs(30), || async {
        webhook
            .audit_records()
            .into_iter()
            .find(|r| r.reason == "drift_healed" && r.name.as_deref() == Some("web"))
    })
    .await;
    let Some(record) = record else {
        panic!(
            "no drift_healed record:\n{}\n{}",
            agent.log(),
            webhook.log()
        );
    };
    assert_eq!(record.decision, AuditDecision::Reported);
    assert_eq!(record.user, gitwarden_shared::names::AGENT_USER);
    assert_eq!(record.namespace.as_deref(), Some(s.ns()));
    let (intact, report) = webhook.verify().unwrap();
    assert!(intact, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_a_labelled_object_that_is_not_in_this_agents_git_is_not_drift() {
    let s = AgentSetup::new("drift-foreign").await;
    let web = testdata::read("agent/web-deployment.yaml").unwrap();
    let commit = s.commit(&[("app/web.yaml", &web)], "first");
    let agent = s.start_agent(&["--interval", "1h", "--leader-elect=false"]);
    let first = agent.synced(&commit).await;
    assert!(first, "{}", agent.log());
    // Another gitwarden's object (or one labelled by hand) beside ours.
    let foreign = web
        .replace("name: web", "name: foreign")
        .replace("${NAMESPACE}", s.ns());
    let foreign = foreign.replacen(
        "metadata:\n",
        "metadata:\n  labels:\n    app.kubernetes.io/managed-by: gitwarden\n",
        1,
    );
    gitwarden_tests::webhook::apply(
        &s.cluster.kubeconfig(gitwarden_tests::Identity::Admin),
        &foreign,
    )
    .unwrap();
    let before = settled(&agent, Duration::from_secs(2)).await;
    s.kubectl(&[
        "patch",
        "deployment",
        "foreign",
        "-p",
        r#"{"spec":{"replicas":4}}"#,
    ])
    .expect_success();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        status(&agent).await.last_attempt,
        before,
        "a change to an object not in git started a resync:\n{}",
        agent.log()
    );
}
