//! Any agent replica answers `/status` with the cluster's sync state: the
//! Service `gitwarden-agent` sends `kubectl gitwarden status` to either of
//! the two replicas, and a standby asks the leader (with the caller's own
//! credentials) instead of showing its own, empty status.

use std::time::Duration;

use gitwarden_shared::names;
use gitwarden_tests::Identity;
use gitwarden_tests::install::{SYSTEM_NAMESPACE, wait_ready_replicas};
use gitwarden_tests::kubectl::run_plugin;
use gitwarden_tests::wait::wait_blocking;
use serde_json::Value;

use crate::installed::{admin_token, installed, leader_pod, pod_ip, running_pods, steady};

/// GET `url` with `token` and `headers`: the status code, the named
/// response headers and the body as JSON (`Null` when it is none).
fn get(
    url: &str,
    token: &str,
    headers: &[(&str, &str)],
) -> (u16, std::collections::BTreeMap<String, String>, Value) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .timeout(Duration::from_secs(20));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let code = response.status().as_u16();
        let kept = response
            .headers()
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-gitwarden-"))
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    value.to_str().unwrap_or("?").to_owned(),
                )
            })
            .collect();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        (code, kept, body)
    })
}

#[test]
fn every_replica_answers_status_with_the_leaders_status() {
    let installed = installed();
    let _steady = steady();
    let node = installed.node;
    let target = &installed.target;
    assert!(
        wait_ready_replicas(
            node,
            SYSTEM_NAMESPACE,
            "deployment",
            "gitwarden-agent",
            2,
            Duration::from_secs(180),
        )
        .is_some(),
        "the agent's two replicas never were Ready"
    );
    let token = admin_token(node);

    // The standby, asked about itself only, is a standby that knows the
    // leader: so an answer "leader" from it below is the leader's, forwarded.
    let (leader, standby, standby_url) = wait_blocking(Duration::from_secs(120), || {
        let leader = leader_pod(node);
        let pods = running_pods(node, "agent");
        if leader.is_empty() || pods.len() != 2 || !pods.contains(&leader) {
            return None;
        }
        let standby = pods.into_iter().find(|p| *p != leader)?;
        let url = format!(
            "http://{}:8080/status",
            pod_ip(node, SYSTEM_NAMESPACE, &standby)
        );
        let (code, headers, own) = get(
            &url,
            &token,
            &[(names::STATUS_SCOPE_HEADER, names::STATUS_SCOPE_REPLICA)],
        );
        let holder = own["leaderElection"]["holder"]["identity"]
            .as_str()
            .unwrap_or_default();
        (code == 200
            && own["role"] == "standby"
            && holder.starts_with(&format!("{leader}_"))
            && headers.get(names::STATUS_ANSWERED_BY_HEADER) == Some(&standby))
        .then(|| {
            assert!(own["revision"].is_null(), "a standby syncs nothing: {own}");
            assert!(own["lastSuccess"].is_null(), "{own}");
            assert!(
                !headers.contains_key(names::STATUS_FORWARDED_BY_HEADER),
                "asked about itself, the standby forwarded: {headers:?}"
            );
            (leader, standby, url)
        })
    })
    .expect("no Ready standby agent that knows the leader (role standby, holder <leader>_…)");

    // The same standby, asked without the scope: the leader's status, and
    // headers that say so.
    let (code, headers, forwarded) = get(&standby_url, &token, &[]);
    assert_eq!(code, 200, "{headers:?} {forwarded}");
    assert_eq!(forwarded["role"], "leader", "{forwarded}");
    let revision = forwarded["revision"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !revision.is_empty() && target.applied(&revision),
        "the forwarded status names no revision the install applied: {forwarded}"
    );
    assert_eq!(
        headers.get(names::STATUS_ANSWERED_BY_HEADER),
        Some(&leader),
        "{headers:?}"
    );
    assert_eq!(
        headers.get(names::STATUS_FORWARDED_BY_HEADER),
        Some(&standby),
        "{headers:?}"
    );
    assert!(
        !headers.contains_key(names::STATUS_LEADER_UNREACHABLE_HEADER),
        "{headers:?}"
    );

    // Forwarding never widens who may read: without a token the standby
    // refuses, as the leader would.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let anonymous = runtime
        .block_on(reqwest::Client::new().get(&standby_url).send())
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    assert!(
        anonymous
            .headers()
            .get(names::STATUS_ANSWERED_BY_HEADER)
            .is_none()
    );

    // `gitwarden-agent status` against the standby prints the leader's.
    let agent = gitwarden_tests::binaries::binary("gitwarden-agent").unwrap();
    let printed = gitwarden_tests::node::run_host(
        std::process::Command::new(agent)
            .args([
                "status",
                "--url",
                standby_url.trim_end_matches("/status"),
                "--kubeconfig",
            ])
            .arg(node.kubeconfig(Identity::Admin)),
    );
    assert!(printed.success, "{printed:?}");
    assert!(
        printed.stdout.contains("role:          leader"),
        "{printed:?}"
    );
    assert!(
        printed.stderr.contains(&format!(
            "answered by the leader {leader} (through {standby})"
        )),
        "{printed:?}"
    );

    // `kubectl gitwarden status`, through the Service: whichever replica
    // the Service picks, the answer is the leader's.
    let mut through_standby = 0;
    for attempt in 1..=8 {
        let out = run_plugin(&node.kubeconfig(Identity::Admin), &["status", "-o", "json"]);
        assert!(out.success, "attempt {attempt}: {out:?}");
        let status: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("attempt {attempt}: no JSON ({e}): {out:?}"));
        assert_eq!(status["role"], "leader", "attempt {attempt}: {out:?}");
        let answered = status["revision"].as_str().unwrap_or_default();
        assert!(
            !answered.is_empty() && target.applied(answered),
            "attempt {attempt}: revision {answered:?} is not one the install applied: {out:?}"
        );
        assert!(
            !out.stderr.contains("warning:"),
            "attempt {attempt}: {}",
            out.stderr
        );
        if out.stderr.contains(&format!(
            "answered by the leader {leader} (through {standby})"
        )) {
            through_standby += 1;
        }
    }
    eprintln!(
        "{through_standby} of 8 `kubectl gitwarden status` went through the standby {standby}"
    );
}
