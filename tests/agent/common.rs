//! A git repository of manifests, and the agent binary pointed at it.

use std::path::{Path, PathBuf};
use std::process::Command;

use gitwarden_agent::status::{Status, Synced};
use gitwarden_apply::{Action, SyncReport};
use gitwarden_tests::testdata;
pub use gitwarden_tests::wait_for;
use gitwarden_tests::webhook::{apply, render};
use gitwarden_tests::{Identity, TestCluster, TestNamespace};
use serde::Serialize;

pub struct AgentSetup {
    pub cluster: &'static TestCluster,
    pub ns: TestNamespace,
    pub repo: tempfile::TempDir,
    cache: tempfile::TempDir,
    agent_kubeconfig: PathBuf,
}

/// What one run of `gitwarden-agent` printed and how it ended.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The whole `sync -o json` document.
    pub fn synced(&self) -> Synced {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("not a JSON report ({e}):\n{}\n{}", self.stdout, self.stderr)
        })
    }

    /// The report of `sync -o json`.
    pub fn report(&self) -> SyncReport {
        self.synced().report
    }
}

/// A value as JSON, for assertion messages.
pub fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("<not serialisable: {e}>"))
}

/// GET `{url}/status`: `None` while the agent does not answer with JSON; a
/// JSON body that is not the agent's [`Status`] fails the test.
pub async fn fetch_status(url: &str) -> Option<Status> {
    let body: serde_json::Value = reqwest::get(format!("{url}/status"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(
        serde_json::from_value(body.clone())
            .unwrap_or_else(|e| panic!("/status is not the agent's Status ({e}): {body:#}")),
    )
}

pub use gitwarden_tests::git::git;

/// The agent's namespace, RBAC and token: set up once per test binary.
static AGENT_KUBECONFIG: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();

async fn agent_identity(cluster: &'static TestCluster) -> PathBuf {
    AGENT_KUBECONFIG
        .get_or_init(|| async {
            let admin = cluster.kubeconfig(Identity::Admin);
            let namespace =
                testdata::rendered("namespace.yaml", &[("NAME", "gitwarden-system")]).unwrap();
            apply(&admin, &namespace).unwrap();
            // The rights the addon ships (deploy/base/rbac-agent.yaml), not
            // cluster-admin: every agent test also proves they are enough.
            let rbac = std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../deploy/base/rbac-agent.yaml"),
            )
            .unwrap();
            apply(&admin, &rbac).unwrap();
            cluster
                .mint_service_account_token("gitwarden-system", "gitwarden-agent")
                .await
                .unwrap()
                .1
        })
        .await
        .clone()
}

impl AgentSetup {
    pub async fn new(prefix: &str) -> AgentSetup {
        let cluster = TestCluster::shared();
        let agent_kubeconfig = agent_identity(cluster).await;
        let ns = cluster.namespace(prefix).await.unwrap();
        let repo = tempfile::tempdir().unwrap();
        git(repo.path(), &["init", "-q", "-b", "main"]);
        AgentSetup {
            cluster,
            ns,
            repo,
            cache: tempfile::tempdir().unwrap(),
            agent_kubeconfig,
        }
    }

    pub fn ns(&self) -> &str {
        self.ns.name()
    }

    /// The kubeconfig of the agent's identity (its real service-account token).
    pub fn agent_kubeconfig(&self) -> &Path {
        &self.agent_kubeconfig
    }

    /// Writes a file into the repository (relative path) and commits everything.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            let full = self.repo.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, render(content, &[("NAMESPACE", self.ns())])).unwrap();
        }
        git(self.repo.path(), &["add", "-A"]);
        git(
            self.repo.path(),
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(self.repo.path(), &["rev-parse", "HEAD"])
    }

    pub fn remove(&self, path: &str) -> String {
        git(self.repo.path(), &["rm", "-q", path]);
        git(
            self.repo.path(),
            &["commit", "-q", "-m", &format!("remove {path}")],
        );
        git(self.repo.path(), &["rev-parse", "HEAD"])
    }

    /// Runs `gitwarden-agent SUBCOMMAND` against this repository as the agent.
    pub fn agent(&self, subcommand: &str, extra: &[&str]) -> Run {
        let bin = gitwarden_tests::binaries::binary("gitwarden-agent").unwrap();
        let out = Command::new(bin)
            .arg(subcommand)
            .arg("--repo")
            .arg(format!("file://{}", self.repo.path().display()))
            .arg("--cache-dir")
            .arg(self.cache.path())
            .arg("--kubeconfig")
            .arg(&self.agent_kubeconfig)
            .args([
                "--inventory-namespace",
                self.ns(),
                "--default-namespace",
                self.ns(),
            ])
            .args(extra)
            .output()
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `gitwarden-agent sync -o json`, which must succeed; returns what it printed.
    pub fn sync(&self) -> Synced {
        self.sync_with(&[])
    }

    /// `gitwarden-agent sync -o json` with `extra` arguments, which must
    /// succeed; returns what it printed.
    pub fn sync_with(&self, extra: &[&str]) -> Synced {
        let args: Vec<&str> = ["-o", "json"].iter().chain(extra).copied().collect();
        let run = self.agent("sync", &args);
        assert_eq!(run.code, 0, "sync failed:\n{}\n{}", run.stdout, run.stderr);
        run.synced()
    }

    /// kubectl as admin in the test namespace.
    pub fn kubectl(&self, args: &[&str]) -> gitwarden_tests::KubectlOutput {
        let mut full = vec!["-n", self.ns()];
        full.extend_from_slice(args);
        self.cluster.kubectl(Identity::Admin, &full)
    }
}

/// The actions of a sync, as (object, action) pairs; the object in its
/// written form (`apps/v1 Deployment ns/web`, version included).
pub fn actions(synced: &Synced) -> Vec<(String, Action)> {
    synced
        .report
        .applied
        .iter()
        .map(|o| (o.object.to_string(), o.action.clone()))
        .collect()
}

/// One agent with the admission guard on at a time: a guarding agent
/// removes every admission object its git and policy do not name,
/// cluster-wide, other tests' included. Tests that turn the guard on hold
/// this, and their policies allow `gitwarden-*` and `allowed-*` (the names
/// other tests give the admission objects they keep).
pub static ONE_GUARD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `admissionChain.allow` for a guarding test's policy: the admission
/// objects other tests keep, plus `extra`.
pub fn shared_allow(extra: &[&str]) -> Vec<String> {
    ["gitwarden-*", "allowed-*"]
        .iter()
        .chain(extra)
        .map(|n| (*n).to_owned())
        .collect()
}

/// A `gitwarden-agent run` process, killed when dropped.
pub struct RunningAgent {
    child: std::process::Child,
    pub url: String,
    log: PathBuf,
}

impl AgentSetup {
    /// Starts `gitwarden-agent run` against this repository.
    ///
    /// The admission guard is off unless `extra` sets `--admission-guard`:
    /// tests share one cluster, and a guarding agent removes every admission
    /// object its git and policy do not name, including other tests'. The
    /// tests of the guard (`admission_chain`) turn it on, one at a time.
    pub fn start_agent(&self, extra: &[&str]) -> RunningAgent {
        let guard: &[&str] = if extra.iter().any(|a| a.starts_with("--admission-guard")) {
            &[]
        } else {
            &["--admission-guard=false"]
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = self.cache.path().join(format!("agent-{port}.log"));
        let bin = gitwarden_tests::binaries::binary("gitwarden-agent").unwrap();
        let child = Command::new(bin)
            .arg("run")
            .arg("--repo")
            .arg(format!("file://{}", self.repo.path().display()))
            .arg("--cache-dir")
            .arg(self.cache.path().join(format!("cache-{port}")))
            .arg("--kubeconfig")
            .arg(&self.agent_kubeconfig)
            .args([
                "--inventory-namespace",
                self.ns(),
                "--default-namespace",
                self.ns(),
            ])
            .args([
                "--lease-namespace",
                self.ns(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--drift-debounce", "200ms", "--health-timeout", "1s"])
            .args(guard)
            .args(extra)
            .stderr(std::fs::File::create(&log).unwrap())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        RunningAgent {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }
}

impl RunningAgent {
    pub async fn status(&self) -> Option<Status> {
        fetch_status(&self.url).await
    }

    /// Whether the agent syncs `commit` successfully within 30 s.
    pub async fn synced(&self, commit: &str) -> bool {
        wait_for(std::time::Duration::from_secs(30), || async {
            let status = self.status().await?;
            (status.revision.as_deref() == Some(commit) && status.last_success.is_some())
                .then_some(())
        })
        .await
        .is_some()
    }

    /// The agent's /metrics text.
    pub async fn metrics(&self) -> Option<String> {
        reqwest::get(format!("{}/metrics", self.url))
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    /// SIGKILL: the agent dies without releasing its lease.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- agent log ({}) ---\n{}", self.url, self.log());
        }
    }
}

/// Cluster-scoped objects a test created, deleted when it ends (also after
/// a failed assertion). Declared before the agent, so dropped after it.
pub struct Cleanup {
    admin: PathBuf,
    objects: Vec<(&'static str, String)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (kind, name) in &self.objects {
            let _ = gitwarden_tests::kubectl::run_kubectl(
                &self.admin,
                &["delete", kind, name, "--ignore-not-found", "--wait=false"],
            );
            // Finalizers would keep it (and with it, its effect) around.
            let _ = gitwarden_tests::kubectl::run_kubectl(
                &self.admin,
                &[
                    "patch",
                    kind,
                    name,
                    "--type=merge",
                    "-p",
                    r#"{"metadata":{"finalizers":null}}"#,
                ],
            );
        }
    }
}

/// Deletes `objects` (kind, name) when the returned guard is dropped.
pub fn cleanup(s: &AgentSetup, objects: &[(&'static str, &str)]) -> Cleanup {
    Cleanup {
        admin: s.cluster.kubeconfig(Identity::Admin),
        objects: objects
            .iter()
            .map(|(kind, name)| (*kind, (*name).to_owned()))
            .collect(),
    }
}
