//! The agent benchmark: a first sync of N objects from a git repository into
//! the real test control plane, against `kubectl apply --server-side -f DIR` on
//! the same objects in the same run, then a no-op resync.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::proc_stats::rss_mib;

/// Benchmark settings.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Object counts to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [100usize, 1000])]
    objects: Vec<usize>,
    /// The gitwarden-agent binary (default: next to this one; build with --release).
    #[arg(long)]
    agent_bin: Option<PathBuf>,
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn write_objects(dir: &Path, namespace: &str, count: usize) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    // 100 objects per file, like a real repository's grouping.
    for (file, chunk) in (0..count).collect::<Vec<_>>().chunks(100).enumerate() {
        let mut text = String::new();
        for i in chunk {
            text.push_str(&format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:05}\n  namespace: {namespace}\n  labels: {{app: bench, shard: \"{}\"}}\ndata:\n  index: \"{i}\"\n  payload: \"{}\"\n",
                i % 10,
                "x".repeat(200)
            ));
        }
        std::fs::write(dir.join(format!("objects-{file:03}.yaml")), text)?;
    }
    Ok(())
}

/// Runs the agent, sampling its peak RSS while it runs.
fn timed_agent(bin: &Path, args: &[String]) -> Result<(Duration, serde_json::Value, f64)> {
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let mut peak: f64 = 0.0;
    loop {
        peak = peak.max(rss_mib(pid).1);
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed();
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "gitwarden-agent failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((elapsed, serde_json::from_slice(&out.stdout)?, peak))
}

pub fn run_bench(opts: Options) -> Result<()> {
    let root = std::env::current_dir()?;
    let agent = match opts.agent_bin {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("no exe dir")?
            .join("gitwarden-agent"),
    };
    if !agent.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p gitwarden-agent` (scripts/bench does)",
            agent.display()
        );
    }
    let work = tempfile::tempdir()?;
    let cluster = work.path().join("cluster");
    println!("agent benchmark: starting the test control plane (tests/cluster)...");
    run(Command::new(root.join("tests/cluster/up"))
        .arg(&cluster)
        .env(
            "GITWARDEN_CLUSTER_WATCH_PID",
            std::process::id().to_string(),
        ))?;
    let admin = cluster.join("admin.kubeconfig");
    let kubectl = |args: &[&str]| {
        run(Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&admin)
            .args(args))
    };
    kubectl(&["create", "namespace", "gitwarden-system"])?;
    println!(
        "\n{:>7} {:>14} {:>14} {:>8} {:>9} {:>12} {:>12} {:>10}",
        "objects",
        "kubectl ssa s",
        "gitwarden s",
        "ratio",
        "writes",
        "noop s",
        "noop writes",
        "peak MiB"
    );
    for &n in &opts.objects {
        let (ns_agent, ns_kubectl) = (format!("bench-agent-{n}"), format!("bench-kubectl-{n}"));
        kubectl(&["create", "namespace", &ns_agent])?;
        kubectl(&["create", "namespace", &ns_kubectl])?;
        let kdir = work.path().join(format!("kubectl-{n}"));
        write_objects(&kdir, &ns_kubectl, n)?;
        let started = Instant::now();
        kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=bench",
            "-f",
            kdir.to_str().context("path")?,
        ])?;
        let kubectl_time = started.elapsed();

        let repo = work.path().join(format!("repo-{n}"));
        write_objects(&repo.join("objects"), &ns_agent, n)?;
        run(Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["init", "-q", "-b", "main"]))?;
        run(Command::new("git").arg("-C").arg(&repo).args(["add", "-A"]))?;
        run(Command::new("git").arg("-C").arg(&repo).args([
            "-c",
            "user.name=b",
            "-c",
            "user.email=b@e",
            "commit",
            "-q",
            "-m",
            "objects",
        ]))?;
        let args: Vec<String> = [
            "sync",
            "-o",
            "json",
            "--repo",
            &format!("file://{}", repo.display()),
            "--cache-dir",
            &work.path().join("cache").display().to_string(),
            "--kubeconfig",
            &admin.display().to_string(),
            "--health-timeout",
            "0s",
            "--allow-mass-prune",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (first, report, peak1) = timed_agent(&agent, &args)?;
        let (noop, noop_report, peak2) = timed_agent(&agent, &args)?;
        println!(
            "{:>7} {:>14.2} {:>14.2} {:>7.2}x {:>9} {:>12.2} {:>12} {:>10.1}",
            n,
            kubectl_time.as_secs_f64(),
            first.as_secs_f64(),
            first.as_secs_f64() / kubectl_time.as_secs_f64(),
            report["report"]["writeRequests"],
            noop.as_secs_f64(),
            noop_report["report"]["writeRequests"],
            peak1.max(peak2)
        );
    }
    println!(
        "\n(ratio: gitwarden's first sync time / kubectl's; goal <= 0.5x. Peak RSS sampled every 10 ms.)"
    );
    run(Command::new(root.join("tests/cluster/down")).arg(&cluster))?;
    Ok(())
}
