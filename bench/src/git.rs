//! git fetch: the agent's gix-based source (`gitwarden_source::Source`)
//! against the `git` program on the same repository in the same run.
//!
//! The repository has 10,000 files and 1,000 commits (generated with
//! `git fast-import`). A copy fetched at commit 900 then fetches the last 100
//! commits, both with full history and shallow (depth 1, the agent's
//! default); a first clone is timed both ways as well. Both sides talk to the
//! same `git upload-pack` over `file://`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gitwarden_source::{GitRef, Source, SourceOptions, SourceSpec};

use crate::agent::run;
use crate::latency::Samples;

/// Benchmark settings.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Files in the repository.
    #[arg(long, default_value_t = 10_000)]
    files: usize,
    /// Commits in the repository (the first adds every file).
    #[arg(long, default_value_t = 1_000)]
    commits: usize,
    /// Commits fetched incrementally (the copy starts at `commits - this`).
    #[arg(long, default_value_t = 100)]
    incremental: usize,
    /// Files each later commit changes.
    #[arg(long, default_value_t = 10)]
    changes_per_commit: usize,
    /// Manifest directory the agent reads after fetching (files below it are read
    /// from the fetched tree, as the agent does on every fetch).
    #[arg(long, default_value = "clusters/prod")]
    path: String,
    /// Timed repetitions of each scenario.
    #[arg(long, default_value_t = 5)]
    repetitions: usize,
}

/// Files under the manifest directory; the rest are other parts of a
/// platform repository (apps, docs) the agent does not read.
const MANIFEST_FILES: usize = 100;

/// `gitwarden-bench git`.
pub fn run_bench(opts: Options) -> Result<()> {
    if opts.incremental >= opts.commits || opts.files < MANIFEST_FILES {
        bail!("need --incremental < --commits and --files >= {MANIFEST_FILES}");
    }
    let work = tempfile::tempdir()?;
    let origin = work.path().join("origin.git");
    let started = Instant::now();
    let commits = generate(&origin, &opts)?;
    println!(
        "git benchmark: {} files, {} commits generated with git fast-import in {:.1} s ({})",
        opts.files,
        opts.commits,
        started.elapsed().as_secs_f64(),
        git_version()?
    );
    let url = format!("file://{}", origin.display());
    let at = |c: usize| -> Result<()> {
        run(Command::new("git").arg("-C").arg(&origin).args([
            "update-ref",
            "refs/heads/main",
            &commits[c - 1],
        ]))
        .map(drop)
    };

    // Caches at the older commit, copied before every incremental fetch.
    let base = opts.commits - opts.incremental;
    at(base)?;
    let templates = work.path().join("templates");
    let git_full = templates.join("git-full");
    let git_shallow = templates.join("git-shallow");
    git_clone(&url, &git_full, false)?;
    git_clone(&url, &git_shallow, true)?;
    let gix_full = templates.join("gix-full");
    let gix_shallow = templates.join("gix-shallow");
    gix_fetch(&url, &gix_full, false, &opts.path)?;
    gix_fetch(&url, &gix_shallow, true, &opts.path)?;
    at(opts.commits)?;

    let mut incremental = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    let mut first = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    for rep in 0..opts.repetitions {
        let dir = work.path().join(format!("rep-{rep}"));
        for (i, shallow) in [(0, false), (2, true)] {
            let gix_copy = copy_dir(
                if shallow { &gix_shallow } else { &gix_full },
                &dir.join(format!("gix-{i}")),
            )?;
            let git_copy = copy_dir(
                if shallow { &git_shallow } else { &git_full },
                &dir.join(format!("git-{i}")),
            )?;
            incremental[i].push(gix_fetch(&url, &gix_copy, shallow, &opts.path)?);
            incremental[i + 1].push(git_fetch(&git_copy, shallow)?);
            first[i].push(gix_fetch(
                &url,
                &dir.join(format!("gix-first-{i}")),
                shallow,
                &opts.path,
            )?);
            first[i + 1].push(git_clone(
                &url,
                &dir.join(format!("git-first-{i}")),
                shallow,
            )?);
        }
        std::fs::remove_dir_all(&dir)?;
    }

    println!(
        "\n{:<50} {:>12} {:>12} {:>12} {:>12} {:>8}",
        "scenario", "gix p50 ms", "gix min ms", "git p50 ms", "git min ms", "ratio"
    );
    let label_inc = format!("incremental fetch of {} commits", opts.incremental);
    let rows = [
        (
            format!("{label_inc}, full history"),
            &incremental[0],
            &incremental[1],
        ),
        (
            format!("{label_inc}, shallow (agent)"),
            &incremental[2],
            &incremental[3],
        ),
        (
            "first clone, full history".to_string(),
            &first[0],
            &first[1],
        ),
        (
            "first clone, shallow (agent)".to_string(),
            &first[2],
            &first[3],
        ),
    ];
    for (label, gix, git) in rows {
        let (gix, git) = (Samples::new(gix.clone()), Samples::new(git.clone()));
        println!(
            "{:<50} {:>12.1} {:>12.1} {:>12.1} {:>12.1} {:>7.2}x",
            label,
            gix.p50_ms(),
            gix.min_ms(),
            git.p50_ms(),
            git.min_ms(),
            gix.p50_ms() / git.p50_ms()
        );
    }
    println!(
        "\n({} repetitions each. gix: gitwarden_source::Source::fetch — fetch, then read the {} manifests of\n\
         {}/ from the fetched tree, as the agent does. git: `git fetch` into / `git clone --bare` of a\n\
         bare repository (with --depth 1 for shallow), a new process each time. ratio: gix p50 / git p50.)",
        opts.repetitions, MANIFEST_FILES, opts.path
    );
    Ok(())
}

fn git_version() -> Result<String> {
    Ok(run(Command::new("git").arg("--version"))?
        .trim()
        .to_string())
}

/// The path and content of file `i` at commit `c` (1-based): Kubernetes-like
/// YAML of a few hundred bytes.
fn file_at(i: usize, c: usize, manifest_dir: &str) -> (String, String) {
    let path = if i < MANIFEST_FILES {
        format!("{manifest_dir}/app-{i:03}.yaml")
    } else {
        format!("apps/team-{:02}/service-{:04}/deployment.yaml", i % 40, i)
    };
    let content = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: service-{i}\n  namespace: team-{}\n  labels: {{app: service-{i}, revision: \"{c}\"}}\n\
         spec:\n  replicas: {}\n  selector:\n    matchLabels: {{app: service-{i}}}\n  template:\n    metadata:\n      labels: {{app: service-{i}}}\n\
         \x20   spec:\n      containers:\n        - name: main\n          image: registry.example.invalid/service-{i}:1.{c}.0\n          ports: [{{containerPort: 8080}}]\n",
        i % 40,
        1 + i % 5
    );
    (path, content)
}

/// Generates the origin repository with `git fast-import`; returns the
/// commit ids, oldest first.
fn generate(origin: &Path, opts: &Options) -> Result<Vec<String>> {
    run(Command::new("git")
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(origin))?;
    let marks = origin.join("bench-marks");
    let mut child = Command::new("git")
        .arg("-C")
        .arg(origin)
        .args(["fast-import", "--quiet"])
        .arg(format!("--export-marks={}", marks.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("starting git fast-import")?;
    {
        let stdin = child.stdin.as_mut().context("fast-import stdin")?;
        let mut out = std::io::BufWriter::new(stdin);
        for c in 1..=opts.commits {
            let message = format!("commit {c}\n");
            write!(
                out,
                "commit refs/heads/main\nmark :{c}\ncommitter Bench <bench@example.invalid> {} +0000\ndata {}\n{message}",
                1_700_000_000 + c * 60,
                message.len()
            )?;
            if c > 1 {
                writeln!(out, "from :{}", c - 1)?;
            }
            let changed: Vec<usize> = if c == 1 {
                (0..opts.files).collect()
            } else {
                (0..opts.changes_per_commit)
                    .map(|j| (c * 7919 + j * 104_729) % opts.files)
                    .collect()
            };
            for i in changed {
                let (path, content) = file_at(i, c, &opts.path);
                write!(
                    out,
                    "M 100644 inline {path}\ndata {}\n{content}\n",
                    content.len()
                )?;
            }
        }
        out.flush()?;
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("git fast-import failed: {status}");
    }
    // One pack, as a served repository usually has.
    run(Command::new("git")
        .arg("-C")
        .arg(origin)
        .args(["repack", "-a", "-d", "-q"]))?;
    let text = std::fs::read_to_string(&marks)?;
    let mut ids = vec![String::new(); opts.commits];
    for line in text.lines() {
        if let Some((mark, id)) = line.split_once(' ')
            && let Ok(n) = mark.trim_start_matches(':').parse::<usize>()
            && (1..=opts.commits).contains(&n)
        {
            ids[n - 1] = id.to_string();
        }
    }
    if ids.iter().any(String::is_empty) {
        bail!("git fast-import did not report every commit");
    }
    Ok(ids)
}

/// `git clone --bare` over file:// (so the transport runs, not a local copy).
fn git_clone(url: &str, dir: &Path, shallow: bool) -> Result<Duration> {
    let mut cmd = Command::new("git");
    cmd.args(["clone", "--bare", "-q"]);
    if shallow {
        cmd.args(["--depth", "1"]);
    }
    cmd.arg(url).arg(dir);
    let started = Instant::now();
    run(&mut cmd)?;
    Ok(started.elapsed())
}

/// `git fetch` of the branch into a bare clone.
fn git_fetch(dir: &Path, shallow: bool) -> Result<Duration> {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir).args(["fetch", "-q"]);
    if shallow {
        cmd.args(["--depth", "1"]);
    }
    cmd.args(["origin", "+refs/heads/main:refs/heads/main"]);
    let started = Instant::now();
    run(&mut cmd)?;
    Ok(started.elapsed())
}

/// One `Source::fetch` into the cache below `cache_dir` (opening the source,
/// which the agent does once at start, is not timed).
fn gix_fetch(url: &str, cache_dir: &Path, shallow: bool, path: &str) -> Result<Duration> {
    let mut spec = SourceSpec::new(url, GitRef::Branch("main".into()));
    spec.path = path.to_string();
    let options = SourceOptions {
        shallow,
        ..SourceOptions::default()
    };
    let mut source = Source::open_with_options(spec, cache_dir, options)?;
    let started = Instant::now();
    let revision = source.fetch()?;
    let elapsed = started.elapsed();
    if revision.files.len() != MANIFEST_FILES {
        bail!(
            "gix fetched {} manifests, expected {MANIFEST_FILES}",
            revision.files.len()
        );
    }
    Ok(elapsed)
}

/// Copies a cache directory (not timed) so every fetch starts from the same state.
fn copy_dir(from: &Path, to: &Path) -> Result<PathBuf> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    run(Command::new("cp").arg("-a").arg(from).arg(to))?;
    Ok(to.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_put_a_fixed_share_under_the_manifest_directory() {
        let under: Vec<_> = (0..1000)
            .map(|i| file_at(i, 1, "clusters/prod").0)
            .filter(|p| p.starts_with("clusters/prod/"))
            .collect();
        assert_eq!(under.len(), MANIFEST_FILES);
        assert_ne!(file_at(5, 1, "m").1, file_at(5, 2, "m").1);
    }
}
