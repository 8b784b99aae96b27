//! The real gitwarden webhook, running as its own process against the test
//! cluster and registered with the shipped (URL-based) webhook configuration.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde_json::Value;

use crate::binaries::binary;
use crate::cluster::{Identity, TestCluster, repo_root};
use crate::kubectl::run_kubectl_stdin;

/// Only one gitwarden webhook may be registered at a time: its configurations
/// are cluster-wide objects named `gitwarden`. Tests that install one hold this.
pub static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A running webhook, its files, and the identities the tests need around it.
pub struct WebhookFixture {
    cluster: &'static TestCluster,
    dir: tempfile::TempDir,
    port: u16,
    child: Mutex<Option<Child>>,
    ca: gitwarden_certs::CertificateAuthority,
    http: reqwest::Client,
    agent_kubeconfig: PathBuf,
    webhook_kubeconfig: PathBuf,
}

/// Renders a manifest template: `${NAME}` → value.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    vars.iter().fold(template.to_string(), |text, (k, v)| {
        text.replace(&format!("${{{k}}}"), v)
    })
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

impl WebhookFixture {
    /// Installs gitwarden's webhook into the cluster: namespace, RBAC, policy,
    /// the agent's service account (bound to cluster-admin, as the agent's
    /// ClusterRole will be), a serving certificate, the process, and the webhook
    /// configurations; returns once humans are really being refused.
    pub async fn install(cluster: &'static TestCluster) -> Result<WebhookFixture> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let root = repo_root();
        let admin = cluster.kubeconfig(Identity::Admin);
        // Remove any configuration a crashed earlier test left behind.
        remove_configurations(&admin);
        apply(
            &admin,
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: gitwarden-system\n",
        )?;
        apply(
            &admin,
            &std::fs::read_to_string(root.join("deploy/base/rbac-webhook.yaml"))?,
        )?;
        apply(
            &admin,
            &std::fs::read_to_string(root.join("deploy/base/policy.yaml"))?,
        )?;
        apply(
            &admin,
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: gitwarden-agent-test\n\
             roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n\
             subjects: [{kind: ServiceAccount, name: gitwarden-agent, namespace: gitwarden-system}]\n",
        )?;
        let (_, agent_kubeconfig) = cluster
            .mint_service_account_token("gitwarden-system", "gitwarden-agent")
            .await?;
        let (_, webhook_kubeconfig) = cluster
            .mint_service_account_token("gitwarden-system", "gitwarden-webhook")
            .await?;

        let dir = tempfile::Builder::new()
            .prefix("gitwarden-webhook-")
            .tempdir()?;
        let ca = gitwarden_certs::CertificateAuthority::generate(
            "gitwarden-test-webhook-ca",
            Duration::from_secs(24 * 3600),
        )?;
        let serving = ca.issue_serving_cert(
            &["localhost"],
            &["127.0.0.1".parse()?],
            Duration::from_secs(24 * 3600),
        )?;
        std::fs::write(dir.path().join("ca.crt"), ca.cert_pem())?;
        std::fs::write(dir.path().join("tls.crt"), &serving.cert_pem)?;
        std::fs::write(dir.path().join("tls.key"), &serving.key_pem)?;
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem().as_bytes())?)
            .timeout(Duration::from_secs(10))
            .build()?;
        let fixture = WebhookFixture {
            cluster,
            port: free_port()?,
            dir,
            child: Mutex::new(None),
            ca,
            http,
            agent_kubeconfig,
            webhook_kubeconfig,
        };
        fixture.start().await?;

        let template =
            std::fs::read_to_string(root.join("deploy/local/webhook-configuration.yaml"))?;
        let ca_bundle = base64::engine::general_purpose::STANDARD.encode(fixture.ca.cert_pem());
        let url = fixture.url();
        apply(
            &admin,
            &render(
                &template,
                &[("WEBHOOK_URL", &url), ("CA_BUNDLE", &ca_bundle)],
            ),
        )?;
        fixture.wait_until_enforcing().await?;
        Ok(fixture)
    }

    /// The webhook's base URL.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The audit log directory.
    pub fn audit_dir(&self) -> PathBuf {
        self.dir.path().join("audit")
    }

    /// A kubeconfig authenticating as the agent's service account (real token).
    pub fn agent_kubeconfig(&self) -> &Path {
        &self.agent_kubeconfig
    }

    /// A kube client acting as the agent.
    pub async fn agent_client(&self) -> Result<kube::Client> {
        self.cluster
            .client_for_kubeconfig(&self.agent_kubeconfig)
            .await
    }

    /// Starts (or restarts) the process on the same port, certificate and audit log.
    pub async fn start(&self) -> Result<()> {
        let bin = binary("gitwarden-webhook")?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("webhook.log"))?;
        let child = Command::new(bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--tls-cert")
            .arg(self.dir.path().join("tls.crt"))
            .arg("--tls-key")
            .arg(self.dir.path().join("tls.key"))
            .arg("--audit-dir")
            .arg(self.audit_dir())
            .args([
                "--policy-configmap",
                "gitwarden-system/gitwarden-policy",
                "--reload-interval",
                "500ms",
            ])
            .arg("--kubeconfig")
            .arg(&self.webhook_kubeconfig)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting gitwarden-webhook")?;
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        self.wait_ready().await
    }

    async fn wait_ready(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(resp) = self.http.get(format!("{}/readyz", self.url())).send().await
                && resp.status().is_success()
            {
                let body: Value = resp.json().await?;
                if body["policy"]["generation"].as_u64().unwrap_or(0) > 0 {
                    return Ok(());
                }
            }
            if let Some(status) = self
                .child
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "gitwarden-webhook exited ({status}) during start-up:\n{}",
                    self.log_tail(30)
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "gitwarden-webhook not ready within 30s:\n{}",
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_until_enforcing(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.cluster.kubectl(
                Identity::Alice,
                &[
                    "-n",
                    "gitwarden-system",
                    "create",
                    "configmap",
                    "enforcement-probe",
                    "--dry-run=server",
                ],
            );
            // dry-run is allowed by design; a real create must be refused.
            let real = self.cluster.kubectl(
                Identity::Alice,
                &[
                    "-n",
                    "gitwarden-system",
                    "create",
                    "configmap",
                    "enforcement-probe",
                ],
            );
            if out.success && !real.success && real.stderr.contains("gitwarden") {
                return Ok(());
            }
            if real.success {
                self.cluster.kubectl(
                    Identity::Admin,
                    &[
                        "-n",
                        "gitwarden-system",
                        "delete",
                        "configmap",
                        "enforcement-probe",
                        "--ignore-not-found",
                    ],
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "the API server did not start calling the webhook within 30s: {}",
                    real.stderr
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Rotates the serving certificate the way a Secret volume update does:
    /// new files from the same CA, written in place. Returns the new PEM.
    pub fn rotate_certificate(&self) -> Result<String> {
        let serving = self.ca.issue_serving_cert(
            &["localhost"],
            &["127.0.0.1".parse()?],
            Duration::from_secs(24 * 3600),
        )?;
        std::fs::write(self.dir.path().join("tls.key.new"), &serving.key_pem)?;
        std::fs::write(self.dir.path().join("tls.crt.new"), &serving.cert_pem)?;
        std::fs::rename(
            self.dir.path().join("tls.key.new"),
            self.dir.path().join("tls.key"),
        )?;
        std::fs::rename(
            self.dir.path().join("tls.crt.new"),
            self.dir.path().join("tls.crt"),
        )?;
        Ok(serving.cert_pem)
    }

    /// An HTTPS client that opens a new TLS connection for every request and
    /// reports the peer certificate, to observe certificate rotation.
    pub fn fresh_connection_client(&self) -> Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(
                self.ca.cert_pem().as_bytes(),
            )?)
            .pool_max_idle_per_host(0)
            .tls_info(true)
            .timeout(Duration::from_secs(10))
            .build()?)
    }

    /// SIGKILL: no graceful shutdown, no flush beyond what was already durable.
    pub fn kill9(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// GET /audit with a query string (e.g. `user=alice&limit=10`).
    pub async fn audit(&self, query: &str) -> Result<Vec<Value>> {
        let resp = self
            .http
            .get(format!("{}/audit?{query}", self.url()))
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!(
                "GET /audit?{query}: {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(resp.json().await?)
    }

    /// GET /metrics as text.
    pub async fn metrics(&self) -> Result<String> {
        Ok(self
            .http
            .get(format!("{}/metrics", self.url()))
            .send()
            .await?
            .text()
            .await?)
    }

    /// The HTTPS client that trusts the webhook's CA (for raw requests).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Runs `gitwarden-webhook verify` on the audit log: (intact, report).
    pub fn verify(&self) -> Result<(bool, String)> {
        let out = Command::new(binary("gitwarden-webhook")?)
            .arg("verify")
            .arg("--audit-dir")
            .arg(self.audit_dir())
            .output()?;
        Ok((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    }

    /// Replaces the policy ConfigMap's `policy.yaml` (as the agent would).
    pub fn set_policy(&self, yaml: &str) -> Result<()> {
        let indented: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
        let manifest = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gitwarden-policy\n  namespace: gitwarden-system\ndata:\n  policy.yaml: |\n{indented}"
        );
        apply(&self.agent_kubeconfig, &manifest)
    }

    /// The last lines of the webhook's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("webhook.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for WebhookFixture {
    fn drop(&mut self) {
        remove_configurations(&self.cluster.kubeconfig(Identity::Admin));
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "--- gitwarden-webhook log (last 40 lines) ---\n{}",
                self.log_tail(40)
            );
        }
    }
}

fn remove_configurations(admin: &Path) {
    // Webhooks never see changes to webhook configurations, so admin can always do this.
    let _ = crate::kubectl::run_kubectl(
        admin,
        &[
            "delete",
            "validatingwebhookconfiguration,mutatingwebhookconfiguration",
            "gitwarden",
            "--ignore-not-found",
        ],
    );
}

/// `kubectl apply -f -` with a manifest.
pub fn apply(kubeconfig: &Path, manifest: &str) -> Result<()> {
    let out = run_kubectl_stdin(kubeconfig, &["apply", "-f", "-"], manifest);
    if !out.success {
        bail!("kubectl apply failed: {}", out.stderr);
    }
    Ok(())
}
