//! The kustomize benchmark: a kustomize repository (a `base/` of N ConfigMaps
//! and an `overlays/prod/` over it) applied, in the same run on the same
//! cluster, each engine into its own namespace, by
//!
//! - Flux's own engine: `bench/flux` (fluxcd/pkg/kustomize to build,
//!   fluxcd/pkg/ssa `ApplyAllStaged` to apply, as kustomize-controller does);
//! - `kubectl apply --server-side -k overlays/prod`;
//! - `gitwarden-agent sync --path overlays/prod`.
//!
//! Each engine runs twice: a first sync and a resync of the same revision.
//! Time is the whole process (render included); peak RSS is the process's
//! VmHWM; requests are the API server's own `apiserver_request_total` for
//! ConfigMaps, writes and dry-runs apart. Rendering alone is timed too:
//! the pinned `kustomize build` (tests/tools/build kustomize) and Flux's
//! in-process build.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gitwarden_tests::{Identity, TestCluster};

use crate::agent::{agent_binary, drain, join_drain, kubectl_for_comparison, payload, run};
use crate::proc_stats::rss_mib;

/// Benchmark settings.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Object counts to measure (ConfigMaps in the base).
    #[arg(long, value_delimiter = ',', default_values_t = [1000usize, 5000])]
    objects: Vec<usize>,
    /// The gitwarden-agent binary (default: next to this one; build with --release).
    #[arg(long)]
    agent_bin: Option<PathBuf>,
    /// The kubectl to compare with (default: `tests/cluster/kubectl-build`'s; `PATH`
    /// for the machine's).
    #[arg(long)]
    kubectl: Option<String>,
    /// The flux-bench binary (default: built by `bench/flux/build`).
    #[arg(long)]
    flux_bin: Option<PathBuf>,
    /// Flux's client-side rate limit: kustomize-controller ships `--kube-api-qps 50
    /// --kube-api-burst 300`; the default here (-1) lifts it, so Flux's engine is
    /// measured, not its throttle.
    #[arg(long, default_value_t = -1.0, allow_negative_numbers = true)]
    flux_qps: f64,
    /// Flux's concurrent server-side applies (kustomize-controller's `--concurrent-ssa`
    /// default).
    #[arg(long, default_value_t = 4)]
    flux_concurrency: usize,
}

/// Writes the benchmark's kustomize repository into `repo`: `base/` with
/// `count` ConfigMaps (100 per file, listed in its kustomization.yaml) and
/// `overlays/prod/` over it, which sets the namespace, a name prefix and
/// labels, and patches one ConfigMap (strategic merge).
pub(crate) fn write_kustomize_repo(repo: &Path, namespace: &str, count: usize) -> Result<()> {
    let base = repo.join("base");
    std::fs::create_dir_all(&base)?;
    let mut files = Vec::new();
    for (file, chunk) in (0..count).collect::<Vec<_>>().chunks(100).enumerate() {
        let mut text = String::new();
        for i in chunk {
            text.push_str(&format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:05}\n  labels: {{app: bench, shard: \"{}\"}}\ndata:\n  index: \"{i}\"\n  payload: \"{}\"\n",
                i % 10,
                payload()
            ));
        }
        let name = format!("objects-{file:03}.yaml");
        std::fs::write(base.join(&name), text)?;
        files.push(name);
    }
    let mut kustomization = String::from(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    for f in &files {
        kustomization.push_str(&format!("  - {f}\n"));
    }
    std::fs::write(base.join("kustomization.yaml"), kustomization)?;
    let overlay = repo.join("overlays/prod");
    std::fs::create_dir_all(&overlay)?;
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\n\
             kind: Kustomization\n\
             resources:\n  - ../../base\n\
             namespace: {namespace}\n\
             namePrefix: prod-\n\
             labels:\n  - pairs:\n      env: prod\n      team: platform\n    includeSelectors: false\n\
             patches:\n  - path: settings-patch.yaml\n"
        ),
    )?;
    std::fs::write(
        overlay.join("settings-patch.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-00000\ndata:\n  index: \"0\"\n  mode: production\n",
    )?;
    Ok(())
}

/// Makes `repo` a git repository (isolated from the user's configuration)
/// whose `main` holds its files in one commit.
fn commit_repo(repo: &Path) -> Result<()> {
    gitwarden_tests::git::try_git(repo, &["init", "-q"])?;
    gitwarden_tests::git::try_git(repo, &["add", "-A"])?;
    gitwarden_tests::git::try_git(repo, &["commit", "-q", "-m", "kustomize bench"])?;
    Ok(())
}

/// One run of one engine.
#[derive(Debug, Clone, Default)]
struct Measured {
    seconds: f64,
    peak_mib: f64,
    writes: u64,
    dry_runs: u64,
    reads: u64,
    /// The engine's own JSON report, if it prints one.
    report: serde_json::Value,
}

/// A process run to its end with both streams drained, its peak RSS
/// sampled while it runs: its VmHWM (the kernel's own high-water mark), or
/// the RSS of it and its descendants together if more (gitwarden renders in
/// a `kustomize` child; Flux and kubectl render in-process).
struct Finished {
    elapsed: Duration,
    stdout: Vec<u8>,
    peak_mib: f64,
}

fn timed(cmd: &mut Command) -> Result<Finished> {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let stdout = drain(child.stdout.take().context("stdout")?);
    let stderr = drain(child.stderr.take().context("stderr")?);
    let pid = child.id();
    let mut peak: f64 = 0.0;
    let status = loop {
        // The process's own high-water mark, or what it and its children
        // (the agent's kustomize) hold together, whichever is more.
        let (own_now, own_peak) = rss_mib(pid);
        let children: f64 = descendants(pid).into_iter().map(|c| rss_mib(c).0).sum();
        peak = peak.max(own_peak).max(own_now + children);
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    let (stdout, stderr) = (join_drain(stdout)?, join_drain(stderr)?);
    if !status.success() {
        let err = String::from_utf8_lossy(&stderr);
        let tail: String = err
            .lines()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        bail!(
            "{} failed ({status}): {tail}",
            cmd.get_program().to_string_lossy()
        );
    }
    Ok(Finished {
        elapsed,
        stdout,
        peak_mib: peak,
    })
}

/// Every process below `pid` (children, theirs, ...), from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // The field after the command name (which may hold spaces) is the state, then the ppid.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|f| f.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((p, ppid));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// `apiserver_request_total` for ConfigMaps by (verb, dry_run).
type Totals = BTreeMap<(String, bool), u64>;

fn request_totals(kubectl: &Path, admin: &Path) -> Result<Totals> {
    let text = run(Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(admin)
        .args(["get", "--raw", "/metrics"]))?;
    Ok(parse_totals(&text, "configmaps"))
}

fn parse_totals(metrics: &str, resource: &str) -> Totals {
    let mut totals = Totals::new();
    let wanted = format!("resource=\"{resource}\"");
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let labels: Vec<&str> = labels.split(',').collect();
        if !labels.contains(&wanted.as_str()) {
            continue;
        }
        let label = |name: &str| {
            labels
                .iter()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim_matches('"').to_string())
                .unwrap_or_default()
        };
        let verb = label("verb=");
        let dry_run = !label("dry_run=").is_empty();
        let count = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        *totals.entry((verb, dry_run)).or_insert(0) += count;
    }
    totals
}

/// (writes, dry-runs, reads) between two snapshots.
fn classify(before: &Totals, after: &Totals) -> (u64, u64, u64) {
    let (mut writes, mut dry_runs, mut reads) = (0, 0, 0);
    for (key @ (verb, dry_run), n) in after {
        let d = n.saturating_sub(before.get(key).copied().unwrap_or(0));
        match (verb.as_str(), dry_run) {
            ("GET" | "LIST" | "WATCH", _) => reads += d,
            (_, true) => dry_runs += d,
            _ => writes += d,
        }
    }
    (writes, dry_runs, reads)
}

/// The cluster and the tools every engine's run needs.
struct Bench {
    kubectl: PathBuf,
    admin: PathBuf,
}

impl Bench {
    /// Runs `cmd`, counting the API server's ConfigMap requests around it.
    fn measure(&self, cmd: &mut Command) -> Result<Measured> {
        let before = request_totals(&self.kubectl, &self.admin)?;
        let done = timed(cmd)?;
        let after = request_totals(&self.kubectl, &self.admin)?;
        let (writes, dry_runs, reads) = classify(&before, &after);
        let report = serde_json::from_slice(&done.stdout).unwrap_or(serde_json::Value::Null);
        Ok(Measured {
            seconds: done.elapsed.as_secs_f64(),
            peak_mib: done.peak_mib,
            writes,
            dry_runs,
            // The two metrics scrapes are GETs of /metrics, not of ConfigMaps.
            reads,
            report,
        })
    }
}

/// `gitwarden-bench kustomize`.
pub fn run_bench(opts: Options) -> Result<()> {
    let root = gitwarden_tests::cluster::repo_root();
    let agent = agent_binary(opts.agent_bin);
    let (kubectl_bin, kubectl_version) = kubectl_for_comparison(&root, opts.kubectl)?;
    let flux = match opts.flux_bin {
        Some(p) => p,
        None => PathBuf::from(run(&mut Command::new(root.join("bench/flux/build")))?.trim()),
    };
    let kustomize = gitwarden_tests::tools::tool("kustomize")?;
    let kustomize_version = run(Command::new(&kustomize).arg("version"))?
        .trim()
        .to_string();
    let work = tempfile::tempdir()?;
    println!("kustomize benchmark: starting the test control plane (tests/cluster)...");
    let cluster = TestCluster::shared();
    let admin = cluster.kubeconfig(Identity::Admin);
    let kubectl = |args: &[&str]| {
        run(Command::new(&kubectl_bin)
            .arg("--kubeconfig")
            .arg(&admin)
            .args(args))
    };
    kubectl(&["create", "namespace", "gitwarden-system"]).ok();
    println!(
        "flux-bench: {} (fluxcd/pkg/kustomize + fluxcd/pkg/ssa ApplyAllStaged, concurrency {}, qps {})",
        flux.display(),
        opts.flux_concurrency,
        if opts.flux_qps < 0.0 {
            "unlimited".to_string()
        } else {
            opts.flux_qps.to_string()
        }
    );
    println!("kubectl: {} ({kubectl_version})", kubectl_bin.display());
    println!("kustomize: {} ({kustomize_version})", kustomize.display());
    let bench = Bench {
        kubectl: kubectl_bin.clone(),
        admin: admin.clone(),
    };
    // The agent finds the pinned kustomize on PATH (and under its own name).
    let path_env = format!(
        "{}:{}",
        kustomize.parent().context("kustomize dir")?.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    for &n in &opts.objects {
        println!("\n== {n} objects (base) + overlays/prod ==");
        let engines = ["flux", "kubectl", "gitwarden"];
        let mut repos = BTreeMap::new();
        for engine in engines {
            let ns = format!("bench-kz-{engine}-{n}");
            kubectl(&["create", "namespace", &ns])?;
            let repo = work.path().join(format!("{engine}-{n}"));
            write_kustomize_repo(&repo, &ns, n)?;
            commit_repo(&repo)?;
            repos.insert(engine, repo);
        }

        // Rendering alone: the pinned kustomize binary, three times, best of.
        let mut render = Measured::default();
        for i in 0..3 {
            let done = timed(
                Command::new(&kustomize)
                    .arg("build")
                    .arg(repos["gitwarden"].join("overlays/prod")),
            )?;
            let rendered = String::from_utf8_lossy(&done.stdout)
                .matches("\nkind: ConfigMap")
                .count()
                + usize::from(String::from_utf8_lossy(&done.stdout).starts_with("kind: ConfigMap"));
            if i == 0 && rendered != n {
                println!("(kustomize build rendered {rendered} ConfigMaps, expected {n})");
            }
            if i == 0 || done.elapsed.as_secs_f64() < render.seconds {
                render.seconds = done.elapsed.as_secs_f64();
                render.peak_mib = done.peak_mib;
            }
        }

        let flux_cmd = || {
            let mut cmd = Command::new(&flux);
            cmd.arg("apply")
                .arg("--kubeconfig")
                .arg(&admin)
                .arg("--root")
                .arg(&repos["flux"])
                .args([
                    "--path",
                    "overlays/prod",
                    "--field-manager",
                    "kustomize-controller",
                ])
                .arg(format!("--qps={}", opts.flux_qps))
                .arg(format!("--concurrency={}", opts.flux_concurrency));
            cmd
        };
        let kubectl_cmd = || {
            let mut cmd = Command::new(&kubectl_bin);
            cmd.arg("--kubeconfig")
                .arg(&admin)
                .args(["apply", "--server-side", "--field-manager=bench", "-k"])
                .arg(repos["kubectl"].join("overlays/prod"))
                .arg("-o")
                .arg("name");
            cmd
        };
        let cache = work.path().join(format!("cache-{n}"));
        let agent_cmd = |bin: &Path| {
            let mut cmd = Command::new(bin);
            cmd.env("PATH", &path_env)
                .env("GITWARDEN_KUSTOMIZE", &kustomize)
                .args(["sync", "-o", "json", "--repo"])
                .arg(format!("file://{}", repos["gitwarden"].display()))
                .args(["--path", "overlays/prod", "--cache-dir"])
                .arg(&cache)
                .arg("--kubeconfig")
                .arg(&admin)
                .args(["--health-timeout", "0s", "--allow-mass-prune"]);
            cmd
        };

        let pair = |name: &str, make: &dyn Fn() -> Result<Command>| -> Result<[Measured; 2]> {
            let first = bench
                .measure(&mut make()?)
                .with_context(|| format!("{name}: first sync"))?;
            let second = bench
                .measure(&mut make()?)
                .with_context(|| format!("{name}: resync"))?;
            Ok([first, second])
        };
        let flux_runs = pair("flux", &|| Ok(flux_cmd()));
        let kubectl_runs = pair("kubectl", &|| Ok(kubectl_cmd()));
        let agent_runs = pair("gitwarden", &|| {
            let bin = agent.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?;
            Ok(agent_cmd(bin))
        });

        print_table(n, &render, &flux_runs, &kubectl_runs, &agent_runs);

        // Free the API server's memory for the next size.
        let namespaces: Vec<String> = engines
            .iter()
            .map(|e| format!("bench-kz-{e}-{n}"))
            .collect();
        let mut args = vec!["delete", "namespace", "--wait=false"];
        args.extend(namespaces.iter().map(String::as_str));
        kubectl(&args)?;
    }
    println!(
        "\n(seconds: the whole process, a new one each time, rendering included. peak: its VmHWM, or\n\
         its RSS and its children's (gitwarden's kustomize) together when more.\n\
         writes / dry-runs / reads: the API server's apiserver_request_total for configmaps during the\n\
         run, all clients (writes: APPLY, PATCH, POST, PUT, DELETE without dryRun). Goals: gitwarden's\n\
         first sync <= 0.5x Flux's time and RSS; resync 0 writes and far below Flux's time.)"
    );
    Ok(())
}

fn print_table(
    n: usize,
    render: &Measured,
    flux: &Result<[Measured; 2]>,
    kubectl: &Result<[Measured; 2]>,
    agent: &Result<[Measured; 2]>,
) {
    let flux_render = flux
        .as_ref()
        .ok()
        .and_then(|r| r[0].report["renderSeconds"].as_f64());
    println!(
        "rendering alone: kustomize build {:.2} s ({:.1} MiB peak); Flux's in-process build {}",
        render.seconds,
        render.peak_mib,
        flux_render.map_or("-".into(), |s| format!("{s:.2} s")),
    );
    println!(
        "{:<10} {:<7} {:>9} {:>9} {:>8} {:>9} {:>7} {:>10} {:>10}",
        "engine",
        "run",
        "seconds",
        "peak MiB",
        "writes",
        "dry-runs",
        "reads",
        "changed",
        "unchanged"
    );
    for (name, runs) in [("flux", flux), ("kubectl", kubectl), ("gitwarden", agent)] {
        match runs {
            Ok(runs) => {
                for (label, m) in ["first", "resync"].iter().zip(runs) {
                    let (changed, unchanged) = match name {
                        "flux" => (
                            m.report["changed"].to_string(),
                            m.report["unchanged"].to_string(),
                        ),
                        "gitwarden" => {
                            (m.report["report"]["writeRequests"].to_string(), "-".into())
                        }
                        _ => ("-".into(), "-".into()),
                    };
                    let peak = match name {
                        "flux" => m
                            .peak_mib
                            .max(m.report["peakRssMiB"].as_f64().unwrap_or(0.0)),
                        _ => m.peak_mib,
                    };
                    println!(
                        "{:<10} {:<7} {:>9.2} {:>9.1} {:>8} {:>9} {:>7} {:>10} {:>10}",
                        name,
                        label,
                        m.seconds,
                        peak,
                        m.writes,
                        m.dry_runs,
                        m.reads,
                        changed,
                        unchanged
                    );
                }
            }
            Err(e) => println!("{name:<10} failed: {e:#}"),
        }
    }
    let flux_peak = |m: &Measured| {
        m.peak_mib
            .max(m.report["peakRssMiB"].as_f64().unwrap_or(0.0))
    };
    if let Ok(g) = agent {
        if let Ok(f) = flux {
            println!(
                "gitwarden/flux at {n}: first sync {:.2}x time, {:.2}x peak RSS; resync {:.2}x time",
                g[0].seconds / f[0].seconds,
                g[0].peak_mib / flux_peak(&f[0]),
                g[1].seconds / f[1].seconds
            );
        }
        if let Ok(k) = kubectl {
            println!(
                "gitwarden/kubectl at {n}: first sync {:.2}x time, {:.2}x peak RSS; resync {:.2}x time",
                g[0].seconds / k[0].seconds,
                g[0].peak_mib / k[0].peak_mib,
                g[1].seconds / k[1].seconds
            );
        }
    }
    if let (Ok(f), Ok(k)) = (flux, kubectl) {
        println!(
            "flux/kubectl at {n}: first sync {:.2}x time; resync {:.2}x time",
            f[0].seconds / k[0].seconds,
            f[1].seconds / k[1].seconds
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn writes_dry_runs_and_reads_are_told_apart() {
        let text = "apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"configmaps\",scope=\"resource\",subresource=\"\",verb=\"APPLY\",version=\"v1\"} 7\n\
            apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"All\",group=\"\",resource=\"configmaps\",scope=\"resource\",subresource=\"\",verb=\"APPLY\",version=\"v1\"} 5\n\
            apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"configmaps\",scope=\"resource\",subresource=\"\",verb=\"GET\",version=\"v1\"} 3\n\
            apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"secrets\",scope=\"resource\",subresource=\"\",verb=\"APPLY\",version=\"v1\"} 50\n";
        let after = parse_totals(text, "configmaps");
        assert_eq!(classify(&Totals::new(), &after), (7, 5, 3));
        assert_eq!(classify(&after, &after), (0, 0, 0));
    }

    #[test]
    fn the_repository_has_a_base_and_an_overlay() {
        let dir = tempfile::tempdir().unwrap();
        write_kustomize_repo(dir.path(), "ns", 250).unwrap();
        let base = std::fs::read_to_string(dir.path().join("base/kustomization.yaml")).unwrap();
        assert_eq!(base.matches("objects-").count(), 3);
        let overlay =
            std::fs::read_to_string(dir.path().join("overlays/prod/kustomization.yaml")).unwrap();
        assert!(overlay.contains("namespace: ns") && overlay.contains("../../base"));
    }
}
