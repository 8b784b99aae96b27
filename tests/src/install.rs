//! gitwarden installed into a [`NodeCluster`] the way a user installs it:
//! images built from their Containerfiles (`tests/images/build`, with the
//! binaries this cargo just built) and imported into the node, a git server in
//! the cluster serving the repository to the pods, and one
//! `kubectl apply -k OVERLAY` (an overlay of `deploy/base` under
//! `tests/testdata/node/`). Nothing else is run from the workstation: the
//! certificates, the webhook's registration and the first sync all happen in
//! the cluster.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::Identity;
use crate::binaries::binary;
use crate::cluster::repo_root;
use crate::git::{Repo, try_git};
use crate::kubectl::KubectlOutput;
use crate::node::{NodeCluster, run_host};
use crate::testdata;
use crate::wait::wait_blocking;

/// gitwarden's namespace, as deploy/base names it.
pub const SYSTEM_NAMESPACE: &str = "gitwarden-system";

/// The repository the install's agent follows (the overlay's GITWARDEN_REPO).
pub const REPO_IN_CLUSTER: &str = "http://git-server.git.svc:8080/cluster.git";

/// The images the install and its repository run: `tests/images/images.list` names.
const IMAGES: &[&str] = &["agent", "webhook", "git-server", "demo-web"];

/// The gitwarden binaries the agent and webhook images copy.
const IMAGE_BINARIES: &[&str] = &[
    "gitwarden-agent",
    "gitwarden-webhook",
    "gitwarden-certs",
    "gitwarden-doctor",
];

static ARCHIVES: OnceLock<std::result::Result<Vec<PathBuf>, String>> = OnceLock::new();

/// The image archives of [`IMAGES`], built once per test binary from the
/// workspace's current binaries (a cached layer makes a rebuild take about a
/// second when nothing changed).
pub fn image_archives() -> Result<Vec<PathBuf>> {
    ARCHIVES
        .get_or_init(|| build_images().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!("building the images failed: {e}"))
}

fn build_images() -> Result<Vec<PathBuf>> {
    let mut bin_dir = None;
    for package in IMAGE_BINARIES {
        let path = binary(package)?;
        bin_dir = path.parent().map(Path::to_path_buf);
    }
    let bin_dir = bin_dir.context("no binaries built")?;
    let out = std::env::temp_dir().join(format!("gitwarden-images-{}", std::process::id()));
    remove_abandoned_image_dirs();
    let run = run_host(
        Command::new(repo_root().join("tests/images/build"))
            .arg(&out)
            .args(IMAGES)
            .env("GITWARDEN_BIN_DIR", &bin_dir),
    );
    if !run.success {
        bail!("tests/images/build failed:\n{}", run.stderr);
    }
    Ok(IMAGES
        .iter()
        .map(|name| out.join(format!("{name}.oci.tar")))
        .collect())
}

/// Removes the image directories of test processes that are gone (each
/// holds a few hundred MB of archives).
fn remove_abandoned_image_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("gitwarden-images-"))
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// How long the install may take to become ready on this shared 2-core
/// machine: a bound for a broken install to show, not a performance goal.
pub const INSTALL_LIMIT: Duration = Duration::from_secs(300);

/// A node cluster prepared for an install: images imported, the git server
/// running and the repository pushed to it.
pub struct InstallTarget<'a> {
    node: &'a NodeCluster,
    repo: Repo,
    push_url: String,
    /// One change at a time: tests sharing the install push to one branch.
    changing: std::sync::Mutex<()>,
}

impl<'a> InstallTarget<'a> {
    /// Imports the images, starts the git server, pushes
    /// `tests/testdata/node/cluster-repo` to it as the first commit on main.
    pub fn prepare(node: &'a NodeCluster) -> Result<InstallTarget<'a>> {
        Self::prepare_with(node, |repo| {
            copy_tree(&testdata::dir().join("node/cluster-repo"), repo.path())?;
            repo.write(GITWARDEN_IN_GIT, &render_overlay("install")?)?;
            repo.commit_all("The cluster: gitwarden and the shop application")?;
            Ok(())
        })
    }

    /// Prepares `node` like [`InstallTarget::prepare`], with a copy of this
    /// target's repository, history and all: the same commits, served by
    /// `node`'s own git server (a cluster rebuilt elsewhere, from the same
    /// repository).
    pub fn mirror<'b>(&self, node: &'b NodeCluster) -> Result<InstallTarget<'b>> {
        let _one_at_a_time = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        let source = self.repo.path().display().to_string();
        InstallTarget::prepare_with(node, |repo| {
            try_git(repo.path(), &["fetch", "-q", &source, "main"])?;
            try_git(repo.path(), &["reset", "-q", "--hard", "FETCH_HEAD"])?;
            Ok(())
        })
    }

    fn prepare_with(
        node: &'a NodeCluster,
        fill: impl FnOnce(&Repo) -> Result<()>,
    ) -> Result<InstallTarget<'a>> {
        let archives = image_archives()?;
        let mut import = Command::new(repo_root().join("tests/cluster/node/import-images"));
        import.arg(node.dir()).args(&archives);
        let out = run_host(&mut import);
        if !out.success {
            bail!("importing the images failed: {}", out.stderr);
        }
        let git_server = node.kubectl_full(
            &node.kubeconfig(Identity::Admin),
            &["apply", "-f", "-"],
            &std::fs::read_to_string(repo_root().join("examples/git-server.yaml"))
                .context("reading examples/git-server.yaml")?,
            &[],
        );
        if !git_server.success {
            bail!("starting the git server failed: {}", git_server.stderr);
        }
        let pod_ip = wait_blocking(Duration::from_secs(120), || {
            let out = node.kubectl(
                Identity::Admin,
                &[
                    "get",
                    "pods",
                    "-n",
                    "git",
                    "-l",
                    "app=git-server",
                    "-o",
                    "jsonpath={range .items[*]}{.status.podIP} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
                ],
            );
            out.stdout
                .lines()
                .find_map(|l| l.strip_suffix(" True").map(str::to_string))
        })
        .context("the git server never became Ready")?;
        let repo = Repo::new()?;
        fill(&repo)?;
        let push_url = format!("http://{pod_ip}:8080/cluster.git");
        try_git(repo.path(), &["push", "-q", &push_url, "HEAD:main"])?;
        Ok(InstallTarget {
            node,
            repo,
            push_url,
            changing: std::sync::Mutex::new(()),
        })
    }

    /// Writes `files` (path, content; `None` removes the file), commits
    /// them and pushes; the commit's id. Tests under the same install each
    /// change their own directory of the repository (the path holds no
    /// kustomization, so every directory is read).
    pub fn change(&self, files: &[(&str, Option<&str>)], message: &str) -> Result<String> {
        let _one_at_a_time = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        for (path, content) in files {
            match content {
                Some(content) => {
                    self.repo.write(path, content)?;
                }
                None => {
                    let full = self.repo.path().join(path);
                    std::fs::remove_file(&full)
                        .with_context(|| format!("removing {}", full.display()))?;
                }
            }
        }
        let id = self.repo.commit_all(message)?;
        try_git(
            self.repo.path(),
            &["push", "-q", &self.push_url, "HEAD:main"],
        )?;
        Ok(id)
    }

    /// The content of `path` as last committed (other tests of the same
    /// install change files too: change what is there, not a fresh copy).
    pub fn read(&self, path: &str) -> Result<String> {
        let full = self.repo.path().join(path);
        std::fs::read_to_string(&full).with_context(|| format!("reading {}", full.display()))
    }

    /// The id of the commit last pushed.
    pub fn head(&self) -> Result<String> {
        try_git(self.repo.path(), &["rev-parse", "HEAD"])
    }

    /// Whether the agent has applied `commit` or a later commit of the
    /// branch: other tests of the same install push too, and the agent may
    /// go from an older commit straight past this one.
    pub fn applied(&self, commit: &str) -> bool {
        let revisions = synced_revision(self.node);
        let revisions: Vec<&str> = revisions.split_whitespace().collect();
        !revisions.is_empty()
            && revisions.iter().all(|revision| {
                try_git(
                    self.repo.path(),
                    &["merge-base", "--is-ancestor", commit, revision],
                )
                .is_ok()
            })
    }

    /// The one install command: `kubectl apply -k tests/testdata/node/OVERLAY`
    /// as admin.
    pub fn install(&self, overlay: &str) -> KubectlOutput {
        let dir = testdata::dir().join("node").join(overlay);
        self.node.kubectl(
            Identity::Admin,
            &["apply", "-k", &dir.display().to_string()],
        )
    }
}

/// `TEMPLATE` over the agent's inventory shards (the ConfigMaps labelled
/// `gitwarden.io/inventory`).
fn inventory(node: &NodeCluster, template: &str) -> String {
    jsonpath(
        node,
        &[
            "configmaps",
            "-n",
            SYSTEM_NAMESPACE,
            "-l",
            gitwarden_shared::source::INVENTORY_LABEL,
        ],
        template,
    )
}

/// The revisions of the agent's inventory shards: the commits it applied.
pub fn synced_revision(node: &NodeCluster) -> String {
    inventory(node, "{.items[*].data.revision}")
}

/// The objects the agent's inventory lists (`Kind namespace/name`), sorted:
/// what the agent applied from git.
pub fn inventory_objects(node: &NodeCluster) -> std::collections::BTreeSet<String> {
    let entries = inventory(node, "{range .items[*]}{.data.entries}{\"\\n\"}{end}");
    entries
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let n = fields.len();
            (n >= 3).then(|| format!("{} {}", fields[n - 2], fields[n - 1]))
        })
        .collect()
}

/// Where the repository holds gitwarden's own install.
pub const GITWARDEN_IN_GIT: &str = "gitwarden/gitwarden.yaml";

/// `kubectl kustomize tests/testdata/node/OVERLAY`: an install as the
/// repository holds it.
pub fn render_overlay(overlay: &str) -> Result<String> {
    crate::kubectl::kustomize(&testdata::dir().join("node").join(overlay))
}

/// Copies a directory tree (regular files only).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Waits (up to `limit`) until `kind/name` in `namespace` reports at least
/// `want` ready replicas; the count then, `None` if it never did.
pub fn wait_ready_replicas(
    node: &NodeCluster,
    namespace: &str,
    kind: &str,
    name: &str,
    want: usize,
    limit: Duration,
) -> Option<usize> {
    wait_blocking(limit, || {
        let n: usize = jsonpath(
            node,
            &[kind, name, "-n", namespace],
            "{.status.readyReplicas}",
        )
        .parse()
        .unwrap_or(0);
        (n >= want).then_some(n)
    })
}

/// `kubectl get … -o jsonpath=TEMPLATE` as admin; empty when it fails.
pub fn jsonpath(node: &NodeCluster, args: &[&str], template: &str) -> String {
    let mut all: Vec<&str> = vec!["get"];
    all.extend_from_slice(args);
    let template = format!("jsonpath={template}");
    all.extend_from_slice(&["-o", &template]);
    let out = node.kubectl(Identity::Admin, &all);
    if out.success {
        out.stdout.trim().to_string()
    } else {
        String::new()
    }
}
