//! Notifications against real HTTP receivers on loopback (small axum
//! servers): the generic webhook's JSON and HMAC signature, Slack, Teams
//! and Alertmanager shapes, retry after the receiver fails, nothing lost
//! across a `kill -9` of the webhook, denials aggregated, rate limiting.
//! The webhook is a real process deciding real AdmissionReviews under its
//! built-in policy; no cluster is needed.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use gitwarden_shared::decision::BreakGlassWindow;
use gitwarden_tests::admission_review::{AdmissionReview, managed_deployment};
use gitwarden_tests::loopback::{LoopbackWebhook, PolicySource};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

const HMAC_KEY: &str = "test-signing-key";

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    at: Instant,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    failing: Arc<AtomicBool>,
    attempts: Arc<Mutex<usize>>,
}

async fn receive(
    State(r): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    *r.attempts.lock().unwrap() += 1;
    if r.failing.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    r.got.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        headers,
        body,
        at: Instant::now(),
    });
    StatusCode::OK
}

impl Receiver {
    async fn start() -> (Receiver, SocketAddr) {
        let r = Receiver::default();
        let app = axum::Router::new().fallback(receive).with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, addr)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` messages arrived.
    async fn wait_for(
        &self,
        n: usize,
        within: Duration,
        webhook: &LoopbackWebhook,
    ) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.got();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} notifications within {within:?}: {got:?}\n{}",
                got.len(),
                webhook.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A webhook whose notifications are configured by `config` (secrets in
/// a directory beside it), ready once every receiver has its cursor.
async fn webhook(dir: &Path, config: &str, receivers: &[&str]) -> LoopbackWebhook {
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::write(dir.join("secrets/hmac"), HMAC_KEY).unwrap();
    // The kit's serving certificate lives a day: warn only within an hour.
    let config = format!("certificateExpiryWarning: 1h\n{config}");
    std::fs::write(dir.join("notifications.yaml"), config).unwrap();
    let webhook = LoopbackWebhook::launch(PolicySource::BuiltIn)
        .args([
            "--reload-interval".into(),
            "300ms".into(),
            "--notifications-config".into(),
            dir.join("notifications.yaml").into_os_string(),
            "--notification-secrets-dir".into(),
            dir.join("secrets").into_os_string(),
        ])
        .start()
        .await
        .unwrap();
    wait_for_cursors(&webhook, receivers).await;
    webhook
}

async fn wait_for_cursors(webhook: &LoopbackWebhook, receivers: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = webhook.metrics().await.unwrap_or_default();
        if receivers.iter().all(|r| {
            metrics.contains(&format!(
                "gitwarden_webhook_notifications_cursor{{receiver=\"{r}\"}}"
            ))
        }) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "receivers not started:\n{metrics}\n{}",
            webhook.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// POSTs a review to /validate; whether it was allowed.
async fn review(webhook: &LoopbackWebhook, review: &AdmissionReview) -> bool {
    let resp: Value = webhook
        .http()
        .post(format!("{}/validate", webhook.url))
        .json(&review.to_json())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    resp["response"]["allowed"].as_bool().unwrap()
}

fn denial(user: &str, name: &str, uid: usize) -> AdmissionReview {
    AdmissionReview::update(managed_deployment("shop", name, 3))
        .uid(format!("deny-{uid}"))
        .by(user, &["system:authenticated"])
}

fn break_glass(uid: usize, reason: &str) -> AdmissionReview {
    let mut object = managed_deployment("shop", "web", 5);
    object["metadata"]["annotations"] = serde_json::json!({ "gitwarden.io/break-glass": reason });
    AdmissionReview::update(object)
        .old(managed_deployment("shop", "web", 3))
        .uid(format!("bg-{uid}"))
        .by("carol", &["system:authenticated", "gitwarden:break-glass"])
}

fn verify_signature(received: &Received) {
    let header = received.headers["x-gitwarden-signature"].to_str().unwrap();
    let hex_mac = header.strip_prefix("sha256=").expect("sha256= prefix");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(HMAC_KEY.as_bytes()).unwrap();
    mac.update(&received.body);
    mac.verify_slice(&hex::decode(hex_mac).unwrap())
        .expect("the signature is HMAC-SHA256 of the body under the shared key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denials_aggregated_and_break_glass_reach_a_signed_generic_webhook() {
    let (receiver, addr) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "denialWindow: 2s\nreceivers:\n- name: generic\n  type: webhook\n  url: http://{addr}/hook\n  hmacSecretFile: hmac\n"
    );
    let webhook = webhook(dir.path(), &config, &["generic"]).await;

    // A retry loop: 20 refused updates of one object by one user.
    for i in 0..20 {
        assert!(!review(&webhook, &denial("alice", "web", i)).await);
    }
    assert!(review(&webhook, &break_glass(1, "INC-42 database down")).await);

    let got = receiver
        .wait_for(2, Duration::from_secs(20), &webhook)
        .await;
    // Nothing more arrives: the 20 denials are one message.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got_after = receiver.got();
    assert_eq!(got_after.len(), 2, "{got_after:?}");
    for r in &got {
        verify_signature(r);
        assert_eq!(r.path, "/hook");
        assert_eq!(r.headers["content-type"], "application/json");
    }
    let bodies: Vec<Value> = got.iter().map(Received::json).collect();
    // The break-glass is not held back by the denial window.
    let bg = &bodies[0];
    assert_eq!(bg["event"], "break-glass", "{bodies:?}");
    assert_eq!(bg["user"], "carol");
    assert_eq!(bg["breakGlassReason"], "INC-42 database down");
    assert_eq!(bg["object"]["resource"], "deployments");
    assert_eq!(bg["object"]["namespace"], "shop");
    assert_eq!(bg["object"]["name"], "web");
    assert_eq!(
        got[0].headers["x-gitwarden-delivery"],
        bg["id"].as_str().unwrap()
    );

    let denied = &bodies[1];
    assert_eq!(denied["event"], "denied");
    assert_eq!(denied["count"], 20, "{denied}");
    assert_eq!(denied["user"], "alice");
    assert_eq!(denied["recordIds"].as_array().unwrap().len(), 20);
    let audit = webhook.audit_records();
    let alice_ids: Vec<&str> = audit
        .iter()
        .filter(|r| r.user == "alice")
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(alice_ids.len(), 20);
    assert_eq!(denied["id"], alice_ids[0], "the id is the first record's");
    let metrics = webhook.metrics().await.unwrap();
    assert!(
        metrics.contains("gitwarden_webhook_notifications_delivered_total{receiver=\"generic\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_teams_and_alertmanager_get_their_own_shapes() {
    let (slack, slack_addr) = Receiver::start().await;
    let (teams, teams_addr) = Receiver::start().await;
    let (am, am_addr) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    // The Slack URL is a secret, read from the Secret's directory.
    std::fs::write(
        dir.path().join("secrets/slack-url"),
        format!("http://{slack_addr}/services/T0/B0/x\n"),
    )
    .unwrap();
    let config = format!(
        "denialWindow: 1s\nreceivers:\n- name: slack\n  type: slack\n  urlFile: slack-url\n- name: teams\n  type: teams\n  url: http://{teams_addr}/webhookb2/x\n- name: am\n  type: alertmanager\n  url: http://{am_addr}\n  events: [break-glass]\n"
    );
    let webhook = webhook(dir.path(), &config, &["slack", "teams", "am"]).await;
    assert!(review(&webhook, &break_glass(1, "INC-7")).await);

    let s = slack.wait_for(1, Duration::from_secs(20), &webhook).await;
    let body = s[0].json();
    assert_eq!(s[0].path, "/services/T0/B0/x");
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("break-glass by carol"),
        "{body}"
    );
    assert_eq!(body["blocks"][0]["type"], "section");
    assert!(s[0].headers.get("x-gitwarden-signature").is_none());

    let t = teams.wait_for(1, Duration::from_secs(20), &webhook).await;
    let body = t[0].json();
    assert_eq!(body["@type"], "MessageCard");
    assert!(body["title"].as_str().unwrap().contains("INC-7"), "{body}");
    let facts = body["sections"][0]["facts"].as_array().unwrap();
    assert!(
        facts
            .iter()
            .any(|f| f["name"] == "User" && f["value"] == "carol"),
        "{body}"
    );

    let a = am.wait_for(1, Duration::from_secs(20), &webhook).await;
    assert_eq!(a[0].path, "/api/v2/alerts");
    let alerts = a[0].json();
    let alert = &alerts[0];
    assert_eq!(alert["labels"]["alertname"], "GitwardenEvent");
    assert_eq!(alert["labels"]["event"], "break-glass");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["namespace"], "shop");
    let id = webhook.audit_records()[0].id.clone();
    assert_eq!(alert["labels"]["gitwarden_id"], id);
    assert!(alert["startsAt"].is_string() && alert["endsAt"].is_string());

    // The Alertmanager receiver subscribed to break-glass only.
    assert!(!review(&webhook, &denial("alice", "web", 1)).await);
    slack.wait_for(2, Duration::from_secs(90), &webhook).await;
    assert_eq!(am.got().len(), 1);
}

/// carol opens a new window (a new reason) over bob's window that is still
/// open on the live Deployment: an extension.
fn extension(uid: usize, old_reason: &str, new_reason: &str) -> AdmissionReview {
    let now = jiff::Timestamp::now();
    let opened = now - jiff::SignedDuration::from_mins(10);
    let closes = now + jiff::SignedDuration::from_mins(50);
    let stamps = serde_json::json!({
        "gitwarden.io/break-glass-by": "bob",
        "gitwarden.io/break-glass-at": opened.to_string(),
        "gitwarden.io/break-glass-until": closes.to_string(),
    });
    let mut old = managed_deployment("shop", "web", 5);
    old["metadata"]["annotations"] = stamps.clone();
    old["metadata"]["annotations"]["gitwarden.io/break-glass"] = old_reason.into();
    let mut object = managed_deployment("shop", "web", 6);
    object["metadata"]["annotations"] = stamps;
    object["metadata"]["annotations"]["gitwarden.io/break-glass"] = new_reason.into();
    AdmissionReview::update(object)
        .old(old)
        .uid(format!("extend-{uid}"))
        .by("carol", &["system:authenticated", "gitwarden:break-glass"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_extended_while_still_open_is_its_own_event() {
    let (receiver, addr) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "receivers:\n- name: oncall\n  type: webhook\n  url: http://{addr}/hook\n  events: [break-glass-extended]\n"
    );
    let webhook = webhook(dir.path(), &config, &["oncall"]).await;
    // A first opening is not what this receiver asked for.
    assert!(review(&webhook, &break_glass(1, "INC-5 queue stuck")).await);
    assert!(
        review(
            &webhook,
            &extension(2, "INC-5 queue stuck", "INC-5 still stuck")
        )
        .await
    );

    let got = receiver
        .wait_for(1, Duration::from_secs(20), &webhook)
        .await;
    let body = got[0].json();
    assert_eq!(body["event"], "break-glass-extended", "{body}");
    assert_eq!(body["user"], "carol");
    assert_eq!(body["breakGlassReason"], "INC-5 still stuck");
    assert!(
        body["summary"].as_str().unwrap().contains("EXTENDED"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.got().len(),
        1,
        "the first opening is not sent here"
    );

    let windows: Vec<_> = webhook
        .audit_records()
        .iter()
        .map(|r| r.break_glass_window)
        .collect();
    assert_eq!(
        windows,
        [
            Some(BreakGlassWindow::Opened),
            Some(BreakGlassWindow::Extended)
        ],
        "the audit log tells the two apart"
    );
    let (intact, report) = webhook.verify().unwrap();
    assert!(intact, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_retried_and_a_burst_over_the_rate_is_delayed_not_dropped() {
    let (receiver, addr) = Receiver::start().await;
    receiver.failing.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "receivers:\n- name: limited\n  type: webhook\n  url: http://{addr}/\n  ratePerMinute: 60\n  burst: 2\n"
    );
    let webhook = webhook(dir.path(), &config, &["limited"]).await;
    for i in 0..6 {
        assert!(review(&webhook, &break_glass(i, &format!("INC-{i}"))).await);
    }
    // Down: attempted, refused, retried.
    let deadline = Instant::now() + Duration::from_secs(10);
    while *receiver.attempts.lock().unwrap() < 2 {
        assert!(Instant::now() < deadline, "{}", webhook.log_tail(20));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = webhook.metrics().await.unwrap();
    assert!(
        metrics.contains("gitwarden_webhook_notifications_failed_total{receiver=\"limited\"}"),
        "{metrics}"
    );
    receiver.failing.store(false, Ordering::SeqCst);
    let got = receiver
        .wait_for(6, Duration::from_secs(60), &webhook)
        .await;
    let reasons: Vec<String> = got
        .iter()
        .map(|r| r.json()["breakGlassReason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        reasons,
        (0..6).map(|i| format!("INC-{i}")).collect::<Vec<_>>(),
        "in order, none dropped"
    );
    // At 60/min after a burst of 2, the six take at least ~3 s: delayed.
    let spread = got[5].at.duration_since(got[0].at);
    assert!(spread >= Duration::from_millis(2500), "{spread:?}");
    let metrics = webhook.metrics().await.unwrap();
    assert!(
        metrics
            .contains("gitwarden_webhook_notifications_rate_limited_total{receiver=\"limited\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_across_a_kill_9_of_the_webhook() {
    let (receiver, addr) = Receiver::start().await;
    receiver.failing.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "denialWindow: 1s\nreceivers:\n- name: durable\n  type: webhook\n  url: http://{addr}/\n  hmacSecretFile: hmac\n"
    );
    let webhook = webhook(dir.path(), &config, &["durable"]).await;
    assert!(review(&webhook, &break_glass(1, "INC-9")).await);
    assert!(!review(&webhook, &denial("dave", "web", 1)).await);
    // Recorded, attempted, not delivered: then SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(10);
    while *receiver.attempts.lock().unwrap() < 1 {
        assert!(Instant::now() < deadline, "{}", webhook.log_tail(20));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    webhook.kill();
    assert!(receiver.got().is_empty());
    receiver.failing.store(false, Ordering::SeqCst);
    webhook.restart().await.unwrap();

    let got = receiver
        .wait_for(2, Duration::from_secs(30), &webhook)
        .await;
    let records = webhook.audit_records();
    let bodies: Vec<Value> = got.iter().map(Received::json).collect();
    for (event, user) in [("break-glass", "carol"), ("denied", "dave")] {
        let record = records.iter().find(|r| r.user == user).unwrap();
        assert!(
            bodies
                .iter()
                .any(|b| b["event"] == event && b["id"] == record.id.as_str()),
            "{event} {} not delivered: {bodies:?}",
            record.id
        );
    }
    for r in &got {
        verify_signature(r);
    }

    // Delivered ones are not sent again after another restart (the cursor
    // moved past them), while new ones are.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = receiver.got().len();
    webhook.kill();
    webhook.restart().await.unwrap();
    assert!(review(&webhook, &break_glass(2, "INC-10")).await);
    let got = receiver
        .wait_for(before + 1, Duration::from_secs(30), &webhook)
        .await;
    assert_eq!(got.len(), before + 1, "{got:?}");
    assert_eq!(got[before].json()["breakGlassReason"], "INC-10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_configuration_is_reported_and_the_previous_one_kept() {
    let (receiver, addr) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!("receivers:\n- name: keep\n  type: webhook\n  url: http://{addr}/\n");
    let webhook = webhook(dir.path(), &config, &["keep"]).await;
    std::fs::write(
        dir.path().join("notifications.yaml"),
        "receivers:\n- name: keep\n  type: pager\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = webhook.metrics().await.unwrap();
        if metrics.contains("gitwarden_webhook_notifications_config_valid 0") {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(webhook.log().contains("invalid configuration ignored"));
    assert!(review(&webhook, &break_glass(1, "INC-11")).await);
    receiver
        .wait_for(1, Duration::from_secs(20), &webhook)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_expiring_soon_is_notified_once() {
    let (receiver, addr) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The kit's certificate expires in 24 h: outside the helper's 1 h
    // warning, inside the 48 h one written next.
    let config = format!(
        "receivers:\n- name: certs\n  type: webhook\n  url: http://{addr}/\n  events: [certificate-expiring]\n"
    );
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    let webhook = webhook(dir.path(), &config, &["certs"]).await;
    std::fs::write(
        dir.path().join("notifications.yaml"),
        format!("certificateExpiryWarning: 48h\n{config}"),
    )
    .unwrap();
    let got = receiver
        .wait_for(1, Duration::from_secs(20), &webhook)
        .await;
    let body = got[0].json();
    assert_eq!(body["event"], "certificate-expiring");
    assert_eq!(body["severity"], "warning");
    assert!(
        body["message"].as_str().unwrap().contains("expires at"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.got().len(), 1, "deduplicated");
}

/// The agent's own events (here drift healed) arrive through
/// `POST /audit/events`, authenticated with the agent's real token, and
/// reach receivers like any record of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_agent_reports_reaches_the_receiver() {
    use gitwarden_shared::audit::{AgentReport, AgentReportReason, AuditDecision};
    let s = crate::common::Setup::new("notify-agent").await;
    let (receiver, addr) = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    std::fs::write(
        dir.path().join("notifications.yaml"),
        format!(
            "certificateExpiryWarning: 1h\nreceivers:\n- name: agent\n  type: webhook\n  url: http://{addr}/\n  events: [drift-healed, sync-failed]\n"
        ),
    )
    .unwrap();
    let admin = s.cluster.kubeconfig(gitwarden_tests::Identity::Admin);
    let webhook = LoopbackWebhook::launch(PolicySource::ConfigMap {
        kubeconfig: &admin,
        name: "gitwarden-system/gitwarden-policy",
    })
    .args([
        "--reload-interval".into(),
        "300ms".into(),
        "--notifications-config".into(),
        dir.path().join("notifications.yaml").into_os_string(),
    ])
    .start()
    .await
    .unwrap();
    wait_for_cursors(&webhook, &["agent"]).await;

    let kubeconfig: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(s.gitwarden.agent_kubeconfig()).unwrap())
            .unwrap();
    let token = kubeconfig["users"][0]["user"]["token"].as_str().unwrap();
    let report = AgentReport {
        reason: AgentReportReason::DriftHealed,
        message: "changed outside git; re-applied from git revision abc123".into(),
        operation: "UPDATE".into(),
        group: "apps".into(),
        version: "v1".into(),
        resource: "deployments".into(),
        namespace: Some(s.ns().to_owned()),
        name: "web".into(),
    };
    let resp = webhook
        .http()
        .post(format!("{}/audit/events", webhook.url))
        .bearer_auth(token)
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());

    let got = receiver
        .wait_for(1, Duration::from_secs(20), &webhook)
        .await;
    let body = got[0].json();
    assert_eq!(body["event"], "drift-healed", "{body}");
    assert_eq!(body["reason"], "drift_healed");
    assert_eq!(body["object"]["name"], "web");
    assert_eq!(body["severity"], "info");
    let record = webhook.audit_records().pop().unwrap();
    assert_eq!(record.decision, AuditDecision::Reported);
    assert_eq!(body["id"], record.id.as_str());
    assert!(webhook.verify().unwrap().0, "the chain still verifies");
}
