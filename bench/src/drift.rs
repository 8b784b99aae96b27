//! Drift-heal latency: `gitwarden-agent run` manages N ConfigMaps; admin
//! patches one of them and a watch times how long until the agent has put it
//! back. The baseline, in the same watch, is how long the patch itself takes
//! to show up: the API server's own write-and-propagate time.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use gitwarden_tests::{Identity, TestCluster};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc;

use crate::agent::{agent_binary, commit_all, payload, write_objects};
use crate::latency::Samples;

/// Benchmark settings.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Objects the agent manages.
    #[arg(long, default_value_t = 1000)]
    objects: usize,
    /// Drifts to time per debounce setting.
    #[arg(long, default_value_t = 20)]
    repetitions: usize,
    /// The agent's --drift-debounce values to measure (its default is 1s).
    #[arg(long, value_delimiter = ',', default_values = ["1s", "100ms"], value_parser = humantime::parse_duration)]
    debounce: Vec<Duration>,
    /// The gitwarden-agent binary (default: next to this one; build with --release).
    #[arg(long)]
    agent_bin: Option<std::path::PathBuf>,
}

/// A `gitwarden-agent run` process, killed when dropped.
struct RunningAgent {
    child: Child,
    url: String,
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A ConfigMap's `payload` as one watch event delivered it, and when.
struct Seen {
    name: String,
    payload: String,
    at: Instant,
}

/// `gitwarden-bench drift`.
pub async fn run(opts: Options) -> Result<()> {
    let agent = agent_binary(opts.agent_bin.clone())?;
    println!("drift benchmark: starting the test control plane (tests/cluster)...");
    let cluster = tokio::task::block_in_place(TestCluster::shared);
    let admin = cluster.kubeconfig(Identity::Admin);
    let client = cluster.client(Identity::Admin).await?;
    let work = tempfile::tempdir()?;
    println!(
        "{} managed ConfigMaps, {} drifts per setting; each drift is a merge patch by admin\n",
        opts.objects, opts.repetitions
    );
    println!(
        "{:>9} {:>6} {:>16} {:>16} {:>13} {:>13} {:>9}",
        "debounce", "drifts", "watch p50 ms", "watch p99 ms", "heal p50 ms", "heal p99 ms", "p50 x"
    );
    for (round, &debounce) in opts.debounce.iter().enumerate() {
        let ns = format!("bench-drift-{round}");
        gitwarden_tests::webhook::apply(
            &admin,
            &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"),
        )?;
        let repo = work.path().join(format!("repo-{round}"));
        write_objects(&repo.join("objects"), &ns, opts.objects)?;
        let commit = commit_all(&repo)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(work.path().join(format!("agent-{round}.log")))?;
        let running = RunningAgent {
            child: Command::new(&agent)
                .arg("run")
                .arg("--repo")
                .arg(format!("file://{}", repo.display()))
                .arg("--cache-dir")
                .arg(work.path().join(format!("cache-{round}")))
                .arg("--kubeconfig")
                .arg(&admin)
                .args(["--inventory-namespace", &ns, "--default-namespace", &ns])
                .args(["--leader-elect=false", "--interval", "1h"])
                // The bench measures drift healing alone; the admission
                // guard would also judge the shared bench cluster's
                // admission objects, which are not in this repository.
                .args(["--admission-guard=false"])
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--health-timeout", "0s"])
                .arg("--drift-debounce")
                .arg(humantime::format_duration(debounce).to_string())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting gitwarden-agent run")?,
            url: format!("http://127.0.0.1:{port}"),
        };
        wait_synced(&running, &commit).await?;

        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let watch = tokio::spawn(watch_payloads(api.clone(), tx));
        // Let the watch finish its initial list before the first drift.
        tokio::time::sleep(Duration::from_secs(1)).await;
        while rx.try_recv().is_ok() {}

        let original = payload();
        let (mut propagated, mut healed) = (Vec::new(), Vec::new());
        for k in 0..opts.repetitions {
            let name = format!("cm-{:05}", (k * 37 + 11) % opts.objects);
            let drifted = format!("drift-{k}");
            let patch = serde_json::json!({ "data": { "payload": drifted } });
            let started = Instant::now();
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            let mut seen_drift = None;
            let deadline = started + Duration::from_secs(30);
            let heal = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let Ok(Some(seen)) = tokio::time::timeout(left, rx.recv()).await else {
                    bail!("{name} was not healed within 30s (drift {k})");
                };
                if seen.name != name {
                    continue;
                }
                if seen.payload == drifted && seen_drift.is_none() {
                    seen_drift = Some(seen.at - started);
                } else if seen.payload == original && seen_drift.is_some() {
                    break seen.at - started;
                }
            };
            propagated.extend(seen_drift);
            healed.push(heal);
            // The agent's own heal is itself a watch event: let the resync it
            // triggers (which writes nothing) finish before the next drift.
            tokio::time::sleep(debounce + Duration::from_secs(2)).await;
            while rx.try_recv().is_ok() {}
        }
        watch.abort();
        drop(running);
        let (propagated, healed) = (Samples::new(propagated), Samples::new(healed));
        println!(
            "{:>9} {:>6} {:>16.2} {:>16.2} {:>13.1} {:>13.1} {:>8.0}x",
            humantime::format_duration(debounce).to_string(),
            healed.len(),
            propagated.p50_ms(),
            propagated.p99_ms(),
            healed.p50_ms(),
            healed.p99_ms(),
            healed.p50_ms() / propagated.p50_ms()
        );
        gitwarden_tests::kubectl::run_kubectl(
            &admin,
            &["delete", "namespace", &ns, "--wait=false"],
        );
    }
    println!(
        "\n(watch: from sending the patch to the watch delivering it — the API server's own round trip.\n\
         heal: from sending the patch to the watch delivering the agent's repair; it includes the\n\
         debounce and a resync that reads every managed object. p50 x: heal / watch.)"
    );
    Ok(())
}

/// Waits until the agent reports a successful sync of `commit`.
async fn wait_synced(agent: &RunningAgent, commit: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(resp) = reqwest::get(format!("{}/status", agent.url)).await
            && let Ok(status) = resp.json::<serde_json::Value>().await
            && status["revision"] == commit
            && status["lastSuccess"].is_string()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the agent did not sync {commit} within 300s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Forwards every ConfigMap change's `payload` with its arrival time.
async fn watch_payloads(api: Api<ConfigMap>, tx: mpsc::UnboundedSender<Seen>) {
    let mut events = watcher(api, watcher::Config::default().labels("app=bench"))
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let at = Instant::now();
        if let Ok(cm) = event {
            let seen = Seen {
                name: cm.metadata.name.unwrap_or_default(),
                payload: cm
                    .data
                    .and_then(|d| d.get("payload").cloned())
                    .unwrap_or_default(),
                at,
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
    }
}
