//! Any webhook replica answers `GET /audit` with every replica's records:
//! each replica keeps its own audit log, the API server sends each admission
//! request to any replica, and `kubectl gitwarden audit` reaches whichever
//! replica the Service picks. The replica that answers asks the others (with
//! the caller's credentials) and merges their records.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use gitwarden_shared::names;
use gitwarden_tests::Identity;
use gitwarden_tests::install::{SYSTEM_NAMESPACE, jsonpath, wait_ready_replicas};
use gitwarden_tests::kubectl::run_plugin;
use gitwarden_tests::node::NodeCluster;
use serde_json::Value;

use crate::installed::{admin_token, installed, pod_ip, running_pods, steady};

/// The refused writes per round.
const PROBES: usize = 16;

/// The DNS name the webhook's serving certificate carries.
const SERVICE_DNS_NAME: &str = "gitwarden-webhook.gitwarden-system.svc";

/// The CA bundle the webhook's serving certificate is signed by.
fn webhook_ca(node: &NodeCluster) -> Vec<u8> {
    use base64::Engine as _;
    let encoded = jsonpath(
        node,
        &["secret", names::WEBHOOK_TLS_SECRET, "-n", SYSTEM_NAMESPACE],
        "{.data.ca\\.crt}",
    );
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("the webhook's Secret holds ca.crt")
}

/// One replica's own records (`x-gitwarden-audit-scope: replica`) of
/// namespace shop, asked at its pod IP as admin: the probe names among
/// them, and the missing header (which a replica asked for its own records
/// never sets).
fn replica_records(
    node: &NodeCluster,
    pod: &str,
    token: &str,
    ca: &[u8],
) -> (BTreeSet<String>, Option<String>) {
    let ip = pod_ip(node, SYSTEM_NAMESPACE, pod);
    let address: SocketAddr = format!("{ip}:8443").parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // The certificate is for the Service's name: connect to the pod,
        // verify that name.
        let http = reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca).unwrap())
            .resolve(SERVICE_DNS_NAME, address)
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let url = format!("https://{SERVICE_DNS_NAME}:8443/audit?namespace=shop&limit=100");
        let response = http
            .get(&url)
            .bearer_auth(token)
            .header(names::AUDIT_SCOPE_HEADER, names::AUDIT_SCOPE_REPLICA)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url} at {address} ({pod}): {e}"));
        let status = response.status();
        let missing = response
            .headers()
            .get(names::AUDIT_MISSING_HEADER)
            .map(|v| v.to_str().unwrap_or("?").to_owned());
        let body = response.text().await.unwrap();
        assert!(status.is_success(), "{pod}: {status} {body}");
        let records: Value = serde_json::from_str(&body).unwrap();
        (probe_names(&records), missing)
    })
}

/// The probe names among the records of an `/audit` answer.
fn probe_names(records: &Value) -> BTreeSet<String> {
    records
        .as_array()
        .unwrap_or_else(|| panic!("no list of records: {records}"))
        .iter()
        .filter_map(|r| r["name"].as_str())
        .filter(|name| name.starts_with("audit-replica-probe-"))
        .map(str::to_owned)
        .collect()
}

/// Alice (cluster-admin, not git) creates `names` in namespace shop at
/// once, so the API server opens several connections to the webhook and
/// they land on different replicas; every one is refused.
fn refused_writes(node: &NodeCluster, names: &[String]) {
    std::thread::scope(|scope| {
        let writes: Vec<_> = names
            .iter()
            .map(|name| {
                scope.spawn(move || {
                    (
                        name,
                        node.kubectl(
                            Identity::Alice,
                            &["-n", "shop", "create", "configmap", name],
                        ),
                    )
                })
            })
            .collect();
        for write in writes {
            let (name, out) = write.join().unwrap();
            assert!(!out.success, "alice created configmap shop/{name}: {out:?}");
            assert!(
                out.stderr.contains("denied"),
                "configmap shop/{name}: {}",
                out.stderr
            );
        }
    });
}

#[test]
fn any_replica_answers_audit_with_every_replicas_records() {
    let installed = installed();
    let _steady = steady();
    let node = installed.node;
    assert!(
        wait_ready_replicas(
            node,
            SYSTEM_NAMESPACE,
            "statefulset",
            "gitwarden-webhook",
            2,
            Duration::from_secs(180),
        )
        .is_some(),
        "the webhook's two replicas never were Ready"
    );
    let pods = running_pods(node, "webhook");
    assert_eq!(pods.len(), 2, "{pods:?}");
    let token = admin_token(node);
    let ca = webhook_ca(node);

    // Refused writes until both replicas hold some (the API server keeps
    // connections open, so one round may land on one replica only).
    let run = std::process::id();
    let mut probes: Vec<String> = Vec::new();
    let mut held = Vec::new();
    for round in 0..4 {
        let names: Vec<String> = (0..PROBES)
            .map(|i| format!("audit-replica-probe-{run}-{round}-{i}"))
            .collect();
        refused_writes(node, &names);
        probes.extend(names);
        held = pods
            .iter()
            .map(|pod| {
                let (names, missing) = replica_records(node, pod, &token, &ca);
                assert_eq!(missing, None, "{pod} asked for its own records only");
                (pod.clone(), names)
            })
            .collect::<Vec<_>>();
        if held.iter().all(|(_, names)| !names.is_empty()) {
            break;
        }
        eprintln!(
            "round {round}: one replica holds every probe so far: {:?}",
            held.iter()
                .map(|(pod, names)| (pod, names.len()))
                .collect::<Vec<_>>()
        );
    }
    let all: BTreeSet<String> = probes.iter().cloned().collect();
    eprintln!(
        "{} refused writes: {}",
        all.len(),
        held.iter()
            .map(|(pod, names)| format!("{} on {pod}", names.len()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // Each replica asked for its own records answers with its own log only:
    // together they hold every refusal, each some, none the other's.
    for (pod, names) in &held {
        assert!(
            !names.is_empty(),
            "{pod} holds none of the {} refusals: the API server never sent it one",
            all.len()
        );
    }
    let (first, second) = (&held[0].1, &held[1].1);
    assert!(
        first.is_disjoint(second),
        "both replicas answered with the same records: {:?}",
        first.intersection(second).collect::<Vec<_>>()
    );
    let union: BTreeSet<String> = first.union(second).cloned().collect();
    assert_eq!(
        union, all,
        "the replicas' own logs do not hold every refusal"
    );

    // `kubectl gitwarden audit`, through the Service: whichever replica
    // answers, it answers with every refusal, and warns of nothing missing.
    for attempt in 1..=3 {
        let out = run_plugin(
            &node.kubeconfig(Identity::Admin),
            &["audit", "-n", "shop", "-o", "json", "--limit", "100"],
        );
        assert!(out.success, "attempt {attempt}: {out:?}");
        assert!(
            !out.stderr.contains("warning:"),
            "attempt {attempt}: {}",
            out.stderr
        );
        let records: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("attempt {attempt}: no JSON ({e}): {out:?}"));
        let shown = probe_names(&records);
        let lacking: Vec<_> = all.difference(&shown).collect();
        assert!(
            lacking.is_empty(),
            "attempt {attempt}: `kubectl gitwarden audit` lacks {} of {} refusals: {lacking:?}",
            lacking.len(),
            all.len()
        );
        let times: Vec<&str> = records
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["time"].as_str().unwrap_or_default())
            .collect();
        let mut newest_first = times.clone();
        newest_first.sort_by(|a, b| {
            let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
            t(b).cmp(&t(a))
        });
        assert_eq!(times, newest_first, "attempt {attempt}: not newest first");
    }
}
