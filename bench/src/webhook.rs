//! The webhook benchmark: gitwarden's /validate against the floor, same run,
//! same machine, same client.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gitwarden_tests::admission_review::AdmissionReview;
use serde_json::{Value, json};

use crate::load::{Figures, drive};
use crate::proc_stats::{cpu_seconds, rss_mib};

/// Benchmark settings.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Concurrency levels (closed-loop workers) to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 8, 32])]
    concurrency: Vec<usize>,
    /// Measured time per scenario and level.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Warm-up before each measurement.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// The gitwarden-webhook binary (default: next to this one; build with --release).
    #[arg(long)]
    webhook_bin: Option<PathBuf>,
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn deployment(ns: &str, name: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name, "namespace": ns, "labels": { "app": name, "app.kubernetes.io/managed-by": "gitwarden" }, "annotations": annotations },
        "spec": { "replicas": 3, "selector": { "matchLabels": { "app": name } },
          "template": { "metadata": { "labels": { "app": name } },
            "spec": { "containers": [{ "name": "main", "image": format!("registry.example/{name}:1.2.3"),
              "ports": [{ "containerPort": 8080 }], "resources": { "requests": { "cpu": "100m", "memory": "128Mi" } },
              "env": [{ "name": "LOG_LEVEL", "value": "info" }, { "name": "REGION", "value": "eu-1" }] }] } } }
    })
}

/// An UPDATE of a Deployment by `user`, as the API server would send it.
fn review(
    uid: usize,
    user: &str,
    groups: &[&str],
    object: Value,
    old: Value,
    dry_run: bool,
) -> Vec<u8> {
    AdmissionReview::update(object)
        .old(old)
        .uid(format!("bench-{uid}"))
        .by(user, groups)
        .dry_run(dry_run)
        .to_bytes()
}

/// Allowed: controller writes (exempt identities) and a human's dry run.
fn allow_bodies() -> Vec<Vec<u8>> {
    (0..64)
        .map(|i| {
            let d = deployment("shop", &format!("web-{i}"), json!({}));
            if i % 4 == 3 {
                review(
                    i,
                    "alice",
                    &["developers", "system:authenticated"],
                    d.clone(),
                    d,
                    true,
                )
            } else {
                review(
                    i,
                    "system:serviceaccount:kube-system:deployment-controller",
                    &[
                        "system:serviceaccounts",
                        "system:serviceaccounts:kube-system",
                    ],
                    d.clone(),
                    d,
                    false,
                )
            }
        })
        .collect()
}

/// Denied: humans changing protected objects; each needs a durable audit record.
fn deny_bodies() -> Vec<Vec<u8>> {
    (0..64)
        .map(|i| {
            let d = deployment("shop", &format!("web-{i}"), json!({}));
            review(
                i,
                "alice",
                &["developers", "system:authenticated"],
                d.clone(),
                d,
                false,
            )
        })
        .collect()
}

/// A realistic mix: 80 % allowed controller writes, 15 % denied human writes,
/// 5 % break-glass (audited, allowed with a warning).
fn mixed_bodies() -> Vec<Vec<u8>> {
    let (allow, deny) = (allow_bodies(), deny_bodies());
    (0..100)
        .map(|i| match i % 20 {
            0..=15 => allow[i % allow.len()].clone(),
            16..=18 => deny[i % deny.len()].clone(),
            _ => {
                let new = deployment(
                    "shop",
                    &format!("web-{i}"),
                    json!({ "gitwarden.io/break-glass": "INC-1 load test" }),
                );
                let old = deployment("shop", &format!("web-{i}"), json!({}));
                review(
                    i,
                    "carol",
                    &["developers", "gitwarden:break-glass"],
                    new,
                    old,
                    false,
                )
            }
        })
        .collect()
}

async fn wait_ready(
    client: &reqwest::Client,
    url: &str,
    path: &str,
    child: &mut Child,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{url}{path}")).send().await
            && r.status().as_u16() < 500
        {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!("server exited during start-up: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("server at {url} not ready within 20s")
}

fn sibling(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    Ok(me
        .parent()
        .context("executable has no directory")?
        .join(name))
}

async fn start(
    cmd: &mut Command,
    url: String,
    ready_path: &str,
    client: &reqwest::Client,
) -> Result<Server> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    wait_ready(client, &url, ready_path, &mut child).await?;
    Ok(Server { child, url })
}

struct Row {
    target: &'static str,
    scenario: &'static str,
    concurrency: usize,
    figures: Figures,
    cpu_cores: f64,
    rss_mib: f64,
}

async fn measure(
    server: &Server,
    scenario: &'static str,
    target: &'static str,
    bodies: Vec<Vec<u8>>,
    concurrency: usize,
    opts: &Options,
    client: &reqwest::Client,
) -> Row {
    let pid = server.child.id();
    let cpu_before = cpu_seconds(pid);
    let wall = Instant::now();
    let figures = drive(
        client,
        &format!("{}/validate", server.url),
        Arc::new(bodies),
        concurrency,
        opts.warmup,
        opts.duration,
    )
    .await;
    let cpu_cores = (cpu_seconds(pid) - cpu_before) / wall.elapsed().as_secs_f64();
    Row {
        target,
        scenario,
        concurrency,
        figures,
        cpu_cores,
        rss_mib: rss_mib(pid).0,
    }
}

fn print_row(r: &Row) {
    let f = &r.figures;
    println!(
        "{:<10} {:<8} {:>4} {:>9} {:>10.0} {:>9.3} {:>9.3} {:>9.3} {:>6} {:>6.2} {:>8.1}",
        r.target,
        r.scenario,
        r.concurrency,
        f.requests,
        f.per_second,
        f.p50_ms,
        f.p99_ms,
        f.p999_ms,
        f.errors,
        r.cpu_cores,
        r.rss_mib
    );
}

/// A CA named `ca_name` and a serving certificate for 127.0.0.1 signed by
/// it, written as `dir/tls.crt` and `dir/tls.key`: the floor baseline and
/// the webhook serve the very same certificate files, so the TLS cost of the
/// two is the same (the other benchmarks start the webhook through the test
/// kit's `LoopbackWebhook`).
fn loopback_tls(
    dir: &std::path::Path,
    ca_name: &str,
) -> Result<(
    gitwarden_certs::CertificateAuthority,
    std::path::PathBuf,
    std::path::PathBuf,
)> {
    let ca = gitwarden_certs::CertificateAuthority::generate(ca_name, Duration::from_secs(3600))?;
    let cert = ca.issue_serving_cert(
        &["localhost"],
        &["127.0.0.1".parse()?],
        Duration::from_secs(3600),
    )?;
    let (cert_file, key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_file, &cert.cert_pem)?;
    std::fs::write(&key_file, &cert.key_pem)?;
    Ok((ca, cert_file, key_file))
}

pub async fn run(opts: Options) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (ca, cert_file, key_file) = loopback_tls(dir.path(), "bench-ca")?;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem().as_bytes())?)
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;

    let webhook_bin = match &opts.webhook_bin {
        Some(p) => p.clone(),
        None => sibling("gitwarden-webhook")?,
    };
    if !webhook_bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p gitwarden-webhook` (scripts/bench does)",
            webhook_bin.display()
        );
    }
    let floor_port = free_port()?;
    let floor = start(
        Command::new(std::env::current_exe()?)
            .arg("floor")
            .args(["--listen", &format!("127.0.0.1:{floor_port}")])
            .arg("--cert")
            .arg(&cert_file)
            .arg("--key")
            .arg(&key_file),
        format!("https://127.0.0.1:{floor_port}"),
        "/validate",
        &client,
    )
    .await?;
    let port = free_port()?;
    let gitwarden = start(
        Command::new(&webhook_bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--tls-cert")
            .arg(&cert_file)
            .arg("--tls-key")
            .arg(&key_file)
            .arg("--audit-dir")
            .arg(dir.path().join("audit")),
        format!("https://127.0.0.1:{port}"),
        "/readyz",
        &client,
    )
    .await?;

    print_header(&webhook_bin, &opts, dir.path());
    let mut rows = Vec::new();
    for &c in &opts.concurrency {
        for row in [
            measure(&floor, "allow", "floor", allow_bodies(), c, &opts, &client).await,
            measure(
                &gitwarden,
                "allow",
                "gitwarden",
                allow_bodies(),
                c,
                &opts,
                &client,
            )
            .await,
            measure(
                &gitwarden,
                "deny",
                "gitwarden",
                deny_bodies(),
                c,
                &opts,
                &client,
            )
            .await,
            measure(
                &gitwarden,
                "mixed",
                "gitwarden",
                mixed_bodies(),
                c,
                &opts,
                &client,
            )
            .await,
        ] {
            print_row(&row);
            rows.push(row);
        }
    }
    let (rss, peak) = rss_mib(gitwarden.child.id());
    println!("\ngitwarden-webhook memory: RSS {rss:.1} MiB now, peak {peak:.1} MiB");
    println!(
        "\nratios and goals (goal: allow p99 < 1 ms and >= 0.8x floor throughput; deny p99 < 10 ms):"
    );
    for &c in &opts.concurrency {
        let find = |t: &str, s: &str| {
            rows.iter()
                .find(|r| r.target == t && r.scenario == s && r.concurrency == c)
        };
        if let (Some(f), Some(a), Some(d)) = (
            find("floor", "allow"),
            find("gitwarden", "allow"),
            find("gitwarden", "deny"),
        ) {
            let ratio = a.figures.per_second / f.figures.per_second;
            println!(
                "  c={c:<3} allow/floor throughput {ratio:.2}x [{}]  allow p99 {:.3} ms [{}]  deny p99 {:.3} ms [{}]",
                verdict(ratio >= 0.8),
                a.figures.p99_ms,
                verdict(a.figures.p99_ms < 1.0),
                d.figures.p99_ms,
                verdict(d.figures.p99_ms < 10.0)
            );
        }
    }
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn print_header(bin: &Path, opts: &Options, dir: &Path) {
    println!(
        "webhook benchmark: {} vs a bare rustls+axum floor, same client, same run",
        bin.display()
    );
    println!(
        "{:?} measured after {:?} warm-up per row; audit log on {} (fdatasync per batch)",
        opts.duration,
        opts.warmup,
        dir.display()
    );
    println!(
        "\n{:<10} {:<8} {:>4} {:>9} {:>10} {:>9} {:>9} {:>9} {:>6} {:>6} {:>8}",
        "target",
        "scenario",
        "conc",
        "requests",
        "req/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "errors",
        "cpu",
        "rss MiB"
    );
}
