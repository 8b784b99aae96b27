//! The agent benchmark: a first sync of N objects from a git repository into
//! the real test control plane, against `kubectl apply --server-side -f DIR` on
//! the same objects in the same run, then a no-op resync (its requests counted
//! by the API server itself).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gitwarden_tests::{Identity, TestCluster};

use crate::proc_stats::rss_mib;

/// Benchmark settings.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Object counts to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [1000usize, 5000])]
    objects: Vec<usize>,
    /// The gitwarden-agent binary (default: next to this one; build with --release).
    #[arg(long)]
    agent_bin: Option<PathBuf>,
    /// The kubectl to compare with. Default: the one `tests/cluster/kubectl-build`
    /// builds from the cluster's own Kubernetes version (v1.37); `PATH` for the
    /// machine's kubectl.
    #[arg(long)]
    kubectl: Option<String>,
}

/// Runs a command, failing with both output streams when it fails.
pub(crate) fn run(cmd: &mut Command) -> Result<String> {
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

/// Writes `count` small ConfigMaps (about 400 bytes each, like application
/// settings) into `dir`, 100 per file, like a real repository's grouping.
pub(crate) fn write_objects(dir: &Path, namespace: &str, count: usize) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for (file, chunk) in (0..count).collect::<Vec<_>>().chunks(100).enumerate() {
        let mut text = String::new();
        for i in chunk {
            text.push_str(&format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:05}\n  namespace: {namespace}\n  labels: {{app: bench, shard: \"{}\"}}\ndata:\n  index: \"{i}\"\n  payload: \"{}\"\n",
                i % 10,
                payload()
            ));
        }
        std::fs::write(dir.join(format!("objects-{file:03}.yaml")), text)?;
    }
    Ok(())
}

/// The `payload` value of every generated ConfigMap: what git says it is.
pub(crate) fn payload() -> String {
    "x".repeat(200)
}

/// Makes `repo` a git repository whose `main` holds its files in one commit;
/// returns the commit id.
pub(crate) fn commit_all(repo: &Path) -> Result<String> {
    let git = |args: &[&str]| run(Command::new("git").arg("-C").arg(repo).args(args));
    git(&["init", "-q", "-b", "main"])?;
    git(&["add", "-A"])?;
    git(&[
        "-c",
        "user.name=bench",
        "-c",
        "user.email=bench@example.invalid",
        "commit",
        "-q",
        "-m",
        "objects",
    ])?;
    Ok(git(&["rev-parse", "HEAD"])?.trim().to_string())
}

/// The gitwarden-agent binary: given, or next to this one.
pub(crate) fn agent_binary(given: Option<PathBuf>) -> Result<PathBuf> {
    sibling_binary(given, "gitwarden-agent")
}

/// A workspace binary next to this one (scripts/bench builds them in release).
pub(crate) fn sibling_binary(given: Option<PathBuf>, name: &str) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("no exe dir")?
            .join(name),
    };
    if !path.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p {name}` (scripts/bench does)",
            path.display()
        );
    }
    Ok(path)
}

/// Runs the agent, sampling its peak RSS while it runs.
///
/// Both output streams are drained by threads while the agent runs: a sync
/// of thousands of objects logs more than a pipe holds (64 KiB), and an
/// undrained pipe blocks the agent in `write` forever.
fn timed_agent(bin: &Path, args: &[String]) -> Result<(Duration, serde_json::Value, f64)> {
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = drain(child.stdout.take().context("agent stdout")?);
    let stderr = drain(child.stderr.take().context("agent stderr")?);
    let pid = child.id();
    let mut peak: f64 = 0.0;
    let status = loop {
        // VmHWM is the kernel's own high-water mark: sampling only has to
        // catch the process before it exits.
        peak = peak.max(rss_mib(pid).1);
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    let (stdout, stderr) = (join_drain(stdout)?, join_drain(stderr)?);
    if !status.success() {
        bail!(
            "gitwarden-agent failed ({status}): {}",
            String::from_utf8_lossy(&stderr)
        );
    }
    let report = serde_json::from_slice(&stdout).with_context(|| {
        format!(
            "gitwarden-agent printed no JSON report; stderr: {}",
            String::from_utf8_lossy(&stderr)
        )
    })?;
    Ok((elapsed, report, peak))
}

/// Reads a child's output stream to the end on its own thread.
pub(crate) fn drain(
    mut stream: impl std::io::Read + Send + 'static,
) -> std::thread::JoinHandle<std::io::Result<Vec<u8>>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes)?;
        Ok(bytes)
    })
}

/// The bytes a [`drain`] thread read.
pub(crate) fn join_drain(
    handle: std::thread::JoinHandle<std::io::Result<Vec<u8>>>,
) -> Result<Vec<u8>> {
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("output reader panicked"))?
        .context("reading the agent's output")
}

/// The kubectl to compare with, and its version line.
pub(crate) fn kubectl_for_comparison(
    root: &Path,
    given: Option<String>,
) -> Result<(PathBuf, String)> {
    let path = match given.as_deref() {
        Some("PATH") => PathBuf::from("kubectl"),
        Some(p) => PathBuf::from(p),
        None => {
            PathBuf::from(run(&mut Command::new(root.join("tests/cluster/kubectl-build")))?.trim())
        }
    };
    let version = run(Command::new(&path).args(["version", "--client"]))?
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    Ok((path, version))
}

/// `apiserver_request_total` summed by verb for ConfigMaps: the API server's
/// own count of what clients sent, so a no-op resync's reads are counted
/// below every layer of the agent.
pub(crate) fn configmap_requests(admin: &Path) -> Result<BTreeMap<String, u64>> {
    let text = run(Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(admin)
        .args(["get", "--raw", "/metrics"]))?;
    Ok(parse_request_totals(&text, "configmaps"))
}

/// Sums `apiserver_request_total` samples of one resource by verb.
fn parse_request_totals(metrics: &str, resource: &str) -> BTreeMap<String, u64> {
    let mut by_verb = BTreeMap::new();
    let wanted = format!("resource=\"{resource}\"");
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        if !labels.split(',').any(|l| l == wanted) {
            continue;
        }
        let verb = labels
            .split(',')
            .find_map(|l| l.strip_prefix("verb=\""))
            .map(|v| v.trim_end_matches('"').to_string())
            .unwrap_or_default();
        let count = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        *by_verb.entry(verb).or_insert(0) += count;
    }
    by_verb
}

/// What changed between two snapshots of [`configmap_requests`], as `VERB n` pairs.
pub(crate) fn request_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> String {
    let parts: Vec<String> = after
        .iter()
        .filter_map(|(verb, n)| {
            let d = n.saturating_sub(before.get(verb).copied().unwrap_or(0));
            (d > 0).then(|| format!("{verb} {d}"))
        })
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// `gitwarden-bench agent`.
pub fn run_bench(opts: Options) -> Result<()> {
    let root = gitwarden_tests::cluster::repo_root();
    let agent = agent_binary(opts.agent_bin)?;
    let (kubectl_bin, kubectl_version) = kubectl_for_comparison(&root, opts.kubectl)?;
    let work = tempfile::tempdir()?;
    println!("agent benchmark: starting the test control plane (tests/cluster)...");
    let cluster = TestCluster::shared();
    let admin = cluster.kubeconfig(Identity::Admin);
    let kubectl = |args: &[&str]| {
        run(Command::new(&kubectl_bin)
            .arg("--kubeconfig")
            .arg(&admin)
            .args(args))
    };
    kubectl(&["create", "namespace", "gitwarden-system"]).ok();
    println!("baseline: {} ({kubectl_version})", kubectl_bin.display());
    println!(
        "\n{:>7} {:>14} {:>16} {:>14} {:>8} {:>10} {:>9} {:>9} {:>12} {:>12} {:>30} {:>10}",
        "objects",
        "kubectl ssa s",
        "+ dry-run first",
        "gitwarden s",
        "ratio",
        "ratio (v)",
        "writes",
        "dry-runs",
        "noop s",
        "noop writes",
        "noop API requests (configmaps)",
        "peak MiB"
    );
    for &n in &opts.objects {
        let (ns_agent, ns_kubectl) = (format!("bench-agent-{n}"), format!("bench-kubectl-{n}"));
        kubectl(&["create", "namespace", &ns_agent])?;
        kubectl(&["create", "namespace", &ns_kubectl])?;
        let kdir = work.path().join(format!("kubectl-{n}"));
        write_objects(&kdir, &ns_kubectl, n)?;
        let kdir_arg = kdir.to_str().context("path")?;
        // What gitwarden does before writing anything (and Argo CD and Flux
        // too): validate the whole revision with a server-side dry-run.
        let started = Instant::now();
        kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=bench",
            "--dry-run=server",
            "-f",
            kdir_arg,
        ])?;
        let kubectl_dry_run = started.elapsed();
        let started = Instant::now();
        kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=bench",
            "-f",
            kdir_arg,
        ])?;
        let kubectl_time = started.elapsed();

        let repo = work.path().join(format!("repo-{n}"));
        write_objects(&repo.join("objects"), &ns_agent, n)?;
        commit_all(&repo)?;
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
        let before = configmap_requests(&admin)?;
        let (noop, noop_report, peak2) = timed_agent(&agent, &args)?;
        let after = configmap_requests(&admin)?;
        let validated = kubectl_dry_run + kubectl_time;
        println!(
            "{:>7} {:>14.2} {:>16.2} {:>14.2} {:>7.2}x {:>9.2}x {:>9} {:>9} {:>12.2} {:>12} {:>30} {:>10.1}",
            n,
            kubectl_time.as_secs_f64(),
            validated.as_secs_f64(),
            first.as_secs_f64(),
            first.as_secs_f64() / kubectl_time.as_secs_f64(),
            first.as_secs_f64() / validated.as_secs_f64(),
            report["report"]["writeRequests"],
            report["report"]["dryRunRequests"],
            noop.as_secs_f64(),
            noop_report["report"]["writeRequests"],
            request_delta(&before, &after),
            peak1.max(peak2)
        );
        // Free the API server's memory for the next size.
        kubectl(&[
            "delete",
            "namespace",
            &ns_agent,
            &ns_kubectl,
            "--wait=false",
        ])?;
    }
    println!(
        "\n(ratio: gitwarden's first sync time (a new process, fetch included) / kubectl's; goal <= 0.5x.\n\
         ratio (v): / kubectl's when it too validates the whole set first (--dry-run=server, then apply),\n\
         the same requests gitwarden sends.\n\
         noop API requests: the API server's apiserver_request_total for configmaps, all clients, one\n\
         of them the metrics scrape itself. Peak RSS: the agent's VmHWM, first sync and no-op.)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_totals_are_summed_by_verb_for_one_resource_only() {
        let text = "# HELP apiserver_request_total x\n\
            apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"configmaps\",scope=\"resource\",subresource=\"\",verb=\"GET\",version=\"v1\"} 7\n\
            apiserver_request_total{code=\"404\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"configmaps\",scope=\"resource\",subresource=\"\",verb=\"GET\",version=\"v1\"} 3\n\
            apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"configmaps\",scope=\"resource\",subresource=\"\",verb=\"APPLY\",version=\"v1\"} 2\n\
            apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"secrets\",scope=\"resource\",subresource=\"\",verb=\"GET\",version=\"v1\"} 50\n";
        let totals = parse_request_totals(text, "configmaps");
        assert_eq!(totals.get("GET"), Some(&10));
        assert_eq!(totals.get("APPLY"), Some(&2));
        assert_eq!(totals.len(), 2);
        let after: BTreeMap<String, u64> = [("GET".to_string(), 15), ("APPLY".to_string(), 2)]
            .into_iter()
            .collect();
        assert_eq!(request_delta(&totals, &after), "GET 5");
        assert_eq!(request_delta(&totals, &totals), "none");
    }
}
