//! One real control plane per test binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::kubectl::{KubectlOutput, kubectl_binary, run_kubectl};
use crate::namespace::TestNamespace;

/// The people and programs the tests act as. The humans are the threat model:
/// alice and carol hold cluster-admin through RBAC, admin is in system:masters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// User `admin`, group `system:masters`: RBAC cannot restrict it.
    Admin,
    /// User `alice`, group `developers`, bound to cluster-admin.
    Alice,
    /// User `carol`, groups `developers` and `gitwarden:break-glass`, bound to cluster-admin.
    Carol,
}

impl Identity {
    /// The kubeconfig file `tests/cluster/up` writes for this identity.
    pub fn kubeconfig_file(self) -> &'static str {
        match self {
            Identity::Admin => "admin.kubeconfig",
            Identity::Alice => "alice.kubeconfig",
            Identity::Carol => "carol.kubeconfig",
        }
    }

    /// The user name the API server sees.
    pub fn user(self) -> &'static str {
        match self {
            Identity::Admin => "admin",
            Identity::Alice => "alice",
            Identity::Carol => "carol",
        }
    }
}

/// A running control plane and the files `tests/cluster/up` wrote for it.
#[derive(Debug)]
pub struct TestCluster {
    dir: PathBuf,
    server: String,
    /// Kubeconfigs this process wrote for minted tokens.
    scratch: PathBuf,
    /// Set for a cluster this test owns ([`TestCluster::start_private`]):
    /// it can be killed and started again, and is removed when dropped.
    private: Option<Private>,
}

/// What a private cluster needs to be started again on its directory.
#[derive(Debug, Default)]
struct Private {
    /// The AdmissionConfiguration the next start passes to kube-apiserver.
    admission_config: Mutex<Option<PathBuf>>,
    /// Whether it runs a node (`GITWARDEN_CLUSTER_NODE=1`, see [`crate::node`]).
    node: bool,
}

/// Numbers the private clusters of one test process.
static PRIVATE_CLUSTERS: AtomicUsize = AtomicUsize::new(0);

static CLUSTER: OnceLock<std::result::Result<TestCluster, String>> = OnceLock::new();

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

impl TestCluster {
    /// The cluster shared by every test of this binary, started on first use.
    ///
    /// With `GITWARDEN_TEST_CLUSTER` set to a directory where `tests/cluster/up`
    /// already runs a cluster, that one is used (and left running). Otherwise a new
    /// cluster is started in a temporary directory; it watches this process and
    /// stops and removes its state when the test binary exits, also after a panic
    /// or a kill. A cluster that cannot start fails the test loudly: tests never
    /// skip silently.
    pub fn shared() -> &'static TestCluster {
        let cluster = CLUSTER.get_or_init(|| Self::start().map_err(|e| format!("{e:#}")));
        match cluster {
            Ok(c) => c,
            Err(e) => panic!("the test cluster (tests/cluster) could not start: {e}"),
        }
    }

    fn start() -> Result<TestCluster> {
        // Fail early with a clear message rather than deep inside a test.
        kubectl_binary()?;
        if let Some(dir) = std::env::var_os("GITWARDEN_TEST_CLUSTER") {
            let dir = PathBuf::from(dir);
            return Self::attach(dir);
        }
        let base =
            std::env::temp_dir().join(format!("gitwarden-test-cluster-{}", std::process::id()));
        Self::up_watched(base, &[])
    }

    /// `tests/cluster/up DIR` (with `env`, e.g. a node) for a cluster that
    /// watches this process and stops and removes its state when it exits.
    ///
    /// A start-up that lost a port race (the ports are chosen free, then
    /// bound a moment later, while other clusters of the same test run start
    /// too) is tried once more.
    pub(crate) fn up_watched(base: PathBuf, env: &[(&str, &str)]) -> Result<TestCluster> {
        match Self::up_watched_once(&base, env) {
            Err(e) if format!("{e:#}").contains("address already in use") => {
                eprintln!("tests/cluster/up lost a port race; starting again: {e:#}");
                Self::up_watched_once(&base, env)
            }
            other => other,
        }
    }

    fn up_watched_once(base: &Path, env: &[(&str, &str)]) -> Result<TestCluster> {
        let base = base.to_path_buf();
        let up = repo_root().join("tests/cluster/up");
        let out = Command::new(&up)
            .arg(&base)
            .env(
                "GITWARDEN_CLUSTER_WATCH_PID",
                std::process::id().to_string(),
            )
            .env("GITWARDEN_CLUSTER_REMOVE_ON_EXIT", "1")
            // Only the caller decides whether the cluster has a node.
            .env_remove("GITWARDEN_CLUSTER_NODE")
            .envs(env.iter().copied())
            .output()
            .with_context(|| format!("running {}", up.display()))?;
        if !out.status.success() {
            bail!(
                "{} {} failed ({}):\n{}{}",
                up.display(),
                base.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        eprint!("{}", String::from_utf8_lossy(&out.stdout));
        Self::attach(base)
    }

    /// Attaches to the cluster `tests/cluster/up` runs in `dir`.
    pub(crate) fn attach(dir: PathBuf) -> Result<TestCluster> {
        let server = std::fs::read_to_string(dir.join("server"))
            .with_context(|| format!("no running cluster in {} (missing 'server')", dir.display()))?
            .trim()
            .to_string();
        let scratch = dir.join(format!("scratch-{}", std::process::id()));
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("creating {}", scratch.display()))?;
        Ok(TestCluster {
            dir,
            server,
            scratch,
            private: None,
        })
    }

    /// A control plane of the test's own, apart from [`TestCluster::shared`],
    /// for tests that kill, restart or reconfigure the API server. Dropping it
    /// stops it and removes its directory; if the test process dies first, the
    /// control plane notices, stops and removes its directory itself.
    pub fn start_private() -> Result<TestCluster> {
        Self::start_private_with(false)
    }

    /// [`TestCluster::start_private`], with a node when `node` is set.
    pub(crate) fn start_private_with(node: bool) -> Result<TestCluster> {
        kubectl_binary()?;
        let n = PRIVATE_CLUSTERS.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "gitwarden-private-cluster-{}-{n}",
            std::process::id()
        ));
        if dir.exists() {
            // Left by an earlier process with the same id: start from nothing.
            run_script("down", &[], &dir, &[])?;
            let _ = std::fs::remove_dir_all(&dir);
        }
        let private = Private {
            node,
            ..Private::default()
        };
        private.up(&dir)?;
        let mut cluster = Self::attach(dir)?;
        cluster.private = Some(private);
        Ok(cluster)
    }

    fn private(&self) -> Result<&Private> {
        self.private
            .as_ref()
            .context("only a cluster from TestCluster::start_private can be stopped or restarted")
    }

    /// Sets the AdmissionConfiguration file (`--admission-control-config-file`)
    /// the next [`TestCluster::start_again`] hands to kube-apiserver; `None`
    /// starts it without one. Private clusters only.
    pub fn set_admission_config(&self, file: Option<&Path>) -> Result<()> {
        let private = self.private()?;
        *private
            .admission_config
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = file.map(Path::to_path_buf);
        Ok(())
    }

    /// SIGKILL to the whole control plane (etcd, kube-apiserver,
    /// kube-controller-manager): a crash, no graceful shutdown. Returns once the
    /// process is gone; its state stays for [`TestCluster::start_again`].
    pub fn kill(&self) -> Result<()> {
        self.private()?;
        run_script("stop", &["--kill"], &self.dir, &[])
    }

    /// SIGTERM and wait: a graceful stop that keeps the state.
    pub fn stop(&self) -> Result<()> {
        self.private()?;
        run_script("stop", &[], &self.dir, &[])
    }

    /// Starts the control plane again on its directory (same etcd data, CA,
    /// serving certificate, service-account keys, tokens and URL) and returns
    /// once it is ready.
    pub fn start_again(&self) -> Result<()> {
        self.private()?.up(&self.dir)?;
        let server = std::fs::read_to_string(self.dir.join("server"))?;
        if server.trim() != self.server {
            bail!(
                "the restarted cluster serves {} instead of {}",
                server.trim(),
                self.server
            );
        }
        Ok(())
    }

    /// [`TestCluster::kill`], then [`TestCluster::start_again`].
    pub fn restart(&self) -> Result<()> {
        self.kill()?;
        self.start_again()
    }

    /// The directory holding kubeconfigs, `ca.crt`, `server` and `log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The API server's https URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The CA that signed the API server's serving certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The kubeconfig file of an identity.
    pub fn kubeconfig(&self, who: Identity) -> PathBuf {
        self.dir.join(who.kubeconfig_file())
    }

    /// A kube client acting as `who`. Build one per test: a client belongs to the
    /// tokio runtime it was made on.
    pub async fn client(&self, who: Identity) -> Result<Client> {
        client_from_kubeconfig(&self.kubeconfig(who)).await
    }

    /// A kube client acting with the bearer token of a kubeconfig file.
    pub async fn client_for_kubeconfig(&self, path: &Path) -> Result<Client> {
        client_from_kubeconfig(path).await
    }

    /// Runs the real `kubectl` as `who` and captures its output.
    pub fn kubectl(&self, who: Identity, args: &[&str]) -> KubectlOutput {
        run_kubectl(&self.kubeconfig(who), args)
    }

    /// Runs the real `kubectl` with any kubeconfig (e.g. one for a minted token).
    pub fn kubectl_with(&self, kubeconfig: &Path, args: &[&str]) -> KubectlOutput {
        run_kubectl(kubeconfig, args)
    }

    /// Runs the real `kubectl` with standard input and extra environment.
    pub fn kubectl_full(
        &self,
        kubeconfig: &Path,
        args: &[&str],
        stdin: &str,
        env: &[(&str, &str)],
    ) -> KubectlOutput {
        crate::kubectl::run_kubectl_full(kubeconfig, args, stdin, env)
    }

    /// A fresh namespace created (and later deleted) with a given kubeconfig.
    pub async fn namespace_as(&self, prefix: &str, kubeconfig: &Path) -> Result<TestNamespace> {
        TestNamespace::create_as(self, prefix, kubeconfig).await
    }

    /// A fresh namespace for one test, created by admin and deleted when dropped.
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace> {
        TestNamespace::create(self, prefix).await
    }

    /// Mints a real service-account token with the TokenRequest API, bound to a Pod
    /// of that service account, exactly as the kubelet does for a running pod. The
    /// API server then reports the pod's name in the token's `userInfo.extra`.
    /// Creates the service account and the (never scheduled) pod if missing, and
    /// returns the token and a kubeconfig file that uses it.
    pub async fn mint_service_account_token(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Result<(String, PathBuf)> {
        let admin = self.client(Identity::Admin).await?;
        let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
        if sas.get_opt(service_account).await?.is_none() {
            let sa: ServiceAccount = serde_json::from_value(serde_json::json!({
                "metadata": { "name": service_account }
            }))?;
            sas.create(&PostParams::default(), &sa)
                .await
                .context("creating service account")?;
        }
        let pods: Api<Pod> = Api::namespaced(admin.clone(), namespace);
        let pod_name = format!("{service_account}-token-holder");
        let pod = match pods.get_opt(&pod_name).await? {
            Some(p) => p,
            None => {
                let pod: Pod = serde_json::from_value(serde_json::json!({
                    "metadata": { "name": pod_name },
                    "spec": {
                        "serviceAccountName": service_account,
                        "automountServiceAccountToken": false,
                        "containers": [{ "name": "main", "image": "registry.invalid/never-pulled:1" }]
                    }
                }))?;
                pods.create(&PostParams::default(), &pod)
                    .await
                    .context("creating token-holder pod")?
            }
        };
        let request: TokenRequest = serde_json::from_value(serde_json::json!({
            "spec": {
                "audiences": [],
                "expirationSeconds": 3600,
                "boundObjectRef": { "apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": pod.metadata.uid },
            }
        }))?;
        let minted = sas
            .create_token_request(service_account, &PostParams::default(), &request)
            .await
            .context("TokenRequest")?;
        let token = minted
            .status
            .and_then(|s| s.token)
            .filter(|t| !t.is_empty())
            .context("TokenRequest returned no token")?;
        let path = self
            .scratch
            .join(format!("{namespace}-{service_account}.kubeconfig"));
        write_token_kubeconfig(
            &path,
            &self.server,
            &self.ca_file(),
            &format!("system:serviceaccount:{namespace}:{service_account}"),
            &token,
        )?;
        Ok((token, path))
    }
}

impl Private {
    /// `tests/cluster/up DIR` for this private cluster.
    fn up(&self, dir: &Path) -> Result<()> {
        let pid = std::process::id().to_string();
        let admission = self
            .admission_config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut env = vec![
            ("GITWARDEN_CLUSTER_WATCH_PID", pid.as_str()),
            ("GITWARDEN_CLUSTER_REMOVE_ON_EXIT", "orphaned"),
        ];
        let admission_str = admission.as_ref().map(|p| p.display().to_string());
        if let Some(file) = &admission_str {
            env.push(("GITWARDEN_CLUSTER_ADMISSION_CONFIG", file));
        }
        if self.node {
            env.push(("GITWARDEN_CLUSTER_NODE", "1"));
        }
        run_script("up", &[], dir, &env)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.private.is_none() {
            return;
        }
        if let Err(e) = run_script("down", &[], &self.dir, &[]) {
            // Not removed: a node's mounts may still be below it.
            eprintln!(
                "warning: stopping the private cluster (left {} in place): {e:#}",
                self.dir.display()
            );
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs one of the `tests/cluster` scripts on `dir`; fails with its output.
fn run_script(name: &str, args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Result<()> {
    let script = repo_root().join("tests/cluster").join(name);
    let out = Command::new(&script)
        .args(args)
        .arg(dir)
        // A private cluster picks its own port (then keeps it) and gets only
        // the admission configuration its test asked for.
        .env_remove("GITWARDEN_CLUSTER_PORT")
        .env_remove("GITWARDEN_CLUSTER_ADMISSION_CONFIG")
        .env_remove("GITWARDEN_CLUSTER_NODE")
        .envs(env.iter().copied())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed ({}):\n{}{}",
            script.display(),
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}

/// Writes a kubeconfig that authenticates with a bearer token.
pub fn write_token_kubeconfig(
    path: &Path,
    server: &str,
    ca_file: &Path,
    user: &str,
    token: &str,
) -> Result<()> {
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "gitwarden-test", "cluster": { "server": server, "certificate-authority": ca_file } }],
        "users": [{ "name": user, "user": { "token": token } }],
        "contexts": [{ "name": "ctx", "context": { "cluster": "gitwarden-test", "user": user } }],
        "current-context": "ctx",
    });
    std::fs::write(path, serde_json::to_vec_pretty(&config)?)
        .with_context(|| format!("writing {}", path.display()))
}

async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    Ok(gitwarden_runtime::client::client(Some(path)).await?)
}
