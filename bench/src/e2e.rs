//! End to end through the real API server: the latency of ConfigMap writes
//! (creates, then updates) by the agent's identity and by an exempt
//! controller-like identity, and of a human's denied writes, in three
//! configurations measured in the same run on the same control plane:
//!
//! - **none**: no admission webhook or policy — the baseline;
//! - **webhook**: gitwarden's release webhook over TLS, registered with the
//!   shipped `deploy/local` configuration (failurePolicy Fail);
//! - **vap**: an equivalent ValidatingAdmissionPolicy (CEL, in-process),
//!   `bench/fixtures/validating-admission-policy.yaml`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use base64::Engine as _;
use gitwarden_tests::loopback::{LoopbackWebhook, PolicySource};
use gitwarden_tests::webhook::{apply, render};
use gitwarden_tests::{Identity, TestCluster};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::agent::sibling_binary;
use crate::latency::Samples;

/// Benchmark settings.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Objects each identity creates and then updates per concurrency level
    /// (so twice as many writes), spread over the rounds.
    #[arg(long, default_value_t = 500)]
    objects: usize,
    /// Rounds: every round measures every configuration, in a rotated order,
    /// so that a burst of load from elsewhere on the machine does not land on
    /// one configuration only.
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Concurrent writers (closed loop) to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8])]
    concurrency: Vec<usize>,
    /// Denied creates by alice per concurrency level.
    #[arg(long, default_value_t = 200)]
    denials: usize,
    /// The gitwarden-webhook binary (default: next to this one; build with --release).
    #[arg(long)]
    webhook_bin: Option<PathBuf>,
}

/// The namespace of the exempt "operator" identity; the policy exempts its
/// service accounts, as a real policy exempts e.g. cert-manager's.
const OPERATORS_NAMESPACE: &str = "bench-operators";

/// What admission control the API server runs for a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    None,
    Webhook,
    Vap,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::None => "none",
            Setup::Webhook => "webhook",
            Setup::Vap => "vap",
        }
    }

    fn namespace(self) -> String {
        format!("bench-e2e-{}", self.name())
    }
}

/// One measured row, accumulated over the rounds.
struct Row {
    setup: Setup,
    who: &'static str,
    concurrency: usize,
    latencies: Vec<Duration>,
    unexpected: usize,
    wall: Duration,
}

impl Row {
    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }
}

/// Adds one measurement to its row, creating the row on first use.
fn record(
    rows: &mut Vec<Row>,
    key: (Setup, &'static str, usize),
    measured: (Vec<Duration>, usize, Duration),
) {
    let (setup, who, concurrency) = key;
    let (latencies, unexpected, wall) = measured;
    match rows
        .iter_mut()
        .find(|r| r.setup == setup && r.who == who && r.concurrency == concurrency)
    {
        Some(row) => {
            row.latencies.extend(latencies);
            row.unexpected += unexpected;
            row.wall += wall;
        }
        None => rows.push(Row {
            setup,
            who,
            concurrency,
            latencies,
            unexpected,
            wall,
        }),
    }
}

/// `gitwarden-bench e2e`.
pub async fn run(opts: Options) -> Result<()> {
    let webhook_bin = sibling_binary(opts.webhook_bin.clone(), "gitwarden-webhook")?;
    println!("e2e benchmark: starting the test control plane (tests/cluster)...");
    let cluster = tokio::task::block_in_place(TestCluster::shared);
    let admin = cluster.kubeconfig(Identity::Admin);
    let identities = prepare(cluster).await?;
    let setups = [Setup::None, Setup::Webhook, Setup::Vap];
    for setup in setups {
        apply(
            &admin,
            &format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n",
                setup.namespace()
            ),
        )?;
    }
    println!(
        "{} creates + {} updates per identity and level; {} denied creates by alice per level;\n\
         {} rounds, each measuring every configuration\n",
        opts.objects, opts.objects, opts.denials, opts.rounds
    );
    let rounds = opts.rounds.max(1);
    let mut rows = Vec::new();
    for round in 0..rounds {
        for k in 0..setups.len() {
            let setup = setups[(k + round) % setups.len()];
            let guard = install(cluster, setup, &webhook_bin, &identities).await?;
            let ns = setup.namespace();
            for &concurrency in &opts.concurrency {
                for (who, client) in [
                    ("agent", &identities.agent),
                    ("operator", &identities.operator),
                ] {
                    let prefix = format!("{who}-r{round}-c{concurrency}");
                    let count = share(opts.objects, rounds, round);
                    let measured = timed_writes(client, &ns, &prefix, count, concurrency).await;
                    record(&mut rows, (setup, who, concurrency), measured);
                }
                let prefix = format!("alice-r{round}-c{concurrency}");
                let expect_denied = setup != Setup::None;
                let measured = timed_denials(
                    &identities.alice,
                    &ns,
                    &prefix,
                    share(opts.denials, rounds, round),
                    concurrency,
                    expect_denied,
                )
                .await;
                let who = if expect_denied {
                    "alice denied"
                } else {
                    "alice (allowed)"
                };
                record(&mut rows, (setup, who, concurrency), measured);
            }
            drop(guard);
            println!("round {} of {rounds}: {} measured", round + 1, setup.name());
        }
    }
    println!();
    for setup in setups {
        print_rows(&rows, setup);
    }
    for setup in setups {
        let _ = gitwarden_tests::kubectl::run_kubectl(
            &admin,
            &["delete", "namespace", &setup.namespace(), "--wait=false"],
        );
    }
    println!(
        "\n(writes: creates then merge-patch updates of ConfigMaps over the kube client, each timed on its own;\n\
         x none: p50 latency and throughput relative to the same identity and level with no admission.\n\
         The agent is skipped by the webhook's and the policy's matchConditions; the operator is exempt by\n\
         policy and is sent to the webhook; alice is denied, with an fsynced audit record by the webhook.\n\
         'unexpected': writes that failed, or denials that did not come from the configuration measured.)"
    );
    Ok(())
}

fn print_rows(rows: &[Row], setup: Setup) {
    if setup == Setup::None {
        println!(
            "{:<8} {:<16} {:>4} {:>7} {:>10} {:>9} {:>9} {:>9} {:>10} {:>10}",
            "config",
            "identity",
            "conc",
            "writes",
            "unexpected",
            "writes/s",
            "p50 ms",
            "p99 ms",
            "p50 x none",
            "w/s x none"
        );
    }
    for row in rows.iter().filter(|r| r.setup == setup) {
        let samples = Samples::new(row.latencies.clone());
        let base = rows.iter().find(|b| {
            b.setup == Setup::None
                && b.concurrency == row.concurrency
                && b.who.split(' ').next() == row.who.split(' ').next()
        });
        let (p50_ratio, rate_ratio) = base.map_or((f64::NAN, f64::NAN), |b| {
            (
                samples.p50_ms() / Samples::new(b.latencies.clone()).p50_ms(),
                row.per_second() / b.per_second(),
            )
        });
        println!(
            "{:<8} {:<16} {:>4} {:>7} {:>10} {:>9.0} {:>9.2} {:>9.2} {:>9.2}x {:>9.2}x",
            row.setup.name(),
            row.who,
            row.concurrency,
            samples.len(),
            row.unexpected,
            row.per_second(),
            samples.p50_ms(),
            samples.p99_ms(),
            p50_ratio,
            rate_ratio
        );
    }
}

/// Clients for the identities that write.
struct Identities {
    /// The agent's service account, with a real minted token.
    agent: kube::Client,
    /// An exempt controller-like service account (`bench-operators/controller`).
    operator: kube::Client,
    /// A human cluster-admin, whom gitwarden refuses.
    alice: kube::Client,
    /// The webhook's own service account kubeconfig (reads the policy).
    webhook_kubeconfig: PathBuf,
}

/// Namespaces, RBAC, the policy, and minted tokens for the service accounts.
async fn prepare(cluster: &'static TestCluster) -> Result<Identities> {
    let root = gitwarden_tests::cluster::repo_root();
    let admin = cluster.kubeconfig(Identity::Admin);
    for ns in ["gitwarden-system", OPERATORS_NAMESPACE] {
        apply(
            &admin,
            &format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"),
        )?;
    }
    apply(
        &admin,
        &std::fs::read_to_string(root.join("deploy/base/rbac-webhook.yaml"))?,
    )?;
    apply(
        &admin,
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gitwarden-policy\n  namespace: gitwarden-system\n\
             data:\n  policy.yaml: |\n    exempt:\n      users: [\"system:serviceaccount:{OPERATORS_NAMESPACE}:*\"]\n"
        ),
    )?;
    for (name, ns, sa) in [
        ("bench-agent", "gitwarden-system", "gitwarden-agent"),
        ("bench-operator", OPERATORS_NAMESPACE, "controller"),
    ] {
        apply(
            &admin,
            &format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {name}\n\
                 roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}\n\
                 subjects: [{{kind: ServiceAccount, name: {sa}, namespace: {ns}}}]\n"
            ),
        )?;
    }
    let (_, agent) = cluster
        .mint_service_account_token("gitwarden-system", "gitwarden-agent")
        .await?;
    let (_, operator) = cluster
        .mint_service_account_token(OPERATORS_NAMESPACE, "controller")
        .await?;
    let (_, webhook_kubeconfig) = cluster
        .mint_service_account_token("gitwarden-system", "gitwarden-webhook")
        .await?;
    Ok(Identities {
        agent: cluster.client_for_kubeconfig(&agent).await?,
        operator: cluster.client_for_kubeconfig(&operator).await?,
        alice: cluster.client(Identity::Alice).await?,
        webhook_kubeconfig,
    })
}

/// What is installed for a setup; removed again when dropped.
struct Installed {
    admin: PathBuf,
    setup: Setup,
    webhook: Option<LoopbackWebhook>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let what = match self.setup {
            Setup::None => return,
            Setup::Webhook => "validatingwebhookconfiguration,mutatingwebhookconfiguration",
            Setup::Vap => "validatingadmissionpolicybinding,validatingadmissionpolicy",
        };
        let name = match self.setup {
            Setup::Webhook => "gitwarden",
            _ => "gitwarden-bench-equivalent",
        };
        // Admission configurations are never sent to admission: admin can always remove them.
        let _ = gitwarden_tests::kubectl::run_kubectl(
            &self.admin,
            &["delete", what, name, "--ignore-not-found"],
        );
        drop(self.webhook.take());
    }
}

async fn install(
    cluster: &'static TestCluster,
    setup: Setup,
    webhook_bin: &Path,
    identities: &Identities,
) -> Result<Installed> {
    let admin = cluster.kubeconfig(Identity::Admin);
    let mut installed = Installed {
        admin: admin.clone(),
        setup,
        webhook: None,
    };
    match setup {
        Setup::None => return Ok(installed),
        Setup::Webhook => {
            // The release webhook as its own process, serving TLS on loopback
            // with a certificate from a CA generated for this run.
            let webhook = LoopbackWebhook::launch(PolicySource::ConfigMap {
                kubeconfig: &identities.webhook_kubeconfig,
                name: "gitwarden-system/gitwarden-policy",
            })
            .binary(webhook_bin)
            .log_level("warn")
            .start()
            .await?;
            let template = std::fs::read_to_string(
                gitwarden_tests::cluster::repo_root()
                    .join("deploy/local/webhook-configuration.yaml"),
            )?;
            let ca_bundle = base64::engine::general_purpose::STANDARD.encode(webhook.ca_pem());
            apply(
                &admin,
                &render(
                    &template,
                    &[("WEBHOOK_URL", &webhook.url), ("CA_BUNDLE", &ca_bundle)],
                ),
            )?;
            installed.webhook = Some(webhook);
        }
        Setup::Vap => {
            let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/validating-admission-policy.yaml");
            apply(&admin, &std::fs::read_to_string(&fixture)?)?;
        }
    }
    wait_until_enforcing(cluster, &setup.namespace()).await?;
    Ok(installed)
}

/// Returns once a real create by alice is refused (a server-side dry run
/// must still pass): the API server has picked the configuration up.
async fn wait_until_enforcing(cluster: &'static TestCluster, ns: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        // A new name every time: a probe that got through before enforcement
        // began cannot be deleted any more once it has (admin is not exempt).
        let name = format!("enforcement-probe-{attempt}");
        let probe = ["-n", ns, "create", "configmap", &name];
        let dry = cluster.kubectl(
            Identity::Alice,
            &[&probe[..], &["--dry-run=server"]].concat(),
        );
        let real = cluster.kubectl(Identity::Alice, &probe);
        if dry.success && !real.success && real.stderr.contains("gitwarden") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "admission not enforcing within 60s: dry run {}: {}; real: {}",
                dry.success,
                dry.stderr,
                real.stderr
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The part of `total` measured in round `round` of `rounds`.
fn share(total: usize, rounds: usize, round: usize) -> usize {
    total / rounds + usize::from(round < total % rounds)
}

/// A small ConfigMap like a controller writes.
fn config_map(name: &str, revision: u32) -> Result<ConfigMap> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "labels": { "app": "bench", "app.kubernetes.io/part-of": "e2e" } },
        "data": {
            "revision": revision.to_string(),
            "endpoint": "https://service.example.invalid:8443/v1",
            "settings.yaml": "replicas: 3\nlogLevel: info\nfeatures: [a, b, c]\n",
        }
    }))?)
}

/// `count` creates then `count` merge-patch updates by `client` at
/// `concurrency`: every write's latency, the count of failed writes, and the
/// wall time of both phases.
async fn timed_writes(
    client: &kube::Client,
    ns: &str,
    prefix: &str,
    count: usize,
    concurrency: usize,
) -> (Vec<Duration>, usize, Duration) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let mut all = Vec::with_capacity(count * 2);
    let mut failed = 0;
    let mut wall = Duration::ZERO;
    for update in [false, true] {
        let api = api.clone();
        let prefix = prefix.to_string();
        let started = Instant::now();
        let (latencies, errors) = closed_loop(count, concurrency, move |i| {
            let api = api.clone();
            let name = format!("{prefix}-{i:05}");
            async move {
                if update {
                    let patch = serde_json::json!({ "data": { "revision": "2" } });
                    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .is_ok()
                } else {
                    match config_map(&name, 1) {
                        Ok(cm) => api.create(&PostParams::default(), &cm).await.is_ok(),
                        Err(_) => false,
                    }
                }
            }
        })
        .await;
        wall += started.elapsed();
        all.extend(latencies);
        failed += errors;
    }
    (all, failed, wall)
}

/// `count` creates by a human: each must be denied by the admission
/// configuration (`expect_denied`), or succeed when there is none.
async fn timed_denials(
    client: &kube::Client,
    ns: &str,
    prefix: &str,
    count: usize,
    concurrency: usize,
    expect_denied: bool,
) -> (Vec<Duration>, usize, Duration) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let prefix = prefix.to_string();
    let started = Instant::now();
    let (latencies, unexpected) = closed_loop(count, concurrency, move |i| {
        let api = api.clone();
        let name = format!("{prefix}-{i:05}");
        async move {
            let Ok(cm) = config_map(&name, 1) else {
                return false;
            };
            match api.create(&PostParams::default(), &cm).await {
                Ok(_) => !expect_denied,
                Err(kube::Error::Api(status)) => {
                    expect_denied && status.code == 403 && status.message.contains("gitwarden")
                }
                Err(_) => false,
            }
        }
    })
    .await;
    (latencies, unexpected, started.elapsed())
}

/// Runs `op(0..count)` with `concurrency` closed-loop workers; returns the
/// latency of every operation that returned `true` and the count of those
/// that returned `false`.
async fn closed_loop<F, Fut>(count: usize, concurrency: usize, op: F) -> (Vec<Duration>, usize)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let op = Arc::new(op);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (next, op) = (next.clone(), op.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut failed = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let sent = Instant::now();
                if op(i).await {
                    latencies.push(sent.elapsed());
                } else {
                    failed += 1;
                }
            }
            (latencies, failed)
        });
    }
    let mut all = Vec::with_capacity(count);
    let mut failed = 0;
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok((l, f)) => {
                all.extend(l);
                failed += f;
            }
            Err(_) => failed += 1,
        }
    }
    (all, failed)
}
